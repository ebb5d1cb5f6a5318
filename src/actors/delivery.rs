//! Handing published announcements to this node's registry: the one step
//! every fan-out ends in, whichever path brought the announcement here.

use super::messages::Publish;
use super::registry::Registry;
use crate::db::{self, DbPool};
use crate::domain::{AnnouncementId, FullAnnouncement, Status};
use crate::metrics::METRICS;
use crate::protocol::Prepared;
use actix::prelude::*;
use std::sync::Arc;

/// Hands one claimed announcement to the registry unless it expired or was
/// withdrawn meanwhile; answers how many users it reached on this node.
pub async fn deliver(registry: &Addr<Registry>, full: FullAnnouncement) -> i64 {
    let a = &full.announcement;
    if a.status != Status::Published || a.is_expired(db::now_ms()) {
        return 0;
    }
    let prepared = Arc::new(Prepared::from(a));
    METRICS
        .publish_lag
        .observe((db::now_ms() - a.publish_at).max(0) as f64 / 1000.0);
    tracing::info!(
        announcement_id = a.id.0,
        cursor = prepared.cursor.0,
        audience = full.audience.kind().as_str(),
        "publishing"
    );
    registry
        .send(Publish {
            announcement: prepared,
            audience: full.audience,
        })
        .await
        .unwrap_or(0) as i64
}

/// Delivers each in order, then records the online counts.
pub async fn deliver_all(pool: &DbPool, registry: &Addr<Registry>, all: Vec<FullAnnouncement>) {
    let mut online = Vec::with_capacity(all.len());
    for full in all {
        let id = full.announcement.id;
        online.push((id, deliver(registry, full).await));
    }
    record_online(pool, online).await;
}

/// Adds this node's online counts `(announcement id, users)` to the
/// announcements' stats. Stats are informational: a failure is logged, not
/// retried.
pub async fn record_online(pool: &DbPool, online: Vec<(AnnouncementId, i64)>) {
    if online.is_empty() {
        return;
    }
    let written = db::run(pool, move |conn| {
        db::announcements::add_online(conn, &online)
    })
    .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record publish stats");
    }
}
