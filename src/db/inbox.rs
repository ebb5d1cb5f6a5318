//! One user's inbox: the current announcements in their audience, newest
//! first, with whether they read, confirmed or archived each; the unread
//! count; and archiving, which hides an announcement from the inbox and the
//! unread count on every device without touching its receipts.

use super::models::{self, AnnouncementRow, ReceiptRow};
use super::schema::{announcements as a, receipts as r};
use super::timeline::visible_to;
use super::{DbConn, DbError};
use crate::domain::{Announcement, AnnouncementId, Cursor};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use std::collections::HashMap;

type Backend = <DbConn as Connection>::Backend;
type OnAnnouncements<'a> = Box<dyn BoxableExpression<a::table, Backend, SqlType = Bool> + 'a>;

/// Announcements this user has read.
fn read_by(user_id: &str) -> OnAnnouncements<'_> {
    Box::new(diesel::dsl::exists(
        r::table
            .filter(r::announcement_id.eq(a::id))
            .filter(r::user_id.eq(user_id))
            .filter(r::read_at.is_not_null()),
    ))
}

/// Announcements this user has archived.
fn archived_by(user_id: &str) -> OnAnnouncements<'_> {
    Box::new(diesel::dsl::exists(
        r::table
            .filter(r::announcement_id.eq(a::id))
            .filter(r::user_id.eq(user_id))
            .filter(r::archived_at.is_not_null()),
    ))
}

/// One inbox entry: the announcement and what this user did with it.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub announcement: Announcement,
    pub read: bool,
    pub confirmed: bool,
    pub archived: bool,
}

/// Which part of the inbox to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct InboxFilter {
    /// Only what the user has not read.
    pub unread_only: bool,
    /// The archived announcements instead of the inbox itself.
    pub archived: bool,
}

/// The user's inbox, newest first; `before` is a cursor from the previous page.
pub fn inbox(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    filter: InboxFilter,
    before: Option<Cursor>,
    limit: i64,
    now: i64,
) -> Result<Vec<InboxItem>, DbError> {
    let mut query = a::table
        .filter(visible_to(user_id, groups, now))
        .select(AnnouncementRow::as_select())
        .order(a::publish_cursor.desc())
        .limit(limit)
        .into_boxed::<Backend>();
    query = if filter.archived {
        query.filter(archived_by(user_id))
    } else {
        query.filter(diesel::dsl::not(archived_by(user_id)))
    };
    if filter.unread_only {
        query = query.filter(diesel::dsl::not(read_by(user_id)));
    }
    if let Some(before) = before {
        query = query.filter(a::publish_cursor.lt(before.0));
    }
    let rows = models::announcements(query.load(conn)?);
    let ids: Vec<i64> = rows.iter().map(|row| row.id.0).collect();
    let states: HashMap<i64, (bool, bool, bool)> = r::table
        .filter(r::user_id.eq(user_id))
        .filter(r::announcement_id.eq_any(&ids))
        .select((
            r::announcement_id,
            r::read_at,
            r::confirmed_at,
            r::archived_at,
        ))
        .load::<(i64, Option<i64>, Option<i64>, Option<i64>)>(conn)?
        .into_iter()
        .map(|(id, read, confirmed, archived)| {
            (
                id,
                (read.is_some(), confirmed.is_some(), archived.is_some()),
            )
        })
        .collect();
    Ok(rows
        .into_iter()
        .map(|announcement| {
            let (read, confirmed, archived) =
                states.get(&announcement.id.0).copied().unwrap_or_default();
            InboxItem {
                announcement,
                read,
                confirmed,
                archived,
            }
        })
        .collect())
}

/// Ids of the user's current announcements not yet read (archived ones
/// left out: they are not in the inbox).
pub fn unread_ids(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    now: i64,
) -> Result<Vec<AnnouncementId>, DbError> {
    let ids = a::table
        .filter(visible_to(user_id, groups, now))
        .filter(diesel::dsl::not(read_by(user_id)))
        .filter(diesel::dsl::not(archived_by(user_id)))
        .select(a::id)
        .load(conn)?;
    Ok(ids.into_iter().map(AnnouncementId).collect())
}

/// How many announcements in the user's inbox are unread (archived ones do
/// not count).
pub fn unread_count(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    now: i64,
) -> Result<i64, DbError> {
    Ok(a::table
        .filter(visible_to(user_id, groups, now))
        .filter(diesel::dsl::not(read_by(user_id)))
        .filter(diesel::dsl::not(archived_by(user_id)))
        .count()
        .get_result(conn)?)
}

/// Which of `ids` this user confirmed.
pub fn confirmed_among(
    conn: &mut DbConn,
    user_id: &str,
    ids: &[AnnouncementId],
) -> Result<Vec<AnnouncementId>, DbError> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let found = r::table
        .filter(r::user_id.eq(user_id))
        .filter(r::announcement_id.eq_any(ids))
        .filter(r::confirmed_at.is_not_null())
        .select(r::announcement_id)
        .load::<i64>(conn)?;
    Ok(found.into_iter().map(AnnouncementId).collect())
}

/// What archiving (or restoring) one announcement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// Not a current announcement in this user's audience.
    NotFound,
    /// It was already in the state asked for.
    Unchanged,
    Changed,
}

/// Archives (`archived`) or restores the announcement for this user, when it
/// is in the user's inbox. Idempotent: the first archived_at stays.
pub fn set_archived(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    id: AnnouncementId,
    archived: bool,
    now: i64,
) -> Result<ArchiveOutcome, DbError> {
    crate::db::write_transaction(conn, |conn| {
        let visible: i64 = a::table
            .filter(a::id.eq(id.0))
            .filter(visible_to(user_id, groups, now))
            .count()
            .get_result(conn)?;
        if visible == 0 {
            return Ok(ArchiveOutcome::NotFound);
        }
        let mine = r::table
            .filter(r::announcement_id.eq(id.0))
            .filter(r::user_id.eq(user_id));
        let changed = if archived {
            let row = ReceiptRow {
                announcement_id: id.0,
                user_id: user_id.to_string(),
                delivered_at: None,
                read_at: None,
                confirmed_at: None,
                archived_at: None,
            };
            crate::insert_ignore!(conn, r::table, &row)?;
            diesel::update(mine.filter(r::archived_at.is_null()))
                .set(r::archived_at.eq(now))
                .execute(conn)?
        } else {
            diesel::update(mine.filter(r::archived_at.is_not_null()))
                .set(r::archived_at.eq(None::<i64>))
                .execute(conn)?
        };
        Ok(if changed > 0 {
            ArchiveOutcome::Changed
        } else {
            ArchiveOutcome::Unchanged
        })
    })
}
