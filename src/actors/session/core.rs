//! A session's state machine without a transport: what to send, store or
//! load in answer to a client frame, a routed push, a finished load or the
//! clock. The WebSocket adapter (and any later transport) carries out the
//! `Effect`s; this file knows no socket, actor context or database.
//!
//! The catch-up: a session registers first, then loads its opening (the
//! newest cursor, the unread count, the first replay page). Everything
//! routed to it meanwhile waits in order, so a retract never overtakes the
//! replayed announcement it withdraws; the replay goes in pages up to the
//! cursor that was newest when it started, and a live announcement at or
//! below the highest cursor the catch-up covered is a duplicate.

pub use super::effects::{CoreParams, Effect, Effects, Fragment, Load, Opening, ReplayPage};
use crate::actors::catch_up::Loaded;
use crate::actors::messages::{Prepared, Push, SessionId};
use crate::auth::{now_secs, Claims, TokenError};
use crate::db::receipts::ReceiptKind;
use crate::db::DbError;
use crate::domain::{AnnouncementId, Cursor};
use crate::limits::FrameLimiter;
use crate::protocol::codes::{close, error};
use crate::protocol::{self, ClientFrame};
use std::sync::Arc;
use std::time::Duration;

/// Error frames a session may provoke before it is closed with 4008.
pub const MAX_STRIKES: u32 = 10;

enum Phase {
    /// Everything routed to the session waits here until the catch-up is
    /// sent; it stays counted in the session's queued bytes until then.
    CatchingUp(Vec<Push>),
    Live,
}

struct Fragments {
    text: bool,
    data: Vec<u8>,
}

pub struct SessionCore {
    id: SessionId,
    user_id: Arc<str>,
    groups: Arc<[String]>,
    legacy: bool,
    token_exp: u64,
    since: Option<Cursor>,
    heartbeat_ms: u64,
    phase: Phase,
    welcomed: bool,
    pending_sync: Option<Cursor>,
    /// The highest cursor a catch-up covered: a live announcement at or
    /// below it was replayed already (or is not for this user).
    replayed_up_to: Cursor,
    limiter: FrameLimiter,
    strikes: u32,
    fragments: Option<Fragments>,
    max_frame_bytes: usize,
}

impl SessionCore {
    pub fn new(p: CoreParams) -> SessionCore {
        SessionCore {
            id: p.id,
            user_id: p.user_id,
            groups: p.groups,
            legacy: p.legacy,
            token_exp: p.token_exp,
            since: p.since,
            heartbeat_ms: p.heartbeat_ms,
            phase: Phase::CatchingUp(Vec::new()),
            welcomed: false,
            pending_sync: None,
            replayed_up_to: Cursor::default(),
            limiter: FrameLimiter::new(p.frames_per_second),
            strikes: 0,
            fragments: None,
            max_frame_bytes: p.max_frame_bytes,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn user_id(&self) -> &Arc<str> {
        &self.user_id
    }

    pub fn groups(&self) -> &Arc<[String]> {
        &self.groups
    }

    pub fn legacy(&self) -> bool {
        self.legacy
    }

    /// The registry accepted the session: load the opening.
    pub fn registered(&mut self, out: &mut Effects) {
        out.push(Effect::Load(Load::Open {
            since: self.since,
            first: true,
        }));
    }

    /// The registry refused the session (the user has the most allowed).
    pub fn refused(&mut self, out: &mut Effects) {
        out.push(error_frame(
            error::TOO_MANY_SESSIONS,
            "this user has the most sessions allowed open",
        ));
        out.push(Effect::Close(close::TOO_MANY, "too many sessions".into()));
    }

    /// The opening loaded for a catch-up after `since`.
    pub fn opened(
        &mut self,
        since: Option<Cursor>,
        opening: Opening,
        now_ms: i64,
        out: &mut Effects,
    ) {
        // The client has everything up to its `since`, but only as far as
        // this server has handed out cursors: a stale cursor from a reset
        // database must not hide new announcements.
        if let Some(since) = since {
            self.replayed_up_to = self.replayed_up_to.max(since.min(opening.cursor));
        }
        if !self.welcomed {
            self.welcomed = true;
            if !self.legacy {
                out.push(Effect::Send(
                    protocol::welcome(&protocol::Welcome {
                        user_id: &self.user_id,
                        session_id: self.id,
                        heartbeat_ms: self.heartbeat_ms,
                        server_time: now_ms,
                        cursor: opening.cursor,
                        unread: opening.unread,
                    })
                    .into(),
                ));
            }
        }
        self.paged(opening.page, opening.cursor, out);
    }

    /// A replay page loaded; `upto` is where this replay ends.
    pub fn paged(&mut self, page: ReplayPage, upto: Cursor, out: &mut Effects) {
        let mut last = None;
        for (cursor, frame) in page.frames {
            last = Some(cursor);
            self.replayed_up_to = self.replayed_up_to.max(cursor);
            out.push(Effect::Deliver(frame.into()));
        }
        match last {
            Some(after) if page.more => out.push(Effect::Load(Load::Page { after, upto })),
            _ => {
                // Everything current for this user up to `upto` is sent.
                self.replayed_up_to = self.replayed_up_to.max(upto);
                self.go_live(out);
            }
        }
    }

    /// A catch-up load finished (either kind), or failed.
    pub fn loaded(&mut self, load: Load, result: Result<Loaded, DbError>, out: &mut Effects) {
        match (load, result) {
            (Load::Open { since, .. }, Ok(Loaded::Opening(opening))) => {
                self.opened(since, opening, crate::db::now_ms(), out)
            }
            (Load::Page { upto, .. }, Ok(Loaded::Page(page))) => self.paged(page, upto, out),
            (_, Err(e)) => {
                tracing::warn!(session_id = self.id, user_id = ?self.user_id, error = %e, "catch-up failed");
                self.load_failed(out)
            }
            (_, Ok(_)) => self.load_failed(out),
        }
    }

    /// A load failed after its bounded wait and retries: the client should
    /// come back after the jittered delay in the reason (1–5 s), so that the
    /// sessions of a storm do not all return in the same instant.
    pub fn load_failed(&mut self, out: &mut Effects) {
        out.push(error_frame(
            error::STORAGE_UNAVAILABLE,
            "could not load your announcements; reconnect shortly",
        ));
        let delay_ms = 1_000 + rand::random::<u64>() % 4_000;
        out.push(Effect::Close(
            close::TRY_AGAIN,
            format!("storage unavailable; reconnect in {delay_ms} ms"),
        ));
    }

    fn go_live(&mut self, out: &mut Effects) {
        if let Phase::CatchingUp(buffered) = std::mem::replace(&mut self.phase, Phase::Live) {
            for push in buffered {
                self.deliver(push, out);
            }
        }
        if let Some(since) = self.pending_sync.take() {
            self.sync(since, out);
        }
    }

    fn sync(&mut self, since: Cursor, out: &mut Effects) {
        match self.phase {
            Phase::Live => {
                self.phase = Phase::CatchingUp(Vec::new());
                out.push(Effect::Load(Load::Open {
                    since: Some(since),
                    first: false,
                }));
            }
            Phase::CatchingUp(_) => {
                self.pending_sync = Some(self.pending_sync.map_or(since, |s| s.min(since)));
            }
        }
    }

    /// Something the registry routed here.
    pub fn on_push(&mut self, push: Push, out: &mut Effects) {
        match push {
            Push::Close(close::GOING_AWAY, _) => {
                // Spread the reconnects of a whole node over a few seconds.
                let delay_ms = 500 + rand::random::<u64>() % 4_500;
                let reason = format!("server shutting down; reconnect in {delay_ms} ms");
                out.push(Effect::Close(close::GOING_AWAY, reason));
            }
            Push::Close(code, reason) => out.push(Effect::Close(code, reason.into())),
            push => match &mut self.phase {
                Phase::CatchingUp(buffer) => buffer.push(push),
                Phase::Live => self.deliver(push, out),
            },
        }
    }

    fn deliver(&mut self, push: Push, out: &mut Effects) {
        out.push(Effect::Dequeued(push.len()));
        match push {
            Push::Announcement(p) => self.deliver_live(&p, out),
            Push::Frame(frame) => out.push(Effect::Send(frame)),
            Push::Close(..) => {}
        }
    }

    fn deliver_live(&self, p: &Prepared, out: &mut Effects) {
        if p.cursor > self.replayed_up_to {
            let frame = if self.legacy { &p.legacy } else { &p.v1 };
            out.push(Effect::Deliver(frame.clone()));
        }
    }

    /// The registry gave up on this session (its client fell too far behind).
    pub fn overflowed(&mut self, out: &mut Effects) {
        out.push(error_frame(
            error::TOO_SLOW,
            "you fell too far behind; reconnect and resume by cursor",
        ));
        out.push(Effect::Close(
            close::TOO_MANY,
            "too slow: outgoing queue full".into(),
        ));
    }

    /// How long until the token expires, or `None` when it has: then the
    /// session is closed with 4001 (unless a refresh moved it on).
    pub fn expiry(&mut self, out: &mut Effects) -> Option<Duration> {
        let now = now_secs();
        if self.token_exp > now {
            return Some(Duration::from_secs(self.token_exp - now) + Duration::from_millis(50));
        }
        out.push(error_frame(
            error::TOKEN_EXPIRED,
            "the token expired; reconnect with a fresh one",
        ));
        out.push(Effect::Close(close::UNAUTHORIZED, "token expired".into()));
        None
    }

    /// A text message from the client.
    pub fn on_text(&mut self, text: &str, out: &mut Effects) {
        if !self.limiter.allow() {
            return self.strike(error::RATE_LIMITED, "slow down: too many frames", out);
        }
        match protocol::parse_client_text(text) {
            Ok(frame) => self.on_frame(frame, out),
            Err(e) => self.strike(e.code, &e.msg, out),
        }
    }

    /// A binary message: not part of the protocol.
    pub fn on_binary(&mut self, out: &mut Effects) {
        self.strike(
            error::BAD_FRAME,
            "binary frames are not supported; send JSON text",
            out,
        );
    }

    /// Reassembles a fragmented message within the frame limit, then treats
    /// it as one message.
    pub fn on_fragment(&mut self, fragment: Fragment, out: &mut Effects) {
        let (bytes, last) = match fragment {
            Fragment::First { text, bytes } => {
                self.fragments = Some(Fragments {
                    text,
                    data: Vec::new(),
                });
                (bytes, false)
            }
            Fragment::Continue(bytes) => (bytes, false),
            Fragment::Last(bytes) => (bytes, true),
        };
        let Some(fragments) = self.fragments.as_mut() else {
            return self.strike(
                error::BAD_FRAME,
                "a continuation frame without a first frame",
                out,
            );
        };
        if fragments.data.len() + bytes.len() > self.max_frame_bytes {
            return out.push(Effect::Close(close::TOO_BIG, "message too large".into()));
        }
        fragments.data.extend_from_slice(&bytes);
        if !last {
            return;
        }
        match self.fragments.take() {
            Some(Fragments { text: true, data }) => match String::from_utf8(data) {
                Ok(text) => self.on_text(&text, out),
                Err(_) => self.strike(error::BAD_FRAME, "text frames must be UTF-8", out),
            },
            _ => self.on_binary(out),
        }
    }

    fn on_frame(&mut self, frame: ClientFrame, out: &mut Effects) {
        match frame {
            ClientFrame::Heartbeat => out.push(Effect::Send(
                protocol::pong(crate::db::now_ms(), self.legacy).into(),
            )),
            ClientFrame::Ack(ids) => self.record(ids, ReceiptKind::Delivered, out),
            ClientFrame::Read(ids) => self.record(ids, ReceiptKind::Read, out),
            ClientFrame::Confirm(ids) => self.record(ids, ReceiptKind::Confirmed, out),
            ClientFrame::Sync(since) => self.sync(since, out),
            // Checked by the transport, like the handshake's token (it may
            // have to fetch a rotated key first); the verdict comes back to
            // `refreshed`.
            ClientFrame::Refresh(token) => out.push(Effect::Verify(token)),
        }
    }

    fn record(&self, ids: Vec<AnnouncementId>, kind: ReceiptKind, out: &mut Effects) {
        if !ids.is_empty() {
            out.push(Effect::Record(ids, kind));
        }
    }

    /// The verdict on a `refresh` frame's token, checked for this user.
    pub fn refreshed(&mut self, verdict: Result<Claims, TokenError>, out: &mut Effects) {
        match verdict {
            Ok(claims) if *claims.sub == *self.user_id => self.refresh(claims, out),
            Ok(_) => out.push(error_frame(
                error::BAD_TOKEN,
                &TokenError::WrongUser.to_string(),
            )),
            Err(e) => out.push(error_frame(error::BAD_TOKEN, &e.to_string())),
        }
    }

    /// A fresh token replaces the session's identity claims: its expiry and
    /// its groups.
    fn refresh(&mut self, claims: Claims, out: &mut Effects) {
        self.token_exp = claims.exp;
        if *self.groups != *claims.groups {
            self.groups = claims.groups.into();
            out.push(Effect::Regroup(self.groups.clone()));
        }
    }

    fn strike(&mut self, code: &str, msg: &str, out: &mut Effects) {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            out.push(error_frame(code, "too many bad frames; closing"));
            out.push(Effect::Close(close::BAD_INPUT, "repeated bad input".into()));
        } else {
            out.push(error_frame(code, msg));
        }
    }
}

fn error_frame(code: &str, msg: &str) -> Effect {
    Effect::Send(protocol::error(code, msg).into())
}

#[cfg(test)]
mod tests;
