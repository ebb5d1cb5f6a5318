//! Audience rows (`announcement_targets`): one row per user id or group
//! name an announcement names. "all" has no rows.

use super::models::{Announcement, FullAnnouncement, Target};
use super::schema::announcement_targets as targets;
use super::DbConn;
use crate::domain::Audience;
use diesel::prelude::*;
use std::collections::HashMap;

fn target_kind(audience: &Audience) -> &'static str {
    match audience {
        Audience::Groups(_) => "group",
        _ => "user",
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
            let audience = match row.audience.as_str() {
                "users" => Audience::Users(values),
                "groups" => Audience::Groups(values),
                _ => Audience::All,
            };
            FullAnnouncement { row, audience }
        })
        .collect())
}
