//! Users herald has seen, with their latest groups: the base for counting who
//! an "all" or group announcement targeted.

use super::schema::{known_users as k, user_groups as g};
use super::{DbConn, DbError};
use crate::domain::Audience;
use diesel::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Users per statement (SQLite allows 32 766 parameters).
const CHUNK: usize = 500;

/// How stale `last_seen` may get before a connect refreshes it; keeps the
/// common reconnect a read, not a write.
const LAST_SEEN_GRANULARITY_MS: i64 = 60 * 60 * 1000;

/// One user seen connecting, with the groups of the token it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub user_id: String,
    pub groups: Vec<String>,
}

/// Notes that a user connected with these groups. Writes only when the user is
/// new, the groups changed, or `last_seen` is older than an hour.
pub fn touch(conn: &mut DbConn, user_id: &str, groups: &[String], now: i64) -> Result<(), DbError> {
    let seen = Seen {
        user_id: user_id.to_string(),
        groups: groups.to_vec(),
    };
    touch_many(conn, std::slice::from_ref(&seen), now).map(|_| ())
}

/// Notes a batch of connects in one transaction (the last entry of a user
/// wins); reads the batch's users in chunks first and writes only the new,
/// the regrouped and the stale ones. Answers how many users it wrote.
pub fn touch_many(conn: &mut DbConn, seen: &[Seen], now: i64) -> Result<usize, DbError> {
    let mut wanted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in seen {
        let mut groups = s.groups.clone();
        groups.sort();
        groups.dedup();
        wanted.insert(s.user_id.as_str(), groups);
    }
    let users: Vec<&str> = wanted.keys().copied().collect();
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in users.chunks(CHUNK) {
        last_seen.extend(
            k::table
                .filter(k::user_id.eq_any(chunk))
                .select((k::user_id, k::last_seen))
                .load::<(String, i64)>(conn)?,
        );
        let rows: Vec<(String, String)> = g::table
            .filter(g::user_id.eq_any(chunk))
            .select((g::user_id, g::group_name))
            .load(conn)?;
        for (user, group) in rows {
            stored.entry(user).or_default().push(group);
        }
    }
    let empty = Vec::new();
    let mut stale: Vec<&str> = Vec::new();
    let mut regrouped: Vec<(&str, &Vec<String>)> = Vec::new();
    for (user, groups) in &wanted {
        let mut had = stored.get(*user).unwrap_or(&empty).clone();
        had.sort();
        let fresh = last_seen
            .get(*user)
            .is_some_and(|t| now - t < LAST_SEEN_GRANULARITY_MS);
        if !fresh {
            stale.push(user);
        }
        if had != *groups {
            regrouped.push((user, groups));
        }
    }
    if stale.is_empty() && regrouped.is_empty() {
        return Ok(0);
    }
    let written: BTreeSet<&str> = stale
        .iter()
        .copied()
        .chain(regrouped.iter().map(|(u, _)| *u))
        .collect();
    crate::db::write_transaction(conn, |conn| write(conn, &written, &stale, &regrouped, now))?;
    Ok(written.len())
}

fn write(
    conn: &mut DbConn,
    written: &BTreeSet<&str>,
    stale: &[&str],
    regrouped: &[(&str, &Vec<String>)],
    now: i64,
) -> Result<(), diesel::result::Error> {
    let rows: Vec<_> = written
        .iter()
        .map(|user| {
            (
                k::user_id.eq(*user),
                k::first_seen.eq(now),
                k::last_seen.eq(now),
            )
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        crate::insert_ignore!(conn, k::table, chunk)?;
    }
    for chunk in stale.chunks(CHUNK) {
        diesel::update(k::table.filter(k::user_id.eq_any(chunk)))
            .set(k::last_seen.eq(now))
            .execute(conn)?;
    }
    let users: Vec<&str> = regrouped.iter().map(|(u, _)| *u).collect();
    for chunk in users.chunks(CHUNK) {
        diesel::delete(g::table.filter(g::user_id.eq_any(chunk))).execute(conn)?;
    }
    let rows: Vec<_> = regrouped
        .iter()
        .flat_map(|(user, groups)| {
            groups
                .iter()
                .map(move |group| (g::user_id.eq(*user), g::group_name.eq(group)))
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        crate::insert_rows!(conn, g::table, chunk)?;
    }
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
