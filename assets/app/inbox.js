// The live handoff queue: loads /api/v1/handoffs, then reloads it whenever the queue's event
// stream says something changed (a new handoff, a claim, a release), so every open inbox shows
// the same queue without a refresh.
(function () {
  'use strict';
  const { api, el, duration, message } = window.Parley;
  const rows = document.getElementById('queue-rows');
  const empty = document.getElementById('queue-empty');
  const live = document.getElementById('live-status');
  const problem = document.getElementById('queue-error');
  const me = rows.dataset.me;
  let handoffs = [];
  let loadedAt = Date.now();
  let shown = null;

  function showProblem(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }

  function waited(h) {
    const extra = h.status === 'waiting' ? (Date.now() - loadedAt) / 1000 : 0;
    return h.waiting_seconds + extra;
  }

  async function claim(h, button) {
    button.disabled = true;
    const result = await api('POST', '/api/v1/handoffs/' + encodeURIComponent(h.id) + '/claim');
    if (result.ok) {
      window.location.href = '/inbox/' + encodeURIComponent(h.id);
      return;
    }
    showProblem(message(result.data, 'Could not claim this conversation.'));
    button.disabled = false;
    load();
  }

  function row(h) {
    const name = (h.contact && h.contact.name) || 'Unknown contact';
    const lead = h.lead ? h.lead.tier + ' · ' + h.lead.score : '–';
    const reason = h.reason.replace(/_/g, ' ') + (h.detail ? ' (' + h.detail + ')' : '');
    let status;
    if (h.status === 'waiting') {
      status = 'Waiting' + (h.position ? ' (#' + h.position + ')' : '');
    } else if (h.claimed_by === me) {
      status = 'Claimed by you';
    } else {
      status = 'Claimed by ' + (h.claimed_by_name || 'someone');
    }
    let action;
    if (h.status === 'waiting') {
      action = el('button', { type: 'button', 'aria-label': 'Claim conversation with ' + name }, 'Claim');
      action.addEventListener('click', () => claim(h, action));
    } else {
      action = el('a', { href: '/inbox/' + encodeURIComponent(h.id), 'aria-label': 'Open conversation with ' + name }, 'Open');
    }
    return el('tr', { 'data-id': h.id, class: h.status },
      el('td', {}, el('a', { href: '/inbox/' + encodeURIComponent(h.id) }, name)),
      el('td', {}, h.channel),
      el('td', { class: 'waiting', 'data-id': h.id }, duration(waited(h))),
      el('td', {}, lead),
      el('td', {}, reason),
      el('td', { class: 'status' }, status),
      el('td', {}, action));
  }

  function render() {
    rows.replaceChildren(...handoffs.map(row));
    empty.hidden = handoffs.length > 0;
  }

  async function load() {
    const result = await api('GET', '/api/v1/handoffs');
    if (!result.ok) {
      showProblem(message(result.data, 'The queue could not be loaded.'));
      return;
    }
    showProblem('');
    handoffs = result.data.handoffs;
    loadedAt = Date.now();
    // Rebuild the rows only when the queue changed, so a button someone is about to press (or
    // has focused with the keyboard) is not replaced under them.
    const signature = JSON.stringify(handoffs.map((h) => [
      h.id, h.status, h.position, h.claimed_by, h.claimed_by_name, h.lead, h.reason, h.detail,
    ]));
    if (signature !== shown) {
      shown = signature;
      render();
    }
  }

  function connect() {
    const source = new EventSource('/api/v1/handoffs/events');
    source.addEventListener('open', () => {
      live.textContent = 'Live: the queue updates by itself.';
      load(); // catch up on anything missed while connecting
    });
    source.addEventListener('handoff', (event) => {
      // Screen readers hear new arrivals; the table is reloaded for every change.
      try {
        const change = JSON.parse(event.data);
        const name = (change.handoff.contact && change.handoff.contact.name) || 'someone';
        const said = {
          opened: name + ' is waiting for a person.',
          claimed: name + '’s conversation was claimed.',
          released: name + '’s conversation went back to the bot.',
          escalated: name + ' has waited longer than the target time.',
        }[change.event];
        if (said) live.textContent = 'Live: ' + said;
      } catch (_) { /* the reload below shows the change anyway */ }
      load();
    });
    source.addEventListener('error', () => {
      live.textContent = 'Reconnecting…';
    });
  }

  setInterval(() => {
    for (const cell of rows.querySelectorAll('td.waiting')) {
      const h = handoffs.find((x) => x.id === cell.dataset.id);
      if (h) cell.textContent = duration(waited(h));
    }
  }, 1000);

  load();
  connect();
})();
