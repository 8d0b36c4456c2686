// Parley staff app: helpers shared by the pages' scripts. Calls to the JSON API carry the
// session cookie (same origin) and the page's CSRF token in X-CSRF-Token. Elements are built
// with textContent only, never from HTML strings.
(function () {
  'use strict';

  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : '';

  async function api(method, url, body) {
    const init = {
      method,
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json', 'X-CSRF-Token': csrf },
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (_) {
      return { ok: false, status: 0, data: { message: 'The server cannot be reached; check the connection.' } };
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  // el('a', {href: '/x', class: 'y'}, 'text', child, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + ' s';
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + ' min';
    const hours = Math.floor(minutes / 60);
    return hours + ' h ' + (minutes % 60) + ' min';
  }

  function time(iso) {
    const date = new Date(iso);
    if (isNaN(date)) return '';
    return date.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function message(data, fallback) {
    return (data && data.message) || fallback;
  }

  window.Parley = { csrf, api, el, duration, time, message };
})();
