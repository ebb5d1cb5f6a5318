//! Delivery and read receipts, written in batches, and the counts and
//! per-user views built on them (inbox, unread count, admin stats).

use super::audiences;
use super::models::{self, AnnouncementRow, ReceiptRow};
use super::outbox::{self, Outbox};
use super::schema::{announcements as a, receipts as r};
use super::timeline::{current, visible_to};
use super::{DbConn, DbError};
use crate::domain::webhook::{OutboundEvent, ReceiptChanges};
use crate::domain::{Announcement, AnnouncementId, AudienceKind, Cursor};
use diesel::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

type Backend = <DbConn as Connection>::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReceiptKind {
    /// The client displayed it (`ack`).
    Delivered,
    /// The user read it (implies delivered).
    Read,
}

/// One receipt as a session or the REST API reports it. The groups come from
/// the user's token and decide whether the user may receipt this id at all.
#[derive(Debug, Clone)]
pub struct ReceiptEvent {
    pub announcement_id: AnnouncementId,
    pub user_id: String,
    pub groups: std::sync::Arc<[String]>,
    pub kind: ReceiptKind,
}

/// What a batch changed: which (announcement, user) pairs are now read.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub rejected: usize,
    pub read: Vec<(AnnouncementId, String)>,
}

/// Writes a batch of receipts in one transaction, ignoring receipts for
/// announcements the user is not in the audience of, or that are not
/// published or have expired (no longer in anyone's inbox, so a receipt
/// for one is as unknown as for an id that never existed). Idempotent: the
/// first delivered_at and read_at win. With webhooks on, what the batch
/// changed (who is newly delivered, newly read) is written to the outbox as
/// `receipts` events in the same transaction.
pub fn record(
    conn: &mut DbConn,
    events: &[ReceiptEvent],
    at: i64,
    outbox: &Outbox,
) -> Result<BatchOutcome, DbError> {
    let allowed = allowed(conn, events, at)?;

    // announcement id → user → strongest receipt kind in this batch
    let mut wanted: BTreeMap<AnnouncementId, BTreeMap<&str, ReceiptKind>> = BTreeMap::new();
    let mut outcome = BatchOutcome::default();
    for (e, allowed) in events.iter().zip(allowed) {
        if !allowed {
            outcome.rejected += 1;
            continue;
        }
        outcome.accepted += 1;
        let kind = wanted
            .entry(e.announcement_id)
            .or_default()
            .entry(e.user_id.as_str())
            .or_insert(e.kind);
        *kind = (*kind).max(e.kind);
    }

    let reported = conn.transaction(|conn| {
        let mut reported = 0;
        for (&id, users) in &wanted {
            let changes = if outbox.is_enabled() {
                outbox::lock(conn, id)?;
                changes(conn, id, users, at)?
            } else {
                ReceiptChanges::default()
            };
            let readers = write_one(conn, id, users, at)?;
            outcome
                .read
                .extend(readers.into_iter().map(|u| (id, u.to_string())));
            let events = OutboundEvent::receipts(id, &changes);
            reported += outbox::enqueue(conn, outbox, id, &events, at)?;
        }
        Ok::<_, diesel::result::Error>(reported)
    })?;
    if reported > 0 {
        outbox.ring();
    }
    Ok(outcome)
}

/// What writing `users` (user → strongest kind) will change for one
/// announcement: who is not yet delivered, who has not yet read. Read under
/// the announcement's outbox lock, so two nodes' batches do not both
/// report the same user.
fn changes(
    conn: &mut DbConn,
    id: AnnouncementId,
    users: &BTreeMap<&str, ReceiptKind>,
    at: i64,
) -> Result<ReceiptChanges, diesel::result::Error> {
    let names: Vec<&str> = users.keys().copied().collect();
    let mut before: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
    for chunk in names.chunks(1_000) {
        let rows: Vec<(String, Option<i64>, Option<i64>)> = r::table
            .filter(r::announcement_id.eq(id.0))
            .filter(r::user_id.eq_any(chunk))
            .select((r::user_id, r::delivered_at, r::read_at))
            .load(conn)?;
        before.extend(rows.into_iter().map(|(u, d, r)| (u, (d, r))));
    }
    let mut changes = ReceiptChanges::default();
    for (&user, &kind) in users {
        let (delivered, read) = before.get(user).copied().unwrap_or((None, None));
        if delivered.is_none() {
            changes.delivered.push((user.to_string(), at));
        }
        if kind >= ReceiptKind::Read && read.is_none() {
            changes.read.push((user.to_string(), at));
        }
    }
    Ok(changes)
}

/// Writes one announcement's receipts from `users` (user → strongest kind):
/// inserts the rows that are missing, then sets delivered_at and read_at
/// where they are still empty. Answers the users who read it.
fn write_one<'u>(
    conn: &mut DbConn,
    id: AnnouncementId,
    users: &BTreeMap<&'u str, ReceiptKind>,
    at: i64,
) -> Result<Vec<&'u str>, diesel::result::Error> {
    let rows: Vec<ReceiptRow> = users
        .iter()
        .map(|(user, kind)| ReceiptRow {
            announcement_id: id.0,
            user_id: user.to_string(),
            delivered_at: Some(at),
            read_at: (*kind == ReceiptKind::Read).then_some(at),
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        crate::insert_ignore!(conn, r::table, chunk)?;
    }
    let all: Vec<&str> = users.keys().copied().collect();
    let readers: Vec<&str> = users
        .iter()
        .filter(|(_, k)| **k == ReceiptKind::Read)
        .map(|(u, _)| *u)
        .collect();
    for chunk in all.chunks(1_000) {
        diesel::update(
            r::table
                .filter(r::announcement_id.eq(id.0))
                .filter(r::user_id.eq_any(chunk))
                .filter(r::delivered_at.is_null()),
        )
        .set(r::delivered_at.eq(at))
        .execute(conn)?;
    }
    for chunk in readers.chunks(1_000) {
        diesel::update(
            r::table
                .filter(r::announcement_id.eq(id.0))
                .filter(r::user_id.eq_any(chunk))
                .filter(r::read_at.is_null()),
        )
        .set(r::read_at.eq(at))
        .execute(conn)?;
    }
    Ok(readers)
}

/// For each event, whether its user may receipt that announcement: it is
/// current and aimed at everyone, at the user, or at one of the user's
/// groups. Only the users and groups this batch names are looked up, per
/// announcement, so a receipt costs the same whether the audience names ten
/// users or ten thousand (loading whole audiences made a burst of acks cost
/// seconds of CPU and hundreds of MB).
fn allowed(conn: &mut DbConn, events: &[ReceiptEvent], at: i64) -> Result<Vec<bool>, DbError> {
    let ids: BTreeSet<i64> = events.iter().map(|e| e.announcement_id.0).collect();
    let ids: Vec<i64> = ids.into_iter().collect();
    // announcement id → its audience kind, for the current ones only; an
    // audience herald did not write lets no one in
    let mut open: HashMap<AnnouncementId, AudienceKind> = HashMap::new();
    for chunk in ids.chunks(500) {
        let found = a::table
            .filter(a::id.eq_any(chunk))
            .filter(current(at))
            .select((a::id, a::audience))
            .load::<(i64, String)>(conn)?;
        open.extend(
            found.into_iter().filter_map(|(id, column)| {
                Some((AnnouncementId(id), AudienceKind::parse(&column)?))
            }),
        );
    }
    // announcement id → the user ids or group names this batch asks about
    let mut asked: BTreeMap<AnnouncementId, BTreeSet<&str>> = BTreeMap::new();
    for e in events {
        let values = asked.entry(e.announcement_id);
        match open.get(&e.announcement_id) {
            Some(AudienceKind::Users) => {
                values.or_default().insert(e.user_id.as_str());
            }
            Some(AudienceKind::Groups) => values
                .or_default()
                .extend(e.groups.iter().map(String::as_str)),
            _ => {}
        }
    }
    let mut members: HashMap<AnnouncementId, HashSet<String>> = HashMap::new();
    for (id, values) in asked {
        let Some(&audience) = open.get(&id) else {
            continue;
        };
        let values: Vec<&str> = values.into_iter().collect();
        members.insert(id, audiences::matching(conn, id, audience, &values)?);
    }
    Ok(events
        .iter()
        .map(|e| {
            let found = members.get(&e.announcement_id);
            match open.get(&e.announcement_id) {
                Some(AudienceKind::All) => true,
                Some(AudienceKind::Users) => found.is_some_and(|m| m.contains(&e.user_id)),
                Some(AudienceKind::Groups) => {
                    found.is_some_and(|m| e.groups.iter().any(|g| m.contains(g)))
                }
                None => false,
            }
        })
        .collect())
}

fn read_by<'a>(
    user_id: &'a str,
) -> Box<dyn BoxableExpression<a::table, Backend, SqlType = diesel::sql_types::Bool> + 'a> {
    Box::new(diesel::dsl::exists(
        r::table
            .filter(r::announcement_id.eq(a::id))
            .filter(r::user_id.eq(user_id))
            .filter(r::read_at.is_not_null()),
    ))
}

/// One inbox entry: the announcement and whether this user has read it.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub announcement: Announcement,
    pub read: bool,
}

/// The user's inbox, newest first; `before` is a cursor from the previous page.
pub fn inbox(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    unread_only: bool,
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
    if unread_only {
        query = query.filter(diesel::dsl::not(read_by(user_id)));
    }
    if let Some(before) = before {
        query = query.filter(a::publish_cursor.lt(before.0));
    }
    let rows = models::announcements(query.load(conn)?);
    let ids: Vec<i64> = rows.iter().map(|row| row.id.0).collect();
    let read: BTreeSet<i64> = r::table
        .filter(r::user_id.eq(user_id))
        .filter(r::announcement_id.eq_any(&ids))
        .filter(r::read_at.is_not_null())
        .select(r::announcement_id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|announcement| InboxItem {
            read: read.contains(&announcement.id.0),
            announcement,
        })
        .collect())
}

/// Ids of the user's current announcements not yet read.
pub fn unread_ids(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    now: i64,
) -> Result<Vec<AnnouncementId>, DbError> {
    let ids = a::table
        .filter(visible_to(user_id, groups, now))
        .filter(diesel::dsl::not(read_by(user_id)))
        .select(a::id)
        .load(conn)?;
    Ok(ids.into_iter().map(AnnouncementId).collect())
}

pub fn unread_count(
    conn: &mut DbConn,
    user_id: &str,
    groups: &[String],
    now: i64,
) -> Result<i64, DbError> {
    Ok(a::table
        .filter(visible_to(user_id, groups, now))
        .filter(diesel::dsl::not(read_by(user_id)))
        .count()
        .get_result(conn)?)
}

/// (delivered, read) counts for one announcement.
pub fn counts(conn: &mut DbConn, id: AnnouncementId) -> Result<(i64, i64), DbError> {
    let delivered = r::table
        .filter(r::announcement_id.eq(id.0))
        .filter(r::delivered_at.is_not_null())
        .count()
        .get_result(conn)?;
    let read = r::table
        .filter(r::announcement_id.eq(id.0))
        .filter(r::read_at.is_not_null())
        .count()
        .get_result(conn)?;
    Ok((delivered, read))
}

/// (delivered, read) counts for many announcements at once, for listings.
pub fn counts_many(
    conn: &mut DbConn,
    ids: &[AnnouncementId],
) -> Result<HashMap<AnnouncementId, (i64, i64)>, DbError> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = r::table
        .filter(r::announcement_id.eq_any(ids))
        .select((r::announcement_id, r::delivered_at, r::read_at))
        .load(conn)?;
    let mut out: HashMap<AnnouncementId, (i64, i64)> = HashMap::new();
    for (id, delivered, read) in rows {
        let entry = out.entry(AnnouncementId(id)).or_default();
        entry.0 += i64::from(delivered.is_some());
        entry.1 += i64::from(read.is_some());
    }
    Ok(out)
}
