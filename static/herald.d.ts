// Type declarations for herald.js, the browser client of the herald announcement server.

export type State =
  | 'idle'
  | 'connecting'
  | 'open'
  | 'reconnecting'
  | 'unauthorized'
  | 'forbidden'
  | 'closed';

export type Transport = 'websocket' | 'sse';

export type Level = 'info' | 'warning' | 'critical';

/** An announcement as frames and the inbox carry it. */
export interface Announcement {
  id: number;
  title: string;
  content: string;
  level: Level;
  link: string | null;
  /** The time it was scheduled for (as the admin API shows it). */
  publish_at: string;
  /** When the server published it: at or after `publish_at`. */
  published_at: string;
  expires_at: string | null;
  cursor: number | null;
  /** Each recipient is asked to confirm it ("I have read and understood"). */
  requires_confirmation: boolean;
  /** Whether this user confirmed it. */
  confirmed: boolean;
}

export interface InboxItem extends Announcement {
  read: boolean;
  archived: boolean;
}

export interface InboxPage {
  items: InboxItem[];
  next_before: number | null;
}

export interface Welcome {
  user_id: string;
  session_id: string;
  heartbeat_ms: number;
  server_time: string;
  cursor: number;
  unread: number;
}

export interface HeraldError {
  code: string;
  msg: string;
}

/** What a listener of each event receives. */
export interface EventMap {
  welcome: [Welcome];
  announcement: [Announcement];
  retract: [{ id: number }];
  /** Read in another tab; `confirmed`: those of them that were confirmed. */
  read: [{ ids: number[]; confirmed?: number[] }];
  /** Archived in another tab (or restored to the inbox when `archived` is false). */
  archive: [{ ids: number[]; archived: boolean }];
  pong: [{ ts: number }];
  error: [HeraldError];
  state: [State, State];
  close: [{ code: number; reason: string }];
  transport: [Transport];
}

/** Where the cursor and the seen ids are kept (localStorage by default). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem?(key: string): void;
}

export interface HeraldOptions {
  userId: string;
  /** A JWT, or a function returning one (or a promise of one), asked again before `exp`. */
  token: string | (() => string | Promise<string>);
  /** The WebSocket endpoint (default: this page's host, path /ws). */
  url?: string;
  /** The event-stream endpoint (default: the WebSocket URL's host, path /sse). */
  sseUrl?: string;
  /** The REST API's origin (default: the event stream's). */
  apiUrl?: string;
  /** 'auto' (default): WebSocket, falling back to SSE when it never opens. */
  transport?: 'auto' | Transport;
  storage?: StorageLike | null;
  heartbeatMs?: number;
  deadAfterMs?: number;
  maxBackoffMs?: number;
  baseBackoffMs?: number;
  maxRetries?: number;
}

export class HeraldClient {
  constructor(options: HeraldOptions);
  readonly state: State;
  /** The transport in use, or next to be tried. */
  transport: Transport;
  /** The highest announcement cursor seen (kept in storage), or null. */
  lastCursor: number | null;
  on<K extends keyof EventMap>(type: K, fn: (...args: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(type: K, fn: (...args: EventMap[K]) => void): void;
  connect(): this;
  close(code?: number, reason?: string): void;
  send(frame: string | object): boolean;
  /** Tells the server the user read these (queued while offline). */
  read(ids: number | number[]): boolean;
  /** Tells the server the user confirmed these; implies read (queued while offline). */
  confirm(ids: number | number[]): boolean;
  /** Asks for everything published after `since` (WebSocket only). */
  sync(since?: number): boolean;
  inbox(options?: {
    unread?: boolean;
    archived?: boolean;
    limit?: number;
    before?: number;
  }): Promise<InboxPage>;
  unreadCount(): Promise<number>;
  markRead(ids: number | number[]): Promise<unknown[]>;
  markAllRead(): Promise<{ marked: number }>;
  /** Archives these: out of the inbox and the unread count on every device. */
  archive(ids: number | number[]): Promise<{ id: number; archived: boolean }[]>;
  /** Restores these from the archive. */
  unarchive(ids: number | number[]): Promise<{ id: number; archived: boolean }[]>;
}

export default HeraldClient;
