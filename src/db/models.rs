//! Rows as stored, and the forms that write them: storage's own business.
//! Nothing outside `db` sees a row; queries hand out `domain` types, built
//! from rows here and only here.

use super::schema::{announcement_targets, announcements, receipts};
use crate::domain::{
    Announcement, AnnouncementId, AnnouncementPatch, AudienceKind, Cursor, Level, Status,
};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = announcements)]
pub struct AnnouncementRow {
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
    pub requires_confirmation: bool,
}

/// Strings herald did not write (a hand-edited table) read as they always
/// have: an unknown status as cancelled, so that nothing delivers it; an
/// unknown level as `info`; an unknown audience as "all" when routing (the
/// membership checks in SQL compare the column itself and match no one).
impl From<AnnouncementRow> for Announcement {
    fn from(row: AnnouncementRow) -> Announcement {
        Announcement {
            id: AnnouncementId(row.id),
            title: row.title,
            content: row.content,
            level: Level::parse(&row.level).unwrap_or_default(),
            link: row.link,
            audience: AudienceKind::parse(&row.audience).unwrap_or(AudienceKind::All),
            status: Status::parse(&row.status).unwrap_or(Status::Cancelled),
            publish_at: row.publish_at,
            expires_at: row.expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            published_at: row.published_at,
            retracted_at: row.retracted_at,
            cursor: row.publish_cursor.map(Cursor),
            targeted: row.targeted,
            online_at_publish: row.online_at_publish,
            requires_confirmation: row.requires_confirmation,
        }
    }
}

/// Rows as announcements, in the same order.
pub fn announcements(rows: Vec<AnnouncementRow>) -> Vec<Announcement> {
    rows.into_iter().map(Announcement::from).collect()
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
    pub requires_confirmation: bool,
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
    pub requires_confirmation: Option<bool>,
}

impl AnnouncementUpdateForm {
    /// The columns a patch changes (`None` leaves one as it is).
    pub fn new(patch: &AnnouncementPatch, now: i64) -> AnnouncementUpdateForm {
        AnnouncementUpdateForm {
            title: patch.title.clone(),
            content: patch.content.clone(),
            level: patch.level.map(|l| l.as_str().to_string()),
            link: patch.link.clone(),
            audience: patch
                .audience
                .as_ref()
                .map(|a| a.kind().as_str().to_string()),
            publish_at: patch.publish_at,
            expires_at: patch.expires_at,
            updated_at: Some(now),
            requires_confirmation: patch.requires_confirmation,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = announcement_targets)]
pub struct TargetRow {
    pub announcement_id: i64,
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = receipts)]
pub struct ReceiptRow {
    pub announcement_id: i64,
    pub user_id: String,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub confirmed_at: Option<i64>,
    pub archived_at: Option<i64>,
}
