//! One WebSocket session: the actix-web-actors adapter around the
//! transport-free `core`. It owns the socket side (heartbeat pings, the
//! token-expiry timer, frames in and out, close) and carries out what the
//! core decides; database work goes through the catch-up store.

pub mod core;
pub mod effects;
mod rejected;
pub mod sse;

pub use rejected::Rejected;

use self::core::SessionCore;
use self::effects::{CoreParams, Effect, Effects, Fragment, Load};
use super::catch_up::{CatchUpStore, Loaded, Reader};
use super::messages::*;
use super::receipts::ReceiptWriter;
use super::registry::Registry;
use crate::auth::TokenKeys;
use crate::db::receipts::{ReceiptEvent, ReceiptKind};
use crate::domain::{AnnouncementId, Cursor};
use crate::metrics::METRICS;
use crate::protocol::codes::close;
use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(0);

/// A fresh session id, unique in this process (and unlikely to repeat
/// across nodes and restarts).
pub fn next_session_id() -> SessionId {
    let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
    if id == 0 {
        // Seed once with random high bits so ids from different nodes or
        // restarts do not collide in logs.
        let seed = rand::random::<u32>() as u64;
        NEXT_SESSION_ID.store((seed << 24) + 2, Ordering::Relaxed);
        return (seed << 24) + 1;
    }
    id
}

/// What every session needs from the server.
#[derive(Clone)]
pub struct SessionDeps {
    pub registry: Addr<Registry>,
    pub receipts: Addr<ReceiptWriter>,
    pub keys: TokenKeys,
    pub store: CatchUpStore,
}

impl SessionDeps {
    /// Starts a catch-up load for the session.
    pub fn load(
        &self,
        core: &SessionCore,
        load: Load,
    ) -> impl std::future::Future<Output = Result<Loaded, crate::db::DbError>> {
        let reader = Reader {
            user_id: core.user_id().clone(),
            groups: core.groups().clone(),
            legacy: core.legacy(),
        };
        self.store.load(load, reader)
    }

    /// Hands the receipts the core asked for to the receipt writer.
    pub fn record(&self, core: &SessionCore, ids: Vec<AnnouncementId>, kind: ReceiptKind) {
        let events = ids
            .into_iter()
            .map(|announcement_id| ReceiptEvent {
                announcement_id,
                user_id: core.user_id().to_string(),
                groups: core.groups().clone(),
                kind,
            })
            .collect();
        self.receipts.do_send(Record {
            events,
            origin: Some(core.id()),
        });
    }

    /// The registry routes group announcements by the session's new groups.
    pub fn regroup(&self, core: &SessionCore, groups: Arc<[String]>) {
        self.registry.do_send(Regroup {
            user_id: core.user_id().clone(),
            session_id: core.id(),
            groups,
        });
    }

    /// What the registry needs to route to the session.
    pub fn connect(
        &self,
        core: &SessionCore,
        addr: Recipient<Push>,
        link: Arc<SessionLink>,
    ) -> Connect {
        Connect {
            user_id: core.user_id().clone(),
            session_id: core.id(),
            groups: core.groups().clone(),
            addr,
            link,
        }
    }

    /// The session ended: count it by close code and leave the registry.
    pub fn ended(&self, core: &SessionCore, closed_with: Option<u16>) {
        let code = crate::metrics::close_code_label(closed_with);
        METRICS.disconnects.with_label_values(&[code]).inc();
        self.registry.do_send(Disconnect {
            user_id: core.user_id().clone(),
            session_id: core.id(),
        });
    }
}

/// What the handshake decided about this session.
pub struct SessionParams {
    pub user_id: String,
    pub groups: Vec<String>,
    pub token_exp: u64,
    /// Seed-style URL: no welcome, legacy announcement and pong shapes.
    pub legacy: bool,
    pub since: Option<Cursor>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Client frames per second allowed on average; bursts of twice that.
    pub frames_per_second: u32,
    /// Largest message a client may send, also when fragmented.
    pub max_frame_bytes: usize,
    /// Set by the transport when it refused a frame for its size.
    pub oversized: Arc<AtomicBool>,
}

pub struct Session {
    core: SessionCore,
    hb: Instant,
    interval: Duration,
    timeout: Duration,
    oversized: Arc<AtomicBool>,
    link: Arc<SessionLink>,
    closed_with: Option<u16>,
    /// `refresh` frames sent for checking; only the newest one's verdict
    /// counts (a check that waited for a key fetch must not undo a newer one).
    refreshes: u64,
    deps: Arc<SessionDeps>,
}

impl Session {
    pub fn new(params: SessionParams, deps: Arc<SessionDeps>) -> Session {
        let core = SessionCore::new(CoreParams {
            id: next_session_id(),
            user_id: params.user_id.into(),
            groups: params.groups.into(),
            token_exp: params.token_exp,
            legacy: params.legacy,
            since: params.since,
            heartbeat_ms: params.interval.as_millis() as u64,
            frames_per_second: params.frames_per_second,
            max_frame_bytes: params.max_frame_bytes,
        });
        Session {
            core,
            hb: Instant::now(),
            interval: params.interval,
            timeout: params.timeout,
            oversized: params.oversized,
            link: Arc::default(),
            closed_with: None,
            refreshes: 0,
            deps,
        }
    }

    /// Runs one step of the core and carries out what it decided.
    fn step(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        f: impl FnOnce(&mut SessionCore, &mut Effects),
    ) {
        let mut out = Effects::new();
        f(&mut self.core, &mut out);
        self.apply_all(ctx, out);
    }

    fn apply_all(&mut self, ctx: &mut ws::WebsocketContext<Self>, out: Effects) {
        for effect in out {
            self.apply(ctx, effect);
        }
    }

    fn apply(&mut self, ctx: &mut ws::WebsocketContext<Self>, effect: Effect) {
        if self.closed_with.is_some() {
            return;
        }
        match effect {
            Effect::Send(frame) => {
                METRICS.frames_out.inc();
                ctx.text(frame);
            }
            Effect::Deliver(frame) => {
                METRICS.deliveries.inc();
                METRICS.frames_out.inc();
                ctx.text(frame);
            }
            Effect::Close(code, reason) => self.close(ctx, code, &reason),
            Effect::Record(ids, kind) => self.deps.record(&self.core, ids, kind),
            Effect::Regroup(groups) => self.deps.regroup(&self.core, groups),
            Effect::Load(load) => self.load(ctx, load),
            Effect::Dequeued(bytes) => {
                self.link.queued.fetch_sub(bytes, Ordering::AcqRel);
            }
            Effect::Verify(token) => self.verify(ctx, token),
        }
    }

    /// Checks a `refresh` frame's token on the handshake's path; the
    /// verdict goes back to the core unless a newer refresh came meanwhile.
    fn verify(&mut self, ctx: &mut ws::WebsocketContext<Self>, token: String) {
        self.refreshes += 1;
        let this = self.refreshes;
        let deps = self.deps.clone();
        // Whose token it is, the core decides (`refreshed`).
        let work = async move {
            deps.keys.ensure_key(&token).await;
            deps.keys.verify(&token)
        };
        ctx.spawn(work.into_actor(self).map(move |verdict, act, ctx| {
            if act.refreshes == this {
                act.step(ctx, |core, out| core.refreshed(verdict, out));
            }
        }));
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        if self.closed_with.is_some() {
            return;
        }
        self.closed_with = Some(code);
        tracing::debug!(session_id = self.core.id(), user_id = ?self.core.user_id(), code, reason, "closing session");
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    /// Starts a catch-up load; its result goes back to the core.
    fn load(&mut self, ctx: &mut ws::WebsocketContext<Self>, load: Load) {
        let work = self.deps.load(&self.core, load);
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.step(ctx, |core, out| core.loaded(load, result, out))
        }));
    }

    /// The registry stopped routing to this session because its client fell
    /// too far behind: close so the client reconnects and resumes by cursor.
    fn close_if_overflowed(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        if !self.link.overflowed.load(Ordering::Acquire) {
            return false;
        }
        self.step(ctx, SessionCore::overflowed);
        true
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.close_if_overflowed(ctx) {
                return;
            }
            if act.hb.elapsed() > act.timeout {
                act.close(ctx, close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
                return;
            }
            ctx.ping(b"");
        });
    }

    /// Closes the session when its token expires, unless a `refresh` frame
    /// moved the expiry on in the meantime.
    fn watch_expiry(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let mut out = Effects::new();
        let wait = self.core.expiry(&mut out);
        self.apply_all(ctx, out);
        if let Some(wait) = wait {
            ctx.run_later(wait, |act, ctx| act.watch_expiry(ctx));
        }
    }

    /// Registers with the registry first, then catches up: anything
    /// published after registration arrives live (and waits in the core),
    /// anything before is in the catch-up.
    fn register(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let connect = self
            .deps
            .connect(&self.core, ctx.address().recipient(), self.link.clone());
        self.deps
            .registry
            .send(connect)
            .into_actor(self)
            .then(|accepted, act, ctx| {
                match accepted {
                    Ok(true) => act.step(ctx, SessionCore::registered),
                    Ok(false) => act.step(ctx, SessionCore::refused),
                    Err(_) => act.close(ctx, close::TRY_AGAIN, "server busy"),
                }
                fut::ready(())
            })
            .wait(ctx);
    }

    fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: Item) {
        let fragment = match item {
            Item::FirstText(b) => Fragment::First {
                text: true,
                bytes: b.to_vec(),
            },
            Item::FirstBinary(b) => Fragment::First {
                text: false,
                bytes: b.to_vec(),
            },
            Item::Continue(b) => Fragment::Continue(b.to_vec()),
            Item::Last(b) => Fragment::Last(b.to_vec()),
        };
        let mut out = Effects::new();
        self.core.on_fragment(fragment, &mut out);
        self.apply_all(ctx, out);
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.connects.inc();
        tracing::debug!(session_id = self.core.id(), user_id = ?self.core.user_id(), legacy = self.core.legacy(), "session open");
        self.heartbeat(ctx);
        self.watch_expiry(ctx);
        self.register(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.deps.ended(&self.core, self.closed_with);
        Running::Stop
    }
}

impl Handler<Push> for Session {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if !matches!(msg, Push::Close(..)) && self.close_if_overflowed(ctx) {
            return;
        }
        self.step(ctx, |core, out| core.on_push(msg, out));
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.hb = Instant::now();
        METRICS.frames_in.inc();
        match msg {
            Ok(ws::Message::Text(text)) => {
                let mut out = Effects::new();
                self.core.on_text(&text, &mut out);
                self.apply_all(ctx, out);
            }
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Binary(_)) => self.step(ctx, SessionCore::on_binary),
            Ok(ws::Message::Continuation(item)) => self.on_fragment(ctx, item),
            Ok(ws::Message::Close(reason)) => {
                if self.closed_with.is_none() {
                    self.closed_with =
                        Some(reason.as_ref().map_or(close::NO_STATUS, |r| r.code.into()));
                }
                ctx.close(reason);
                ctx.stop();
            }
            Err(_) if self.oversized.load(Ordering::Acquire) => {
                self.close(ctx, close::TOO_BIG, "frame too large")
            }
            Err(ws::ProtocolError::Overflow) => self.close(ctx, close::TOO_BIG, "frame too large"),
            Err(e) => {
                tracing::debug!(session_id = self.core.id(), error = %e, "protocol error");
                self.close(ctx, close::BAD_INPUT, "protocol error");
            }
        }
    }
}
