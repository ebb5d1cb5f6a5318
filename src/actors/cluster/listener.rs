//! The listener thread: owns the dedicated connection that `LISTEN`s,
//! forwards what it hears to the node actor, and reconnects with backoff
//! when the connection dies.

use super::node::{CatchUp, Node, Notified, RETRACT_MARGIN_MS};
use crate::db::events::{Event, CHANNEL};
use crate::db::{self, DbError};
use actix::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the listener looks for notifications. Diesel's `PgConnection`
/// has no socket to wait on, only a non-blocking read (`PQconsumeInput`),
/// so the listener polls; this bounds the latency it adds.
const POLL: Duration = Duration::from_millis(2);
/// How often the listener proves its connection alive with a query, so that
/// a silently dead connection is noticed.
const PROBE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A fresh connection that listens on the channel.
pub fn listen(url: &str, node_id: &str) -> Result<PgConnection, DbError> {
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!(
        "SET application_name = 'herald-listener-{node_id}'; LISTEN {CHANNEL};"
    ))?;
    Ok(conn)
}

pub struct Listener {
    pub url: String,
    pub node_id: Arc<str>,
    pub node: Addr<Node>,
    pub listening: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

impl Listener {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || !self.node.connected()
    }

    pub fn run(self, first: PgConnection) {
        let mut conn = Some(first);
        let mut backoff = BACKOFF_MIN;
        // The last moment notifications were known to flow.
        let mut healthy_at = db::now_ms();
        while !self.stopped() {
            let Some(mut listening) = conn.take() else {
                std::thread::sleep(backoff);
                conn = self.reconnect(&mut backoff, healthy_at);
                continue;
            };
            if let Err(e) = self.pump(&mut listening, &mut healthy_at) {
                self.listening.store(false, Ordering::Relaxed);
                tracing::warn!(node = %self.node_id, error = %e, "cluster listener lost its connection; reconnecting");
            }
        }
        tracing::debug!(node = %self.node_id, "cluster listener stopped");
    }

    /// One reconnect attempt; on success the node catches up on what it may
    /// have missed since `healthy_at`.
    fn reconnect(&self, backoff: &mut Duration, healthy_at: i64) -> Option<PgConnection> {
        match listen(&self.url, &self.node_id) {
            Ok(fresh) => {
                tracing::info!(node = %self.node_id, "cluster listener reconnected; catching up");
                *backoff = BACKOFF_MIN;
                self.listening.store(true, Ordering::Relaxed);
                self.node.do_send(CatchUp {
                    retracts_since: Some(healthy_at - RETRACT_MARGIN_MS),
                });
                Some(fresh)
            }
            Err(e) => {
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
                tracing::warn!(node = %self.node_id, error = %e, retry_in_ms = backoff.as_millis() as u64, "cluster listener cannot connect");
                None
            }
        }
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
                self.node.do_send(Notified(events));
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
