// Building blocks of the inspector page, loaded before app.js: elements, times and sizes, JSON
// re-indented, hex dumps and curl commands. Pure functions of their arguments.
'use strict';

// An element with attributes (`text` sets its text, `on…` adds a listener) and children.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) e.append(kid);
  return e;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function fmtDuration(ms) {
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  return s < 3600 ? `${Math.floor(s / 60)}m ${pad(s % 60)}s` : `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
}
function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < 2);
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${['KiB', 'MiB', 'GiB'][i]}`;
}
const header = (headers, name) => (headers.find(([n]) => n.toLowerCase() === name) || [])[1] || '';

// JSON re-indented token by token: numbers stay as sent (no rounding of big integers).
function jsonView(text) {
  try { JSON.parse(text); } catch { return null; }
  const pre = el('pre', { class: 'code json' });
  const tokens = text.match(/"(?:\\.|[^"\\])*"|[{}[\]:,]|[^\s{}[\]:,"]+/g) || [];
  const big = text.length > 200000; // plain text past this: thousands of spans slow the page
  let [depth, buf] = [0, ''];
  const nl = () => `\n${'  '.repeat(depth)}`;
  const put = (t, cls) => { if (big || !cls) { buf += t; return; } pre.append(buf, el('span', { class: cls, text: t })); buf = ''; };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === '{' || t === '[') {
      if (tokens[i + 1] === (t === '{' ? '}' : ']')) { put(t + tokens[++i]); continue; }
      depth++; put(t + nl());
    } else if (t === '}' || t === ']') { depth--; put(nl() + t); }
    else if (t === ',') put(`,${nl()}`);
    else if (t === ':') put(': ');
    else if (t[0] === '"') put(t, tokens[i + 1] === ':' ? 'k' : 's');
    else put(t, /^(true|false|null)$/.test(t) ? 'b' : 'n');
  }
  pre.append(buf);
  return pre;
}
function hexdump(base64, limit = 1024) {
  const bin = atob(base64);
  const n = Math.min(bin.length, limit);
  const lines = [];
  for (let o = 0; o < n; o += 16) {
    let [hex, text] = ['', ''];
    for (let i = o; i < o + 16; i++) {
      const c = i < n ? bin.charCodeAt(i) : -1;
      hex += (c < 0 ? '  ' : pad(c.toString(16))) + (i === o + 7 ? '  ' : ' ');
      text += c < 0 ? '' : c >= 32 && c < 127 ? bin[i] : '.';
    }
    lines.push(`${o.toString(16).padStart(8, '0')}  ${hex} ${text}`);
  }
  if (bin.length > n) lines.push(`… ${bin.length - n} more bytes captured`);
  return el('pre', { class: 'code hex', text: lines.join('\n') });
}

const quote = (s) => `'${s.replace(/'/g, "'\\''")}'`;
const NOT_COPIED = /^(host|content-length|connection|keep-alive|proxy-connection|transfer-encoding|te|trailer|upgrade|forwarded|x-forwarded-(for|proto|host|port)|x-real-ip)$/i;
function curl(d) {
  const proto = header(d.request.headers, 'x-forwarded-proto').split(',')[0].trim().toLowerCase() === 'https' ? 'https' : 'http';
  const host = header(d.request.headers, 'x-forwarded-host') || header(d.request.headers, 'host') || d.host;
  const b = d.request.body;
  let first = 'curl';
  if (d.method === 'HEAD') first += ' --head';
  else if (!(d.method === 'GET' && !b.size) && !(d.method === 'POST' && b.size)) first += ` -X ${quote(d.method)}`;
  const lines = [`${first} ${quote(`${proto}://${host}${d.path}`)}`];
  for (const [n, v] of d.request.headers) if (!NOT_COPIED.test(n)) lines.push(`-H ${quote(`${n}: ${v}`)}`);
  let before = '';
  if (b.size && b.text != null) lines.push(`--data-binary ${quote(b.text)}`);
  else if (b.size && b.base64 != null) { before = `printf %s ${quote(b.base64)} | base64 -d | `; lines.push('--data-binary @-'); }
  const cut = b.truncated ? `# the body was cut at ${b.captured} of ${b.size} bytes: this sends only those\n` : '';
  return cut + before + lines.join(' \\\n  ');
}
