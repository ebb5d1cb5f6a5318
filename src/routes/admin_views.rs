//! The admin API's answers (`routes/admin.rs`), as types the API
//! document is derived from.

use crate::actors::messages::PresenceSnapshot;
use crate::db::recipients::ReceiptCounts;
use crate::domain::{
    rfc3339, Announcement, AnnouncementId, AudienceKind, AudienceSummary, AudienceView, Cursor,
    Level, Status,
};
use serde::Serialize;
use utoipa::ToSchema;

/// An announcement as the admin API shows it; times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminAnnouncement {
    pub id: AnnouncementId,
    pub title: String,
    pub content: String,
    pub level: Level,
    pub link: Option<String>,
    pub audience: AudienceView,
    pub status: Status,
    pub publish_at: String,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub published_at: Option<String>,
    pub retracted_at: Option<String>,
    /// Set once published.
    pub cursor: Option<Cursor>,
    /// Recipients are asked to confirm it ("I have read and understood").
    pub requires_confirmation: bool,
    pub stats: Stats,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Users the audience reached as far as herald knew at publish.
    pub targeted: Option<i64>,
    pub online_at_publish: Option<i64>,
    pub delivered: i64,
    pub read: i64,
    pub confirmed: i64,
}

/// The admin's view of an announcement with its receipt counts. The
/// audience is a summary: the full list is paged from `/audience`, who has
/// (not) confirmed from `/recipients`.
pub fn view(
    a: &Announcement,
    audience: &AudienceSummary,
    counts: ReceiptCounts,
) -> AdminAnnouncement {
    AdminAnnouncement {
        id: a.id,
        title: a.title.clone(),
        content: a.content.clone(),
        level: a.level,
        link: a.link.clone(),
        audience: audience.view(),
        status: a.status,
        publish_at: rfc3339(a.publish_at),
        expires_at: a.expires_at.map(rfc3339),
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
        published_at: a.published_at.map(rfc3339),
        retracted_at: a.retracted_at.map(rfc3339),
        cursor: a.cursor,
        requires_confirmation: a.requires_confirmation,
        stats: Stats {
            targeted: a.targeted,
            online_at_publish: a.online_at_publish,
            delivered: counts.delivered,
            read: counts.read,
            confirmed: counts.confirmed,
        },
    }
}

/// A page of announcements, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementPage {
    pub items: Vec<AdminAnnouncement>,
    /// `before` for the next page; null on the last one.
    pub next_before: Option<AnnouncementId>,
}

/// A page of an announcement's audience values, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudiencePage {
    pub id: AnnouncementId,
    pub kind: AudienceKind,
    /// User ids or group names; empty for `all`.
    pub values: Vec<String>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<String>,
}

/// Who is connected to this node (presence is per node).
#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    /// Always `node`.
    pub scope: &'static str,
    /// This node's name in a cluster; null on SQLite.
    pub node: Option<String>,
    #[serde(flatten)]
    pub snapshot: PresenceSnapshot,
}

/// One user's sessions on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPresenceView {
    /// Always `node`.
    pub scope: &'static str,
    pub node: Option<String>,
    pub user_id: String,
    pub online: bool,
    pub sessions: usize,
}

/// A user token herald signed (HS256).
#[derive(Debug, Serialize, ToSchema)]
pub struct MintedToken {
    pub token: String,
    pub user_id: String,
    pub groups: Vec<String>,
    /// RFC 3339.
    pub expires_at: String,
}
