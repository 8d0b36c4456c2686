// The knowledge manager: drag-and-drop (or chosen) files upload one request each, so each has its
// own progress bar (the upload's bytes, then the server's processing) and its own error; the
// document list can replace (upload under the same name: a new version) and delete; the test
// panel asks what the bot would answer and shows the passages found.
(function () {
  'use strict';
  const { api, el, csrf, time, message } = window.Parley;
  const dropzone = document.getElementById('dropzone');
  const input = document.getElementById('files');
  const tagsField = document.getElementById('tags');
  const uploads = document.getElementById('uploads');
  const documents = document.getElementById('documents');
  const docsError = document.getElementById('docs-error');

  function tagsOf(raw) {
    return raw.split(',').map((t) => t.trim()).filter((t) => t.length > 0).join(',');
  }

  async function followJob(jobId, bar, status) {
    for (;;) {
      const result = await api('GET', '/api/v1/knowledge/jobs/' + encodeURIComponent(jobId));
      if (!result.ok) {
        status.textContent = 'Error: ' + message(result.data, 'the job could not be followed');
        return false;
      }
      const job = result.data;
      const file = job.files && job.files[0];
      if (job.status !== 'running') {
        bar.value = 100;
        if (file && file.error) {
          status.textContent = 'Error: ' + file.error;
          return false;
        }
        status.textContent = file && file.status === 'unchanged'
          ? 'Unchanged: already in the knowledge base'
          : 'Ready: ' + (file ? file.chunks : job.chunks_done) + ' passages';
        return true;
      }
      status.textContent = 'Processing…';
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  // Uploads one file (as `name`, when replacing) with its own progress bar.
  function upload(file, name, tags) {
    const label = name || file.name;
    const bar = el('progress', { max: '100', value: '0', 'aria-label': 'Upload progress of ' + label });
    const status = el('span', { class: 'upload-status', role: 'status' }, 'Uploading…');
    const row = el('li', { 'data-file': label }, el('span', { class: 'file' }, label), bar, status);
    uploads.append(row);
    const form = new FormData();
    form.append('file', file, label);
    if (tags) form.append('tags', tags);
    const request = new XMLHttpRequest();
    request.open('POST', '/api/v1/knowledge/documents');
    request.setRequestHeader('X-CSRF-Token', csrf);
    request.setRequestHeader('Accept', 'application/json');
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 90);
    });
    request.addEventListener('load', async () => {
      let data = null;
      try { data = JSON.parse(request.responseText); } catch (_) { data = null; }
      if (request.status !== 202) {
        row.classList.add('failed');
        status.textContent = 'Error: ' + message(data, 'the upload was refused (' + request.status + ')');
        return;
      }
      bar.value = 90;
      const ok = await followJob(data.job_id, bar, status);
      row.classList.add(ok ? 'done' : 'failed');
      loadDocuments();
    });
    request.addEventListener('error', () => {
      row.classList.add('failed');
      status.textContent = 'Error: the connection failed during the upload';
    });
    request.send(form);
  }

  function uploadAll(files) {
    const tags = tagsOf(tagsField.value);
    for (const file of files) upload(file, null, tags);
  }

  input.addEventListener('change', () => {
    uploadAll(Array.from(input.files));
    input.value = '';
  });
  for (const name of ['dragenter', 'dragover']) {
    dropzone.addEventListener(name, (event) => {
      event.preventDefault();
      dropzone.classList.add('over');
    });
  }
  for (const name of ['dragleave', 'drop']) {
    dropzone.addEventListener(name, () => dropzone.classList.remove('over'));
  }
  dropzone.addEventListener('drop', (event) => {
    event.preventDefault();
    uploadAll(Array.from(event.dataTransfer.files));
  });

  function documentRow(d) {
    const replaceInput = el('input', { type: 'file', class: 'visually-hidden', 'aria-label': 'New version of ' + d.name });
    replaceInput.addEventListener('change', () => {
      if (replaceInput.files.length) upload(replaceInput.files[0], d.name, d.tags.join(','));
      replaceInput.value = '';
    });
    const replace = el('button', { type: 'button', 'aria-label': 'Replace ' + d.name }, 'Replace');
    replace.addEventListener('click', () => replaceInput.click());
    const remove = el('button', { type: 'button', class: 'danger', 'aria-label': 'Delete ' + d.name }, 'Delete');
    remove.addEventListener('click', async () => {
      if (!window.confirm('Delete ' + d.name + '? The bot stops using it at once.')) return;
      const result = await api('DELETE', '/api/v1/knowledge/documents/' + encodeURIComponent(d.id));
      if (!result.ok) showDocsError(message(result.data, 'The document could not be deleted.'));
      loadDocuments();
    });
    const status = d.status + (d.error ? ': ' + d.error : '');
    return el('tr', { 'data-id': d.id },
      el('td', {}, d.name), el('td', {}, String(d.version)), el('td', {}, d.tags.join(', ')),
      el('td', {}, String(d.chunks)), el('td', {}, status), el('td', {}, time(d.uploaded_at)),
      el('td', { class: 'actions' }, replace, replaceInput, ' ', remove));
  }

  function showDocsError(text) {
    docsError.textContent = text || '';
    docsError.hidden = !text;
  }

  async function loadDocuments() {
    const result = await api('GET', '/api/v1/knowledge/documents');
    if (!result.ok) {
      showDocsError(message(result.data, 'The documents could not be listed.'));
      return;
    }
    showDocsError('');
    documents.replaceChildren(...result.data.documents.map(documentRow));
  }

  const testForm = document.getElementById('test-form');
  const testResult = document.getElementById('test-result');
  testForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const question = document.getElementById('question').value.trim();
    if (!question) return;
    testResult.replaceChildren(el('p', {}, 'Asking…'));
    const result = await api('POST', '/api/v1/knowledge/preview', { question });
    if (!result.ok) {
      testResult.replaceChildren(el('p', { class: 'error', role: 'alert' }, message(result.data, 'The question could not be tested.')));
      return;
    }
    const p = result.data;
    const parts = [];
    const who = p.agent ? 'Agent ' + p.agent : 'No agent';
    parts.push(el('p', { class: 'meta' }, who + ' · intent ' + (p.intent || 'none') + ' (' + p.intent_confidence.toFixed(2) + ')'));
    parts.push(el('h3', {}, 'The bot would reply'));
    if (p.reply && p.reply.text && !p.reply.hand_off) {
      parts.push(el('blockquote', { class: 'reply-preview', 'aria-label': 'Bot reply' }, p.reply.text));
    } else if (p.reply && p.reply.text) {
      parts.push(el('p', {}, 'Confidence ' + p.reply.confidence_factors.confidence.toFixed(2) + ' is below the agent\'s threshold: the bot would hand this to a person. Its draft:'));
      parts.push(el('blockquote', { class: 'reply-preview', 'aria-label': 'Bot draft' }, p.reply.text));
    } else {
      parts.push(el('p', {}, 'Nothing the agent may read answers this: the bot would hand it to a person.'));
    }
    parts.push(el('h3', {}, 'Passages found'));
    if (!p.passages.length) parts.push(el('p', {}, 'No passage matches.'));
    const list = el('ol', { class: 'passages', 'aria-label': 'Passages found' });
    for (const found of p.passages) {
      const source = found.document.name + (found.section ? ' › ' + found.section : '') + (found.page ? ' (page ' + found.page + ')' : '');
      list.append(el('li', {},
        el('strong', {}, source), ' ',
        el('small', {}, 'score ' + found.score.toFixed(3) + (found.cited ? ' · used in the reply' : '')),
        el('p', {}, found.text)));
    }
    parts.push(list);
    testResult.replaceChildren(...parts);
  });

  loadDocuments();
})();
