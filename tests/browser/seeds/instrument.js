// Test instrumentation, loaded before a seed's code; not part of any seed.
// Records every WebSocket the page opens (URL, offered and chosen
// subprotocol, frames sent and received, close code), every console.log
// line, desktop notifications, and the popups the seed's UI stubs show.
(() => {
  const seed = (window.__seed = { sockets: [], logs: [], notices: [] });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const rec = { url: String(url), offered: protocols ?? null, protocol: null, opened: false,
        sent: [], received: [], closed: null };
      seed.sockets.push(rec);
      Object.defineProperty(rec, 'ws', { value: this, enumerable: false });
      this.addEventListener('open', () => { rec.opened = true; rec.protocol = this.protocol; });
      this.addEventListener('message', (e) => rec.received.push(String(e.data)));
      this.addEventListener('close', (e) => { rec.closed = e.code; });
    }
    send(data) {
      seed.sockets.find((s) => s.ws === this)?.sent.push(String(data));
      return super.send(data);
    }
  };
  if (window.Notification) {
    const NativeNotification = window.Notification;
    seed.desktop = [];
    window.Notification = class extends NativeNotification {
      constructor(title, options) {
        super(title, options);
        seed.desktop.push({ title, body: options?.body });
      }
    };
  }
  const log = console.log.bind(console);
  console.log = (...args) => {
    seed.logs.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    log(...args);
  };
  // The UI libraries' popups (Element UI's $notify, the Vue template's notice):
  // recorded, and shown as text.
  seed.notify = (title, message) => {
    seed.notices.push({ title, message });
    const el = document.createElement('div');
    el.className = 'notice';
    el.textContent = `${title ?? ''}: ${message ?? ''}`;
    document.body.append(el);
  };
})();
