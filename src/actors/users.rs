//! The known-user writer: notes who connected (with which groups) in one
//! transaction per flush instead of one per handshake, the way the receipt
//! writer batches receipts. A restart storm of 19 000 reconnects is a few
//! dozen batches, not 19 000 reads and writes competing with the catch-ups.
//! The scheduler asks for a flush before it claims, so an "all" or group
//! announcement counts the users that connected before it.

use super::messages::Flush;
use crate::db::users::Seen;
use crate::db::{self, DbPool};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Users held while the database is down; beyond this new ones are not
/// noted (and logged): they only feed the "targeted" statistic.
const MAX_PENDING: usize = 200_000;

/// A session opened for this user with these groups.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Saw(pub Seen);

pub struct UserWriter {
    pool: DbPool,
    interval: Duration,
    /// user → the groups of its latest connect
    pending: HashMap<String, Vec<String>>,
    flushing: bool,
    idle: Arc<Notify>,
    scheduled: bool,
    failures: u32,
}

impl UserWriter {
    pub fn new(pool: DbPool, interval: Duration) -> UserWriter {
        UserWriter {
            pool,
            interval,
            pending: HashMap::new(),
            flushing: false,
            idle: Arc::new(Notify::new()),
            scheduled: false,
            failures: 0,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.scheduled || self.flushing {
            return;
        }
        self.scheduled = true;
        let backoff = self.interval * 2u32.saturating_pow(self.failures.min(6));
        ctx.run_later(backoff, |act, ctx| {
            act.scheduled = false;
            ctx.spawn(act.flush().map(|_, _, _| ()));
        });
    }

    /// Writes everything pending; resolves to how many users were noted
    /// (0 when the write failed and they wait for a retry).
    fn flush(&mut self) -> ResponseActFuture<Self, usize> {
        if self.flushing || self.pending.is_empty() {
            return Box::pin(fut::ready(0));
        }
        self.flushing = true;
        let batch: Vec<Seen> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(user_id, groups)| Seen { user_id, groups })
            .collect();
        let write = {
            let batch = batch.clone();
            db::run(&self.pool, move |conn| {
                db::users::touch_many(conn, &batch, db::now_ms())
            })
        };
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            act.flushing = false;
            act.idle.notify_waiters();
            let noted = match result {
                Ok(written) => {
                    act.failures = 0;
                    tracing::debug!(seen = batch.len(), written, "known users noted");
                    batch.len()
                }
                Err(e) => {
                    act.failures += 1;
                    tracing::warn!(error = %e, pending = batch.len(), "noting known users failed; will retry");
                    for seen in batch {
                        // A connect that came in meanwhile is newer.
                        act.pending.entry(seen.user_id).or_insert(seen.groups);
                    }
                    0
                }
            };
            if !act.pending.is_empty() {
                act.schedule(ctx);
            }
            noted
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
}

impl Actor for UserWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Handler<Saw> for UserWriter {
    type Result = ();

    fn handle(&mut self, Saw(seen): Saw, ctx: &mut Context<Self>) {
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&seen.user_id) {
            tracing::error!(user_id = ?seen.user_id, "known-user backlog full; not noting this connect");
            return;
        }
        self.pending.insert(seen.user_id, seen.groups);
        self.schedule(ctx);
    }
}

impl Handler<Flush> for UserWriter {
    type Result = ResponseActFuture<Self, usize>;

    /// Writes everything pending now, after a write in flight (shutdown and
    /// the scheduler's claim rely on it).
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        self.flush_after_current()
    }
}
