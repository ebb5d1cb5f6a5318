//! Users herald has seen, with their latest groups: the base for counting who
//! an "all" or group announcement targeted.

use super::schema::{known_users as k, user_groups as g};
use super::{DbConn, DbError};
use crate::domain::Audience;
use diesel::prelude::*;

/// How stale `last_seen` may get before a connect refreshes it; keeps the
/// common reconnect a read, not a write.
const LAST_SEEN_GRANULARITY_MS: i64 = 60 * 60 * 1000;

/// Notes that a user connected with these groups. Writes only when the user is
/// new, the groups changed, or `last_seen` is older than an hour.
pub fn touch(conn: &mut DbConn, user_id: &str, groups: &[String], now: i64) -> Result<(), DbError> {
    let last_seen: Option<i64> = k::table
        .find(user_id)
        .select(k::last_seen)
        .first(conn)
        .optional()?;
    let mut stored: Vec<String> = g::table
        .filter(g::user_id.eq(user_id))
        .select(g::group_name)
        .load(conn)?;
    stored.sort();
    let mut wanted: Vec<String> = groups.to_vec();
    wanted.sort();
    wanted.dedup();
    let fresh = last_seen.is_some_and(|t| now - t < LAST_SEEN_GRANULARITY_MS);
    if fresh && stored == wanted {
        return Ok(());
    }
    conn.transaction(|conn| {
        let row = (
            k::user_id.eq(user_id),
            k::first_seen.eq(now),
            k::last_seen.eq(now),
        );
        crate::insert_ignore!(conn, k::table, row)?;
        diesel::update(k::table.find(user_id))
            .set(k::last_seen.eq(now))
            .execute(conn)?;
        if stored != wanted {
            diesel::delete(g::table.filter(g::user_id.eq(user_id))).execute(conn)?;
            let rows: Vec<_> = wanted
                .iter()
                .map(|group| (g::user_id.eq(user_id), g::group_name.eq(group)))
                .collect();
            if !rows.is_empty() {
                crate::insert_rows!(conn, g::table, &rows)?;
            }
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// How many users an audience reaches as far as herald knows: explicit
/// users are counted as named; "all" counts every user seen so far; groups
/// count the distinct known users whose latest token carried one of them.
pub fn count_targeted(conn: &mut DbConn, audience: &Audience) -> Result<i64, DbError> {
    Ok(match audience {
        Audience::Users(users) => users.len() as i64,
        Audience::All => k::table.count().get_result(conn)?,
        Audience::Groups(groups) => g::table
            .filter(g::group_name.eq_any(groups))
            .select(diesel::dsl::count(g::user_id).aggregate_distinct())
            .first(conn)?,
    })
}
