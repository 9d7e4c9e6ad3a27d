// The web UI's own script: in-place edits, board moves, queue actions and live refreshes.
// Every handler is delegated from the document, so a refreshed <main> needs no re-binding.
(() => {
  'use strict';

  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

  async function api(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, error: 'the device node is not answering' };
    }
    try {
      return await response.json();
    } catch (e) {
      return { ok: false, error: 'HTTP ' + response.status };
    }
  }

  function toast(message, bad) {
    const t = document.getElementById('toast');
    if (!t) return;
    t.textContent = message;
    t.className = bad ? 'show bad' : 'show';
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ''; }, 3500);
  }

  const main = () => document.getElementById('main');
  const recordId = () => {
    const r = document.querySelector('[data-record-id]');
    return r ? r.dataset.recordId : null;
  };

  // ---- Live refresh -------------------------------------------------------------------

  // Whether the user is in the middle of something a refresh would destroy.
  function busy() {
    const m = main();
    if (!m) return false;
    if (m.querySelector('.field-editor:not([hidden])')) return true;
    for (const el of m.querySelectorAll('textarea, input[type="text"], input[type="search"], input:not([type])')) {
      if (el.value !== el.defaultValue) return true;
    }
    return false;
  }

  let inFlight = false;
  let again = false;
  let deferred = false;

  async function refresh(force) {
    if (inFlight) { again = true; return; }
    if (!force && busy()) { deferred = true; return; }
    inFlight = true;
    deferred = false;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set('fragment', '1');
      const response = await fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } });
      if (response.ok) {
        const html = await response.text();
        const current = main();
        if (current && (force || !busy())) {
          const holder = document.createElement('div');
          holder.innerHTML = html;
          const next = holder.querySelector('#main');
          if (next) {
            const y = window.scrollY;
            current.replaceWith(next);
            window.scrollTo(0, y);
            enhance();
          }
        } else {
          deferred = true;
        }
      }
    } catch (e) {
      // The node is restarting or gone; the next event or status poll tries again.
    } finally {
      inFlight = false;
      if (again) { again = false; refresh(false); }
    }
  }

  async function refreshStatus() {
    try {
      const response = await fetch('/api/status', { credentials: 'same-origin' });
      const body = await response.json();
      const box = document.getElementById('sync-status');
      if (body.ok && box) {
        const holder = document.createElement('div');
        holder.innerHTML = body.html;
        const next = holder.firstElementChild;
        if (next) box.replaceWith(next);
      }
      // Settling refused edits rebuilds records without adding a change: the page (and its
      // banner) is redrawn when their number moves.
      const m = main();
      if (body.ok && m && String(body.refused) !== m.dataset.refused) refresh(false);
    } catch (e) {
      const box = document.getElementById('sync-status');
      if (box) box.dataset.state = 'offline';
    }
  }

  function connect() {
    if (!window.EventSource) return;
    const es = new EventSource('/events');
    es.onopen = () => { document.body.dataset.live = 'connected'; };
    es.onerror = () => { document.body.dataset.live = 'reconnecting'; };
    es.addEventListener('change', () => { refresh(false); refreshStatus(); });
    es.addEventListener('status', () => { refreshStatus(); });
  }

  // A deferred refresh runs once the user leaves the field they were editing.
  document.addEventListener('focusout', () => {
    setTimeout(() => { if (deferred && !busy()) refresh(false); }, 50);
  });

  // ---- Record page: fields in place ---------------------------------------------------

  function row(el) { return el.closest('.field-row'); }

  function openEditor(r) {
    const editor = r.querySelector('.field-editor');
    if (!editor) return;
    r.querySelector('.field-view').hidden = true;
    editor.hidden = false;
    const input = editor.querySelector('input, select, textarea');
    if (input) { input.focus(); if (input.select && input.tagName === 'INPUT') input.select(); }
  }

  function closeEditor(r) {
    const editor = r.querySelector('.field-editor');
    if (!editor) return;
    editor.hidden = true;
    r.querySelector('.field-view').hidden = false;
    const err = r.querySelector('.field-error');
    if (err) { err.hidden = true; err.textContent = ''; }
    const input = editor.querySelector('input, textarea');
    if (input) input.value = input.defaultValue;
  }

  async function saveField(r) {
    const id = recordId();
    const input = r.querySelector('.field-editor input, .field-editor select, .field-editor textarea');
    if (!id || !input) return;
    const result = await api('/api/r/' + id + '/field', { field: r.dataset.field, value: input.value });
    const err = r.querySelector('.field-error');
    if (result.ok) {
      r.querySelector('.field-editor').hidden = true;
      r.querySelector('.field-view').hidden = false;
      if (err) { err.hidden = true; err.textContent = ''; }
      if (input.tagName !== 'SELECT') input.defaultValue = input.value;
      toast('Saved');
      refresh(true);
    } else if (err) {
      err.textContent = result.error || 'could not save';
      err.hidden = false;
    }
  }

  async function act(promise, done) {
    const result = await promise;
    if (result.ok) {
      if (done) toast(done);
      refresh(true);
    } else {
      toast(result.error || 'failed', true);
    }
    return result;
  }

  document.addEventListener('click', (ev) => {
    const t = ev.target;
    if (!(t instanceof Element)) return;
    const id = recordId();
    const edit = t.closest('.js-edit');
    if (edit && !t.closest('a')) { const r = row(edit); if (r) openEditor(r); return; }
    const save = t.closest('.js-save');
    if (save) { saveField(row(save)); return; }
    const cancel = t.closest('.js-cancel');
    if (cancel) { closeEditor(row(cancel)); return; }
    const resolve = t.closest('.js-resolve');
    if (resolve && id) {
      act(api('/api/r/' + id + '/resolve', { field: resolve.dataset.field, value: resolve.dataset.value }), 'Conflict resolved');
      return;
    }
    const archive = t.closest('.js-archive');
    if (archive && id) {
      const archived = archive.dataset.archived === 'true';
      act(api('/api/r/' + id + '/archive', { archived }), archived ? 'Archived' : 'Restored');
      return;
    }
    const untag = t.closest('.js-untag');
    if (untag && id) { act(api('/api/r/' + id + '/tags', { remove: untag.dataset.tag })); return; }
    const notes = t.closest('.js-notes-save');
    if (notes && id) {
      const area = document.querySelector('[data-testid="notes-editor"]');
      const state = document.querySelector('[data-testid="notes-state"]');
      api('/api/r/' + id + '/notes', { text: area.value }).then((result) => {
        if (result.ok) {
          area.defaultValue = area.value;
          if (state) state.textContent = 'Saved';
          refresh(true);
        } else if (state) {
          state.textContent = result.error || 'could not save';
        }
      });
      return;
    }
    const assignMe = t.closest('.js-assign-me');
    if (assignMe) {
      act(api('/api/tickets/' + assignMe.dataset.id + '/assign', { assignee: 'me' }), 'Assigned to you');
      return;
    }
    const rejected = t.closest('.js-retry, .js-dismiss');
    if (rejected) {
      const n = rejected.dataset.id;
      const retry = rejected.matches('.js-retry');
      const err = document.querySelector('[data-testid="rejected-error-' + n + '"]');
      rejected.disabled = true;
      api('/api/rejected/' + n + (retry ? '/retry' : '/dismiss'), {}).then((result) => {
        rejected.disabled = false;
        if (result.ok) {
          toast(retry ? 'Made again; it goes to the relay at the next sync' : 'Dismissed');
          refresh(true);
        } else {
          if (err) { err.textContent = result.error || 'failed'; err.hidden = false; }
          toast(result.error || 'failed', true);
        }
      });
      return;
    }
    const resolveTicket = t.closest('.js-resolve-ticket');
    if (resolveTicket) {
      act(api('/api/tickets/' + resolveTicket.dataset.id + '/resolve', {}), 'Ticket resolved');
    }
  });

  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (!(t instanceof Element)) return;
    const r = t.closest('.field-editor') ? row(t) : null;
    if (r && ev.key === 'Escape') { ev.preventDefault(); closeEditor(r); return; }
    if (r && ev.key === 'Enter' && t.tagName !== 'TEXTAREA') { ev.preventDefault(); saveField(r); return; }
    if (t.matches('.tag-input') && ev.key === 'Enter') {
      ev.preventDefault();
      const id = recordId();
      const tag = t.value.trim();
      if (id && tag) {
        api('/api/r/' + id + '/tags', { add: tag }).then((result) => {
          if (result.ok) { t.value = ''; t.defaultValue = ''; refresh(true); } else { toast(result.error, true); }
        });
      }
    }
  });

  document.addEventListener('change', (ev) => {
    const t = ev.target;
    if (!(t instanceof Element)) return;
    if (t.matches('.js-stage')) {
      act(api('/api/board/move', { id: t.dataset.id, stage: t.value }), 'Moved');
    } else if (t.matches('.js-assign')) {
      act(api('/api/tickets/' + t.dataset.id + '/assign', { assignee: t.value }), 'Assigned');
    }
  });

  // ---- Board: drag a card onto a column ----------------------------------------------

  document.addEventListener('dragstart', (ev) => {
    const card = ev.target instanceof Element ? ev.target.closest('.deal') : null;
    if (card && ev.dataTransfer) {
      ev.dataTransfer.setData('text/plain', card.dataset.id);
      ev.dataTransfer.effectAllowed = 'move';
      card.classList.add('dragging');
    }
  });
  document.addEventListener('dragend', (ev) => {
    if (ev.target instanceof Element) ev.target.classList.remove('dragging');
  });
  document.addEventListener('dragover', (ev) => {
    const col = ev.target instanceof Element ? ev.target.closest('.column') : null;
    if (col) { ev.preventDefault(); col.classList.add('drop'); }
  });
  document.addEventListener('dragleave', (ev) => {
    const col = ev.target instanceof Element ? ev.target.closest('.column') : null;
    if (col && !col.contains(ev.relatedTarget)) col.classList.remove('drop');
  });
  document.addEventListener('drop', (ev) => {
    const col = ev.target instanceof Element ? ev.target.closest('.column') : null;
    if (!col || !ev.dataTransfer) return;
    ev.preventDefault();
    col.classList.remove('drop');
    const id = ev.dataTransfer.getData('text/plain');
    if (id) act(api('/api/board/move', { id, stage: col.dataset.stage }), 'Moved');
  });

  // ---- Reference inputs: suggestions by name -----------------------------------------

  let suggestTimer = null;
  document.addEventListener('input', (ev) => {
    const t = ev.target;
    if (!(t instanceof HTMLInputElement) || !t.dataset.refKind) return;
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(async () => {
      const q = t.value.trim();
      if (q.length < 1) return;
      const url = '/api/suggest?kind=' + encodeURIComponent(t.dataset.refKind) + '&q=' + encodeURIComponent(q);
      try {
        const body = await (await fetch(url, { credentials: 'same-origin' })).json();
        const list = document.getElementById(t.getAttribute('list'));
        if (!body.ok || !list) return;
        list.replaceChildren(...body.items.map((item) => {
          const o = document.createElement('option');
          o.value = item.title;
          return o;
        }));
      } catch (e) { /* suggestions are a convenience */ }
    }, 150);
  });

  // Gives each reference input its own suggestion list.
  function enhance() {
    document.querySelectorAll('input[data-ref-kind]:not([list])').forEach((input, i) => {
      const list = document.createElement('datalist');
      list.id = 'suggest-' + (input.name || 'ref') + '-' + i + '-' + Date.now();
      input.after(list);
      input.setAttribute('list', list.id);
    });
  }

  enhance();
  connect();
  setInterval(refreshStatus, 10000);
  // Reminders fall due with time, not with a change: the dashboard re-reads itself.
  setInterval(() => {
    const m = main();
    if (m && m.dataset.page === 'dashboard') refresh(false);
  }, 30000);
})();
