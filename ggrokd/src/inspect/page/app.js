// The inspector page: a live list of the requests through ggrokd's tunnels (server-sent events from
// /api/events), the detail of the selected one, replay (as is or edited) and copy as curl. The API
// it uses is described in ggrokd/src/inspect/api.rs. No build step, no external resources (CSP).
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_KEPT = 5000; // summaries the page keeps (ggrokd's own cap is inspect_memory)
const state = { all: new Map(), rows: new Map(), hosts: new Set(), selected: null, detail: null, dropped: 0, timer: 0, raw: {} };

const statusClass = (s) => (s.error && s.status >= 500) || (s.error && !s.status) ? 'err' : s.status ? `s${String(s.status)[0]}` : 'pending';
const isWs = (s) => s.upgrade === 'websocket';
function durationText(s) {
  if (s.duration_ms != null) return fmtDuration(s.duration_ms);
  return isWs(s) ? `open ${fmtDuration(Math.max(0, Date.now() - s.time_ms))}` : '…';
}

async function api(method, path, body) {
  const init = { method };
  if (body !== undefined) Object.assign(init, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  const j = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(j.error || `${r.status} ${r.statusText}`);
  return j;
}

// ---- filter ----
function currentFilter() {
  const f = { words: [], exactHost: $('filter-host').value, method: $('filter-method').value, status: $('filter-status').value, host: '' };
  for (const tok of $('filter').value.trim().split(/\s+/).filter(Boolean)) {
    const m = /^(host|status|method):(.+)$/i.exec(tok);
    if (m) f[m[1].toLowerCase()] = m[2]; else f.words.push(tok);
  }
  return f;
}
function keeps(f, s) {
  if (f.exactHost && s.host !== f.exactHost) return false;
  if (f.host && !s.host.toLowerCase().includes(f.host.toLowerCase())) return false;
  const m = f.method.toLowerCase();
  if (m && (m === 'websocket' || m === 'ws' ? !isWs(s) : s.method.toLowerCase() !== m)) return false;
  const st = f.status.toLowerCase();
  if (st === 'err' || st === 'error') { if (!s.error && s.status < 500) return false; }
  else if (/^[1-5]xx$/.test(st)) { if (!s.status || String(s.status)[0] !== st[0]) return false; }
  else if (st && String(s.status) !== st) return false;
  return f.words.every((w) => s.path.includes(w));
}

// ---- the list ----
function row(s) {
  return el('tr', { 'data-id': s.id, 'data-status': s.status, 'data-state': s.state, 'data-replay-of': s.replay_of,
    'data-upgrade': s.upgrade, class: s.id === state.selected ? 'sel' : null, title: s.error },
  el('td', { class: 'time', text: fmtTime(s.time_ms) }),
  el('td', { class: 'method' }, el('span', { text: s.method }),
    isWs(s) && el('span', { class: 'badge ws', text: 'WS', title: 'WebSocket' }),
    s.replay_of != null && el('span', { class: 'badge replay', text: '↻', title: `replay of #${s.replay_of}` })),
  el('td', { class: 'host', text: s.host }),
  el('td', { class: 'path', text: s.path, title: s.path }),
  el('td', { class: `status ${statusClass(s)}`, text: s.status ? String(s.status) : s.error ? 'ERR' : '…' }),
  el('td', { class: 'dur', text: durationText(s) }),
  el('td', { class: 'size', title: `${s.request_size} bytes in, ${s.response_size} bytes out`,
    text: `${fmtSize(s.request_size)} / ${fmtSize(s.response_size)}` }));
}

// Keeps `s` unless a stale copy (an in-flight summary after the final one).
function upsert(s) {
  const old = state.all.get(s.id);
  if (old && old.state === 'done' && s.state !== 'done') return false;
  state.all.set(s.id, s);
  if (!state.hosts.has(s.host)) {
    state.hosts.add(s.host);
    $('filter-host').append(el('option', { value: s.host, text: s.host }));
    $('list').classList.toggle('one-host', state.hosts.size < 2); // the host column, once it tells apart
  }
  while (state.all.size > MAX_KEPT) forget(Math.min(...state.all.keys()));
  return true;
}
function forget(id) { state.all.delete(id); state.rows.get(id)?.remove(); state.rows.delete(id); }

// Puts (or moves out) the row of `s`, newest first.
function place(s, f = currentFilter()) {
  const old = state.rows.get(s.id);
  if (!keeps(f, s)) { old?.remove(); state.rows.delete(s.id); return; }
  const tr = row(s);
  state.rows.set(s.id, tr);
  if (old) { old.replaceWith(tr); return; }
  let next = $('rows').firstElementChild;
  while (next && Number(next.dataset.id) > s.id) next = next.nextElementSibling;
  $('rows').insertBefore(tr, next);
}
function render() {
  const f = currentFilter();
  state.rows.clear();
  const shown = [...state.all.values()].filter((s) => keeps(f, s)).sort((a, b) => b.id - a.id);
  $('rows').replaceChildren(...shown.map((s) => { const tr = row(s); state.rows.set(s.id, tr); return tr; }));
  counts();
}
function counts() {
  const [shown, all] = [state.rows.size, state.all.size];
  const text = shown === all ? `${all} request${all === 1 ? '' : 's'}` : `${shown} of ${all}`;
  $('count').textContent = state.dropped ? `${text} · ${state.dropped} dropped for room` : text;
  Object.assign($('empty'), { hidden: shown > 0,
    textContent: all ? 'Nothing matches the filter.' : 'No requests yet: send one through a tunnel and it shows up here.' });
}

async function load() {
  let r;
  try { r = await api('GET', '/api/requests'); } catch (e) { return setConn('offline', e.message); }
  for (const s of r.requests.reverse()) upsert(s);
  state.dropped = r.dropped;
  render();
  const wanted = Number(location.hash.slice(1));
  if (state.selected == null && state.all.has(wanted)) select(wanted);
}
// Forgets what the page has and loads the list again; events that arrive meanwhile merge with it.
function reload() { state.all.clear(); load(); }
function wipe() {
  state.all.clear(); state.dropped = 0; state.selected = null; state.detail = null;
  render();
  $('detail-body').hidden = true; $('detail-empty').hidden = false;
}
function setConn(s, why) {
  Object.assign($('conn'), { textContent: s, title: why || 'Live updates from ggrokd' });
  $('conn').dataset.state = s;
}

function connect() {
  const events = new EventSource('/api/events');
  // Every (re)connection reloads the list: events may have been missed while away.
  events.addEventListener('hello', () => { setConn('live'); reload(); });
  events.addEventListener('request', (e) => {
    const s = JSON.parse(e.data);
    if (!upsert(s)) return;
    place(s); counts();
    if (s.id === state.selected) showDetail(s.id, true);
  });
  events.addEventListener('clear', wipe);
  events.addEventListener('lagged', reload);
  events.onerror = () => setConn('offline', 'ggrokd is not answering; retrying');
}

// ---- selection and keys ----
function select(id, keepNotice) {
  state.rows.get(state.selected)?.classList.remove('sel');
  state.selected = id;
  const tr = state.rows.get(id);
  tr?.classList.add('sel');
  tr?.scrollIntoView({ block: 'nearest' });
  history.replaceState(null, '', `#${id}`);
  if (!keepNotice) notice('');
  $('curl').hidden = true;
  closeEditor();
  clearTimeout(state.timer);
  state.timer = setTimeout(() => showDetail(id), 40); // holding a key down fetches only where it stops
}
function move(step, from) {
  const rows = [...$('rows').children];
  if (!rows.length) return;
  let i = from ?? rows.findIndex((r) => Number(r.dataset.id) === state.selected);
  i = i < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.max(0, Math.min(rows.length - 1, i + step));
  select(Number(rows[i].dataset.id));
}
function open() {
  if (state.selected == null) return move(1);
  $('detail').focus({ preventScroll: true });
  $('detail').scrollIntoView({ block: 'start', behavior: 'smooth' });
}
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.key === 'Escape') {
    if (!$('editor').hidden) closeEditor();
    else if (t.matches('input, textarea, select')) t.blur();
    else { $('curl').hidden = true; notice(''); }
    return;
  }
  if (t.matches('input, textarea, select') || e.ctrlKey || e.metaKey || e.altKey) return;
  if (t.matches('button, a') && (e.key === 'Enter' || e.key === ' ')) return;
  const keys = { ArrowDown: () => move(1), j: () => move(1), ArrowUp: () => move(-1), k: () => move(-1),
    Home: () => move(-1, 0), End: () => move(1, Infinity), Enter: open, r: () => replay(),
    e: openEditor, c: copyCurl, '/': () => $('filter').focus() };
  if (!keys[e.key]) return;
  e.preventDefault();
  keys[e.key]();
});

// ---- the detail ----
async function showDetail(id, quiet) {
  let d;
  try { d = await api('GET', `/api/requests/${id}`); } catch (e) { if (!quiet && id === state.selected) notice(e.message, 'error'); return; }
  if (id !== state.selected) return;
  state.detail = d;
  [$('detail-empty').hidden, $('detail-body').hidden, $('detail-body').dataset.id] = [true, false, d.id];
  $('detail-title').replaceChildren(el('span', { class: 'm', text: d.method }), ' ', el('span', { class: 'p', text: d.path }));
  $('detail-meta').replaceChildren(...meta(d));
  $('request-query').replaceChildren(...query(d.path));
  headersTable($('request-headers'), d.request.headers);
  headersTable($('response-headers'), d.response.headers);
  renderBody($('request-body'), d, 'request');
  renderBody($('response-body'), d, 'response');
  $('replay').disabled = $('edit-replay').disabled = isWs(d);
}
function meta(d) {
  const out = [el('span', { class: `status ${statusClass(d)}`, text: d.status ? String(d.status) : d.state === 'done' ? 'no answer' : 'waiting' })];
  const add = (text, cls) => out.push(el('span', { class: cls, text }));
  if (isWs(d)) {
    add(`WebSocket ${d.duration_ms == null ? `open for ${durationText(d).replace('open ', '')}` : `lasted ${fmtDuration(d.duration_ms)}`}`, 'ws');
    add(`${fmtSize(d.request_size)} from the client, ${fmtSize(d.response_size)} to it`);
  } else if (d.duration_ms != null) add(fmtDuration(d.duration_ms));
  else add('in flight');
  add(d.host, 'host');
  add(new Date(d.time_ms).toLocaleString());
  if (d.client) add(`from ${d.client}`);
  if (d.replay_of != null) out.push(el('a', { href: `#${d.replay_of}`, class: 'replay-of', text: `replay of #${d.replay_of}`,
    onclick: (e) => { e.preventDefault(); if (state.all.has(d.replay_of)) select(d.replay_of); } }));
  if (d.error) add(d.error, 'error');
  return out;
}
function headersTable(table, headers) {
  table.replaceChildren(...headers.map(([n, v]) => el('tr', {}, el('th', { text: n }), el('td', { text: v }))));
  if (!headers.length) table.append(el('tr', {}, el('td', { class: 'none', text: 'no headers' })));
}
function query(path) {
  const q = path.indexOf('?');
  if (q < 0 || q === path.length - 1) return [];
  return [el('h4', { text: 'Query' }), kvTable([...new URLSearchParams(path.slice(q + 1))], 'request-query-table')];
}
const kvTable = (pairs, id) => el('table', { class: 'kv', id }, pairs.map(([k, v]) => el('tr', {}, el('th', { text: k }), el('td', { text: v }))));

function renderBody(box, d, side) {
  const { headers, body: b } = d[side];
  const type = header(headers, 'content-type').toLowerCase();
  const raw = state.raw[side];
  const info = [el('span', { text: `${fmtSize(b.size)}${type ? ` · ${type}` : ''}` })];
  if (b.truncated) info.push(el('span', { class: 'truncated', id: `${side}-truncated`, text: `truncated: ${b.captured} of ${b.size} bytes` }));
  let [view, kind, pretty] = [null, 'text', false];
  if (b.size === 0 && !b.captured) {
    [view, kind] = [el('p', { class: 'none', text: isWs(d) ? 'WebSocket messages are counted, not shown.' : 'no body' }), 'none'];
  } else if (type.startsWith('image/')) {
    [view, kind] = [el('img', { src: `/api/requests/${d.id}/${side}/body`, alt: `${side} body` }), 'image'];
  } else if (b.text != null) {
    const json = (/json/.test(type) || /^\s*[[{]/.test(b.text)) && !b.truncated && jsonView(b.text);
    const form = type.startsWith('application/x-www-form-urlencoded');
    pretty = Boolean(json) || form;
    if (!raw && json) [view, kind] = [json, 'json'];
    else if (!raw && form) [view, kind] = [kvTable([...new URLSearchParams(b.text)], `${side}-form`), 'form'];
    else view = el('pre', { class: 'code', text: b.text });
  } else [view, kind] = [hexdump(b.base64 || ''), 'binary'];
  if (pretty) info.push(el('button', { type: 'button', class: 'link', text: raw ? 'pretty' : 'raw',
    onclick: () => { state.raw[side] = !raw; renderBody(box, d, side); } }));
  if (b.captured) info.push(el('a', { href: `/api/requests/${d.id}/${side}/body`, target: '_blank', text: 'open' }));
  box.dataset.kind = kind;
  box.replaceChildren(kind === 'none' ? '' : el('div', { class: 'body-info' }, info), view);
}

// ---- actions ----
function notice(text, kind) {
  Object.assign($('notice'), { hidden: !text, textContent: text });
  $('notice').dataset.kind = kind || 'info';
}
async function replay(edits, from = state.selected) {
  if (from == null) return;
  notice(`Replaying #${from}…`);
  try {
    const d = await api('POST', `/api/requests/${from}/replay`, edits);
    const { request, response, ...summary } = d;
    if (upsert(summary)) { place(summary); counts(); }
    select(d.id, true);
    notice(`Replayed #${from} as #${d.id}: ${d.status}`, 'ok');
    return true;
  } catch (e) {
    notice(`Replay failed: ${e.message}`, 'error');
    return false;
  }
}
function openEditor() {
  const d = state.detail;
  if (!d || isWs(d)) return;
  const b = d.request.body;
  const binary = b.base64 != null;
  $('edit-method').value = d.method;
  $('edit-path').value = d.path;
  $('edit-headers').value = d.request.headers.map(([n, v]) => `${n}: ${v}`).join('\n');
  Object.assign($('edit-body'), { value: binary ? '' : b.text || '', disabled: binary,
    placeholder: binary ? `binary body (${fmtSize(b.size)}): sent as captured` : 'no body' });
  $('edit-note').textContent = b.truncated
    ? `The body was cut at ${b.captured} of ${b.size} bytes${binary ? ': it cannot be replayed.' : '; what is here is what is sent.'}` : '';
  [$('editor').dataset.id, $('editor').hidden] = [d.id, false];
  $('edit-path').focus();
}
function closeEditor() { $('editor').hidden = true; }
$('editor').addEventListener('submit', async (e) => {
  e.preventDefault();
  const headers = [];
  for (const [i, line] of $('edit-headers').value.split('\n').entries()) {
    if (!line.trim()) continue;
    const colon = line.indexOf(':', 1); // HTTP/2 names (:authority) are not headers to send
    if (colon < 0) return notice(`Header line ${i + 1}: write it as Name: value`, 'error');
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  const edits = { method: $('edit-method').value.trim(), path: $('edit-path').value.trim(), headers };
  if (!$('edit-body').disabled) edits.body = $('edit-body').value;
  if (await replay(edits, Number($('editor').dataset.id))) closeEditor();
});
$('edit-cancel').addEventListener('click', closeEditor);

async function copyCurl() {
  if (!state.detail) return;
  const text = curl(state.detail);
  Object.assign($('curl'), { textContent: text, hidden: false });
  try { await navigator.clipboard.writeText(text); notice('Copied to the clipboard.', 'ok'); } catch { notice('Select the command below and copy it.', 'info'); }
}

$('replay').addEventListener('click', () => replay());
$('edit-replay').addEventListener('click', openEditor);
$('copy-curl').addEventListener('click', copyCurl);
$('clear').addEventListener('click', async () => {
  try { await api('DELETE', '/api/requests'); wipe(); history.replaceState(null, '', location.pathname); } catch (e) { notice(e.message, 'error'); }
});
$('rows').addEventListener('click', (e) => { const tr = e.target.closest('tr'); if (tr) select(Number(tr.dataset.id)); });
$('rows').addEventListener('dblclick', open);
for (const id of ['filter', 'filter-method', 'filter-status', 'filter-host']) $(id).addEventListener('input', render);
$('filter').addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === 'ArrowDown') { e.preventDefault(); e.target.blur(); move(1); } });
// Open WebSockets: their lifetime ticks.
setInterval(() => {
  for (const [id, tr] of state.rows) {
    const s = state.all.get(id);
    if (s && isWs(s) && s.duration_ms == null) tr.querySelector('.dur').textContent = durationText(s);
  }
  const d = state.detail;
  if (d && isWs(d) && d.duration_ms == null && d.id === state.selected) $('detail-meta').replaceChildren(...meta(d));
}, 1000);
connect();
