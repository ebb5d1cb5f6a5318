/**
 * admin.js — the herald admin console (served at `/admin.html`).
 *
 * Signs in with the admin token (kept in sessionStorage; also accepted once from the URL
 * fragment `#token=<admin token>`), composes and schedules announcements (times entered in local
 * time, sent as UTC RFC 3339), lists them with delivery stats every 3 s, cancels or retracts,
 * shows who is online and opens the user page as any user with a freshly minted token.
 * Announcements may ask for confirmation; the list shows how many confirmed, and "Pending"
 * opens who has not (admin-recipients.js). Everything user-supplied is shown with textContent.
 */
import { initRecipients, showRecipients, refreshRecipients } from './admin-recipients.js';

const TOKEN_KEY = 'herald.adminToken';
const REFRESH_MS = 3000;
const LEVELS = ['info', 'warning', 'critical'];
/** Server error `field` -> the input to highlight. */
const FIELD_INPUTS = {
  title: '#title', content: '#content', level: '#level', link: '#link',
  audience: '#audience-values', users: '#audience-values', groups: '#audience-values',
  publish_at: '#publish-at', expires_at: '#expires-at', requires_confirmation: '#requires-confirmation',
};

const $ = (selector) => document.querySelector(selector);
let adminToken = null;
let refreshTimer = null;
let refreshing = false;
const listed = new Map(); // String(id) -> the latest item of the list

// ---- REST -------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${adminToken}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = data?.error ?? {};
    throw Object.assign(new Error(e.message ?? `${res.status} ${res.statusText}`),
      { status: res.status, code: e.code, field: e.field });
  }
  return data;
}

/** A rejected admin token ends the session wherever it is noticed. */
function handleAuthError(err) {
  if (err.status !== 401 && err.status !== 403) return false;
  signOut('The admin token was rejected. Please sign in again.');
  return true;
}

// ---- sign in / out ----------------------------------------------------------------------

async function signIn(token) {
  adminToken = token;
  $('#admin-signin-button').disabled = true;
  try {
    renderPresence(await api('GET', '/api/presence')); // also checks the token
  } catch (err) {
    adminToken = null;
    const rejected = err.status === 401 || err.status === 403;
    showError('#admin-signin-error', rejected ? 'That admin token was rejected.' : `Sign-in failed: ${err.message}`);
    return;
  } finally {
    $('#admin-signin-button').disabled = false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showError('#admin-signin-error', '');
  $('#admin-signin').hidden = true;
  $('#console').hidden = false;
  $('#admin-signout-button').hidden = false;
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refreshAll, REFRESH_MS);
  refreshAll();
}

function signOut(message = '') {
  clearInterval(refreshTimer);
  adminToken = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('#console').hidden = true;
  $('#admin-signout-button').hidden = true;
  $('#admin-signin').hidden = false;
  $('#admin-token').value = '';
  showError('#admin-signin-error', message);
}

// ---- announcements list -----------------------------------------------------------------

async function refreshAll() {
  if (refreshing || !adminToken) return;
  refreshing = true;
  try {
    await Promise.all([refreshList(), refreshPresence()]);
    refreshRecipients();
  } finally {
    refreshing = false;
  }
}

async function refreshList() {
  try {
    const data = await api('GET', '/api/announcements?limit=50');
    renderList(data?.items ?? []);
    $('#list-status').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (!handleAuthError(err)) $('#list-status').textContent = `refresh failed: ${err.message}`;
  }
}

/** Update rows in place (keyed by id) so that a refresh never swallows a click. */
function renderList(items) {
  const tbody = $('#announcements tbody');
  const old = new Map([...tbody.rows].map((row) => [row.dataset.id, row]));
  listed.clear();
  items.forEach((item, i) => {
    const key = String(item.id);
    listed.set(key, item);
    const row = old.get(key) ?? newRow(key);
    old.delete(key);
    updateRow(row, item);
    if (tbody.rows[i] !== row) tbody.insertBefore(row, tbody.rows[i] ?? null);
  });
  for (const row of old.values()) row.remove();
  $('#announcements-empty').hidden = items.length > 0;
}

const COLUMNS = ['title', 'audience', 'status', 'publish-at', 'expires-at', 'targeted', 'online', 'delivered', 'read', 'confirmed', 'actions'];
const NUMERIC = ['targeted', 'online', 'delivered', 'read', 'confirmed'];

function newRow(key) {
  const row = h('tr', { data: { id: key } });
  for (const col of COLUMNS) row.append(h('td', { class: NUMERIC.includes(col) ? `${col} num` : col }));
  return row;
}

function updateRow(row, item) {
  const cell = (col) => row.querySelector(`td.${col}`);
  const level = LEVELS.includes(item.level) ? item.level : 'info';
  const titleKey = `${level}\u0000${item.title}\u0000${item.content}`;
  if (row.dataset.titleKey !== titleKey) {
    row.dataset.titleKey = titleKey;
    cell('title').replaceChildren(
      h('span', { class: `level level-${level}` }, level), ' ',
      h('span', { class: 'title-text', title: item.content ?? '' }, item.title ?? ''));
  }
  setText(cell('audience'), describeAudience(item.audience));
  setTime(cell('publish-at'), item.publish_at);
  setTime(cell('expires-at'), item.expires_at);
  const stats = item.stats ?? {};
  for (const col of NUMERIC) setText(cell(col), String(stats[col === 'online' ? 'online_at_publish' : col] ?? '–'));
  if (!item.requires_confirmation) setText(cell('confirmed'), '–');

  const status = String(item.status ?? '');
  const actionsKey = `${status}/${Boolean(item.requires_confirmation)}`;
  if (row.dataset.actions !== actionsKey) {
    row.dataset.actions = actionsKey;
    row.dataset.status = status;
    cell('status').replaceChildren(h('span', { class: 'status-badge', data: { status } }, status));
    const action = { scheduled: ['cancel', 'Cancel'], published: ['retract', 'Retract'] }[status];
    // Who has not confirmed (or read) yet, once it went out.
    const pending = status === 'published' || status === 'retracted'
      ? h('button', { class: 'pending', type: 'button', title: item.requires_confirmation ? 'Who has not confirmed yet' : 'Who has not read it yet' }, 'Pending')
      : null;
    cell('actions').replaceChildren(...[pending, action ? h('button', { class: action[0], type: 'button' }, action[1]) : null].filter(Boolean));
  }
}

function describeAudience(audience) {
  if (!audience || audience.all) return 'everyone';
  const [kind, list] = audience.users ? ['users', audience.users] : ['groups', audience.groups ?? []];
  // Large audiences come as a sample plus `count`; the full list is paged from /audience.
  const total = Number.isInteger(audience.count) ? audience.count : list.length;
  const shown = list.slice(0, 3).join(', ');
  return `${kind}: ${shown}${total > 3 ? ` +${total - 3}` : ''}`;
}

async function cancelOrRetract(button) {
  const id = button.closest('tr[data-id]').dataset.id;
  button.disabled = true;
  try {
    await api('DELETE', `/api/announcements/${encodeURIComponent(id)}`);
  } catch (err) {
    if (!handleAuthError(err)) $('#list-status').textContent = `${button.textContent} failed: ${err.message}`;
    button.disabled = false;
  }
  refreshList();
}

// ---- presence ---------------------------------------------------------------------------

async function refreshPresence() {
  try {
    renderPresence(await api('GET', '/api/presence'));
  } catch (err) {
    handleAuthError(err);
  }
}

function renderPresence(data) {
  const users = data?.users ?? [];
  const sessions = data?.total_sessions ?? users.reduce((n, u) => n + (u.sessions ?? 0), 0);
  const total = data?.total_users ?? users.length;
  const shown = users.slice(0, 100);
  $('#presence').replaceChildren(...[
    h('p', { class: 'summary' }, `${total} ${total === 1 ? 'user' : 'users'} online · ${sessions} ${sessions === 1 ? 'session' : 'sessions'}`),
    shown.length
      ? h('ul', { class: 'presence-list' }, ...shown.map((u) => h('li', { data: { userId: u.user_id } },
          h('button', { class: 'linkish', type: 'button', title: 'Open the user page as this user' }, u.user_id),
          h('span', { class: 'muted small' }, `${u.sessions} ${u.sessions === 1 ? 'tab' : 'tabs'}`))))
      : h('p', { class: 'muted' }, 'Nobody is connected.'),
    users.length > shown.length ? h('p', { class: 'muted small' }, `and ${users.length - shown.length} more`) : null,
  ].filter(Boolean));
}

// ---- compose ----------------------------------------------------------------------------

const audienceKind = () => document.querySelector('input[name=audience]:checked')?.value ?? 'all';
const splitList = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

/** datetime-local value (local time) -> UTC RFC 3339; null when empty, undefined when invalid. */
function toUtc(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

async function submitCompose(ev) {
  ev.preventDefault();
  clearComposeErrors();
  const title = $('#title').value.trim();
  const kind = audienceKind();
  const values = splitList($('#audience-values').value);
  const publishAt = toUtc($('#publish-at').value);
  const expiresAt = toUtc($('#expires-at').value);
  if (!title) return composeError('title', 'A title is required.');
  if (kind !== 'all' && values.length === 0) {
    return composeError('audience', `List at least one ${kind === 'users' ? 'user id' : 'group'}, separated by commas.`);
  }
  if (publishAt === undefined) return composeError('publish_at', 'The publish time is not a valid date.');
  if (expiresAt === undefined) return composeError('expires_at', 'The expiry is not a valid date.');

  const body = {
    title,
    content: $('#content').value,
    level: $('#level').value,
    audience: kind === 'all' ? { all: true } : { [kind]: values },
  };
  const link = $('#link').value.trim();
  if (link) body.link = link;
  if (publishAt) body.publish_at = publishAt;
  if (expiresAt) body.expires_at = expiresAt;
  if ($('#requires-confirmation').checked) body.requires_confirmation = true;

  $('#compose-submit').disabled = true;
  try {
    const created = await api('POST', '/api/announcements', body);
    const when = created?.status === 'scheduled' ? `scheduled for ${formatTime(created.publish_at)}` : 'published';
    const status = $('#compose-status');
    status.textContent = `“${created?.title ?? title}” ${when}.`;
    status.hidden = false;
    $('#compose-form').reset();
    syncComposeHints();
    refreshList();
  } catch (err) {
    if (!handleAuthError(err)) composeError(err.field, err.message);
  } finally {
    $('#compose-submit').disabled = false;
  }
}

function composeError(field, message) {
  showError('#compose-error', message);
  const name = String(field ?? '').split(/[.[]/)[0];
  const input = FIELD_INPUTS[name] && $(FIELD_INPUTS[name]);
  if (!input) return;
  input.classList.add('invalid');
  input.setAttribute('aria-invalid', 'true');
  if (input.id === 'audience-values') $('#audience').classList.add('invalid');
  input.focus();
}

function clearComposeErrors() {
  showError('#compose-error', '');
  $('#compose-status').hidden = true;
  for (const el of document.querySelectorAll('#compose-form .invalid')) {
    el.classList.remove('invalid');
    el.removeAttribute('aria-invalid');
  }
}

/** Show the UTC value each local time will be sent as; adapt the audience field and button. */
function syncComposeHints() {
  for (const [id, empty] of [['publish-at', 'empty = now'], ['expires-at', 'empty = never']]) {
    const utc = toUtc($(`#${id}`).value);
    $(`#${id}-utc`).textContent = utc ? `sent as ${utc}` : utc === null ? empty : 'not a valid date';
  }
  const publishAt = toUtc($('#publish-at').value);
  $('#compose-submit').textContent = publishAt && new Date(publishAt) > new Date() ? 'Schedule' : 'Publish now';
  const kind = audienceKind();
  const values = $('#audience-values');
  values.placeholder = { all: 'not needed for everyone', users: 'user ids, e.g. alice, bob', groups: 'groups, e.g. staff, ops' }[kind];
  values.classList.toggle('dim', kind === 'all');
}

// ---- open as user -----------------------------------------------------------------------

async function openAsUser(ev) {
  ev.preventDefault();
  showError('#open-as-user-error', '');
  const userId = $('#open-as-user-id').value.trim();
  if (!userId) return showError('#open-as-user-error', 'Enter a user id.');
  const groups = splitList($('#open-as-user-groups').value);
  $('#open-as-user-button').disabled = true;
  try {
    const { token, expires_at: expiresAt } = await api('POST', '/api/tokens', { user_id: userId, groups });
    const url = '/#user=' + encodeURIComponent(userId) + '&token=' + encodeURIComponent(token);
    const opened = window.open(url, '_blank');
    const result = $('#open-as-user-result');
    result.replaceChildren(
      opened ? 'Opened the user page for ' : 'Pop-up blocked: ',
      h('a', { id: 'open-as-user-link', href: url, target: '_blank' }, opened ? userId : `open the user page for ${userId}`),
      expiresAt ? ` (token valid until ${formatTime(expiresAt)})` : '');
    result.hidden = false;
  } catch (err) {
    if (!handleAuthError(err)) showError('#open-as-user-error', err.message);
  } finally {
    $('#open-as-user-button').disabled = false;
  }
}

// ---- small helpers ----------------------------------------------------------------------

/** Build an element; children are nodes or strings (always inserted as text). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'data') Object.assign(el.dataset, v);
    else el.setAttribute(k, v);
  }
  el.append(...children.filter((c) => c != null && c !== ''));
  return el;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function showError(selector, message) {
  const el = $(selector);
  el.textContent = message;
  el.hidden = !message;
}

/** A table cell's time: compact local time (so the table fits a laptop screen), UTC on hover. */
function setTime(el, ts) {
  setText(el, formatShort(ts) || '—');
  if (el.title !== (ts ?? '')) el.title = ts ?? '';
}

/** Local time without the year when it is this year's, e.g. "Nov 22, 7:34 AM". */
function formatShort(ts) {
  const d = ts ? new Date(ts) : null;
  if (!d || Number.isNaN(d.getTime())) return '';
  const year = d.getFullYear() === new Date().getFullYear() ? undefined : 'numeric';
  return d.toLocaleString(undefined, { year, month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
}

function formatTime(ts) {
  const d = ts ? new Date(ts) : null;
  return d && !Number.isNaN(d.getTime())
    ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
    : '';
}

// ---- wiring -----------------------------------------------------------------------------

$('#admin-signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('#admin-token').value.trim();
  if (token) signIn(token);
});
$('#admin-signout-button').addEventListener('click', () => signOut());
$('#compose-form').addEventListener('submit', submitCompose);
$('#compose-form').addEventListener('input', (ev) => {
  ev.target.classList?.remove('invalid');
  ev.target.removeAttribute?.('aria-invalid');
  if (ev.target.id === 'audience-values' && ev.target.value.trim() && audienceKind() === 'all') {
    document.querySelector('input[name=audience][value=users]').checked = true; // typing names means "these users"
  }
  if (ev.target.id === 'audience-values' || ev.target.name === 'audience') $('#audience').classList.remove('invalid');
  syncComposeHints();
});
$('#compose-form').addEventListener('change', syncComposeHints);
$('#announcements').addEventListener('click', (ev) => {
  const pending = ev.target.closest('button.pending');
  const item = pending && listed.get(pending.closest('tr[data-id]').dataset.id);
  if (item) return showRecipients(item);
  const button = ev.target.closest('button.cancel, button.retract');
  if (button) cancelOrRetract(button);
});
$('#presence').addEventListener('click', (ev) => {
  const li = ev.target.closest('li[data-user-id]');
  if (!li) return;
  $('#open-as-user-id').value = li.dataset.userId;
  $('#open-as-user-id').focus();
});
$('#open-as-user-form').addEventListener('submit', openAsUser);
initRecipients(api, h);
document.querySelector('#compose-form .tz').textContent = `(${Intl.DateTimeFormat().resolvedOptions().timeZone} time)`;
syncComposeHints();

// Sign in from `#token=<admin token>` (then drop it from the address bar), or from this tab's session.
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');
if (fragmentToken) history.replaceState(null, '', location.pathname + location.search);
const savedToken = fragmentToken || sessionStorage.getItem(TOKEN_KEY);
if (savedToken) signIn(savedToken);
