//! The node actor: turns what the listener heard into registry messages,
//! one batch at a time and in order, and remembers the last cursor this
//! node delivered.

use crate::actors::delivery::{deliver, record_online};
use crate::actors::messages::{ArchiveSync, ReadSync, Retract};
use crate::actors::registry::Registry;
use crate::db::events::Event;
use crate::db::{self, DbConn, DbError, DbPool};
use crate::domain::{AnnouncementId, Audience, Cursor, FullAnnouncement};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Retracts are caught up by time, and nodes' clocks differ a little.
pub const RETRACT_MARGIN_MS: i64 = 10_000;

pub struct Node {
    pool: DbPool,
    registry: Addr<Registry>,
    node_id: Arc<str>,
    last_cursor: Cursor,
}

impl Node {
    pub fn new(
        pool: DbPool,
        registry: Addr<Registry>,
        node_id: Arc<str>,
        last_cursor: Cursor,
    ) -> Node {
        Node {
            pool,
            registry,
            node_id,
            last_cursor,
        }
    }
}

impl Actor for Node {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

/// Notifications, in the order PostgreSQL delivered them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notified(pub Vec<Event>);

/// The listener was not listening for a while: deliver everything past the
/// last cursor, and the retracts since `retracts_since` (epoch ms).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp {
    pub retracts_since: Option<i64>,
}

/// What to hand the registry, in order.
enum Step {
    Publish(Box<FullAnnouncement>),
    Retract {
        id: AnnouncementId,
        audience: Audience,
    },
    Read(ReadSync),
    Archive(ArchiveSync),
}

struct Plan {
    steps: Vec<Step>,
    last_cursor: Cursor,
}

impl Handler<Notified> for Node {
    type Result = ();

    fn handle(&mut self, msg: Notified, ctx: &mut Context<Self>) {
        let (after, node_id) = (self.last_cursor, self.node_id.clone());
        let plan = db::run(&self.pool, move |conn| {
            plan_events(conn, after, msg.0, &node_id)
        });
        self.apply(ctx, plan);
    }
}

impl Handler<CatchUp> for Node {
    type Result = ();

    fn handle(&mut self, msg: CatchUp, ctx: &mut Context<Self>) {
        let after = self.last_cursor;
        let plan = db::run(&self.pool, move |conn| {
            plan_catch_up(conn, after, msg.retracts_since)
        });
        self.apply(ctx, plan);
    }
}

impl Node {
    /// Carries out a plan, holding every other message back until it is
    /// done (`ctx.wait`) so deliveries stay in cursor order.
    fn apply(
        &mut self,
        ctx: &mut Context<Self>,
        plan: impl std::future::Future<Output = Result<Plan, DbError>> + 'static,
    ) {
        let (pool, registry) = (self.pool.clone(), self.registry.clone());
        let work = async move {
            let plan = plan.await?;
            let mut online = Vec::new();
            for step in plan.steps {
                match step {
                    Step::Publish(full) => {
                        let id = full.announcement.id;
                        online.push((id, deliver(&registry, *full).await));
                    }
                    Step::Retract { id, audience } => registry.do_send(Retract { id, audience }),
                    Step::Read(msg) => registry.do_send(msg),
                    Step::Archive(msg) => registry.do_send(msg),
                }
            }
            record_online(&pool, online).await;
            Ok::<_, DbError>(plan.last_cursor)
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(last) => act.last_cursor = act.last_cursor.max(last),
            Err(e) => {
                tracing::warn!(node = %act.node_id, error = %e, "cluster could not load what it was told; catching up shortly");
                ctx.run_later(Duration::from_secs(1), |_, ctx| {
                    ctx.notify(CatchUp {
                        retracts_since: Some(db::now_ms() - RETRACT_MARGIN_MS),
                    });
                });
            }
        }));
    }
}

/// Loads what a batch of notifications refers to. Publishes at or below
/// `after` were delivered already; a gap below a new cursor is loaded too.
fn plan_events(
    conn: &mut DbConn,
    after: Cursor,
    events: Vec<Event>,
    node_id: &str,
) -> Result<Plan, DbError> {
    let mut plan = Plan {
        steps: Vec::new(),
        last_cursor: after,
    };
    let mut publish_upto: Option<Cursor> = None;
    for event in events {
        if let Event::Published { cursor, .. } = event {
            publish_upto = Some(publish_upto.map_or(cursor, |u| u.max(cursor)));
            continue;
        }
        // Anything else comes after the publishes before it.
        load_publishes(conn, &mut plan, publish_upto.take())?;
        match event {
            Event::Published { .. } => {}
            Event::Retracted { id } => {
                if let Some(full) = db::announcements::get(conn, id)? {
                    plan.steps.push(Step::Retract {
                        id,
                        audience: full.audience,
                    });
                }
            }
            Event::Read {
                user_id,
                ids,
                confirmed,
                node: from,
                except,
            } => plan.steps.push(Step::Read(ReadSync {
                user_id,
                ids,
                confirmed,
                except: except.filter(|_| from == node_id),
            })),
            Event::Archive {
                user_id,
                ids,
                archived,
                node: from,
                except,
            } => plan.steps.push(Step::Archive(ArchiveSync {
                user_id,
                ids,
                archived,
                except: except.filter(|_| from == node_id),
            })),
        }
    }
    load_publishes(conn, &mut plan, publish_upto)?;
    Ok(plan)
}

/// Everything past the last delivered cursor, and recent retracts.
fn plan_catch_up(
    conn: &mut DbConn,
    after: Cursor,
    retracts_since: Option<i64>,
) -> Result<Plan, DbError> {
    let mut plan = Plan {
        steps: Vec::new(),
        last_cursor: after,
    };
    let upto = db::timeline::latest_cursor(conn)?;
    load_publishes(conn, &mut plan, Some(upto))?;
    if let Some(since) = retracts_since {
        for full in db::timeline::retracted_since(conn, since, upto)? {
            plan.steps.push(Step::Retract {
                id: full.announcement.id,
                audience: full.audience,
            });
        }
    }
    if plan.last_cursor > after {
        tracing::info!(
            from = after.0 + 1,
            to = plan.last_cursor.0,
            "cluster caught up from the table"
        );
    }
    Ok(plan)
}

fn load_publishes(conn: &mut DbConn, plan: &mut Plan, upto: Option<Cursor>) -> Result<(), DbError> {
    let Some(upto) = upto.filter(|u| *u > plan.last_cursor) else {
        return Ok(());
    };
    for full in db::timeline::with_cursor_between(conn, plan.last_cursor, upto)? {
        plan.steps.push(Step::Publish(Box::new(full)));
    }
    plan.last_cursor = upto;
    Ok(())
}
