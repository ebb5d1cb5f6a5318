//! One Server-Sent Events stream: the same session core as a WebSocket,
//! carried over `text/event-stream` for networks that refuse WebSocket.
//!
//! The actor writes events into a bounded channel that the HTTP response
//! drains; the bytes in that channel are counted, and a stream whose client
//! stops reading (so the channel stops draining) is dropped once they pass
//! the session bound, like a slow WebSocket session, and resumes by
//! `Last-Event-ID`. A replay page is loaded only when the channel has room.

use super::core::SessionCore;
use super::effects::{CoreParams, Effect, Effects, Load};
use super::SessionDeps;
use crate::actors::messages::*;
use crate::metrics::METRICS;
use crate::protocol::codes::close;
use actix::prelude::*;
use actix_web_lab::sse;
use bytestring::ByteString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// Events the channel holds at most (its bytes are bounded separately).
pub const CHANNEL_EVENTS: usize = 256;

/// The stream's side of a session's event channel: what is in it, in bytes,
/// and a wake-up for the actor when the client took some.
#[derive(Default)]
pub struct Backlog {
    bytes: AtomicUsize,
    room: Notify,
}

impl Backlog {
    /// The client's side took an event of `len` bytes.
    pub fn taken(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.room.notify_one();
    }

    /// Waits until at most `limit` bytes are waiting.
    async fn room_below(self: Arc<Self>, limit: usize) {
        while self.bytes.load(Ordering::Acquire) > limit {
            self.room.notified().await;
        }
    }
}

/// What the handshake decided, and where the events go.
pub struct SseParams {
    pub core: CoreParams,
    pub interval: Duration,
    pub max_buffered: usize,
    pub events: mpsc::Sender<(sse::Event, usize)>,
    pub backlog: Arc<Backlog>,
    /// Told whether the registry accepted the stream (before it starts).
    pub admitted: oneshot::Sender<bool>,
}

pub struct SseSession {
    core: SessionCore,
    interval: Duration,
    max_buffered: usize,
    events: Option<mpsc::Sender<(sse::Event, usize)>>,
    backlog: Arc<Backlog>,
    admitted: Option<oneshot::Sender<bool>>,
    link: Arc<SessionLink>,
    closed_with: Option<u16>,
    deps: Arc<SessionDeps>,
}

impl SseSession {
    pub fn new(params: SseParams, deps: Arc<SessionDeps>) -> SseSession {
        SseSession {
            core: SessionCore::new(params.core),
            interval: params.interval,
            max_buffered: params.max_buffered,
            events: Some(params.events),
            backlog: params.backlog,
            admitted: Some(params.admitted),
            link: Arc::default(),
            closed_with: None,
            deps,
        }
    }

    fn step(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut SessionCore, &mut Effects)) {
        let mut out = Effects::new();
        f(&mut self.core, &mut out);
        for effect in out {
            self.apply(ctx, effect);
        }
    }

    fn apply(&mut self, ctx: &mut Context<Self>, effect: Effect) {
        if self.closed_with.is_some() {
            return;
        }
        match effect {
            Effect::Send(frame) => self.send_frame(ctx, &frame, false),
            Effect::Deliver(frame) => self.send_frame(ctx, &frame, true),
            Effect::Close(code, reason) => self.close(ctx, code, &reason),
            Effect::Record(ids, kind) => self.deps.record(&self.core, ids, kind),
            Effect::Regroup(groups) => self.deps.regroup(&self.core, groups),
            Effect::Load(load) => self.load(ctx, load),
            Effect::Dequeued(bytes) => {
                self.link.queued.fetch_sub(bytes, Ordering::AcqRel);
            }
            // An event stream carries no client frames, so no `refresh`.
            Effect::Verify(_) => {}
        }
    }

    /// A protocol frame as an event named by its type, with its `data`;
    /// announcements carry their cursor as the event id.
    fn send_frame(&mut self, ctx: &mut Context<Self>, frame: &ByteString, delivery: bool) {
        let Some(event) = to_event(frame) else {
            return;
        };
        if delivery {
            METRICS.deliveries.inc();
        }
        METRICS.frames_out.inc();
        self.emit(ctx, event);
    }

    fn emit(&mut self, ctx: &mut Context<Self>, (event, len): (sse::Event, usize)) {
        let Some(events) = &self.events else {
            return;
        };
        let queued = self.backlog.bytes.fetch_add(len, Ordering::AcqRel) + len;
        let sent = queued <= self.max_buffered && events.try_send((event, len)).is_ok();
        if !sent {
            self.backlog.bytes.fetch_sub(len, Ordering::AcqRel);
            if events.is_closed() {
                // The client went away.
                self.closed_with = Some(close::ABNORMAL);
                ctx.stop();
            } else {
                // Its client stopped reading: nothing more fits, not even
                // an error event. It resumes by `Last-Event-ID`.
                METRICS.slow_consumers.inc();
                self.close(ctx, close::TOO_MANY, "too slow: event stream full");
            }
        }
    }

    /// Ends the stream; an EventSource reconnects by itself and resumes by
    /// `Last-Event-ID`.
    fn close(&mut self, ctx: &mut Context<Self>, code: u16, reason: &str) {
        if self.closed_with.is_some() {
            return;
        }
        self.closed_with = Some(code);
        tracing::debug!(session_id = self.core.id(), user_id = ?self.core.user_id(), code, reason, "closing event stream");
        self.events = None;
        ctx.stop();
    }

    fn load(&mut self, ctx: &mut Context<Self>, load: Load) {
        let room = self.backlog.clone().room_below(self.max_buffered / 2);
        let work = self.deps.load(&self.core, load);
        let work = async move {
            room.await;
            work.await
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.step(ctx, |core, out| core.loaded(load, result, out))
        }));
    }

    /// A comment every heartbeat interval keeps proxies from closing an
    /// idle stream, and shows when the client has gone.
    fn heartbeat(&self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.link.overflowed.load(Ordering::Acquire) {
                return act.step(ctx, SessionCore::overflowed);
            }
            act.emit(ctx, (sse::Event::Comment("ping".into()), 8));
        });
    }

    fn watch_expiry(&mut self, ctx: &mut Context<Self>) {
        let mut out = Effects::new();
        let wait = self.core.expiry(&mut out);
        for effect in out {
            self.apply(ctx, effect);
        }
        if let Some(wait) = wait {
            ctx.run_later(wait, |act, ctx| act.watch_expiry(ctx));
        }
    }

    fn register(&self, ctx: &mut Context<Self>) {
        let connect = self
            .deps
            .connect(&self.core, ctx.address().recipient(), self.link.clone());
        self.deps
            .registry
            .send(connect)
            .into_actor(self)
            .then(|accepted, act, ctx| {
                let accepted = accepted.unwrap_or(false);
                if let Some(admitted) = act.admitted.take() {
                    let _ = admitted.send(accepted);
                }
                if accepted {
                    act.step(ctx, SessionCore::registered);
                } else {
                    act.closed_with = Some(close::TOO_MANY);
                    ctx.stop();
                }
                fut::ready(())
            })
            .wait(ctx);
    }
}

/// `{"type": T, "data": D}` as `event: T`, `data: D` (and `id: <cursor>` for
/// an announcement), with its size on the wire, about.
fn to_event(frame: &str) -> Option<(sse::Event, usize)> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let kind = value.get("type")?.as_str()?.to_string();
    let data = value.get("data")?;
    let mut event = sse::Data::new(data.to_string()).event(kind.clone());
    if kind == "announcement" {
        if let Some(cursor) = data.get("cursor").and_then(serde_json::Value::as_i64) {
            event = event.id(cursor.to_string());
        }
    }
    Some((event.into(), frame.len() + 32))
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.connects.inc();
        tracing::debug!(session_id = self.core.id(), user_id = ?self.core.user_id(), "event stream open");
        self.heartbeat(ctx);
        self.watch_expiry(ctx);
        self.register(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.deps.ended(&self.core, self.closed_with);
        Running::Stop
    }
}

impl Handler<Push> for SseSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if !matches!(msg, Push::Close(..)) && self.link.overflowed.load(Ordering::Acquire) {
            return self.step(ctx, SessionCore::overflowed);
        }
        self.step(ctx, |core, out| core.on_push(msg, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_named_events_and_announcements_carry_their_cursor() {
        let (event, _) =
            to_event(r#"{"type":"announcement","data":{"id":5,"cursor":9}}"#).expect("event");
        let sse::Event::Data(data) = event else {
            panic!("a data event");
        };
        let text = format!("{data:?}");
        assert!(text.contains("\"9\""), "{text}");
        assert!(text.contains("announcement"), "{text}");
        assert!(to_event("not json").is_none());
    }
}
