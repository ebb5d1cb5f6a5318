//! The receipt writer: gathers acks, reads and confirmations from every
//! session and writes them in one transaction per flush, so a broadcast
//! that 50 000 users ack is a handful of transactions, not 50 000. Reads
//! and confirmations are then pushed to the user's other tabs.

use super::fanout::Fanout;
use super::messages::*;
use crate::db::outbox::Outbox;
use crate::db::receipts::{BatchOutcome, ReceiptEvent, ReceiptKind};
use crate::db::{self, DbPool};
use crate::domain::AnnouncementId;
use actix::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Flush at once when this many receipts are waiting.
const FLUSH_AT: usize = 20_000;
/// Receipts held while the database is down; beyond this the oldest are
/// dropped (and logged): they are statistics, not announcements.
const MAX_PENDING: usize = 500_000;

pub struct ReceiptWriter {
    pool: DbPool,
    fanout: Fanout,
    interval: Duration,
    pending: Vec<(ReceiptEvent, Option<SessionId>)>,
    flushing: bool,
    /// Woken when a flush ends, for a `Flush` that came in during it.
    idle: Arc<Notify>,
    scheduled: bool,
    failures: u32,
    /// Where each batch writes its `receipts` events.
    outbox: Outbox,
}

impl ReceiptWriter {
    pub fn new(pool: DbPool, fanout: Fanout, interval: Duration) -> ReceiptWriter {
        ReceiptWriter {
            pool,
            fanout,
            interval,
            pending: Vec::new(),
            flushing: false,
            idle: Arc::new(Notify::new()),
            scheduled: false,
            failures: 0,
            outbox: Outbox::disabled(),
        }
    }

    pub fn with_outbox(mut self, outbox: Outbox) -> ReceiptWriter {
        self.outbox = outbox;
        self
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.scheduled || self.flushing {
            return;
        }
        self.scheduled = true;
        let backoff = self.interval * 2u32.saturating_pow(self.failures.min(6));
        ctx.run_later(backoff, |act, ctx| {
            act.scheduled = false;
            {
                let f = act.flush();
                ctx.spawn(f.map(|_, _, _| ()));
            };
        });
    }

    /// Starts a write of everything pending; resolves to how many were
    /// written (0 when the write failed and they wait for a retry).
    fn flush(&mut self) -> ResponseActFuture<Self, usize> {
        if self.flushing || self.pending.is_empty() {
            return Box::pin(fut::ready(0));
        }
        self.flushing = true;
        let batch = std::mem::take(&mut self.pending);
        let events: Vec<ReceiptEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
        let outbox = self.outbox.clone();
        let write = db::run(&self.pool, move |conn| {
            db::receipts::record(conn, &events, db::now_ms(), &outbox)
        });
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            act.flushing = false;
            act.idle.notify_waiters();
            let written = match result {
                Ok(outcome) => {
                    act.failures = 0;
                    crate::metrics::METRICS
                        .receipts_written
                        .inc_by(outcome.accepted as u64);
                    tracing::debug!(accepted = outcome.accepted, rejected = outcome.rejected, "receipts written");
                    act.sync_reads(&batch, &outcome);
                    batch.len()
                }
                Err(e) => {
                    act.failures += 1;
                    tracing::warn!(error = %e, pending = batch.len(), "receipt write failed; will retry");
                    let mut retry = batch;
                    retry.append(&mut act.pending);
                    if retry.len() > MAX_PENDING {
                        let dropped = retry.len() - MAX_PENDING;
                        tracing::error!(dropped, "receipt backlog full; dropping the oldest");
                        retry.drain(..dropped);
                    }
                    act.pending = retry;
                    0
                }
            };
            if !act.pending.is_empty() {
                act.schedule(ctx);
            }
            written
        }))
    }

    fn flush_after_current(&mut self) -> ResponseActFuture<Self, usize> {
        if !self.flushing {
            return self.flush();
        }
        let idle = self.idle.clone().notified_owned();
        Box::pin(
            idle.into_actor(self)
                .then(|_, act, _| act.flush_after_current()),
        )
    }

    /// Tells each reader's other tabs (on any node) what was read and
    /// confirmed.
    fn sync_reads(&self, batch: &[(ReceiptEvent, Option<SessionId>)], outcome: &BatchOutcome) {
        if outcome.read.is_empty() {
            return;
        }
        let pairs = |list: &[(AnnouncementId, String)]| -> HashSet<(AnnouncementId, String)> {
            list.iter().cloned().collect()
        };
        let (read, confirmed) = (pairs(&outcome.read), pairs(&outcome.confirmed));
        type Ids = (Vec<AnnouncementId>, Vec<AnnouncementId>);
        let mut by_origin: BTreeMap<(&str, Option<SessionId>), Ids> = BTreeMap::new();
        for (e, origin) in batch {
            let pair = (e.announcement_id, e.user_id.clone());
            if e.kind >= ReceiptKind::Read && read.contains(&pair) {
                let (ids, confirms) = by_origin.entry((e.user_id.as_str(), *origin)).or_default();
                ids.push(e.announcement_id);
                if e.kind == ReceiptKind::Confirmed && confirmed.contains(&pair) {
                    confirms.push(e.announcement_id);
                }
            }
        }
        for ((user_id, except), (mut ids, mut confirmed)) in by_origin {
            for list in [&mut ids, &mut confirmed] {
                list.sort_unstable();
                list.dedup();
            }
            self.fanout.read(ReadSync {
                user_id: user_id.to_string(),
                ids,
                confirmed,
                except,
            });
        }
    }
}

impl Actor for ReceiptWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Handler<Record> for ReceiptWriter {
    type Result = ();

    fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) {
        self.pending
            .extend(msg.events.into_iter().map(|e| (e, msg.origin)));
        if self.pending.len() >= FLUSH_AT && !self.flushing {
            ctx.spawn(self.flush().map(|_, _, _| ()));
        } else {
            self.schedule(ctx);
        }
    }
}

impl Handler<Flush> for ReceiptWriter {
    type Result = ResponseActFuture<Self, usize>;

    /// Writes everything pending now; a flush already writing is waited for
    /// first, so what arrived during it is written too (shutdown relies on it).
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        self.flush_after_current()
    }
}
