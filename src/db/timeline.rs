//! The published announcements in cursor order, and who sees which: the
//! filters inboxes and receipts share (`current`, `visible_to`), the replay
//! a reconnecting user gets after a cursor, what a node missed between two
//! cursors, and the cursor counter itself.

use super::models::{self, AnnouncementRow};
use super::schema::{announcement_targets as targets, announcements as a, counters};
use super::{audiences, DbConn, DbError};
use crate::domain::{Announcement, AudienceKind, Cursor, FullAnnouncement, Status};
use diesel::prelude::*;

type Backend = <DbConn as Connection>::Backend;

const PUBLISH_CURSOR: &str = "publish_cursor";

/// Hands out the next cursor. The counter row stays locked until the
/// caller's transaction commits (see `announcements::claim`).
pub(super) fn next_cursor(conn: &mut DbConn) -> Result<Cursor, diesel::result::Error> {
    diesel::update(counters::table.find(PUBLISH_CURSOR))
        .set(counters::value.eq(counters::value + 1))
        .execute(conn)?;
    counters::table
        .find(PUBLISH_CURSOR)
        .select(counters::value)
        .first(conn)
        .map(Cursor)
}

/// The newest cursor handed out (0 before the first publish).
pub fn latest_cursor(conn: &mut DbConn) -> Result<Cursor, DbError> {
    Ok(Cursor(
        counters::table
            .find(PUBLISH_CURSOR)
            .select(counters::value)
            .first(conn)?,
    ))
}

/// Every announcement that got a cursor in `(after, upto]`, in cursor
/// order, whatever its status now: what a node missed between two points.
pub fn with_cursor_between(
    conn: &mut DbConn,
    after: Cursor,
    upto: Cursor,
) -> Result<Vec<FullAnnouncement>, DbError> {
    let rows = a::table
        .filter(a::publish_cursor.gt(after.0))
        .filter(a::publish_cursor.le(upto.0))
        .order(a::publish_cursor.asc())
        .select(AnnouncementRow::as_select())
        .load(conn)?;
    Ok(audiences::attach(conn, models::announcements(rows))?)
}

/// Announcements retracted at or after `since` (epoch ms) whose cursor is at
/// most `upto`: the retracts a node may have missed while it was not listening.
pub fn retracted_since(
    conn: &mut DbConn,
    since: i64,
    upto: Cursor,
) -> Result<Vec<FullAnnouncement>, DbError> {
    let rows = a::table
        .filter(a::status.eq(Status::Retracted.as_str()))
        .filter(a::retracted_at.ge(since))
        .filter(a::publish_cursor.le(upto.0))
        .order(a::publish_cursor.asc())
        .select(AnnouncementRow::as_select())
        .load(conn)?;
    Ok(audiences::attach(conn, models::announcements(rows))?)
}

/// Published and not expired at `now`: what inboxes show and receipts count.
pub fn current(
    now: i64,
) -> Box<dyn BoxableExpression<a::table, Backend, SqlType = diesel::sql_types::Bool>> {
    Box::new(
        a::status.eq(Status::Published.as_str()).and(
            a::expires_at
                .is_null()
                .or(a::expires_at.assume_not_null().gt(now)),
        ),
    )
}

/// Announcements visible to this user: current, and aimed at everyone, at
/// the user, or at one of the user's groups.
pub fn visible_to<'a>(
    user_id: &'a str,
    groups: &'a [String],
    now: i64,
) -> Box<dyn BoxableExpression<a::table, Backend, SqlType = diesel::sql_types::Bool> + 'a> {
    use diesel::dsl::exists;
    let for_user = a::audience.eq(AudienceKind::Users.as_str()).and(exists(
        targets::table
            .filter(targets::announcement_id.eq(a::id))
            .filter(targets::kind.eq(audiences::USER_TARGET))
            .filter(targets::value.eq(user_id)),
    ));
    let for_groups = a::audience.eq(AudienceKind::Groups.as_str()).and(exists(
        targets::table
            .filter(targets::announcement_id.eq(a::id))
            .filter(targets::kind.eq(audiences::GROUP_TARGET))
            .filter(targets::value.eq_any(groups)),
    ));
    let for_all = a::audience.eq(AudienceKind::All.as_str());
    Box::new(current(now).and(for_all.or(for_user).or(for_groups)))
}

/// Everything for this user published after `since`, oldest first: the
/// replay a reconnecting client receives before live events. Rows only:
/// membership was decided in SQL, and the frames need no audience.
pub fn for_user_since(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    since: Cursor,
    now: i64,
    limit: i64,
) -> Result<Vec<Announcement>, DbError> {
    let rows = a::table
        .filter(visible_to(user_id, groups, now))
        .filter(a::publish_cursor.gt(since.0))
        .order(a::publish_cursor.asc())
        .limit(limit)
        .select(AnnouncementRow::as_select())
        .load(conn)?;
    Ok(models::announcements(rows))
}
