//! An announcement as every layer above storage sees it: level, status and
//! audience as enums rather than the strings the tables hold, times in
//! epoch milliseconds. Storage builds these from its rows in one place.

use super::{AnnouncementId, Audience, AudienceKind, AudienceSummary, Cursor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How loudly an announcement asks for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "info" => Some(Level::Info),
            "warning" => Some(Level::Warning),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// Lifecycle of an announcement: scheduled → published → retracted, or
/// scheduled → cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Scheduled,
    Published,
    Cancelled,
    Retracted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Published => "published",
            Status::Cancelled => "cancelled",
            Status::Retracted => "retracted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "scheduled" => Some(Status::Scheduled),
            "published" => Some(Status::Published),
            "cancelled" => Some(Status::Cancelled),
            "retracted" => Some(Status::Retracted),
            _ => None,
        }
    }
}

/// One announcement as stored, without its audience's values (those are
/// loaded only where they are needed; see `FullAnnouncement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub id: AnnouncementId,
    pub title: String,
    pub content: String,
    pub level: Level,
    pub link: Option<String>,
    pub audience: AudienceKind,
    pub status: Status,
    pub publish_at: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub published_at: Option<i64>,
    pub retracted_at: Option<i64>,
    /// Set when the announcement is claimed for publishing.
    pub cursor: Option<Cursor>,
    /// How many users the audience reached as far as herald knew at publish.
    pub targeted: Option<i64>,
    pub online_at_publish: Option<i64>,
    /// Each recipient is asked to confirm it, not only to read it.
    pub requires_confirmation: bool,
}

impl Announcement {
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// An announcement with its whole audience: what publishing and
/// retracting route by.
#[derive(Debug, Clone)]
pub struct FullAnnouncement {
    pub announcement: Announcement,
    pub audience: Audience,
}

/// An announcement with a summary of its audience, for listings.
#[derive(Debug, Clone)]
pub struct SummarizedAnnouncement {
    pub announcement: Announcement,
    pub audience: AudienceSummary,
}
