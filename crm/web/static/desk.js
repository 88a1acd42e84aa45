// Agent desk: live state over a websocket, the screen pop, and the desk's forms.
// Everything that comes from outside (caller names, notes, transcripts) is inserted with
// textContent, never as HTML.
'use strict';

(() => {
  const body = document.body;
  const csrf = body.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  let lastSeq = -1;
  let current = null;        // the call on this desk: {call_id, phase, pop, ...}
  let retry = 0;

  const MESSAGES = JSON.parse($('i18n-messages')?.textContent || '{}');
  const t = (s) => MESSAGES[s] || s;
  // Names of the codes the server sends (stage, disposition, language...), in the page's
  // language: crm/web/desk_labels.py.
  const LABELS = JSON.parse($('desk-labels')?.textContent || '{}');
  const label = (kind, code) => (code ? ((LABELS[kind] || {})[code] || code) : '');
  const CLOSED = {
    answered_elsewhere: t('Answered by another agent'),
    abandoned: t('The caller hung up while waiting'),
    caller_hung_up: t('The caller hung up'),
    not_answered: t('Not answered'),
    dismissed: '',
  };

  const put = (el, value) => { el.textContent = value === null || value === undefined ? '' : String(value); };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
  function items(list, values, render) {
    list.replaceChildren();
    for (const value of values) {
      const li = document.createElement('li');
      render(li, value);
      list.appendChild(li);
    }
  }
  function span(parent, text, cls) {
    const el = document.createElement('span');
    if (cls) el.className = cls;
    put(el, text);
    parent.appendChild(el);
    return el;
  }

  // -- agent state ---------------------------------------------------------------------------
  function renderAgent(agent) {
    if (!agent) return;
    const status = $('agent-status');
    status.dataset.status = agent.status;
    put(status, label('agent_status', agent.status));
  }

  // -- the pop -------------------------------------------------------------------------------
  function renderCall(call, closedReason) {
    const pop = $('pop');
    if (!call) {
      const closing = current !== null;
      current = null;
      pop.hidden = true;
      pop.dataset.callId = '';
      pop.dataset.phase = '';
      $('idle').hidden = false;
      if (closing) put($('idle-note'), CLOSED[closedReason] || '');
      return;
    }
    const fresh = !current || current.call_id !== call.call_id;
    const answeredNow = !fresh && current.phase !== 'connected' && call.phase === 'connected';
    current = call;
    const p = call.pop;
    $('idle').hidden = true;
    pop.hidden = false;
    pop.dataset.callId = call.call_id;
    pop.dataset.phase = call.phase;
    put($('call-phase'), label('call_phase', call.phase));
    put($('caller-name'), p.caller.name || t('Unknown caller'));
    put($('caller-number'), p.caller.number || '');
    const badge = $('verified-badge');
    badge.dataset.verified = String(p.ivr.verified);
    badge.dataset.verifiedBy = p.ivr.verified_by || '';
    put(badge, p.ivr.verified === true ? t('Verified') + (p.ivr.verified_by ? ` (${label('verified_by', p.ivr.verified_by)})` : '')
      : p.ivr.verified === false ? t('Not verified') : t('Not checked'));
    $('recording-badge').hidden = !p.ivr.recording;

    const r = p.resident;
    $('resident-unknown').hidden = !!r;
    $('resident-details').hidden = !r;
    if (r) {
      put($('resident-name'), r.name);
      put($('resident-community'), r.community);
      put($('resident-language'), label('language', r.language));
      put($('resident-id-number'), r.id_number);
    }
    items($('resident-cases'), p.resident_cases, (li, c) => {
      span(li, c.number, 'num');
      span(li, label('stage', c.stage), 'stage').dataset.stage = c.stage;
      span(li, `${c.category} · ${c.description}`);
    });

    items($('ivr-transcript'), p.ivr.transcript, (li, line) => {
      li.dataset.kind = line.kind;
      put(li, line.text);
    });
    put($('ivr-path'), p.ivr.path.map((code) => label('prompt', code)).join(' → '));

    renderCase(p.case);
    items($('recent-consultations'), p.recent, (li, c) => {
      span(li, when(c.started_at), 'muted');
      span(li, label('outcome', c.outcome)).dataset.outcome = c.outcome || '';
      if (c.disposition) span(li, label('disposition', c.disposition), 'stage').dataset.disposition = c.disposition;
      if (c.agent) span(li, c.agent.name, 'muted');
      if (c.cases.length) span(li, c.cases.join(', '), 'num');
      if (c.notes) span(li, c.notes, 'note');
    });

    if (fresh) resetForms(p.new_case);
    else if (answeredNow && !$('new-case-phone').value) {
      $('new-case-phone').value = p.new_case.contact_phone || '';  // shown once connected
    }
    $('transfer-button').disabled = !call.can_transfer;
    $('close-call').disabled = call.phase !== 'ended';
    document.dispatchEvent(new CustomEvent('desk:pop', { detail: call }));  // callbacks.js
  }

  function renderCase(c) {
    $('case-none').hidden = !!c;
    $('case-details').hidden = !c;
    if (!c) return;
    put($('case-number'), c.number);
    const stage = $('case-stage');
    stage.dataset.stage = c.stage;
    put(stage, label('stage', c.stage));
    $('case-overdue').hidden = !c.overdue;
    put($('case-category'), c.category.name);
    put($('case-department'), c.department ? c.department.name : '');
    put($('case-calls'), (c.consultations || []).length);
    put($('case-description'), c.description);
    put($('case-latest'), c.latest_update || '—');
    put($('case-deadline'), when(c.deadline));
    items($('case-history'), c.history, (li, h) => {
      span(li, when(h.at), 'muted');
      span(li, h.actor, 'muted');
      if (h.to_stage) span(li, `${label('stage', h.from_stage)} → ${label('stage', h.to_stage)}`, 'stage');
      if (h.note) span(li, h.note);
    });
    const select = $('stage-select');
    select.replaceChildren();
    for (const next of c.next_stages) {
      const option = document.createElement('option');
      option.value = next;
      put(option, label('stage', next));
      select.appendChild(option);
    }
    $('stage-form').dataset.case = c.number;
    $('stage-form').querySelector('button').disabled = c.next_stages.length === 0;
  }

  function resetForms(defaults) {
    for (const form of document.querySelectorAll('#pop form.desk-form')) {
      form.reset();
      const out = form.querySelector('output');
      if (out && out.id !== 'new-case-result') put(out, '');
    }
    put(newCaseNumber(), '');
    $('new-case-result').hidden = true;
    hideRepeats();
    if (defaults.category) $('new-case-category').value = defaults.category;
    $('new-case-address').value = defaults.address || '';
    $('new-case-phone').value = defaults.contact_phone || '';
    $('new-case-phone').placeholder = defaults.contact_phone_hint
      ? `${t('caller:')} ${defaults.contact_phone_hint}` : '';
  }

  let caseNumberEl = null;  // the result's <strong>: kept when a message replaced it
  function newCaseNumber() {
    caseNumberEl = $('new-case-number') || caseNumberEl;
    return caseNumberEl;
  }

  // -- repeat requests: open cases of this caller about the same matter, offered first ------
  function hideRepeats() {
    $('repeats').hidden = true;
    $('repeat-list').replaceChildren();
    $('new-case-check-repeats').value = '1';
  }

  function showRepeats(repeats) {
    $('repeats').hidden = false;
    items($('repeat-list'), repeats, (li, r) => {
      li.dataset.case = r.number;
      span(li, r.number, 'case-number');
      span(li, ` ${label('stage', r.stage)} · ${r.category_name} · ${r.address || '—'} · ${r.description} · `);
      span(li, t('{n} calls').replace('{n}', r.calls), 'repeat-calls');
      span(li, ` · ${when(r.created_at)}`, 'muted');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'link-repeat';
      put(button, t('Link the call to this case'));
      button.addEventListener('click', () => linkRepeat(r.number, button));
      li.appendChild(button);
    });
  }

  async function linkRepeat(number, button) {
    if (!current) return;
    button.disabled = true;
    const form = new FormData();
    form.append('case', number);
    try {
      const response = await fetch(`/desk/calls/${encodeURIComponent(current.call_id)}/links`, {
        method: 'POST', body: form, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' },
      });
      const data = await response.json().catch(() => ({}));
      const out = $('new-case-result');
      out.hidden = false;
      if (!response.ok) {
        out.dataset.state = 'error';
        put(out, (data.error && data.error.message) || response.statusText);
        return;
      }
      out.dataset.state = 'ok';
      put(out, t('Linked to case {case}').replace('{case}', data.linked));
      hideRepeats();
    } finally {
      button.disabled = false;
    }
  }

  $('new-case-anyway-button').addEventListener('click', () => {
    $('new-case-check-repeats').value = '';  // hideRepeats() after the case is made sets it back
    $('new-case-form').requestSubmit();
  });

  // -- state from the server -----------------------------------------------------------------
  function apply(snapshot) {
    if (!snapshot || snapshot.seq < lastSeq) return;
    lastSeq = snapshot.seq;
    renderAgent(snapshot.agent);
    renderCall(snapshot.call, 'dismissed');
  }

  function onMessage(message) {
    if (message.seq <= lastSeq) return;
    lastSeq = message.seq;
    if (message.type === 'status') renderAgent(message.agent);
    else if (message.type === 'pop') renderCall(message.call);
    else if (message.type === 'pop_closed' && current && current.call_id === message.call_id) {
      renderCall(null, message.reason);
    }
  }

  async function fetchCurrent() {
    const response = await fetch('/desk/current-call', { headers: { Accept: 'application/json' } });
    if (response.status === 401) { window.location.assign('/desk/login'); return; }
    if (response.ok) apply(await response.json());
  }

  function setLink(state, text) {
    const link = $('link-state');
    link.dataset.state = state;
    put(link, text);
  }

  function connect() {
    const scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${window.location.host}/desk/ws`);
    ws.onopen = () => {
      retry = 0;
      lastSeq = -1;  // a new connection: take the server's snapshot whatever we had
      setLink('live', t('live'));
      fetchCurrent().catch(() => setLink('offline', t('offline')));
    };
    ws.onmessage = (event) => onMessage(JSON.parse(event.data));
    ws.onclose = (event) => {
      setLink('offline', t('reconnecting…'));
      if (event.code === 4401) { window.location.assign('/desk/login'); return; }
      const delay = Math.min(10000, 250 * 2 ** retry);
      retry += 1;
      window.setTimeout(connect, delay);
    };
  }

  // -- forms ---------------------------------------------------------------------------------
  async function submit(form) {
    const out = form.querySelector('output');
    let url = form.dataset.action;
    if (url.includes('{call}')) {
      if (!current) return;
      url = url.replace('{call}', encodeURIComponent(current.call_id));
    }
    if (url.includes('{case}')) url = url.replace('{case}', encodeURIComponent(form.dataset.case || ''));
    const button = form.querySelector('button[type=submit]');
    if (button) button.disabled = true;
    try {
      const response = await fetch(url, {
        method: 'POST', body: new FormData(form),
        headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' },
      });
      const data = await response.json().catch(() => ({}));
      if (response.status === 401) { window.location.assign('/desk/login'); return; }
      if (response.status === 409 && data.repeats && form.id === 'new-case-form') {
        showRepeats(data.repeats);
        if (out) { out.hidden = false; out.dataset.state = 'error'; put(out, data.error.message); }
        return;
      }
      if (!response.ok) {
        if (out) { out.hidden = false; out.dataset.state = 'error'; put(out, (data.error && data.error.message) || response.statusText); }
        return;
      }
      if (out) out.dataset.state = 'ok';
      if (form.id === 'new-case-form') {
        hideRepeats();
        $('new-case-result').hidden = false;
        const number = newCaseNumber();
        $('new-case-result').replaceChildren(`${t('Case number:')} `, number);
        put(number, data.case.number);
      } else if (out) {
        const done = data.linked || (data.disposition && label('disposition', data.disposition))
          || data.transferred_to || (data.case && (data.case.number || data.case)) || t('saved');
        put(out, '✓ ' + done);
      }
    } finally {
      if (button) button.disabled = false;
      if (current) renderCall(current);
    }
  }

  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains('desk-form')) return;
    event.preventDefault();
    submit(form);
  });

  fetchCurrent().catch(() => undefined);
  connect();
})();
