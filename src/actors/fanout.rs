//! How what happened reaches this node's sessions, chosen once at start.
//!
//! One node (SQLite): the node that publishes, retracts or records a read
//! tells its own registry. Several nodes (PostgreSQL): storage notified
//! every node inside the transaction that made it happen, and each node's
//! listener delivers (see `cluster`); read and archive syncs are sent as
//! notifications.
//! Nothing else in herald asks which backend it runs on.

use super::cluster::ClusterHandle;
use super::delivery::deliver_all;
use super::messages::{ArchiveSync, ReadSync, Retract};
use super::registry::Registry;
use crate::db::DbPool;
use crate::domain::{AnnouncementId, Audience, FullAnnouncement};
use actix::prelude::*;

#[derive(Clone)]
pub struct Fanout {
    registry: Addr<Registry>,
    cluster: Option<ClusterHandle>,
}

impl Fanout {
    /// This node alone delivers to its sessions.
    pub fn local(registry: Addr<Registry>) -> Fanout {
        Fanout {
            registry,
            cluster: None,
        }
    }

    /// Every node's listener delivers what storage notified.
    pub fn cluster(registry: Addr<Registry>, cluster: ClusterHandle) -> Fanout {
        Fanout {
            registry,
            cluster: Some(cluster),
        }
    }

    /// The node's cluster handle, when it is one of several.
    pub fn cluster_handle(&self) -> Option<&ClusterHandle> {
        self.cluster.as_ref()
    }

    /// Announcements this node just claimed, in cursor order.
    pub async fn published(&self, pool: &DbPool, claimed: Vec<FullAnnouncement>) {
        if self.cluster.is_none() {
            deliver_all(pool, &self.registry, claimed).await;
        }
    }

    /// An announcement this node just retracted.
    pub fn retracted(&self, id: AnnouncementId, audience: Audience) {
        if self.cluster.is_none() {
            self.registry.do_send(Retract { id, audience });
        }
    }

    /// The user read these: tell the user's other tabs, on every node.
    pub fn read(&self, msg: ReadSync) {
        match &self.cluster {
            Some(cluster) => cluster.sync_reads(msg, self.registry.clone()),
            None => self.registry.do_send(msg),
        }
    }

    /// The user archived or restored these: tell the user's other tabs, on
    /// every node.
    pub fn archive(&self, msg: ArchiveSync) {
        match &self.cluster {
            Some(cluster) => cluster.sync_archive(msg, self.registry.clone()),
            None => self.registry.do_send(msg),
        }
    }
}
