// A conversation in the inbox: new messages and delivery ticks arrive live; the claimer replies
// through the prospect's channel (a refusal by the consent gate is explained, with approved
// templates offered outside WhatsApp's 24-hour window) and releases the conversation to the bot.
(function () {
  'use strict';
  const { api, el, time, message } = window.Parley;
  const root = document.getElementById('conversation');
  const conversation = root.dataset.conversation;
  const handoff = root.dataset.handoff;
  const list = document.getElementById('messages');
  const problem = document.getElementById('action-error');

  const TICKS = {
    queued: ['…', 'Waiting to send'],
    sent: ['✓', 'Sent'],
    delivered: ['✓✓', 'Delivered'],
    read: ['✓✓', 'Read'],
    played: ['✓✓', 'Read'],
    failed: ['✗', 'Failed'],
    blocked: ['⊘', 'Not sent'],
  };

  function showProblem(text) {
    problem.textContent = text || '';
    problem.hidden = !text;
  }

  function item(m) {
    const author = m.author === 'bot' ? 'Bot' + (m.agent ? ' (' + m.agent + ')' : '')
      : m.author === 'staff' ? 'Staff' : 'Prospect';
    const by = el('div', { class: 'by' },
      el('span', { class: 'author' }, author), ' ',
      el('time', { datetime: m.created_at }, time(m.created_at)));
    const tick = m.direction === 'outbound' ? TICKS[m.status] : null;
    if (tick) {
      by.append(' ', el('span', { class: 'tick ' + m.status, title: m.status, 'aria-label': tick[1] }, tick[0]));
    }
    return el('li', { class: 'msg ' + m.author, 'data-id': m.id }, by,
      el('p', { class: 'text' }, m.text || '[' + (m.kind || 'message') + ']'));
  }

  function upsert(m) {
    const existing = list.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
    const fresh = item(m);
    if (existing) existing.replaceWith(fresh);
    else list.append(fresh);
    fresh.scrollIntoView({ block: 'nearest' });
  }

  // Reads the whole history again: after a reconnection (nothing missed while the stream was
  // down) and every few seconds for delivery receipts (delivered, read), which are not streamed.
  let refreshing = false;
  async function refresh() {
    if (refreshing || document.hidden) return;
    refreshing = true;
    const result = await api('GET', '/api/v1/conversations/' + encodeURIComponent(conversation) + '/messages');
    refreshing = false;
    if (!result.ok) return;
    for (const m of result.data.messages) {
      const shown = list.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
      const tick = shown && shown.querySelector('.tick');
      const changed = !shown || (m.direction === 'outbound' && (tick ? tick.title : '') !== m.status);
      if (changed) upsert(m);
    }
  }

  const source = new EventSource('/conversations/' + encodeURIComponent(conversation) + '/live');
  let opened = false;
  source.addEventListener('open', () => {
    if (opened) refresh();
    opened = true;
  });
  source.addEventListener('message', (event) => {
    try { upsert(JSON.parse(event.data)); } catch (_) { /* a malformed event is skipped */ }
  });
  setInterval(refresh, 5000);

  const claimButton = document.getElementById('claim');
  if (claimButton) {
    claimButton.addEventListener('click', async () => {
      claimButton.disabled = true;
      const result = await api('POST', '/api/v1/handoffs/' + encodeURIComponent(claimButton.dataset.handoff) + '/claim');
      if (result.ok) window.location.reload();
      else {
        showProblem(message(result.data, 'Could not claim this conversation.'));
        claimButton.disabled = false;
      }
    });
  }

  const replyForm = document.getElementById('reply-form');
  const replyStatus = document.getElementById('reply-status');
  const refusal = document.getElementById('gate-refusal');
  const refusalText = document.getElementById('gate-message');
  const pickTemplate = document.getElementById('pick-template');
  const templateForm = document.getElementById('template-form');

  async function send(body, after) {
    showProblem('');
    refusal.hidden = true;
    replyStatus.textContent = 'Sending…';
    const result = await api('POST', '/api/v1/handoffs/' + encodeURIComponent(handoff) + '/reply', body);
    if (result.ok) {
      replyStatus.textContent = result.data.status === 'deferred'
        ? 'Held until ' + time(result.data.deliver_after) + ' (' + result.data.reason.replace(/_/g, ' ') + ').'
        : 'Sent to the prospect\'s channel.';
      after();
      return;
    }
    replyStatus.textContent = '';
    if (result.status === 409 && result.data && result.data.status === 'blocked') {
      // The refusal is recorded on the message: show it in the history as not sent.
      if (body.text && result.data.message_id) {
        upsert({
          id: result.data.message_id, author: 'staff', direction: 'outbound', status: 'blocked',
          text: body.text, created_at: new Date().toISOString(),
        });
      }
      refusalText.textContent = result.data.message;
      if (pickTemplate) pickTemplate.hidden = result.data.error !== 'outside_service_window';
      refusal.hidden = false;
      return;
    }
    showProblem(message(result.data, 'The reply could not be sent.'));
  }

  if (replyForm) {
    replyForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const box = document.getElementById('reply-text');
      const text = box.value.trim();
      if (!text) return;
      send({ text }, () => { box.value = ''; });
    });
  }

  if (pickTemplate && templateForm) {
    const select = document.getElementById('template-name');
    const preview = document.getElementById('template-preview');
    const showBody = () => {
      const option = select.options[select.selectedIndex];
      preview.textContent = option ? option.dataset.body : '';
    };
    select.addEventListener('change', showBody);
    pickTemplate.addEventListener('click', () => {
      templateForm.hidden = false;
      showBody();
      select.focus();
    });
    templateForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const params = document.getElementById('template-params').value
        .split('\n').map((p) => p.trim()).filter((p) => p.length > 0);
      send({ template: { name: select.value, params } }, () => { templateForm.hidden = true; });
    });
  }

  const releaseForm = document.getElementById('release-form');
  if (releaseForm) {
    releaseForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const note = document.getElementById('release-note').value.trim();
      const result = await api('POST', '/api/v1/handoffs/' + encodeURIComponent(handoff) + '/release',
        note ? { note } : {});
      if (result.ok) window.location.href = '/inbox';
      else showProblem(message(result.data, 'Could not release the conversation.'));
    });
  }
})();
