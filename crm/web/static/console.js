// Supervisor console: the live wallboard over a websocket. Everything else works without
// script. Values are written with textContent, never as HTML.
'use strict';

(() => {
  const body = document.body;
  if (body.dataset.page !== 'wallboard' || !document.getElementById('wallboard')) return;
  const $ = (id) => document.getElementById(id);
  const MESSAGES = JSON.parse(document.getElementById('i18n-messages')?.textContent || '{}');
  const t = (s) => MESSAGES[s] || s;
  // The names of the agents' states (crm/i18n/labels.py, kind agent_status).
  const STATUS = {
    available: t('Available'), ringing: t('Ringing'), on_call: t('On call'), paused: t('Paused'),
    unavailable: t('Phone offline'), unreachable: t('Phone unreachable'),
    logged_out: t('Not in queue'),
  };
  const SECONDS = t('s');
  let lastVersion = -1;
  let skew = 0;             // server clock minus browser clock, in ms
  let oldest = null;        // Date the longest-waiting caller joined (server clock)
  let retry = 0;

  const put = (el, value) => { el.textContent = value === null || value === undefined ? '' : String(value); };
  const count = (id, value) => { const el = $(id); el.dataset.count = String(value); put(el, value); };
  const mmss = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

  function tick() {
    const el = $('longest-wait');
    const waited = oldest ? Math.max(0, Math.floor((Date.now() + skew - oldest.getTime()) / 1000)) : 0;
    el.dataset.seconds = String(waited);
    put(el, mmss(waited));
  }

  function render(state) {
    if (state.version < lastVersion) return;
    lastVersion = state.version;
    $('wallboard').dataset.version = String(state.version);
    skew = new Date(state.now).getTime() - Date.now();
    oldest = state.waiting.longest_since ? new Date(state.waiting.longest_since) : null;
    $('longest-wait').dataset.since = state.waiting.longest_since || '';
    count('waiting-count', state.waiting.count);
    count('agents-available', state.agents.available);
    count('agents-on-call', state.agents.on_call);
    count('agents-paused', state.agents.paused);
    count('answered-within', state.today.answered_within);
    count('abandoned-today', state.today.abandoned);
    put($('answered-today'), state.today.answered);
    put($('board-date'), state.today.date);
    if (state.levels) levels(state.levels);
    const list = $('members');
    list.replaceChildren();
    for (const m of state.members) {
      const li = document.createElement('li');
      li.dataset.status = m.status;
      const state = STATUS[m.status] || m.status;
      for (const [cls, text] of [['name', m.name], ['ext', m.extension || ''], ['state', state]]) {
        const span = document.createElement('span');
        span.className = cls;
        put(span, text);
        li.appendChild(span);
      }
      list.appendChild(li);
    }
    tick();
  }

  // Today's service levels: value, and a figure below its target marked by class and words.
  function levels(found) {
    const section = $('levels-today');
    if (section) section.dataset.start = found.start;
    for (const f of found.figures) {
      const el = $(`level-${f.key}`);
      if (!el) continue;
      el.dataset.value = f.value_text;
      el.dataset.below = f.below_target ? 'true' : 'false';
      el.classList.toggle('below-target', f.below_target);
      const seconds = f.kind === 'seconds' && f.value !== null && f.value !== undefined;
      put(el.querySelector('.big'), seconds ? `${f.value.toFixed(1)} ${SECONDS}` : f.display);
      const flag = el.querySelector('.flag');
      if (flag) flag.hidden = !f.below_target;
    }
  }

  function linkState(state, text) {
    const el = $('link-state');
    el.dataset.state = state;
    put(el, text);
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/console/wallboard/ws`);
    ws.addEventListener('open', () => { retry = 0; linkState('live', t('live')); });
    ws.addEventListener('message', (event) => {
      const message = JSON.parse(event.data);
      if (message.type === 'wallboard') render(message);
    });
    ws.addEventListener('close', (event) => {
      // Signed out (or, after a few failures, maybe): the page load sends us to sign-in.
      if (event.code === 4401 || retry >= 3) { location.reload(); return; }
      linkState('lost', t('connection lost, reconnecting…'));
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 500 * 2 ** retry);
    });
  }

  const initial = $('longest-wait');
  if (initial.dataset.since) {
    oldest = new Date(initial.dataset.since);
    skew = new Date(initial.dataset.serverNow).getTime() - Date.now();
  }
  setInterval(tick, 1000);
  connect();
})();
