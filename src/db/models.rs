//! Rows as stored, and the forms that write them.

use super::schema::{announcement_targets, announcements, receipts};
use crate::domain::{Audience, AudienceSummary, Level};
use diesel::prelude::*;

/// Lifecycle of an announcement: scheduled → published → retracted, or
/// scheduled → cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = announcements)]
pub struct Announcement {
    pub id: i64,
    pub title: String,
    pub content: String,
    pub level: String,
    pub link: Option<String>,
    pub audience: String,
    pub status: String,
    pub publish_at: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub published_at: Option<i64>,
    pub retracted_at: Option<i64>,
    pub publish_cursor: Option<i64>,
    pub targeted: Option<i64>,
    pub online_at_publish: Option<i64>,
}

impl Announcement {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Cancelled)
    }

    pub fn level(&self) -> Level {
        Level::parse(&self.level).unwrap_or_default()
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = announcements)]
pub struct AnnouncementInsertForm<'a> {
    pub title: &'a str,
    pub content: &'a str,
    pub level: &'a str,
    pub link: Option<&'a str>,
    pub audience: &'a str,
    pub status: &'a str,
    pub publish_at: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = announcements)]
pub struct AnnouncementUpdateForm {
    pub title: Option<String>,
    pub content: Option<String>,
    pub level: Option<String>,
    pub link: Option<Option<String>>,
    pub audience: Option<String>,
    pub publish_at: Option<i64>,
    pub expires_at: Option<Option<i64>>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = announcement_targets)]
pub struct Target {
    pub announcement_id: i64,
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = receipts)]
pub struct Receipt {
    pub announcement_id: i64,
    pub user_id: String,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

/// An announcement with its audience resolved from the targets table.
#[derive(Debug, Clone)]
pub struct FullAnnouncement {
    pub row: Announcement,
    pub audience: Audience,
}

/// An announcement with a summary of its audience, for listings.
#[derive(Debug, Clone)]
pub struct SummarizedAnnouncement {
    pub row: Announcement,
    pub audience: AudienceSummary,
}
