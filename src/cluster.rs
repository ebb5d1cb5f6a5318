//! Several herald nodes on one PostgreSQL, with PostgreSQL as the only thing
//! they share: they tell each other what happened through `LISTEN/NOTIFY`.
//!
//! On PostgreSQL every delivery goes through this path, the node's own
//! included: a claim or a retract NOTIFYs inside its own transaction, and
//! every node's listener hands what it hears to its own registry. One path
//! means no node delivers its own announcement twice and nothing has to
//! remember "was that mine?". Publishes are exact: notifications arrive in
//! commit order, which is cursor order, so each node keeps the last cursor it
//! delivered, skips anything at or below it and loads any gap from the table;
//! after the listener reconnects it loads everything past that cursor.
//! On SQLite there is one node and none of this runs.

use crate::actors::messages::{ReadSync, Retract, SessionId};
use crate::actors::registry::Registry;
use crate::actors::scheduler::{deliver, record_online};
use crate::db::models::FullAnnouncement;
use crate::db::{self, DbConn, DbError, DbPool};
use crate::domain::Audience;
use actix::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The one channel every node listens on.
pub const CHANNEL: &str = "herald_events";
/// How often the listener looks for notifications. Diesel's `PgConnection`
/// has no socket to wait on, only a non-blocking read (`PQconsumeInput`),
/// so the listener polls; this bounds the latency it adds.
const POLL: Duration = Duration::from_millis(2);
/// How often the listener proves its connection alive with a query, so that
/// a silently dead connection is noticed.
const PROBE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Ids per read notification: PostgreSQL caps a payload at 8000 bytes.
const READ_IDS_PER_NOTIFY: usize = 300;
/// Retracts are caught up by time, and nodes' clocks differ a little.
const RETRACT_MARGIN_MS: i64 = 10_000;

/// What one node tells all of them. Kept small: the table holds the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An announcement was claimed and got this cursor.
    Published { id: i64, cursor: i64 },
    /// A published announcement was withdrawn.
    Retracted { id: i64 },
    /// The user read these; `except` is the session (on `node`) that read
    /// them, which needs no telling.
    Read {
        user_id: String,
        ids: Vec<i64>,
        node: String,
        except: Option<SessionId>,
    },
}

/// Tells every node (this one included) about `event` when the connection is
/// PostgreSQL; inside a transaction, only if and when it commits. Does
/// nothing on SQLite. Answers whether it notified.
pub fn notify(conn: &mut DbConn, event: &Event) -> QueryResult<bool> {
    match conn {
        DbConn::Pg(c) => {
            let payload = serde_json::to_string(event)
                .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(payload)
                .execute(c)?;
            Ok(true)
        }
        DbConn::Sqlite(_) => Ok(false),
    }
}

/// This node's handle on the cluster, kept in the app state.
#[derive(Clone)]
pub struct ClusterHandle {
    node: Arc<str>,
    pool: DbPool,
    listening: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl ClusterHandle {
    /// This node's id: random per process, in logs, `/api/presence` and the
    /// listener's `application_name` (`herald-listener-<node>`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the listener is connected right now.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Stops the listener thread (it also stops when the actor system ends).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn sync_reads(&self, msg: ReadSync, registry: Addr<Registry>) {
        let events: Vec<Event> = msg
            .ids
            .chunks(READ_IDS_PER_NOTIFY)
            .map(|ids| Event::Read {
                user_id: msg.user_id.clone(),
                ids: ids.to_vec(),
                node: self.node.to_string(),
                except: msg.except,
            })
            .collect();
        let pool = self.pool.clone();
        actix_web::rt::spawn(async move {
            let sent = db::run(&pool, move |conn| {
                for event in &events {
                    notify(conn, event)?;
                }
                Ok(())
            })
            .await;
            if let Err(e) = sent {
                // Better this node's tabs than nobody's.
                tracing::warn!(error = %e, user_id = ?msg.user_id, "could not tell other nodes about reads");
                registry.do_send(msg);
            }
        });
    }
}

/// Tells the user's other tabs what was read: this node's registry alone
/// (SQLite), or every node's (PostgreSQL).
pub fn sync_reads(cluster: Option<&ClusterHandle>, registry: &Addr<Registry>, msg: ReadSync) {
    match cluster {
        Some(cluster) => cluster.sync_reads(msg, registry.clone()),
        None => registry.do_send(msg),
    }
}

/// Joins the cluster: connects the listener and starts listening before
/// reading the newest cursor, so every later publish is either at or below
/// that cursor or notified. Fails when PostgreSQL cannot be reached.
pub async fn start(
    url: &str,
    pool: DbPool,
    registry: Addr<Registry>,
) -> Result<ClusterHandle, DbError> {
    let node: Arc<str> = format!("{:08x}", rand::random::<u32>()).into();
    let conn = {
        let (url, node) = (url.to_string(), node.clone());
        actix_web::rt::task::spawn_blocking(move || listen(&url, &node))
            .await
            .map_err(|e| DbError::Blocking(e.to_string()))??
    };
    let last_cursor = db::run(&pool, db::announcements::latest_cursor).await?;
    let handle = ClusterHandle {
        node: node.clone(),
        pool: pool.clone(),
        listening: Arc::new(AtomicBool::new(true)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let cluster = Cluster {
        pool,
        registry,
        node: node.clone(),
        last_cursor,
    }
    .start();
    let listener = Listener {
        url: url.to_string(),
        node: node.clone(),
        cluster,
        listening: handle.listening.clone(),
        stop: handle.stop.clone(),
    };
    std::thread::Builder::new()
        .name(format!("herald-listener-{node}"))
        .spawn(move || listener.run(conn))
        .map_err(|e| DbError::Blocking(e.to_string()))?;
    tracing::info!(node = %node, cursor = last_cursor, "cluster node listening on PostgreSQL");
    Ok(handle)
}

/// A fresh connection that listens on the channel.
fn listen(url: &str, node: &str) -> Result<PgConnection, DbError> {
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!(
        "SET application_name = 'herald-listener-{node}'; LISTEN {CHANNEL};"
    ))?;
    Ok(conn)
}

// ---- the listener thread ---------------------------------------------------

/// Owns the dedicated connection: reads notifications, forwards them to the
/// actor, reconnects with backoff when the connection dies.
struct Listener {
    url: String,
    node: Arc<str>,
    cluster: Addr<Cluster>,
    listening: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || !self.cluster.connected()
    }

    fn run(self, first: PgConnection) {
        let mut conn = Some(first);
        let mut backoff = BACKOFF_MIN;
        // The last moment notifications were known to flow.
        let mut healthy_at = db::now_ms();
        while !self.stopped() {
            let Some(mut listening) = conn.take() else {
                std::thread::sleep(backoff);
                match listen(&self.url, &self.node) {
                    Ok(fresh) => {
                        tracing::info!(node = %self.node, "cluster listener reconnected; catching up");
                        backoff = BACKOFF_MIN;
                        self.listening.store(true, Ordering::Relaxed);
                        self.cluster.do_send(CatchUp {
                            retracts_since: Some(healthy_at - RETRACT_MARGIN_MS),
                        });
                        conn = Some(fresh);
                    }
                    Err(e) => {
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        tracing::warn!(node = %self.node, error = %e, retry_in_ms = backoff.as_millis() as u64, "cluster listener cannot connect");
                    }
                }
                continue;
            };
            if let Err(e) = self.pump(&mut listening, &mut healthy_at) {
                self.listening.store(false, Ordering::Relaxed);
                tracing::warn!(node = %self.node, error = %e, "cluster listener lost its connection; reconnecting");
            }
        }
        tracing::debug!(node = %self.node, "cluster listener stopped");
    }

    /// Forwards notifications until the connection fails (an error) or the
    /// node stops (`Ok`).
    fn pump(&self, conn: &mut PgConnection, healthy_at: &mut i64) -> QueryResult<()> {
        let mut probed = Instant::now();
        while !self.stopped() {
            let mut events = Vec::new();
            for notification in conn.notifications_iter() {
                let notification = notification?;
                match serde_json::from_str::<Event>(&notification.payload) {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        tracing::warn!(payload = ?notification.payload, error = %e, "ignoring a notification herald cannot read")
                    }
                }
            }
            if !events.is_empty() {
                self.cluster.do_send(Notified(events));
            }
            if probed.elapsed() >= PROBE {
                diesel::sql_query("SELECT 1").execute(conn)?;
                probed = Instant::now();
            }
            *healthy_at = db::now_ms();
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

// ---- the actor -------------------------------------------------------------

/// Turns what the listener heard into registry messages, one batch at a
/// time and in order; remembers the last cursor this node delivered.
struct Cluster {
    pool: DbPool,
    registry: Addr<Registry>,
    node: Arc<str>,
    last_cursor: i64,
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

/// Notifications, in the order PostgreSQL delivered them.
#[derive(Message)]
#[rtype(result = "()")]
struct Notified(Vec<Event>);

/// The listener was not listening for a while: deliver everything past the
/// last cursor, and the retracts since `retracts_since` (epoch ms).
#[derive(Message)]
#[rtype(result = "()")]
struct CatchUp {
    retracts_since: Option<i64>,
}

/// What to hand the registry, in order.
enum Step {
    Publish(Box<FullAnnouncement>),
    Retract { id: i64, audience: Audience },
    Read(ReadSync),
}

struct Plan {
    steps: Vec<Step>,
    last_cursor: i64,
}

impl Handler<Notified> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: Notified, ctx: &mut Context<Self>) {
        let (after, node) = (self.last_cursor, self.node.clone());
        let plan = db::run(&self.pool, move |conn| {
            plan_events(conn, after, msg.0, &node)
        });
        self.apply(ctx, plan);
    }
}

impl Handler<CatchUp> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: CatchUp, ctx: &mut Context<Self>) {
        let after = self.last_cursor;
        let plan = db::run(&self.pool, move |conn| {
            plan_catch_up(conn, after, msg.retracts_since)
        });
        self.apply(ctx, plan);
    }
}

impl Cluster {
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
                        let id = full.row.id;
                        online.push((id, deliver(&registry, *full).await));
                    }
                    Step::Retract { id, audience } => registry.do_send(Retract { id, audience }),
                    Step::Read(msg) => registry.do_send(msg),
                }
            }
            record_online(&pool, online).await;
            Ok::<_, DbError>(plan.last_cursor)
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(last) => act.last_cursor = act.last_cursor.max(last),
            Err(e) => {
                tracing::warn!(node = %act.node, error = %e, "cluster could not load what it was told; catching up shortly");
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
    after: i64,
    events: Vec<Event>,
    node: &str,
) -> Result<Plan, DbError> {
    let mut plan = Plan {
        steps: Vec::new(),
        last_cursor: after,
    };
    let mut publish_upto: Option<i64> = None;
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
                node: from,
                except,
            } => plan.steps.push(Step::Read(ReadSync {
                user_id,
                ids,
                except: except.filter(|_| from == node),
            })),
        }
    }
    load_publishes(conn, &mut plan, publish_upto)?;
    Ok(plan)
}

/// Everything past the last delivered cursor, and recent retracts.
fn plan_catch_up(
    conn: &mut DbConn,
    after: i64,
    retracts_since: Option<i64>,
) -> Result<Plan, DbError> {
    let mut plan = Plan {
        steps: Vec::new(),
        last_cursor: after,
    };
    let upto = db::announcements::latest_cursor(conn)?;
    load_publishes(conn, &mut plan, Some(upto))?;
    if let Some(since) = retracts_since {
        for full in db::announcements::retracted_since(conn, since, upto)? {
            plan.steps.push(Step::Retract {
                id: full.row.id,
                audience: full.audience,
            });
        }
    }
    if plan.last_cursor > after {
        tracing::info!(
            from = after + 1,
            to = plan.last_cursor,
            "cluster caught up from the table"
        );
    }
    Ok(plan)
}

fn load_publishes(conn: &mut DbConn, plan: &mut Plan, upto: Option<i64>) -> Result<(), DbError> {
    let Some(upto) = upto.filter(|u| *u > plan.last_cursor) else {
        return Ok(());
    };
    for full in db::announcements::with_cursor_between(conn, plan.last_cursor, upto)? {
        plan.steps.push(Step::Publish(Box::new(full)));
    }
    plan.last_cursor = upto;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_small_tagged_json() {
        let published = Event::Published { id: 7, cursor: 42 };
        let text = serde_json::to_string(&published).expect("json");
        assert_eq!(text, r#"{"kind":"published","id":7,"cursor":42}"#);
        assert_eq!(
            serde_json::from_str::<Event>(&text).expect("parse"),
            published
        );
    }

    #[test]
    fn a_full_read_chunk_fits_in_a_notification() {
        let event = Event::Read {
            user_id: "u".repeat(200),
            ids: vec![i64::MAX; READ_IDS_PER_NOTIFY],
            node: "ffffffff".into(),
            except: Some(u64::MAX),
        };
        let len = serde_json::to_string(&event).expect("json").len();
        assert!(len < 8000, "payload of {len} bytes");
    }
}
