//! Several herald nodes on one PostgreSQL, with PostgreSQL as the only thing
//! they share: they tell each other what happened through `LISTEN/NOTIFY`
//! (`db::events`).
//!
//! On PostgreSQL every delivery goes through this path, the node's own
//! included: a claim or a retract notifies inside its own transaction, and
//! every node's listener hands what it hears to its own registry. One path
//! means no node delivers its own announcement twice and nothing has to
//! remember "was that mine?". Publishes are exact: notifications arrive in
//! commit order, which is cursor order, so each node keeps the last cursor
//! it delivered, skips anything at or below it and loads any gap from the
//! table; after the listener reconnects it loads everything past that
//! cursor. On SQLite there is one node and none of this runs.
//!
//! Three parts: this handle (start, status, read syncs), the listener
//! thread that owns the dedicated connection, and the node actor that turns
//! what was heard into registry messages.

mod listener;
mod node;

use super::messages::{ArchiveSync, ReadSync};
use super::newest::NewestCursor;
use super::registry::Registry;
use crate::db::events::{self, Event};
use crate::db::{self, DbError, DbPool};
use actix::prelude::*;
use listener::Listener;
use node::Node;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Ids per read or archive notification: PostgreSQL caps a payload at 8000
/// bytes, and a read carries each id at most twice (read and confirmed).
const READ_IDS_PER_NOTIFY: usize = 150;

/// This node's handle on the cluster, kept in the app state.
#[derive(Clone)]
pub struct ClusterHandle {
    node: Arc<str>,
    pool: DbPool,
    listening: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The listener thread, joined at exit.
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
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

    /// Stops the listener and waits up to `within` for its thread to end,
    /// so that the process does not exit while the thread is inside libpq
    /// (with TLS, OpenSSL's exit-time cleanup would pull the ground from
    /// under it).
    pub fn stop_and_join(&self, within: std::time::Duration) {
        self.shutdown();
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let deadline = std::time::Instant::now() + within;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }

    /// Tells every node (this one included) what the user read; if that
    /// fails, at least this node's tabs.
    pub fn sync_reads(&self, msg: ReadSync, registry: Addr<Registry>) {
        let events = read_events(&msg, &self.node);
        self.notify_or(events, move || registry.do_send(msg));
    }

    /// Tells every node (this one included) what the user archived or
    /// restored; if that fails, at least this node's tabs.
    pub fn sync_archive(&self, msg: ArchiveSync, registry: Addr<Registry>) {
        let events = archive_events(&msg, &self.node);
        self.notify_or(events, move || registry.do_send(msg));
    }

    /// Sends `events` as notifications, or runs `fallback` when it cannot.
    fn notify_or(&self, events: Vec<Event>, fallback: impl FnOnce() + 'static) {
        let pool = self.pool.clone();
        actix_web::rt::spawn(async move {
            let sent = db::run(&pool, move |conn| {
                for event in &events {
                    events::notify(conn, event)?;
                }
                Ok(())
            })
            .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "could not tell other nodes about a user's tabs");
                fallback();
            }
        });
    }
}

/// A read sync as notifications small enough for PostgreSQL; each chunk
/// carries the confirmations among its own ids.
fn read_events(msg: &ReadSync, node: &str) -> Vec<Event> {
    msg.ids
        .chunks(READ_IDS_PER_NOTIFY)
        .map(|ids| Event::Read {
            user_id: msg.user_id.clone(),
            ids: ids.to_vec(),
            // Walk the chunk, not the confirmed list: never more entries
            // than the chunk has ids.
            confirmed: ids
                .iter()
                .filter(|id| msg.confirmed.contains(id))
                .copied()
                .collect(),
            node: node.to_string(),
            except: msg.except,
        })
        .collect()
}

/// An archive sync as notifications small enough for PostgreSQL.
fn archive_events(msg: &ArchiveSync, node: &str) -> Vec<Event> {
    msg.ids
        .chunks(READ_IDS_PER_NOTIFY)
        .map(|ids| Event::Archive {
            user_id: msg.user_id.clone(),
            ids: ids.to_vec(),
            archived: msg.archived,
            node: node.to_string(),
            except: msg.except,
        })
        .collect()
}

/// What a node joins the cluster with: `pool` for the read syncs sessions
/// cause, `background` (the pool request traffic never takes) for the node
/// actor's loads, and the newest cursor to seed.
pub struct Join {
    pub pool: DbPool,
    pub background: DbPool,
    pub registry: Addr<Registry>,
    pub newest: NewestCursor,
}

/// Joins the cluster: connects the listener and starts listening before
/// reading the newest cursor, so every later publish is either at or below
/// that cursor or notified; that cursor seeds `newest`. Fails when
/// PostgreSQL cannot be reached.
pub async fn start(url: &str, join: Join) -> Result<ClusterHandle, DbError> {
    let Join {
        pool,
        background,
        registry,
        newest,
    } = join;
    let node_id: Arc<str> = format!("{:08x}", rand::random::<u32>()).into();
    let conn = {
        let (url, node_id) = (url.to_string(), node_id.clone());
        actix_web::rt::task::spawn_blocking(move || listener::listen(&url, &node_id))
            .await
            .map_err(|e| DbError::Blocking(e.to_string()))??
    };
    let last_cursor = db::run(&background, db::timeline::latest_cursor).await?;
    newest.advance(last_cursor);
    let handle = ClusterHandle {
        node: node_id.clone(),
        pool: pool.clone(),
        listening: Arc::new(AtomicBool::new(true)),
        stop: Arc::new(AtomicBool::new(false)),
        thread: Arc::default(),
    };
    let node = Node::new(background, registry, node_id.clone(), last_cursor).start();
    let listener = Listener {
        url: url.to_string(),
        node_id: node_id.clone(),
        node,
        listening: handle.listening.clone(),
        stop: handle.stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("herald-listener-{node_id}"))
        .spawn(move || listener.run(conn))
        .map_err(|e| DbError::Blocking(e.to_string()))?;
    if let Ok(mut held) = handle.thread.lock() {
        *held = Some(thread);
    }
    tracing::info!(node = %node_id, cursor = last_cursor.0, "cluster node listening on PostgreSQL");
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AnnouncementId;

    #[test]
    fn a_full_read_chunk_fits_in_a_notification() {
        let ids = vec![AnnouncementId(i64::MAX); READ_IDS_PER_NOTIFY * 2];
        let msg = ReadSync {
            user_id: "u".repeat(200),
            ids: ids.clone(),
            confirmed: ids.clone(),
            except: Some(u64::MAX),
        };
        let archive = ArchiveSync {
            user_id: "u".repeat(200),
            ids,
            archived: true,
            except: Some(u64::MAX),
        };
        let events = read_events(&msg, "ffffffff");
        assert_eq!(events.len(), 2);
        let archives = archive_events(&archive, "ffffffff");
        assert_eq!(archives.len(), 2);
        for event in events.into_iter().chain(archives) {
            let len = serde_json::to_string(&event).expect("json").len();
            assert!(len < 8000, "payload of {len} bytes");
        }
    }
}
