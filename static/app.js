/**
 * app.js — the herald user page (served at `/`).
 *
 * Signs in with a user id and token (typed in, or handed over by the admin page in the URL
 * fragment `#user=<id>&token=<jwt>`; `&transport=sse` or `websocket` fixes the transport and
 * `&ws=<url>` points the WebSocket elsewhere, to try the fallback), connects with HeraldClient, shows a toast and a desktop
 * notification per new announcement and keeps the inbox and unread badge current. An
 * announcement that asks for confirmation keeps its toast (also across reloads) until the user
 * confirms it, on this page or another; the inbox marks it. Announcements can be archived (out
 * of the inbox on every tab). Announcement text is only ever set through textContent.
 */
import { HeraldClient } from './herald.js';

const SESSION_KEY = 'herald.signin';
const TOAST_MS = 10000;
const LEVELS = ['info', 'warning', 'critical'];
const FINAL_MESSAGES = {
  unauthorized: 'The server rejected this token (expired or invalid). Please sign in again.',
  forbidden: 'This token belongs to a different user. Please sign in again.',
};

const $ = (selector) => document.querySelector(selector);
const app = (window.heraldApp = { client: null, toastsShown: [] });

let session = null;        // {userId, token} of the signed-in user
let welcomes = 0;          // welcome frames seen by the current client
const inbox = new Map();   // String(id) -> item, rendered newest first
const notifications = new Map(); // String(id) -> desktop Notification
let nextBefore = null;
let unread = 0;
let unreadTimer = null;

// ---- sign in / out ----------------------------------------------------------------------

function signIn(userId, token, options = {}) {
  signOut();
  session = { userId, token, ...options };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#signout-button').hidden = false;
  $('#whoami').hidden = false;
  $('#whoami').textContent = userId;
  showMessage('');

  welcomes = 0;
  // The event stream is on this page's own server, whatever the WebSocket URL.
  const sseUrl = new URL('/sse', location.href).href;
  // The async token path a real app uses: here the token handed over at sign-in; an app
  // would fetch a fresh one from its backend (herald.js asks again before it expires).
  const client = new HeraldClient({ userId, token: async () => token, sseUrl, ...options });
  app.client = client;
  client.on('state', renderState);
  client.on('transport', renderTransport);
  renderTransport(client.transport);
  client.on('welcome', onWelcome);
  client.on('announcement', onAnnouncement);
  client.on('retract', onRetract);
  client.on('read', ({ ids = [], confirmed = [] }) => markLocallyRead(ids, confirmed));
  client.on('archive', onArchive);
  client.on('error', (e) => console.warn('herald:', e.code, e.msg));
  client.connect();
  loadInbox();
}

/** Back to the sign-in form. The client stays in heraldApp.client so its final state can be read. */
function signOut(message, { keepClient = false } = {}) {
  if (!keepClient) app.client?.close();
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  clearTimeout(unreadTimer);
  inbox.clear();
  renderInbox();
  setUnread(0);
  $('#toasts').replaceChildren();
  $('#load-more').hidden = true;
  $('#app').hidden = true;
  $('#signout-button').hidden = true;
  $('#whoami').hidden = true;
  $('#signin').hidden = false;
  const error = $('#signin-error');
  error.textContent = message ?? '';
  error.hidden = !message;
}

/** `#user=<id>&token=<jwt>` from the admin page: sign in and take the token out of the address bar. */
function signInFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const userId = params.get('user');
  const token = params.get('token');
  if (!userId || !token) return false;
  const options = {};
  if (params.get('transport')) options.transport = params.get('transport');
  if (params.get('ws')) options.url = params.get('ws');
  history.replaceState(null, '', location.pathname + location.search);
  signIn(userId, token, options);
  return true;
}

/** Which transport carries the announcements: WebSocket, or the event-stream fallback. */
function renderTransport(transport) {
  const label = $('#transport');
  label.textContent = transport === 'sse' ? 'event stream' : 'WebSocket';
  label.dataset.transport = transport;
}

function renderState(state) {
  const pill = $('#state');
  pill.textContent = state;
  pill.dataset.state = state;
  if (FINAL_MESSAGES[state]) {
    const userId = session?.userId ?? '';
    signOut(FINAL_MESSAGES[state], { keepClient: true }); // it has stopped by itself
    $('#user-id').value = userId;
    $('#token').value = '';
  }
}

// ---- REST -------------------------------------------------------------------------------

async function api(method, path) {
  const s = session;
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${s.token}`, Accept: 'application/json' },
  });
  const body = await res.json().catch(() => null);
  if (s !== session) throw Object.assign(new Error('signed out meanwhile'), { stale: true });
  if (!res.ok) {
    const msg = body?.error?.message ?? `${res.status} ${res.statusText}`;
    throw new Error(res.status === 401 ? `Not signed in: ${msg}` : msg);
  }
  return body;
}

async function loadInbox(older = false) {
  const startedAt = Date.now();
  const before = older && nextBefore != null ? `&before=${encodeURIComponent(nextBefore)}` : '';
  try {
    const body = await api('GET', `/api/me/inbox?limit=50${before}`);
    if (!older) {
      // Keep what arrived live while the request was in flight; drop everything else.
      for (const [key, item] of inbox) if (!(item.receivedAt >= startedAt)) inbox.delete(key);
    }
    for (const item of body.items ?? []) {
      const key = String(item.id);
      inbox.set(key, { ...inbox.get(key), ...item });
    }
    nextBefore = body.next_before ?? null;
    $('#load-more').hidden = nextBefore == null;
    renderInbox();
    refreshUnread();
    // Whatever still waits for this user's confirmation keeps (or gets back) its toast.
    for (const item of body.items ?? []) if (awaitsConfirmation(item)) showToast(item);
  } catch (err) {
    if (!err.stale) showMessage(`Could not load the inbox: ${err.message}`);
  }
}

function refreshUnread() {
  clearTimeout(unreadTimer);
  unreadTimer = setTimeout(async () => {
    try {
      const body = await api('GET', '/api/me/unread-count');
      if (typeof body?.unread === 'number') setUnread(body.unread);
    } catch {
      // the badge keeps its local estimate
    }
  }, 150);
}

async function markRead(id) {
  const item = inbox.get(String(id));
  if (!item || item.read) return;
  item.read = true;
  renderInbox();
  setUnread(unread - 1);
  try {
    await api('POST', `/api/me/inbox/${encodeURIComponent(id)}/read`);
  } catch (err) {
    item.read = false;
    renderInbox();
    if (!err.stale) showMessage(`Could not mark as read: ${err.message}`);
  }
  refreshUnread();
}

/** "I have read and understood": confirming also reads it. */
async function confirmItem(id) {
  const key = String(id);
  try {
    await api('POST', `/api/me/inbox/${encodeURIComponent(id)}/confirm`);
    markLocallyRead([id], [id]);
  } catch (err) {
    if (!err.stale) showMessage(`Could not confirm: ${err.message}`);
    return;
  }
  const item = inbox.get(key);
  if (item) item.confirmed = true;
  renderInbox();
}

/** Out of the inbox here and on the user's other tabs (they hear an `archive` event). */
async function archiveItem(id) {
  try {
    await api('POST', `/api/me/inbox/${encodeURIComponent(id)}/archive`);
    onArchive({ ids: [id], archived: true });
  } catch (err) {
    if (!err.stale) showMessage(`Could not archive: ${err.message}`);
  }
}

async function markAllRead() {
  try {
    await api('POST', '/api/me/inbox/read-all');
    for (const item of inbox.values()) item.read = true;
    renderInbox();
    setUnread(0);
  } catch (err) {
    if (!err.stale) showMessage(`Could not mark all as read: ${err.message}`);
  }
  refreshUnread();
}

// ---- live events ------------------------------------------------------------------------

function onWelcome(data) {
  if (typeof data.unread === 'number') setUnread(data.unread);
  // After a reconnect, catch up on reads and retractions that happened meanwhile.
  if (welcomes++ > 0) loadInbox();
}

function onAnnouncement(a) {
  const key = String(a.id);
  const existing = inbox.get(key);
  inbox.set(key, { ...existing, ...a, read: existing?.read ?? false, receivedAt: Date.now() });
  renderInbox();
  if (!existing) setUnread(unread + 1);
  refreshUnread();
  // already read elsewhere: no popup, unless it still waits for a confirmation
  if (existing?.read && !awaitsConfirmation(inbox.get(key))) return;
  showToast(a);
  showDesktopNotification(a);
}

function onRetract({ id }) {
  const key = String(id);
  inbox.delete(key);
  renderInbox();
  document.querySelector(`#toasts .toast[data-id="${CSS.escape(key)}"]`)?.remove();
  notifications.get(key)?.close();
  notifications.delete(key);
  refreshUnread();
}

function markLocallyRead(ids, confirmed = []) {
  for (const id of ids) {
    const item = inbox.get(String(id));
    if (item) item.read = true;
  }
  for (const id of confirmed) {
    const item = inbox.get(String(id));
    if (item) item.confirmed = true;
    removeToast(String(id));
  }
  renderInbox();
  refreshUnread();
}

/** Archived (or restored) here or in another tab. */
function onArchive({ ids = [], archived = true }) {
  if (!archived) return loadInbox(); // restored: it comes back with the inbox
  for (const id of ids) {
    inbox.delete(String(id));
    removeToast(String(id));
  }
  renderInbox();
  refreshUnread();
}

const awaitsConfirmation = (a) => Boolean(a?.requires_confirmation && !a.confirmed);

function removeToast(key) {
  document.querySelector(`#toasts .toast[data-id="${CSS.escape(key)}"]`)?.remove();
}

// ---- rendering --------------------------------------------------------------------------

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

const levelOf = (a) => (LEVELS.includes(a.level) ? a.level : 'info');

/** Only http(s) links are rendered, so an announcement can never carry a javascript: URL. */
function safeHref(link) {
  if (!link) return null;
  try {
    const url = new URL(link, location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function linkTo(link) {
  const href = safeHref(link);
  return href && h('a', { class: 'link', href, target: '_blank', rel: 'noopener noreferrer' }, link);
}

function formatTime(ts) {
  const d = ts ? new Date(ts) : null;
  return d && !Number.isNaN(d.getTime())
    ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
    : '';
}

function showToast(a) {
  const key = String(a.id);
  const box = $('#toasts');
  if (box.querySelector(`.toast[data-id="${CSS.escape(key)}"]`)) return;
  const level = levelOf(a);
  // One that waits for a confirmation stays until confirmed: no dismiss, no timeout.
  const sticky = awaitsConfirmation(a);
  const dismiss = sticky
    ? null
    : h('button', { class: 'dismiss', type: 'button', 'aria-label': 'Dismiss', title: 'Dismiss' }, '×');
  const confirm = sticky ? h('button', { class: 'confirm primary', type: 'button' }, 'Confirm') : null;
  const toast = h('div', { class: `toast level-${level}${sticky ? ' awaits-confirmation' : ''}`, data: { id: key }, role: level === 'critical' || sticky ? 'alert' : 'status' },
    h('div', { class: 'toast-head' }, h('span', { class: `level level-${level}` }, level), h('strong', { class: 'title' }, a.title ?? ''), dismiss),
    h('p', { class: 'content' }, a.content ?? ''),
    linkTo(a.link),
    sticky ? h('p', { class: 'confirm-row' }, h('span', { class: 'muted small' }, 'Please confirm you have read and understood this.'), confirm) : null);
  dismiss?.addEventListener('click', () => toast.remove());
  confirm?.addEventListener('click', () => confirmItem(a.id));
  box.prepend(toast);
  app.toastsShown.push(a.id);
  if (level !== 'critical' && !sticky) setTimeout(() => toast.remove(), TOAST_MS);
}

function showDesktopNotification(a) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(a.title ?? 'Announcement', {
      body: a.content ?? '',
      tag: `herald-${a.id}`, // one per announcement, however many tabs are open
      requireInteraction: a.level === 'critical',
    });
    n.onclick = () => {
      window.focus();
      n.close();
    };
    notifications.set(String(a.id), n);
  } catch {
    // some platforms only allow notifications from a service worker
  }
}

function renderInbox() {
  const items = [...inbox.values()].sort((a, b) =>
    (b.cursor ?? Infinity) - (a.cursor ?? Infinity) || String(b.publish_at).localeCompare(String(a.publish_at)));
  $('#inbox').replaceChildren(...items.map(renderItem));
  $('#inbox-empty').hidden = items.length > 0;
}

function renderItem(item) {
  const level = levelOf(item);
  const awaiting = awaitsConfirmation(item) ? ' awaits-confirmation' : '';
  return h('li', { class: `item level-${level}${item.read ? '' : ' unread'}${awaiting}`, data: { id: String(item.id) } },
    h('div', { class: 'item-head' },
      h('span', { class: `level level-${level}` }, level),
      h('strong', { class: 'title' }, item.title ?? ''),
      h('time', { class: 'muted small', datetime: item.publish_at }, formatTime(item.publish_at)),
      item.read ? null : h('button', { class: 'mark-read', type: 'button' }, 'Mark read'),
      awaitsConfirmation(item) ? h('button', { class: 'confirm primary', type: 'button' }, 'Confirm') : null,
      item.requires_confirmation && item.confirmed ? h('span', { class: 'confirmed small' }, '✓ Confirmed') : null,
      h('button', { class: 'archive', type: 'button', title: 'Archive: hide from the inbox on every device' }, 'Archive')),
    h('p', { class: 'content' }, item.content ?? ''),
    linkTo(item.link));
}

function setUnread(n) {
  unread = Math.max(0, n | 0);
  const badge = $('#unread-count');
  badge.textContent = String(unread);
  badge.dataset.count = String(unread);
  document.title = unread ? `(${unread}) herald — announcements` : 'herald — announcements';
}

function showMessage(text) {
  const el = $('#message');
  el.textContent = text;
  el.hidden = !text;
}

function renderNotifyButton() {
  const button = $('#notify-button');
  const status = $('#notify-status');
  const supported = 'Notification' in window;
  const permission = supported ? Notification.permission : 'unsupported';
  button.hidden = permission !== 'default';
  status.hidden = permission === 'default';
  status.textContent = {
    granted: 'Desktop notifications on',
    denied: 'Desktop notifications blocked',
    unsupported: 'No desktop notifications in this browser',
  }[permission] ?? '';
}

// ---- wiring -----------------------------------------------------------------------------

$('#signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const userId = $('#user-id').value.trim();
  const token = $('#token').value.trim();
  if (userId && token) signIn(userId, token);
});
$('#signout-button').addEventListener('click', () => signOut());
$('#mark-all-read').addEventListener('click', markAllRead);
$('#load-more').addEventListener('click', () => loadInbox(true));
$('#inbox').addEventListener('click', (ev) => {
  const button = ev.target.closest('button');
  const id = button?.closest('li[data-id]')?.dataset.id;
  if (!id) return;
  if (button.classList.contains('mark-read')) markRead(id);
  else if (button.classList.contains('confirm')) confirmItem(id);
  else if (button.classList.contains('archive')) archiveItem(id);
});
$('#notify-button').addEventListener('click', async () => {
  await Notification.requestPermission();
  renderNotifyButton();
});
window.addEventListener('hashchange', signInFromFragment);

renderNotifyButton();
if (!signInFromFragment()) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    const { userId, token, ...options } = saved ?? {};
    if (userId && token) signIn(userId, token, options);
  } catch {
    // nothing saved
  }
}
