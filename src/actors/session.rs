//! One WebSocket session: heartbeat, token expiry, frames in and out, and
//! the catch-up (welcome, replay after a cursor) that runs before live
//! events. No SQL here: database work goes through `db::` functions on the
//! blocking pool.

use super::messages::*;
use super::receipts::ReceiptWriter;
use super::registry::Registry;
use crate::auth::{now_secs, TokenKeys};
use crate::db::receipts::{ReceiptEvent, ReceiptKind};
use crate::db::{self, DbPool};
use crate::metrics::METRICS;
use crate::protocol::{self, ClientFrame};
use actix::prelude::*;
use actix_web_actors::ws;
use bytestring::ByteString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Close codes herald uses beyond the standard ones.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN: u16 = 1013;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
    pub const BAD_INPUT: u16 = 4008;
    pub const TOO_MANY: u16 = 4029;
}

/// Most announcements one catch-up replays; a client further behind gets
/// the newest and finds the rest in its inbox.
const MAX_REPLAY: i64 = 5_000;
/// Error frames a session may provoke before it is closed with 4008.
const MAX_STRIKES: u32 = 10;

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(0);

fn next_session_id() -> SessionId {
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
    pub pool: DbPool,
    pub registry: Addr<Registry>,
    pub receipts: Addr<ReceiptWriter>,
    pub keys: TokenKeys,
}

/// What the handshake decided about this session.
pub struct SessionParams {
    pub user_id: String,
    pub groups: Vec<String>,
    pub token_exp: u64,
    /// Seed-style URL: no welcome, legacy announcement and pong shapes.
    pub legacy: bool,
    pub since: Option<i64>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Client frames per second allowed on average; bursts of twice that.
    pub frames_per_second: f64,
}

enum Phase {
    /// Catching up: live announcements wait here until the replay is sent.
    CatchingUp(Vec<Arc<Prepared>>),
    Live,
}

pub struct Session {
    id: SessionId,
    user_id: Arc<str>,
    groups: Arc<[String]>,
    legacy: bool,
    token_exp: u64,
    since: Option<i64>,
    hb: Instant,
    interval: Duration,
    timeout: Duration,
    phase: Phase,
    welcomed: bool,
    pending_sync: Option<i64>,
    /// The highest cursor a catch-up covered. A live announcement at or
    /// below it was committed before the catch-up read the table, so the
    /// replay already sent it (or it is not for this user): drop it.
    replayed_up_to: i64,
    tokens: f64,
    frames_per_second: f64,
    last_refill: Instant,
    strikes: u32,
    link: Arc<SessionLink>,
    closed_with: Option<u16>,
    deps: SessionDeps,
}

impl Session {
    pub fn new(params: SessionParams, deps: SessionDeps) -> Session {
        Session {
            id: next_session_id(),
            user_id: params.user_id.into(),
            groups: params.groups.into(),
            legacy: params.legacy,
            token_exp: params.token_exp,
            since: params.since,
            hb: Instant::now(),
            interval: params.interval,
            timeout: params.timeout,
            phase: Phase::CatchingUp(Vec::new()),
            welcomed: false,
            pending_sync: None,
            replayed_up_to: 0,
            tokens: params.frames_per_second * 2.0,
            frames_per_second: params.frames_per_second,
            last_refill: Instant::now(),
            strikes: 0,
            link: Arc::default(),
            closed_with: None,
            deps,
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        if self.closed_with.is_some() {
            return;
        }
        self.closed_with = Some(code);
        tracing::debug!(session_id = self.id, user_id = ?self.user_id, code, reason, "closing session");
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, frame: impl Into<ByteString>) {
        METRICS.frames_out.inc();
        ctx.text(frame);
    }

    fn send_announcement(&self, ctx: &mut ws::WebsocketContext<Self>, p: &Prepared) {
        let frame = if self.legacy { &p.legacy } else { &p.v1 };
        METRICS.deliveries.inc();
        self.send(ctx, frame.clone());
    }

    /// Sends a live announcement unless a catch-up already covered it.
    fn send_live(&self, ctx: &mut ws::WebsocketContext<Self>, p: &Prepared) {
        if p.cursor > self.replayed_up_to {
            self.send_announcement(ctx, p);
        }
    }

    /// The registry stopped routing to this session because its client fell
    /// too far behind: close so the client reconnects and resumes by cursor.
    fn close_if_overflowed(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        if !self.link.overflowed.load(Ordering::Acquire) {
            return false;
        }
        self.send(
            ctx,
            protocol::error(
                "too_slow",
                "you fell too far behind; reconnect and resume by cursor",
            ),
        );
        self.close(ctx, close::TOO_MANY, "too slow: outgoing queue full");
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
    fn watch_expiry(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let left = self.token_exp.saturating_sub(now_secs());
        ctx.run_later(
            Duration::from_secs(left) + Duration::from_millis(50),
            |act, ctx| {
                if act.token_exp <= now_secs() {
                    let msg = protocol::error(
                        "token_expired",
                        "the token expired; reconnect with a fresh one",
                    );
                    ctx.text(msg);
                    act.close(ctx, close::UNAUTHORIZED, "token expired");
                } else {
                    act.watch_expiry(ctx);
                }
            },
        );
    }

    /// Registers with the registry first, then catches up: anything
    /// published after registration arrives live (and waits in the buffer),
    /// anything before is in the catch-up query. Duplicates are dropped by id.
    fn register(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let connect = Connect {
            user_id: self.user_id.clone(),
            session_id: self.id,
            groups: self.groups.clone(),
            addr: ctx.address().recipient(),
            link: self.link.clone(),
        };
        self.deps
            .registry
            .send(connect)
            .into_actor(self)
            .then(|accepted, act, ctx| {
                match accepted {
                    Ok(true) => act.catch_up(ctx, act.since),
                    Ok(false) => {
                        act.send(
                            ctx,
                            protocol::error(
                                "too_many_sessions",
                                "this user has the most sessions allowed open",
                            ),
                        );
                        act.close(ctx, close::TOO_MANY, "too many sessions");
                    }
                    Err(_) => act.close(ctx, close::TRY_AGAIN, "server busy"),
                }
                fut::ready(())
            })
            .wait(ctx);
    }

    fn catch_up(&mut self, ctx: &mut ws::WebsocketContext<Self>, since: Option<i64>) {
        if let Phase::Live = self.phase {
            self.phase = Phase::CatchingUp(Vec::new());
        }
        let user_id = self.user_id.to_string();
        let groups = self.groups.to_vec();
        let legacy = self.legacy;
        let first = !self.welcomed;
        let work = db::run(&self.deps.pool, move |conn| {
            let now = db::now_ms();
            if first {
                db::users::touch(conn, &user_id, &groups, now)?;
            }
            let cursor = db::announcements::latest_cursor(conn)?;
            let unread = if first {
                db::receipts::unread_count(conn, &user_id, &groups, now)?
            } else {
                0
            };
            let replay = match since {
                Some(since) => db::announcements::for_user_since(
                    conn, &user_id, &groups, since, now, MAX_REPLAY,
                )?,
                None => Vec::new(),
            };
            let frames: Vec<(i64, i64, String)> = replay
                .iter()
                .map(|f| {
                    let view = protocol::AnnouncementView::from(&f.row);
                    let cursor = f.row.publish_cursor.unwrap_or(0);
                    (f.row.id, cursor, protocol::announcement(&view, legacy))
                })
                .collect();
            Ok((cursor, unread, frames))
        });
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| match result {
            Ok((cursor, unread, frames)) => {
                // The client has everything up to its `since`, but only as
                // far as this server has handed out cursors: a stale cursor
                // from a reset database must not hide new announcements.
                if let Some(since) = since {
                    act.replayed_up_to = act.replayed_up_to.max(since.min(cursor));
                }
                act.finish_catch_up(ctx, cursor, unread, frames)
            }
            Err(e) => {
                tracing::warn!(session_id = act.id, user_id = ?act.user_id, error = %e, "catch-up failed");
                act.send(ctx, protocol::error(
                    "storage_unavailable",
                    "could not load your announcements; reconnect shortly",
                ));
                act.close(ctx, close::TRY_AGAIN, "storage unavailable");
            }
        }));
    }

    fn finish_catch_up(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        cursor: i64,
        unread: i64,
        frames: Vec<(i64, i64, String)>,
    ) {
        if !self.welcomed {
            self.welcomed = true;
            if !self.legacy {
                self.send(
                    ctx,
                    protocol::welcome(&protocol::Welcome {
                        user_id: &self.user_id,
                        session_id: self.id,
                        heartbeat_ms: self.interval.as_millis() as u64,
                        server_time: db::now_ms(),
                        cursor,
                        unread,
                    }),
                );
            }
        }
        for (_, cursor, frame) in frames {
            self.replayed_up_to = self.replayed_up_to.max(cursor);
            METRICS.deliveries.inc();
            self.send(ctx, frame);
        }
        let buffered = match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::CatchingUp(buffered) => buffered,
            Phase::Live => Vec::new(),
        };
        for p in &buffered {
            self.send_live(ctx, p);
        }
        if let Some(since) = self.pending_sync.take() {
            self.catch_up(ctx, Some(since));
        }
    }

    /// Token bucket: true when this frame is within the allowed rate.
    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last_refill).as_secs_f64() * self.frames_per_second;
        self.tokens = (self.tokens + refill).min(self.frames_per_second * 2.0);
        self.last_refill = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn strike(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: &str, msg: &str) {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            self.send(ctx, protocol::error(code, "too many bad frames; closing"));
            self.close(ctx, close::BAD_INPUT, "repeated bad input");
        } else {
            self.send(ctx, protocol::error(code, msg));
        }
    }

    fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if !self.take_token() {
            self.strike(ctx, "rate_limited", "slow down: too many frames");
            return;
        }
        match protocol::parse_client_text(text) {
            Ok(frame) => self.on_frame(ctx, frame),
            Err(e) => self.strike(ctx, e.code, &e.msg),
        }
    }

    fn on_frame(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: ClientFrame) {
        match frame {
            ClientFrame::Heartbeat => self.send(ctx, protocol::pong(db::now_ms(), self.legacy)),
            ClientFrame::Ack(ids) => self.record(ids, ReceiptKind::Delivered),
            ClientFrame::Read(ids) => self.record(ids, ReceiptKind::Read),
            ClientFrame::Sync(since) => match self.phase {
                Phase::Live => self.catch_up(ctx, Some(since)),
                Phase::CatchingUp(_) => {
                    self.pending_sync = Some(self.pending_sync.map_or(since, |s| s.min(since)));
                }
            },
            ClientFrame::Refresh(token) => match self.deps.keys.verify_for(&token, &self.user_id) {
                Ok(claims) => self.token_exp = claims.exp,
                Err(e) => self.send(ctx, protocol::error("bad_token", &e.to_string())),
            },
        }
    }

    fn record(&self, ids: Vec<i64>, kind: ReceiptKind) {
        if ids.is_empty() {
            return;
        }
        let events = ids
            .into_iter()
            .map(|announcement_id| ReceiptEvent {
                announcement_id,
                user_id: self.user_id.to_string(),
                groups: self.groups.clone(),
                kind,
            })
            .collect();
        self.deps.receipts.do_send(Record {
            events,
            origin: Some(self.id),
        });
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.connects.inc();
        tracing::debug!(session_id = self.id, user_id = ?self.user_id, legacy = self.legacy, "session open");
        self.heartbeat(ctx);
        self.watch_expiry(ctx);
        self.register(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        let code = crate::metrics::close_code_label(self.closed_with);
        METRICS.disconnects.with_label_values(&[code]).inc();
        self.deps.registry.do_send(Disconnect {
            user_id: self.user_id.clone(),
            session_id: self.id,
        });
        Running::Stop
    }
}

impl Handler<Push> for Session {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        self.link.queued.fetch_sub(msg.len(), Ordering::AcqRel);
        if self.close_if_overflowed(ctx) {
            return;
        }
        match msg {
            Push::Announcement(p) => match &mut self.phase {
                Phase::CatchingUp(buffer) => buffer.push(p),
                Phase::Live => self.send_live(ctx, &p),
            },
            Push::Frame(frame) => self.send(ctx, frame),
            Push::Close(close::GOING_AWAY, _) => {
                // Spread the reconnects of a whole node over a few seconds.
                let delay_ms = 500 + rand::random::<u64>() % 4_500;
                let reason = format!("server shutting down; reconnect in {delay_ms} ms");
                self.close(ctx, close::GOING_AWAY, &reason);
            }
            Push::Close(code, reason) => self.close(ctx, code, reason),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.hb = Instant::now();
        METRICS.frames_in.inc();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(ctx, &text),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => self.strike(
                ctx,
                "bad_frame",
                "binary frames are not supported; send JSON text",
            ),
            Ok(ws::Message::Close(reason)) => {
                if self.closed_with.is_none() {
                    self.closed_with = Some(reason.as_ref().map_or(1005, |r| r.code.into()));
                }
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(ws::ProtocolError::Overflow) => self.close(ctx, close::TOO_BIG, "frame too large"),
            Err(e) => {
                tracing::debug!(session_id = self.id, error = %e, "protocol error");
                self.close(ctx, close::BAD_INPUT, "protocol error");
            }
        }
    }
}

/// A socket whose handshake carried no valid token: it gets one `error`
/// frame and a close code the client can tell from a network failure.
pub struct Rejected {
    pub code: u16,
    pub error_code: &'static str,
    pub message: String,
}

impl Actor for Rejected {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.text(protocol::error(self.error_code, &self.message));
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(self.code),
            description: Some(self.error_code.to_string()),
        }));
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Rejected {
    fn handle(&mut self, _: Result<ws::Message, ws::ProtocolError>, _: &mut Self::Context) {}
}

/// The frame shared by all sessions for one published announcement.
pub fn prepare(row: &crate::db::models::Announcement) -> Prepared {
    let view = protocol::AnnouncementView::from(row);
    Prepared {
        id: row.id,
        cursor: row.publish_cursor.unwrap_or(0),
        v1: ByteString::from(protocol::announcement(&view, false)),
        legacy: ByteString::from(protocol::announcement(&view, true)),
    }
}
