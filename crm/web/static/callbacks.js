// Callback requests: the pending list (desk page and console wallboard, refreshed every
// 10 s) and, on the desk, the callback block of a callback call's pop with the outcome form.
// Everything from outside is inserted with textContent, never as HTML.
'use strict';

(() => {
  const MESSAGES = JSON.parse(document.getElementById('i18n-messages')?.textContent || '{}');
  const t = (s) => MESSAGES[s] || s;
  const $ = (id) => document.getElementById(id);
  const put = (el, value) => { if (el) el.textContent = value === null || value === undefined ? '' : String(value); };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
  const onDesk = window.location.pathname.startsWith('/desk');
  const source = onDesk ? '/desk/callbacks' : '/console/callbacks.json';

  function line(c) {
    const li = document.createElement('li');
    li.dataset.requestId = c.id;
    li.dataset.status = c.status;
    if (c.mine) li.dataset.mine = 'true';
    const waited = c.waited_s === null || c.waited_s === undefined ? '' : ' · ' + t('waited') + ' ' + Math.round(c.waited_s) + ' ' + t('s');
    put(li, c.caller_number + ' · ' + c.reason_text + ' · ' + when(c.queued_at || c.created_at) + waited
      + ' · ' + (c.status_text || c.status) + ' · ' + t('attempts') + ' ' + c.attempts
      + (c.assigned_agent ? ' · ' + t('assigned to') + ' ' + c.assigned_agent : ''));
    return li;
  }

  async function refresh() {
    const list = $('callback-list');
    if (!list) return;
    const response = await fetch(source, { headers: { Accept: 'application/json' } });
    if (!response.ok) return;
    const data = await response.json();
    list.replaceChildren(...data.callbacks.map(line));
    const count = $('callbacks-pending');
    if (count) { count.dataset.count = String(data.callbacks.length); put(count, data.callbacks.length); }
  }

  // The desk's pop: desk.js announces every pop it shows (desk:pop).
  function renderCallback(call) {
    const block = $('callback-card');
    if (!block) return;
    const cb = call && call.pop && call.pop.callback;
    block.hidden = !cb;
    if (!cb) return;
    block.dataset.requestId = cb.request_id;
    put($('callback-reason'), cb.reason_label || cb.reason);  // named in the agent's language
    $('callback-reason').dataset.reason = cb.reason;
    put($('callback-called-at'), when(cb.called_at));
    put($('callback-waited'), cb.waited_s === null ? '' : Math.round(cb.waited_s) + ' ' + t('s'));
    put($('callback-attempt'), cb.attempt);
    const transcript = $('callback-transcript');
    transcript.replaceChildren(...cb.transcript.map((t) => {
      const li = document.createElement('li');
      put(li, t.text);
      return li;
    }));
  }

  document.addEventListener('desk:pop', (event) => renderCallback(event.detail));
  refresh().catch(() => undefined);
  window.setInterval(() => refresh().catch(() => undefined), 10000);
})();
