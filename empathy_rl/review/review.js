// The review page: keyboard shortcuts, saving edits and decisions through the JSON API.
const data = JSON.parse(document.getElementById('review-data').textContent);
const FIELDS = ['L1', 'L2', 'L3', 'L4', 'answer', 'notes'];
const field = name => document.getElementById('field-' + name);
const saved = {};
FIELDS.forEach(name => { saved[name] = field(name).value; });
let busy = false;
let discardArmed = null;  // a navigation key pressed once with unsaved edits

function say(text, isError) {
  const el = document.getElementById('message');
  el.textContent = text;
  el.classList.toggle('error', !!isError);
}
function changedFields() {
  const out = {};
  FIELDS.forEach(name => { if (field(name).value !== saved[name]) out[name] = field(name).value; });
  return out;
}
function dirty() { return Object.keys(changedFields()).length > 0; }
function markChanged() { FIELDS.forEach(name => field(name).classList.toggle('changed', field(name).value !== saved[name])); }

async function post(action, extra) {
  const res = await fetch(data.api + '/' + action + '?status=' + encodeURIComponent(data.filter), {
    method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(Object.assign({id: data.id, version: data.version}, extra || {})),
  });
  let body = {};
  try { body = await res.json(); } catch (err) { body = {error: 'the server answered ' + res.status}; }
  if (!res.ok) { say(body.error || ('not saved (' + res.status + ')'), true); return null; }
  return body;
}
function showState(body) {
  data.version = body.version;
  const status = document.getElementById('record-status');
  status.textContent = body.status; status.className = 'status-' + body.status;
  document.getElementById('source').textContent = body.source;
  document.getElementById('progress').textContent = body.progress.reviewed + ' / ' + body.progress.total + ' reviewed';
  const inc = document.getElementById('incomplete');
  inc.hidden = !body.incomplete;
  document.getElementById('incomplete-reason').textContent = body.incomplete || '';
}
async function save() {
  if (busy) return false;
  const fields = changedFields();
  if (!Object.keys(fields).length) { say('Nothing to save.'); return true; }
  busy = true;
  try {
    const body = await post('edit', {fields: fields});
    if (!body) return false;
    Object.assign(saved, fields); markChanged(); showState(body);
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
    say('Saved (' + body.changed.join(', ') + '). a accept · r reject · e edit again');
    return true;
  } finally { busy = false; }
}
async function decide(action) {
  if (busy) return;
  if (action === 'accept' && dirty() && !(await save())) return;
  busy = true;
  try {
    const body = await post(action);
    if (!body) return;
    showState(body);
    say(action === 'reopen' ? 'Back to draft.' : (action === 'accept' ? 'Accepted.' : 'Rejected.'));
    if (body.next && body.next !== window.location.pathname + window.location.search) window.location.href = body.next;
  } finally { busy = false; }
}
function go(url, key) {
  if (!url) { say(key === 'next' ? 'This is the last record of this list.' : 'This is the first record of this list.'); return; }
  if (dirty() && discardArmed !== key) {
    discardArmed = key;
    say('Unsaved edits: Ctrl+Enter saves them; press the same key again to leave without saving.', true);
    return;
  }
  window.location.href = url;
}
function editFirst() { const el = field('L1'); el.focus(); el.setSelectionRange(el.value.length, el.value.length); }

document.addEventListener('keydown', e => {
  const target = e.target;
  const typing = target && (target.tagName === 'TEXTAREA' || target.tagName === 'INPUT' || target.tagName === 'SELECT');
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); save(); return; }
  if (typing) {
    if (e.key === 'Escape') { target.blur(); e.preventDefault(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = {
    a: () => decide('accept'), r: () => decide('reject'), o: () => decide('reopen'), e: editFirst,
    j: () => go(data.next, 'next'), ArrowRight: () => go(data.next, 'next'),
    k: () => go(data.prev, 'prev'), ArrowLeft: () => go(data.prev, 'prev'),
    g: () => { const el = document.getElementById('goto'); el.focus(); el.select(); },
    f: () => document.getElementById('filter').focus(),
    '?': () => { const help = document.getElementById('help'); help.hidden = !help.hidden; },
  };
  const run = keys[e.key];
  if (run) { e.preventDefault(); if (e.key !== 'j' && e.key !== 'k' && !e.key.startsWith('Arrow')) discardArmed = null; run(); }
});
FIELDS.forEach(name => field(name).addEventListener('input', () => { markChanged(); discardArmed = null; }));
document.getElementById('accept').addEventListener('click', () => decide('accept'));
document.getElementById('reject').addEventListener('click', () => decide('reject'));
document.getElementById('reopen').addEventListener('click', () => decide('reopen'));
document.getElementById('edit').addEventListener('click', editFirst);
document.getElementById('save').addEventListener('click', save);
const filter = document.getElementById('filter');
filter.value = data.filter;
filter.addEventListener('change', () => { window.location.href = '/review?status=' + encodeURIComponent(filter.value); });
document.getElementById('nav-form').addEventListener('submit', e => {
  e.preventDefault();
  const n = parseInt(document.getElementById('goto').value, 10);
  if (!(n >= 1 && n <= data.total)) { say('Records are numbered 1 to ' + data.total + '.', true); return; }
  window.location.href = '/review/' + n + '?status=' + encodeURIComponent(filter.value);
});
document.getElementById('prev').addEventListener('click', e => { e.preventDefault(); go(data.prev, 'prev'); });
document.getElementById('next').addEventListener('click', e => { e.preventDefault(); go(data.next, 'next'); });
if (data.message) say(data.message);
