//! The scheduler: finds due announcements, claims each exactly once, and
//! hands them to the fan-out. It polls, and also wakes early for anything
//! due before the next poll, so "publish now" goes out in milliseconds.

use super::fanout::Fanout;
use super::messages::*;
use super::users::UserWriter;
use crate::db::outbox::Outbox;
use crate::db::{self, DbError, DbPool};
use crate::metrics::METRICS;
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Announcements one tick claims at most; a longer backlog takes more ticks.
const BATCH: i64 = 500;
/// How long a tick waits for the known-user writer before it claims anyway
/// (an "all" announcement then counts users noted so far).
const USERS_WAIT: Duration = Duration::from_millis(500);

pub struct Scheduler {
    pool: DbPool,
    fanout: Fanout,
    poll: Duration,
    running: bool,
    again: bool,
    failures: u32,
    /// The earliest time an early wake-up is already set for.
    wake_at: Option<i64>,
    /// Epoch ms of the last finished tick, for `/readyz`.
    alive: Arc<AtomicI64>,
    /// Set while ticks fail (database down), for `/readyz`.
    failing: Arc<AtomicBool>,
    /// Flushed before each claim, so the targeted counts include who
    /// connected before it.
    users: Option<Addr<UserWriter>>,
    /// Where each claim writes its `announcement.published` event.
    outbox: Outbox,
}

impl Scheduler {
    pub fn new(pool: DbPool, fanout: Fanout, poll: Duration, alive: Arc<AtomicI64>) -> Scheduler {
        Scheduler {
            pool,
            fanout,
            poll,
            running: false,
            again: false,
            failures: 0,
            wake_at: None,
            alive,
            failing: Arc::default(),
            users: None,
            outbox: Outbox::disabled(),
        }
    }

    pub fn with_users(mut self, users: Addr<UserWriter>) -> Scheduler {
        self.users = Some(users);
        self
    }

    pub fn with_outbox(mut self, outbox: Outbox) -> Scheduler {
        self.outbox = outbox;
        self
    }

    pub fn with_failure_flag(mut self, failing: Arc<AtomicBool>) -> Scheduler {
        self.failing = failing;
        self
    }

    fn tick(&mut self) -> ResponseActFuture<Self, Result<usize, DbError>> {
        if self.running {
            self.again = true;
            return Box::pin(fut::ready(Ok(0)));
        }
        self.running = true;
        let flush = self.users.as_ref().map(|users| users.send(Flush));
        let (pool, fanout, outbox) = (self.pool.clone(), self.fanout.clone(), self.outbox.clone());
        let work = async move {
            if let Some(flush) = flush {
                let _ = tokio::time::timeout(USERS_WAIT, flush).await;
            }
            publish_due(pool, fanout, outbox).await
        };
        Box::pin(work.into_actor(self).map(|result, act, ctx| {
            act.running = false;
            act.alive.store(db::now_ms(), Ordering::Relaxed);
            METRICS.scheduler_ticks.inc();
            act.failing.store(result.is_err(), Ordering::Relaxed);
            match &result {
                Ok((published, next_due)) => {
                    act.failures = 0;
                    if *published > 0 {
                        tracing::info!(claimed = *published, "claimed due announcements");
                    }
                    if let Some(at) = next_due {
                        act.wake(ctx, *at);
                    }
                    if *published as i64 >= BATCH {
                        act.again = true;
                    }
                }
                Err(e) => {
                    METRICS.scheduler_errors.inc();
                    act.failures += 1;
                    tracing::warn!(error = %e, failures = act.failures, "scheduler tick failed; retrying");
                    let backoff = Duration::from_millis(200 * 2u64.pow(act.failures.min(5)));
                    ctx.run_later(backoff.min(act.poll * 5), |act, ctx| {
                        ctx.spawn(act.tick().map(|_, _, _| ()));
                    });
                }
            }
            if std::mem::take(&mut act.again) {
                ctx.spawn(act.tick().map(|_, _, _| ()));
            }
            result.map(|(published, _)| published)
        }))
    }

    /// Arranges a tick at `at` (epoch ms) when that comes before the next poll.
    fn wake(&mut self, ctx: &mut Context<Self>, at: i64) {
        let delay = at - db::now_ms();
        if delay <= 0 {
            ctx.spawn(self.tick().map(|_, _, _| ()));
            return;
        }
        if delay as u128 >= self.poll.as_millis() || self.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        self.wake_at = Some(at);
        ctx.run_later(Duration::from_millis(delay as u64), move |act, ctx| {
            if act.wake_at == Some(at) {
                act.wake_at = None;
            }
            ctx.spawn(act.tick().map(|_, _, _| ()));
        });
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.alive.store(db::now_ms(), Ordering::Relaxed);
        ctx.spawn(self.tick().map(|_, _, _| ()));
        ctx.run_interval(self.poll, |act, ctx| {
            ctx.spawn(act.tick().map(|_, _, _| ()));
        });
    }
}

impl Handler<Tick> for Scheduler {
    type Result = ResponseActFuture<Self, Result<usize, DbError>>;

    fn handle(&mut self, _: Tick, _: &mut Context<Self>) -> Self::Result {
        self.tick()
    }
}

impl Handler<Wake> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        self.wake(ctx, msg.publish_at);
    }
}

/// One scheduler step, usable without the actor (tests race two of them):
/// claims every due announcement and hands what it claimed to the fan-out.
/// Returns how many this call published and the next scheduled publish time.
pub async fn publish_due(
    pool: DbPool,
    fanout: Fanout,
    outbox: Outbox,
) -> Result<(usize, Option<i64>), DbError> {
    let (claimed, next_due) = db::run(&pool, move |conn| {
        let now = db::now_ms();
        let mut claimed = Vec::new();
        for id in db::announcements::due(conn, now, BATCH)? {
            if let Some(full) = db::announcements::claim(conn, id, now, &outbox)? {
                claimed.push(full);
            }
        }
        Ok((claimed, db::announcements::next_due(conn)?))
    })
    .await?;
    let published = claimed.len();
    METRICS.published.inc_by(published as u64);
    fanout.published(&pool, claimed).await;
    Ok((published, next_due))
}
