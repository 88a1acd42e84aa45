// The knowledge base on the desk: the best articles for the call (what the caller said in
// the IVR and the case description being typed), a free-text search, and "answered from
// this article" on the call. Everything from outside is inserted with textContent.
'use strict';

(() => {
  const MESSAGES = JSON.parse(document.getElementById('i18n-messages')?.textContent || '{}');
  const t = (s) => MESSAGES[s] || s;
  const $ = (id) => document.getElementById(id);
  const csrf = document.body.dataset.csrf;
  const put = (el, value) => { el.textContent = value === null || value === undefined ? '' : String(value); };
  let callId = null;
  let shownFor = '';          // what the suggestions were last asked for
  let answered = [];
  let typing = null;

  function article(a) {
    const li = document.createElement('li');
    li.className = 'knowledge-article';
    li.dataset.articleId = a.id;
    li.dataset.answered = String(answered.includes(a.id));
    const head = document.createElement('p');
    const title = document.createElement('strong');
    put(title, `${a.id} · ${a.title}`);
    head.appendChild(title);
    if (a.department_name) { const d = document.createElement('span'); d.className = 'muted'; put(d, ` ${a.department_name}`); head.appendChild(d); }
    if (a.expired) { const x = document.createElement('span'); x.className = 'overdue'; put(x, ` ${t('past its review date')}`); head.appendChild(x); }
    li.appendChild(head);
    const spoken = document.createElement('p');
    spoken.className = 'knowledge-answer';
    put(spoken, a.answers.cmn || Object.values(a.answers)[0] || '');
    li.appendChild(spoken);
    const more = document.createElement('details');
    const summary = document.createElement('summary');
    put(summary, t('Full text'));
    const text = document.createElement('p');
    put(text, a.body);
    more.append(summary, text);
    li.appendChild(more);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'mark-answered';
    put(button, answered.includes(a.id) ? `✓ ${t('Marked as answered from this')}` : t('Answered from this'));
    button.disabled = !callId || answered.includes(a.id);
    button.addEventListener('click', () => mark(a.id));
    li.appendChild(button);
    return li;
  }

  function show(articles, empty) {
    const list = $('knowledge-results');
    list.dataset.count = String(articles.length);
    list.replaceChildren(...articles.map(article));
    put($('knowledge-empty'), articles.length ? '' : empty);
    put($('knowledge-answered'), answered.length ? answered.join(', ') : '—');
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (response.status === 401) { window.location.assign('/desk/login'); return null; }
    return response.ok ? response.json() : null;
  }

  async function suggest(force) {
    if (!callId || $('knowledge-query').value.trim()) return;
    const text = $('new-case-description').value.trim();
    const key = `${callId}|${$('ivr-transcript').childElementCount}|${text}`;
    if (!force && key === shownFor) return;
    shownFor = key;
    const data = await getJson(`/desk/calls/${encodeURIComponent(callId)}/knowledge?text=${encodeURIComponent(text)}`);
    if (!data) return;
    answered = data.answered;
    $('knowledge-results').dataset.source = 'call';
    show(data.articles, t('No matching article'));
  }

  async function search(query) {
    if (!query) { shownFor = ''; suggest(true); return; }
    const data = await getJson(`/desk/knowledge/search?q=${encodeURIComponent(query)}`);
    if (!data) return;
    $('knowledge-results').dataset.source = 'search';
    show(data.articles, t('Nothing found'));
  }

  async function mark(articleId) {
    if (!callId) return;
    const body = new FormData();
    body.append('article', String(articleId));
    const response = await fetch(`/desk/calls/${encodeURIComponent(callId)}/knowledge`, {
      method: 'POST', body, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' },
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { put($('knowledge-empty'), (data.error && data.error.message) || response.statusText); return; }
    answered = data.answered;
    for (const li of $('knowledge-results').children) {
      const id = Number(li.dataset.articleId);
      li.dataset.answered = String(answered.includes(id));
      const button = li.querySelector('button.mark-answered');
      if (answered.includes(id)) { button.disabled = true; put(button, `✓ ${t('Marked as answered from this')}`); }
    }
    put($('knowledge-answered'), answered.join(', '));
  }

  document.addEventListener('desk:pop', (event) => {
    const call = event.detail;
    if (!call || call.call_id !== callId) {
      callId = call ? call.call_id : null;
      answered = [];
      $('knowledge-query').value = '';
      shownFor = '';
    }
    suggest(false).catch(() => undefined);
  });
  $('knowledge-search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    search($('knowledge-query').value.trim()).catch(() => undefined);
  });
  $('new-case-description').addEventListener('input', () => {
    window.clearTimeout(typing);
    typing = window.setTimeout(() => suggest(false).catch(() => undefined), 400);
  });
})();
