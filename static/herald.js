/**
 * herald.js — browser client for the herald announcement server (WebSocket protocol v1).
 *
 * A dependency-free ES module that does once, properly, what every hand-written
 * "SocketService" does badly: app-level heartbeat, dead-connection detection, reconnect with
 * capped exponential backoff and full jitter, no retry on auth failures (4001/4003), resume by
 * cursor across reconnects and page reloads, de-duplication by announcement id, ack, read and
 * confirm.
 *
 *   import HeraldClient from '/herald.js';
 *   const client = new HeraldClient({ userId: 'alice', token: jwt });
 *   client.on('announcement', (a) => showToast(a.title, a.content));
 *   client.on('state', (state) => console.log('herald:', state));
 *   client.connect();
 *
 * Events (on(type, fn) returns an unsubscribe function):
 *   welcome, announcement, retract, read, archive, pong, error — the `data` of the server
 *   frame (`read` is {ids, confirmed}: confirmed lists the ids among them that were confirmed;
 *   `archive` is {ids, archived}: archived in another tab, or restored when archived is false);
 *   error also carries local problems ({code: 'bad_frame' | 'connect_failed' | 'gave_up', msg});
 *   state — (state, previous); close — {code, reason} whenever a connection ends;
 *   transport — ('websocket' | 'sse') when the client changes transport.
 * States: idle | connecting | open | reconnecting | unauthorized | forbidden | closed.
 *
 * Tokens: `token` is a string, or a function returning one (or a promise of one). With a
 * function, the client fetches a fresh token shortly before the current one's `exp` and hands
 * it to the open session (a `refresh` frame, or a new event stream), and after `token_expired`
 * it fetches once more and reconnects instead of giving up.
 *
 * REST helpers for the user's inbox: inbox({unread, archived, limit, before}), unreadCount(),
 * markRead(ids), markAllRead(), archive(ids), unarchive(ids) — promises of the API's JSON.
 *
 * Transports: `transport: 'auto'` (default) uses WebSocket and, after two attempts that never
 * opened while the server answers plain HTTP (a proxy that refuses the upgrade, not a server
 * that is down) and no WebSocket has opened on the page, Server-Sent Events for the rest of
 * the page's life,
 * with the same cursor, de-duplication and state events; acks, reads and confirms then go over REST
 * (`POST /api/me/receipts`). `'websocket'` or `'sse'` fixes one.
 */

const EVENTS = [
  'welcome', 'announcement', 'retract', 'read', 'archive', 'error', 'state', 'pong', 'close', 'transport',
];
/** Frame types an event stream carries, as event names. */
const SSE_EVENTS = ['welcome', 'announcement', 'retract', 'read', 'archive', 'error'];
/** Client frame types that carry receipts, and the REST field each goes in over SSE. */
const RECEIPT_FIELDS = { ack: 'delivered', read: 'read', confirm: 'confirmed' };
/** WebSocket attempts that never opened before `auto` switches to SSE. */
const FAILED_OPENS_BEFORE_SSE = 2;
/** How long acks and reads gather before one REST call (SSE only). */
const RECEIPT_DELAY_MS = 200;
/** A fresh token is fetched this long before `exp` (a fifth of the lifetime, 2 to 30 s), plus
 * up to as much again at random. */
const REFRESH_MARGIN_MIN_MS = 2000;
const REFRESH_MARGIN_MAX_MS = 30000;
const SEEN_LIMIT = 500;
/** Close codes after which retrying cannot help: the state they end in. */
const FINAL_CLOSE = { 4001: 'unauthorized', 4003: 'forbidden' };
/** Close codes that ask us to come back later: minimum delay before reconnecting (ms). */
const MIN_RETRY_DELAY = { 1001: 1000, 1013: 1000, 4029: 5000 };
/** The server's own jittered delay in a close reason: `... reconnect in 2345 ms`. */
const RECONNECT_HINT = /reconnect in (\d+) ms/;

export class HeraldClient {
  constructor({
    url = defaultUrl(),
    sseUrl = null,
    apiUrl = null,
    transport = 'auto',
    userId,
    token,
    storage = defaultStorage(),
    heartbeatMs = 25000,
    deadAfterMs = 60000,
    maxBackoffMs = 30000,
    baseBackoffMs = 500,
    maxRetries = Infinity,
  } = {}) {
    if (userId == null || userId === '') throw new TypeError('HeraldClient: userId is required');
    this.url = url;
    /** Where the event stream is: by default the WebSocket URL's host, path /sse. */
    this.sseUrl = sseUrl ?? sseUrlFor(url);
    /** The REST API's origin: by default the event stream's. */
    this.apiUrl = apiUrl ?? new URL('/', this.sseUrl).href;
    this.userId = String(userId);
    /** 'websocket' or 'sse': the transport in use (or next to be tried). */
    this.transport = transport === 'sse' ? 'sse' : 'websocket';
    this._auto = transport === 'auto';
    this._failedOpens = 0;
    this._everOpened = false;
    this._currentToken = null;    // the token the open session runs on
    this._refreshTimer = null;
    this._retriedAfterExpiry = false;
    this._dialing = false;
    this._receipts = { delivered: new Set(), read: new Set(), confirmed: new Set(), timer: null };
    /** A JWT string, or a function returning one (read on every connect, so it can be refreshed). */
    this.token = token;
    this.storage = storage || memoryStorage();
    Object.assign(this, { heartbeatMs, deadAfterMs, maxBackoffMs, baseBackoffMs, maxRetries });

    this._listeners = new Map();
    this._state = 'idle';
    this._ws = null;
    this._attempt = 0;            // consecutive reconnect attempts since the last welcome
    this._stopped = true;         // true when no reconnect must happen
    this._heartbeatTimer = null;
    this._deadTimer = null;
    this._retryTimer = null;
    this._pendingRead = new Set();
    this._pendingConfirm = new Set();

    this._cursorKey = `herald.cursor.${this.userId}`;
    this._seenKey = `herald.seen.${this.userId}`;
    /** Highest announcement cursor this tab has seen (initially the stored one), or null. */
    this.lastCursor = toCursor(getItem(this.storage, this._cursorKey));
    // When no announcement has been seen yet, the first welcome's cursor is kept (in memory
    // only) so that a reconnect still resumes from there and misses nothing published while
    // the connection was down.
    this._resumeCursor = null;
    this._seen = new Set(readSeen(this.storage, this._seenKey));

    this._onOnline = () => {
      // The network is back: don't sit out the rest of a long backoff.
      if (this._retryTimer) {
        clearTimeout(this._retryTimer);
        this._retryTimer = null;
        this._dial('reconnecting');
      }
    };
  }

  get state() {
    return this._state;
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('HeraldClient.on: listener must be a function');
    if (!EVENTS.includes(type)) console.warn(`HeraldClient.on: unknown event type "${type}"`);
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  /** Open the connection (no-op while one is open or being opened). */
  connect() {
    this._stopped = false;
    if (this._ws || this._dialing) return this;
    const waiting = this._retryTimer != null;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (!waiting) this._attempt = 0;
    globalThis.addEventListener?.('online', this._onOnline);
    this._dial(waiting ? 'reconnecting' : 'connecting');
    return this;
  }

  /** Close for good: no reconnect until connect() is called again. */
  close(code = 1000, reason = 'client closed') {
    this._stop();
    const ws = this._detach();
    if (ws) {
      safeClose(ws, code, reason);
      this._emit('close', { code, reason });
    }
    // 'unauthorized' / 'forbidden' already mean "stopped for good" and say why: keep them.
    if (!Object.values(FINAL_CLOSE).includes(this._state)) this._setState('closed');
  }

  /** Send a JSON frame if the socket is open; returns whether it was sent. Over SSE only
   * `ack`, `read` and `confirm` can be sent (by REST); the rest of the protocol is server to
   * client. */
  send(frame) {
    const ws = this._ws;
    if (ws instanceof EventSourceLike) return this._sendOverRest(frame);
    if (!ws || ws.readyState !== 1 /* OPEN */) return false;
    ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    return true;
  }

  /** Tell the server the user read these announcements (queued while offline). */
  read(ids) {
    const list = [].concat(ids).filter((id) => id != null);
    if (list.length === 0) return false;
    if (this.send({ type: 'read', data: { ids: list } })) return true;
    list.forEach((id) => this._pendingRead.add(id));
    return false;
  }

  /** Tell the server the user confirmed these ("I have read and understood"; implies read).
   * Queued while offline, like reads. */
  confirm(ids) {
    const list = [].concat(ids).filter((id) => id != null);
    if (list.length === 0) return false;
    if (this.send({ type: 'confirm', data: { ids: list } })) return true;
    list.forEach((id) => this._pendingConfirm.add(id));
    return false;
  }

  /** Ask the server for everything published for us after `since` (default: our cursor). */
  sync(since = this.lastCursor ?? this._resumeCursor ?? 0) {
    return this.send({ type: 'sync', data: { since } });
  }

  // ---- connection lifecycle -------------------------------------------------------------

  /** Gets a token (the function may be async), then opens the transport in use. */
  _dial(state) {
    this._setState(state);
    this._dialing = true;
    Promise.resolve()
      .then(() => (typeof this.token === 'function' ? this.token() : this.token))
      .then(
        (token) => {
          this._dialing = false;
          if (this._stopped || this._ws) return;
          this._currentToken = token;
          if (this.transport === 'sse') this._dialSse(token);
          else this._dialWebSocket(token);
        },
        (err) => {
          this._dialing = false;
          this._emit('error', { code: 'token_failed', msg: String(err?.message ?? err) });
          if (!this._stopped) this._closed(1006, 'could not get a token');
        },
      );
  }

  _dialWebSocket(token) {
    const since = this.lastCursor ?? this._resumeCursor;
    const url = this.url + (this.url.includes('?') ? '&' : '?') +
      'id=' + encodeURIComponent(this.userId) + (since != null ? '&since=' + since : '');
    let ws;
    try {
      ws = new WebSocket(url, token ? ['herald.v1', token] : ['herald.v1']);
    } catch (err) {
      // Bad URL, a token with characters not allowed in a subprotocol, mixed content...
      // none of which a retry fixes.
      this._emit('error', { code: 'connect_failed', msg: String(err?.message ?? err) });
      this._stop();
      this._setState('closed');
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._everOpened = true;
      this._failedOpens = 0;
      this._heartbeatTimer = setInterval(() => this.send({ type: 'ping' }), this.heartbeatMs);
      this._armDeadTimer();
    };
    ws.onmessage = (ev) => {
      this._armDeadTimer();
      this._handleFrame(ev.data);
    };
    ws.onclose = (ev) => {
      this._detach();
      if (!opened) this._neverOpened();
      this._closed(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event always follows; the error event carries no detail
    this._armDeadTimer(); // also bounds a handshake that hangs
  }

  /** A WebSocket that never opened: after two, `auto` moves to SSE for good — unless a
   * WebSocket worked earlier on this page (the network allows it) or the server does not
   * answer plain HTTP either (it is down, not refusing the upgrade). */
  _neverOpened() {
    this._failedOpens += 1;
    if (!this._auto || this._everOpened || this.transport === 'sse') return;
    if (this._failedOpens < FAILED_OPENS_BEFORE_SSE) return;
    fetch(new URL('/healthz', this.sseUrl)).then(
      (r) => {
        if (!r.ok || this.transport === 'sse' || this._everOpened) return;
        this.transport = 'sse';
        this._attempt = 0;
        this._emit('transport', 'sse');
      },
      () => {}, // the server is down: keep trying WebSocket
    );
  }

  /** Opens the event stream. EventSource cannot send headers, so the token goes in the URL;
   * its own reconnects are not used: ours keep the backoff, the cursor and a fresh token. */
  _dialSse(token) {
    const since = this.lastCursor ?? this._resumeCursor;
    const url = this.sseUrl + (this.sseUrl.includes('?') ? '&' : '?') +
      'id=' + encodeURIComponent(this.userId) + (since != null ? '&since=' + since : '') +
      (token ? '&token=' + encodeURIComponent(token) : '');
    let es;
    try {
      es = new EventSource(url);
    } catch (err) {
      this._emit('error', { code: 'connect_failed', msg: String(err?.message ?? err) });
      this._stop();
      this._setState('closed');
      return;
    }
    this._ws = new EventSourceLike(es);
    let welcomed = false;
    for (const type of SSE_EVENTS) {
      es.addEventListener(type, (ev) => {
        // EventSource's own 'error' (the connection failed) carries no data.
        if (type === 'error' && ev.data === undefined) return;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return this._emit('error', { code: 'bad_frame', msg: 'server sent an event that is not JSON' });
        }
        if (type === 'welcome') welcomed = true;
        this._handleFrameObject({ type, data });
      });
    }
    es.onerror = () => {
      this._detach();
      es.close();
      // The stream ended or never started. A refused token is a 401 that EventSource cannot
      // show us: ask the REST API with the same token before retrying.
      if (welcomed) return this._closed(1006, 'event stream ended');
      this._probeToken(token).then((status) => {
        if (status === 401) this._closed(4001, 'unauthorized');
        else if (status === 403) this._closed(4003, 'forbidden');
        else this._closed(1006, 'event stream failed');
      });
    };
  }

  _probeToken(token) {
    return fetch(new URL('/api/me/unread-count', this.apiUrl), {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    }).then((r) => r.status, () => 0);
  }

  /** Acks, reads and confirms over REST, gathered briefly into one call. */
  _sendOverRest(frame) {
    const f = typeof frame === 'string' ? JSON.parse(frame) : frame;
    const kind = RECEIPT_FIELDS[f?.type];
    if (!kind) return false;
    for (const id of f.data?.ids ?? []) this._receipts[kind].add(id);
    if (!this._receipts.timer) {
      this._receipts.timer = setTimeout(() => this._flushReceipts(), RECEIPT_DELAY_MS);
    }
    return true;
  }

  _flushReceipts() {
    const r = this._receipts;
    r.timer = null;
    const body = { delivered: [...r.delivered], read: [...r.read], confirmed: [...r.confirmed] };
    r.delivered.clear();
    r.read.clear();
    r.confirmed.clear();
    this._api('POST', '/api/me/receipts', body).catch(() => {
      // Lost receipts are statistics; the next ack of the same id (on a replay) covers it.
    });
  }

  // ---- tokens ----------------------------------------------------------------------------

  /** With a token function: fetch a fresh token before this one's `exp` and hand it over. */
  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const exp = jwtExpiry(this._currentToken);
    if (typeof this.token !== 'function' || exp == null) return;
    const left = exp - Date.now();
    const margin = Math.min(REFRESH_MARGIN_MAX_MS, Math.max(REFRESH_MARGIN_MIN_MS, left / 5));
    // Up to another margin earlier, at random: a thousand tabs with tokens minted in the
    // same second do not all ask for new ones in the same second.
    const jitter = Math.random() * margin;
    this._refreshTimer = setTimeout(() => this._refresh(), Math.max(0, left - margin - jitter));
  }

  _refresh() {
    this._refreshTimer = null;
    Promise.resolve()
      .then(() => this.token())
      .then(
        (token) => {
          if (!token || token === this._currentToken || !this._ws) return;
          this._currentToken = token;
          if (this.transport === 'sse') {
            // An event stream cannot be told: reopen it with the new token (resumes by cursor).
            safeClose(this._detach());
            this._dial('reconnecting');
            return;
          }
          this.send({ type: 'refresh', data: { token } });
          this._scheduleRefresh();
        },
        (err) => this._emit('error', { code: 'token_failed', msg: String(err?.message ?? err) }),
      );
  }

  // ---- the user's inbox over REST -----------------------------------------------------------

  /** The inbox (or with `archived`, the archived announcements), newest first:
   * {items, next_before}. */
  inbox({ unread = false, archived = false, limit, before } = {}) {
    const q = new URLSearchParams();
    if (unread) q.set('unread', 'true');
    if (archived) q.set('archived', 'true');
    if (limit != null) q.set('limit', String(limit));
    if (before != null) q.set('before', String(before));
    const query = q.toString();
    return this._api('GET', '/api/me/inbox' + (query ? '?' + query : ''));
  }

  /** How many current announcements the user has not read. */
  unreadCount() {
    return this._api('GET', '/api/me/unread-count').then((r) => r.unread);
  }

  /** Marks these read now (the user's other tabs hear of it). */
  markRead(ids) {
    const list = [].concat(ids).filter((id) => id != null);
    return Promise.all(
      list.map((id) => this._api('POST', `/api/me/inbox/${encodeURIComponent(id)}/read`)),
    );
  }

  /** Marks everything read: {marked}. */
  markAllRead() {
    return this._api('POST', '/api/me/inbox/read-all');
  }

  /** Archives these: out of the inbox and the unread count on every device. */
  archive(ids) {
    return this._eachId(ids, 'archive');
  }

  /** Restores these from the archive to the inbox. */
  unarchive(ids) {
    return this._eachId(ids, 'unarchive');
  }

  _eachId(ids, action) {
    const list = [].concat(ids).filter((id) => id != null);
    return Promise.all(
      list.map((id) => this._api('POST', `/api/me/inbox/${encodeURIComponent(id)}/${action}`)),
    );
  }

  async _api(method, path, body) {
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    const res = await fetch(new URL(path, this.apiUrl), {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body ? { 'Content-Type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error(json?.error?.message ?? `HTTP ${res.status}`);
      err.status = res.status;
      err.code = json?.error?.code;
      throw err;
    }
    return json;
  }

  /** Nothing arrived for deadAfterMs: the connection is dead even if the browser hasn't noticed. */
  _armDeadTimer() {
    clearTimeout(this._deadTimer);
    this._deadTimer = setTimeout(() => {
      const ws = this._detach();
      safeClose(ws, 4000, 'heartbeat timeout');
      this._closed(4000, 'heartbeat timeout (client)');
    }, this.deadAfterMs);
  }

  /** Stop timers and forget the socket without waiting for its close event. */
  _detach() {
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._deadTimer);
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    this._heartbeatTimer = this._deadTimer = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  _stop() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    globalThis.removeEventListener?.('online', this._onOnline);
  }

  _closed(code, reason) {
    this._emit('close', { code, reason });
    if (this._stopped) return this._setState('closed');
    if (code === 4001 && typeof this.token === 'function' && !this._retriedAfterExpiry) {
      // The token may simply have run out: fetch once more and come straight back, unless
      // the function hands out the very token that was just refused.
      this._retriedAfterExpiry = true;
      const refused = this._currentToken;
      this._setState('reconnecting');
      Promise.resolve()
        .then(() => this.token())
        .then(
          (fresh) => (fresh && fresh !== refused ? fresh : null),
          () => null,
        )
        .then((fresh) => {
          if (this._stopped) return;
          if (!fresh) {
            this._stop();
            return this._setState(FINAL_CLOSE[4001]);
          }
          this._dial('reconnecting');
        });
      return;
    }
    if (FINAL_CLOSE[code]) {
      this._stop();
      return this._setState(FINAL_CLOSE[code]);
    }
    if (this._attempt >= this.maxRetries) {
      this._stop();
      this._emit('error', { code: 'gave_up', msg: `gave up after ${this._attempt} reconnect attempts` });
      return this._setState('closed');
    }
    // Full jitter: uniformly random in [0, min(max, base * 2^attempt)). A server that asked us
    // to back off (1001 shutdown, 4029 too many) gets a floor, with the jitter spread above it
    // so that every client of a restarting node doesn't come back in the same instant.
    // A close reason with `reconnect in N ms` (1001, 1013) carries the server's own jittered
    // delay: wait at least that long, so a restarted node's clients come back spread out.
    const cap = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** this._attempt);
    const floor = MIN_RETRY_DELAY[code] ?? 0;
    const hint = Number(RECONNECT_HINT.exec(reason ?? '')?.[1] ?? NaN);
    const delay = Number.isFinite(hint)
      ? Math.min(Math.max(hint, floor), this.maxBackoffMs) + Math.random() * cap
      : floor + Math.random() * Math.max(cap, floor);
    this._attempt += 1;
    this._setState('reconnecting');
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._dial('reconnecting');
    }, delay);
  }

  // ---- frames ---------------------------------------------------------------------------

  _handleFrame(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return this._emit('error', { code: 'bad_frame', msg: 'server sent a frame that is not JSON' });
    }
    this._handleFrameObject(frame);
  }

  _handleFrameObject(frame) {
    if (!frame || typeof frame !== 'object') return;
    const data = frame.data ?? {};
    switch (frame.type) {
      case 'welcome':
        this._attempt = 0;
        this._retriedAfterExpiry = false;
        this._scheduleRefresh();
        if (this.lastCursor == null && this._resumeCursor == null) {
          const c = toCursor(data.cursor);
          if (c != null && c > 0) this._resumeCursor = c;
        }
        this._setState('open');
        this._emit('welcome', data);
        if (this._pendingRead.size) {
          const ids = [...this._pendingRead];
          this._pendingRead.clear();
          this.read(ids);
        }
        if (this._pendingConfirm.size) {
          const ids = [...this._pendingConfirm];
          this._pendingConfirm.clear();
          this.confirm(ids);
        }
        break;
      case 'announcement':
        this._handleAnnouncement(data);
        break;
      case 'retract':
      case 'read':
      case 'archive':
      case 'pong':
      case 'error':
        this._emit(frame.type, data);
        break;
      default:
        break; // unknown types are ignored, for forward compatibility
    }
  }

  _handleAnnouncement(a) {
    if (a?.id == null) return;
    const key = String(a.id);
    if (!this._seen.has(key)) {
      this._remember(key);
      this._emit('announcement', a);
    }
    this._noteCursor(a.cursor);
    // Acked after the app's callbacks ran. Duplicates are acked again: harmless, and it covers
    // an ack that was lost with the previous connection.
    this.send({ type: 'ack', data: { ids: [a.id] } });
  }

  _noteCursor(value) {
    const c = toCursor(value);
    if (c == null) return;
    if (this.lastCursor == null || c > this.lastCursor) this.lastCursor = c;
    // Other tabs of the same user share the key: only ever move it forward.
    const stored = toCursor(getItem(this.storage, this._cursorKey));
    if (stored == null || c > stored) setItem(this.storage, this._cursorKey, String(c));
  }

  _remember(key) {
    this._seen.add(key);
    for (const old of this._seen) {
      if (this._seen.size <= SEEN_LIMIT) break;
      this._seen.delete(old); // a Set iterates oldest first
    }
    // Merge into the stored list rather than overwrite it: other tabs write there too.
    const stored = readSeen(this.storage, this._seenKey).filter((id) => id !== key);
    stored.push(key);
    setItem(this.storage, this._seenKey, JSON.stringify(stored.slice(-SEEN_LIMIT)));
  }

  _setState(state) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this._emit('state', state, previous);
  }

  _emit(type, ...args) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`HeraldClient: "${type}" listener threw`, err);
      }
    }
  }
}

// ---- helpers ------------------------------------------------------------------------------

function defaultUrl() {
  if (typeof location === 'undefined') return 'ws://127.0.0.1:8080/ws';
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** A JWT's `exp` in epoch ms, or null when it has none (or is not a JWT). */
function jwtExpiry(token) {
  try {
    const payload = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), '='))).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** The event-stream URL beside a WebSocket URL: same host, http(s), path /sse. */
function sseUrlFor(wsUrl) {
  try {
    const u = new URL(wsUrl);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    u.pathname = '/sse';
    u.search = '';
    return u.toString();
  } catch {
    return '/sse';
  }
}

/** An open EventSource, held where the WebSocket would be: close() and handlers the same. */
class EventSourceLike {
  constructor(es) {
    this.es = es;
    this.readyState = 1;
  }

  close() {
    this.es.onerror = null;
    this.es.close();
  }

  set onopen(_) {}
  set onmessage(_) {}
  set onclose(_) {}
  set onerror(_) {}
}

function defaultStorage() {
  try {
    const s = globalThis.localStorage;
    if (s) return s;
  } catch {
    // access denied (sandboxed iframe, disabled storage)
  }
  return memoryStorage();
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

function getItem(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}

function setItem(storage, key, value) {
  try {
    storage.setItem(key, value);
  } catch {
    // quota exceeded or storage disabled: the in-memory state still works
  }
}

function readSeen(storage, key) {
  try {
    const list = JSON.parse(getItem(storage, key) ?? '[]');
    return Array.isArray(list) ? list.map(String) : [];
  } catch {
    return [];
  }
}

function toCursor(value) {
  if (value == null || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function safeClose(ws, code, reason) {
  try {
    ws?.close(code, reason);
  } catch {
    // already closing
  }
}

export default HeraldClient;
