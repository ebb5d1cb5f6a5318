//! The resume contract in one place: what storage tells a session when it
//! connects or syncs. The opening (note the user, the newest cursor, the
//! unread count, the first replay page) is one call on one connection; the
//! rest of the replay comes a page at a time, in cursor order, up to the
//! cursor that was newest at the opening.

use super::{inbox, timeline, users, DbConn, DbError};
use crate::domain::{Announcement, AnnouncementId, Cursor};
use std::collections::HashSet;

/// How much one replay page may hold: at most `rows` rows, and rows only
/// until their text passes `bytes` (always at least one row).
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub rows: i64,
    pub bytes: usize,
}

/// Announcements of one replay page, oldest first; `more` when rows past
/// the last one may still be due. `confirmed`: those of them the user has
/// confirmed (on another device, say), so the frames say so.
#[derive(Debug, Default)]
pub struct ReplayRows {
    pub rows: Vec<Announcement>,
    pub more: bool,
    pub confirmed: HashSet<AnnouncementId>,
}

#[derive(Debug, Default)]
pub struct OpeningRows {
    pub cursor: Cursor,
    /// Counted only on a session's first opening.
    pub unread: i64,
    pub replay: ReplayRows,
}

/// The opening for `user_id` with `groups`; `first` on a session's first
/// one (it notes the user and counts the unread), `since` when the client
/// resumes after a cursor.
pub fn open(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    since: Option<Cursor>,
    first: bool,
    limits: PageLimits,
    now: i64,
) -> Result<OpeningRows, DbError> {
    if first {
        users::touch(conn, user_id, groups, now)?;
    }
    let cursor = timeline::latest_cursor(conn)?;
    let unread = if first {
        inbox::unread_count(conn, user_id, groups, now)?
    } else {
        0
    };
    let replay = match since {
        Some(after) => replay(conn, user_id, groups, after, cursor, limits, now)?,
        None => ReplayRows::default(),
    };
    Ok(OpeningRows {
        cursor,
        unread,
        replay,
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
    let mut page = ReplayRows {
        rows: Vec::new(),
        more: found.len() as i64 == limits.rows,
        confirmed: HashSet::new(),
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
    let asking: Vec<AnnouncementId> = page
        .rows
        .iter()
        .filter(|row| row.requires_confirmation)
        .map(|row| row.id)
        .collect();
    if !asking.is_empty() {
        page.confirmed = inbox::confirmed_among(conn, user_id, &asking)?
            .into_iter()
            .collect();
    }
    Ok(page)
}
