//! Audience rows (`announcement_targets`): one row per user id or group
//! name an announcement names. "all" has no rows. Whole audiences are loaded
//! only where every value is needed (routing a publish or a retract);
//! listings, pages and receipt checks touch a bounded number of rows.

use super::models::TargetRow;
use super::schema::{announcement_targets as targets, announcements as a};
use super::{DbConn, DbError};
use crate::domain::{
    Announcement, AnnouncementId, Audience, AudienceKind, AudienceSummary, FullAnnouncement,
    SummarizedAnnouncement, AUDIENCE_SAMPLE,
};
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

type Backend = <DbConn as Connection>::Backend;

/// The `kind` of a target row naming a user, and one naming a group.
pub const USER_TARGET: &str = "user";
pub const GROUP_TARGET: &str = "group";

/// The target kind stored for an audience of this kind.
fn target_kind(kind: AudienceKind) -> &'static str {
    match kind {
        AudienceKind::Groups => GROUP_TARGET,
        AudienceKind::Users | AudienceKind::All => USER_TARGET,
    }
}

/// Replaces the announcement's targets with the audience's values.
pub fn write(
    conn: &mut DbConn,
    id: AnnouncementId,
    audience: &Audience,
) -> Result<(), diesel::result::Error> {
    diesel::delete(targets::table.filter(targets::announcement_id.eq(id.0))).execute(conn)?;
    let kind = target_kind(audience.kind());
    for chunk in audience.values().chunks(500) {
        let rows: Vec<TargetRow> = chunk
            .iter()
            .map(|v| TargetRow {
                announcement_id: id.0,
                kind: kind.to_string(),
                value: v.clone(),
            })
            .collect();
        crate::insert_rows!(conn, targets::table, &rows)?;
    }
    Ok(())
}

/// Attaches their audiences to announcements with one query for all their
/// targets.
pub fn attach(
    conn: &mut DbConn,
    announcements: Vec<Announcement>,
) -> Result<Vec<FullAnnouncement>, diesel::result::Error> {
    let ids: Vec<i64> = announcements
        .iter()
        .filter(|r| r.audience != AudienceKind::All)
        .map(|r| r.id.0)
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
    Ok(announcements
        .into_iter()
        .map(|announcement| {
            let values = by_id.remove(&announcement.id.0).unwrap_or_default();
            let audience = announcement.audience.with_values(values);
            FullAnnouncement {
                announcement,
                audience,
            }
        })
        .collect())
}

/// Announcements with a summary of their audience: per announcement its
/// first values and a count, two index range reads however large the
/// audience is.
pub fn summarize(
    conn: &mut DbConn,
    announcements: Vec<Announcement>,
) -> Result<Vec<SummarizedAnnouncement>, diesel::result::Error> {
    announcements
        .into_iter()
        .map(|announcement| {
            let audience = summary(conn, &announcement)?;
            Ok(SummarizedAnnouncement {
                announcement,
                audience,
            })
        })
        .collect()
}

fn summary(
    conn: &mut DbConn,
    announcement: &Announcement,
) -> Result<AudienceSummary, diesel::result::Error> {
    if announcement.audience == AudienceKind::All {
        return Ok(AudienceSummary::of(&Audience::All));
    }
    // Ordered like the primary key (announcement, kind, value) so that the
    // index answers in order; the kind is the same for every row here.
    let sample: Vec<String> = targets::table
        .filter(targets::announcement_id.eq(announcement.id.0))
        .select(targets::value)
        .order((targets::kind, targets::value))
        .limit(AUDIENCE_SAMPLE as i64)
        .load(conn)?;
    let count = if sample.len() < AUDIENCE_SAMPLE {
        sample.len() as i64
    } else {
        targets::table
            .filter(targets::announcement_id.eq(announcement.id.0))
            .count()
            .get_result(conn)?
    };
    Ok(AudienceSummary {
        sample: announcement.audience.with_values(sample),
        count,
    })
}

/// One page of an announcement's audience, in order: its kind and up to
/// `limit` values after `after`. `None` when there is no such announcement.
pub fn page(
    conn: &mut DbConn,
    id: AnnouncementId,
    after: Option<&str>,
    limit: i64,
) -> Result<Option<(AudienceKind, Vec<String>)>, DbError> {
    let Some(column) = a::table
        .find(id.0)
        .select(a::audience)
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    // Read as an announcement's audience always is (see `models`).
    let kind = AudienceKind::parse(&column).unwrap_or(AudienceKind::All);
    let mut query = targets::table
        .filter(targets::announcement_id.eq(id.0))
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
    id: AnnouncementId,
    audience: AudienceKind,
    values: &[&str],
) -> Result<HashSet<String>, diesel::result::Error> {
    let mut found = HashSet::new();
    for chunk in values.chunks(500) {
        found.extend(
            targets::table
                .filter(targets::announcement_id.eq(id.0))
                .filter(targets::kind.eq(target_kind(audience)))
                .filter(targets::value.eq_any(chunk))
                .select(targets::value)
                .load::<String>(conn)?,
        );
    }
    Ok(found)
}
