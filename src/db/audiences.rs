//! Audience rows (`announcement_targets`): one row per user id or group
//! name an announcement names. "all" has no rows. Whole audiences are loaded
//! only where every value is needed (routing a publish or a retract);
//! listings, pages and receipt checks touch a bounded number of rows.

use super::models::{Announcement, FullAnnouncement, SummarizedAnnouncement, Target};
use super::schema::{announcement_targets as targets, announcements as a};
use super::{DbConn, DbError};
use crate::domain::{Audience, AudienceSummary, AUDIENCE_SAMPLE};
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

type Backend = <DbConn as Connection>::Backend;

fn target_kind(audience: &Audience) -> &'static str {
    match audience {
        Audience::Groups(_) => "group",
        _ => "user",
    }
}

/// The target kind stored for an announcement's `audience` column.
fn kind_of_column(audience: &str) -> &'static str {
    if audience == "groups" {
        "group"
    } else {
        "user"
    }
}

/// The audience an `audience` column and its values describe.
fn audience_from(column: &str, values: Vec<String>) -> Audience {
    match column {
        "users" => Audience::Users(values),
        "groups" => Audience::Groups(values),
        _ => Audience::All,
    }
}

/// Replaces the announcement's targets with the audience's values.
pub fn write(conn: &mut DbConn, id: i64, audience: &Audience) -> Result<(), diesel::result::Error> {
    diesel::delete(targets::table.filter(targets::announcement_id.eq(id))).execute(conn)?;
    let kind = target_kind(audience);
    for chunk in audience.values().chunks(500) {
        let rows: Vec<Target> = chunk
            .iter()
            .map(|v| Target {
                announcement_id: id,
                kind: kind.to_string(),
                value: v.clone(),
            })
            .collect();
        crate::insert_rows!(conn, targets::table, &rows)?;
    }
    Ok(())
}

/// Attaches audiences to rows with one query for all their targets.
pub fn attach(
    conn: &mut DbConn,
    rows: Vec<Announcement>,
) -> Result<Vec<FullAnnouncement>, diesel::result::Error> {
    let ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.audience != "all")
        .map(|r| r.id)
        .collect();
    let mut by_id: HashMap<i64, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(i64, String)> = targets::table
            .filter(targets::announcement_id.eq_any(chunk))
            .select((targets::announcement_id, targets::value))
            .order((targets::announcement_id, targets::value))
            .load(conn)?;
        for (id, value) in found {
            by_id.entry(id).or_default().push(value);
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let values = by_id.remove(&row.id).unwrap_or_default();
            let audience = audience_from(&row.audience, values);
            FullAnnouncement { row, audience }
        })
        .collect())
}

/// Rows with a summary of their audience: per announcement its first values
/// and a count, two index range reads however large the audience is.
pub fn summarize(
    conn: &mut DbConn,
    rows: Vec<Announcement>,
) -> Result<Vec<SummarizedAnnouncement>, diesel::result::Error> {
    rows.into_iter()
        .map(|row| {
            let audience = summary(conn, &row)?;
            Ok(SummarizedAnnouncement { row, audience })
        })
        .collect()
}

fn summary(
    conn: &mut DbConn,
    row: &Announcement,
) -> Result<AudienceSummary, diesel::result::Error> {
    if row.audience == "all" {
        return Ok(AudienceSummary::of(&Audience::All));
    }
    // Ordered like the primary key (announcement, kind, value) so that the
    // index answers in order; the kind is the same for every row here.
    let sample: Vec<String> = targets::table
        .filter(targets::announcement_id.eq(row.id))
        .select(targets::value)
        .order((targets::kind, targets::value))
        .limit(AUDIENCE_SAMPLE as i64)
        .load(conn)?;
    let count = if sample.len() < AUDIENCE_SAMPLE {
        sample.len() as i64
    } else {
        targets::table
            .filter(targets::announcement_id.eq(row.id))
            .count()
            .get_result(conn)?
    };
    Ok(AudienceSummary {
        sample: audience_from(&row.audience, sample),
        count,
    })
}

/// One page of an announcement's audience, in order: its `audience` column
/// (`all`, `users` or `groups`) and up to `limit` values after `after`.
/// `None` when there is no such announcement.
pub fn page(
    conn: &mut DbConn,
    id: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Option<(String, Vec<String>)>, DbError> {
    let Some(kind) = a::table
        .find(id)
        .select(a::audience)
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let mut query = targets::table
        .filter(targets::announcement_id.eq(id))
        .select(targets::value)
        .order((targets::kind, targets::value))
        .limit(limit)
        .into_boxed::<Backend>();
    if let Some(after) = after {
        query = query.filter(targets::value.gt(after.to_string()));
    }
    let values = query.load(conn)?;
    Ok(Some((kind, values)))
}

/// Which of `values` (user ids for a `users` audience, group names for
/// `groups`) announcement `id` names: one primary-key lookup per value,
/// whatever the size of the audience.
pub fn matching(
    conn: &mut DbConn,
    id: i64,
    audience: &str,
    values: &[&str],
) -> Result<HashSet<String>, diesel::result::Error> {
    let mut found = HashSet::new();
    for chunk in values.chunks(500) {
        found.extend(
            targets::table
                .filter(targets::announcement_id.eq(id))
                .filter(targets::kind.eq(kind_of_column(audience)))
                .filter(targets::value.eq_any(chunk))
                .select(targets::value)
                .load::<String>(conn)?,
        );
    }
    Ok(found)
}
