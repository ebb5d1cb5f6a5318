//! What every request handler shares: the pool, settings, keys, and the
//! actors started once at start. Routes and startup both use it; it uses
//! neither.

use crate::actors::catch_up::CatchUpStore;
use crate::actors::cluster::ClusterHandle;
use crate::actors::fanout::Fanout;
use crate::actors::newest::NewestCursor;
use crate::actors::receipts::ReceiptWriter;
use crate::actors::registry::Registry;
use crate::actors::scheduler::Scheduler;
use crate::actors::session::SessionDeps;
use crate::actors::users::UserWriter;
use crate::auth::TokenKeys;
use crate::config::Settings;
use crate::db::outbox::Outbox;
use crate::db::DbPool;
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;

/// Everything a request handler may need, shared by every worker.
pub struct AppState {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub keys: TokenKeys,
    pub admin_token: String,
    pub registry: Addr<Registry>,
    pub scheduler: Addr<Scheduler>,
    pub receipts: Addr<ReceiptWriter>,
    /// Notes who connected, in batches.
    pub users: Addr<UserWriter>,
    /// The newest cursor routed to this node's registry.
    pub newest: NewestCursor,
    pub scheduler_alive: Arc<AtomicI64>,
    pub scheduler_failing: Arc<AtomicBool>,
    pub connect_limiter: Arc<crate::limits::ConnectLimiter>,
    /// Where sessions' catch-ups load from, with at most half the main pool.
    pub catch_up: CatchUpStore,
    /// This node's link to the others; `None` on SQLite (one node).
    pub cluster: Option<ClusterHandle>,
    /// How retracts and read syncs reach the sessions, chosen at start.
    pub fanout: Fanout,
    /// Where facts write their webhook events (nothing without endpoints).
    pub outbox: Outbox,
    /// What every session needs, built once: each session holds a pointer
    /// to it rather than its own copy (the token keys alone are a few
    /// hundred bytes of heap per copy).
    pub sessions: Arc<SessionDeps>,
}

impl AppState {
    pub fn session_deps(&self) -> Arc<SessionDeps> {
        self.sessions.clone()
    }
}
