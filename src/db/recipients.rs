//! What receipts add up to per announcement: the counts in the admin's
//! stats, and the recipients page by page in user id order, by state. The
//! pending page ("targeted and not yet confirmed") runs over the explicit
//! users of the audience or over the known users of "all" and of groups,
//! in SQL with keyset paging: no page loads a whole audience.

use super::audiences::{GROUP_TARGET, USER_TARGET};
use super::schema::{
    announcement_targets as targets, announcements as a, known_users as k, receipts as r,
    user_groups as g,
};
use super::{DbConn, DbError};
use crate::domain::{AnnouncementId, AudienceKind};
use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use std::collections::HashMap;

type Backend = <DbConn as Connection>::Backend;

/// How many recipients delivered, read and confirmed one announcement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiptCounts {
    pub delivered: i64,
    pub read: i64,
    pub confirmed: i64,
}

/// The counts for one announcement.
pub fn counts(conn: &mut DbConn, id: AnnouncementId) -> Result<ReceiptCounts, DbError> {
    Ok(counts_many(conn, &[id])?.remove(&id).unwrap_or_default())
}

/// The counts for many announcements at once, for listings: one grouped
/// query, whatever the audiences' sizes.
pub fn counts_many(
    conn: &mut DbConn,
    ids: &[AnnouncementId],
) -> Result<HashMap<AnnouncementId, ReceiptCounts>, DbError> {
    use diesel::dsl::count;
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<(i64, i64, i64, i64)> = r::table
        .filter(r::announcement_id.eq_any(ids))
        .group_by(r::announcement_id)
        .select((
            r::announcement_id,
            count(r::delivered_at),
            count(r::read_at),
            count(r::confirmed_at),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, delivered, read, confirmed)| {
            let counts = ReceiptCounts {
                delivered,
                read,
                confirmed,
            };
            (AnnouncementId(id), counts)
        })
        .collect())
}

/// Which recipients a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    Delivered,
    Read,
    Confirmed,
    /// Targeted and not confirmed; not read, when the announcement does not
    /// ask for confirmation.
    Pending,
}

impl RecipientState {
    pub fn parse(s: &str) -> Option<RecipientState> {
        match s {
            "delivered" => Some(RecipientState::Delivered),
            "read" => Some(RecipientState::Read),
            "confirmed" => Some(RecipientState::Confirmed),
            "pending" => Some(RecipientState::Pending),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Delivered => "delivered",
            RecipientState::Read => "read",
            RecipientState::Confirmed => "confirmed",
            RecipientState::Pending => "pending",
        }
    }
}

/// One recipient and the times of their receipts (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: String,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub confirmed_at: Option<i64>,
}

type OnReceipts = Box<dyn BoxableExpression<r::table, Backend, SqlType = Bool>>;

/// Receipts in `state` (one of the three receipt states).
fn reached(state: RecipientState) -> OnReceipts {
    match state {
        RecipientState::Delivered => Box::new(r::delivered_at.is_not_null()),
        RecipientState::Read => Box::new(r::read_at.is_not_null()),
        RecipientState::Confirmed | RecipientState::Pending => {
            Box::new(r::confirmed_at.is_not_null())
        }
    }
}

/// The page of recipients in `state` with user ids after `after`, in user
/// id order; `None` when there is no such announcement.
pub fn page(
    conn: &mut DbConn,
    id: AnnouncementId,
    state: RecipientState,
    after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<Recipient>>, DbError> {
    let found: Option<(String, bool)> = a::table
        .find(id.0)
        .select((a::audience, a::requires_confirmation))
        .first(conn)
        .optional()?;
    let Some((audience, requires_confirmation)) = found else {
        return Ok(None);
    };
    let after = after.unwrap_or("");
    let users = match state {
        RecipientState::Pending => {
            let audience = AudienceKind::parse(&audience);
            pending(conn, id, audience, requires_confirmation, after, limit)?
        }
        _ => r::table
            .filter(r::announcement_id.eq(id.0))
            .filter(reached(state))
            .filter(r::user_id.gt(after))
            .order(r::user_id)
            .limit(limit)
            .select(r::user_id)
            .load(conn)?,
    };
    Ok(Some(with_times(conn, id, users)?))
}

/// User ids after `after` that the audience targets and that have not
/// confirmed (not read, when the announcement does not ask for a
/// confirmation). An audience herald did not write targets no one.
fn pending(
    conn: &mut DbConn,
    id: AnnouncementId,
    audience: Option<AudienceKind>,
    requires_confirmation: bool,
    after: &str,
    limit: i64,
) -> Result<Vec<String>, DbError> {
    // Confirmed implies read, so "done" is confirmed, or read when reading
    // is enough. One expression with a bound flag rather than two boxed
    // ones: a boxed expression cannot stand in a correlated subquery.
    let receipts_done = || {
        let reading_is_enough = (!requires_confirmation).into_sql::<Bool>();
        r::table.filter(r::announcement_id.eq(id.0)).filter(
            r::confirmed_at
                .is_not_null()
                .or(r::read_at.is_not_null().and(reading_is_enough)),
        )
    };
    Ok(match audience {
        Some(AudienceKind::Users) => targets::table
            .filter(targets::announcement_id.eq(id.0))
            .filter(targets::kind.eq(USER_TARGET))
            .filter(targets::value.gt(after))
            .filter(not(exists(
                receipts_done().filter(r::user_id.eq(targets::value)),
            )))
            .order(targets::value)
            .limit(limit)
            .select(targets::value)
            .load(conn)?,
        Some(AudienceKind::All) => k::table
            .filter(k::user_id.gt(after))
            .filter(not(exists(
                receipts_done().filter(r::user_id.eq(k::user_id)),
            )))
            .order(k::user_id)
            .limit(limit)
            .select(k::user_id)
            .load(conn)?,
        Some(AudienceKind::Groups) => {
            let groups = targets::table
                .filter(targets::announcement_id.eq(id.0))
                .filter(targets::kind.eq(GROUP_TARGET))
                .select(targets::value);
            k::table
                .filter(k::user_id.gt(after))
                .filter(exists(
                    g::table
                        .filter(g::user_id.eq(k::user_id))
                        .filter(g::group_name.eq_any(groups)),
                ))
                .filter(not(exists(
                    receipts_done().filter(r::user_id.eq(k::user_id)),
                )))
                .order(k::user_id)
                .limit(limit)
                .select(k::user_id)
                .load(conn)?
        }
        None => Vec::new(),
    })
}

/// The page's users with their receipt times, in the page's order.
fn with_times(
    conn: &mut DbConn,
    id: AnnouncementId,
    users: Vec<String>,
) -> Result<Vec<Recipient>, DbError> {
    type Times = (Option<i64>, Option<i64>, Option<i64>);
    let mut times: HashMap<String, Times> = r::table
        .filter(r::announcement_id.eq(id.0))
        .filter(r::user_id.eq_any(&users))
        .select((r::user_id, r::delivered_at, r::read_at, r::confirmed_at))
        .load::<(String, Option<i64>, Option<i64>, Option<i64>)>(conn)?
        .into_iter()
        .map(|(user, d, rd, c)| (user, (d, rd, c)))
        .collect();
    Ok(users
        .into_iter()
        .map(|user_id| {
            let (delivered_at, read_at, confirmed_at) = times.remove(&user_id).unwrap_or_default();
            Recipient {
                user_id,
                delivered_at,
                read_at,
                confirmed_at,
            }
        })
        .collect())
}
