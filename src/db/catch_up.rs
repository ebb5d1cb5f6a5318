//! The resume contract in one place: what storage tells a session when it
//! connects or syncs. The newest cursor comes from memory (`actors::newest`)
//! and the known-user note is batched (`actors::users`), so an opening is at
//! most one query: the unread count with the first replay page. The rest of
//! the replay comes a page at a time, in cursor order, up to the cursor that
//! was newest at the opening.

use super::{receipts, timeline, DbConn, DbError};
use crate::domain::{Announcement, Cursor};

/// How much one replay page may hold: at most `rows` rows, and rows only
/// until their text passes `bytes` (always at least one row).
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub rows: i64,
    pub bytes: usize,
}

/// Announcements of one replay page, oldest first; `more` when rows past
/// the last one may still be due.
#[derive(Debug, Default)]
pub struct ReplayRows {
    pub rows: Vec<Announcement>,
    pub more: bool,
}

#[derive(Debug, Default)]
pub struct OpeningRows {
    /// Counted only on a session's first opening.
    pub unread: i64,
    pub replay: ReplayRows,
}

/// The opening for `user_id` with `groups` up to the newest cursor `upto`:
/// with `count_unread` (a session's first) the unread count, with `since`
/// (the client resumes after a cursor) the first replay page: two
/// statements on one connection, none for what is not needed.
#[allow(clippy::too_many_arguments)]
pub fn open(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    since: Option<Cursor>,
    upto: Cursor,
    count_unread: bool,
    limits: PageLimits,
    now: i64,
) -> Result<OpeningRows, DbError> {
    let after = since.filter(|s| *s < upto);
    Ok(match (after, count_unread) {
        (Some(after), true) => OpeningRows {
            unread: receipts::unread_count(conn, user_id, groups, now)?,
            replay: replay(conn, user_id, groups, after, upto, limits, now)?,
        },
        (Some(after), false) => OpeningRows {
            unread: 0,
            replay: replay(conn, user_id, groups, after, upto, limits, now)?,
        },
        (None, true) => OpeningRows {
            unread: receipts::unread_count(conn, user_id, groups, now)?,
            replay: ReplayRows::default(),
        },
        (None, false) => OpeningRows::default(),
    })
}

/// The replay page after cursor `after`, up to cursor `upto`.
pub fn replay(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    after: Cursor,
    upto: Cursor,
    limits: PageLimits,
    now: i64,
) -> Result<ReplayRows, DbError> {
    let found = timeline::for_user_since(conn, user_id, groups, after, now, limits.rows)?;
    Ok(page(found, upto, limits))
}

/// The rows of one page: up to `upto`, within the byte limit; `more` when
/// the query filled its row limit and nothing was cut at `upto`.
fn page(found: Vec<Announcement>, upto: Cursor, limits: PageLimits) -> ReplayRows {
    let mut page = ReplayRows {
        rows: Vec::new(),
        more: found.len() as i64 == limits.rows,
    };
    let mut bytes = 0;
    for row in found {
        if row.cursor.unwrap_or_default() > upto {
            page.more = false;
            break;
        }
        if bytes >= limits.bytes {
            page.more = true;
            break;
        }
        bytes += row.title.len() + row.content.len() + row.link.as_ref().map_or(0, String::len);
        page.rows.push(row);
    }
    page
}
