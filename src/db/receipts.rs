//! Delivery, read and confirmation receipts, written in batches. What they
//! add up to is elsewhere: per user in `inbox`, per announcement in
//! `recipients`.

use super::audiences;
use super::models::ReceiptRow;
use super::outbox::{self, Outbox};
use super::schema::{announcements as a, receipts as r};
use super::timeline::current;
use super::{DbConn, DbError};
use crate::domain::webhook::{OutboundEvent, ReceiptChanges};
use crate::domain::{AnnouncementId, AudienceKind};
use diesel::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReceiptKind {
    /// The client displayed it (`ack`).
    Delivered,
    /// The user read it (implies delivered).
    Read,
    /// The user confirmed it: "I have read and understood" (implies read).
    Confirmed,
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

/// What a batch changed: which (announcement, user) pairs are now read, and
/// which of them confirmed (each confirmed pair is in `read` too).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub rejected: usize,
    pub read: Vec<(AnnouncementId, String)>,
    pub confirmed: Vec<(AnnouncementId, String)>,
}

/// Writes a batch of receipts in one transaction, ignoring receipts for
/// announcements the user is not in the audience of, or that are not
/// published or have expired (no longer in anyone's inbox, so a receipt
/// for one is as unknown as for an id that never existed). Idempotent: the
/// first delivered_at, read_at and confirmed_at win. With webhooks on, what
/// the batch changed (who is newly delivered, read, confirmed) is written to
/// the outbox as `receipts` events in the same transaction.
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

    let reported = crate::db::write_transaction(conn, |conn| {
        let mut reported = 0;
        for (&id, users) in &wanted {
            let changes = if outbox.is_enabled() {
                outbox::lock(conn, id)?;
                changes(conn, id, users, at)?
            } else {
                ReceiptChanges::default()
            };
            let written = write_one(conn, id, users, at)?;
            let pairs = |users: Vec<&str>| -> Vec<(AnnouncementId, String)> {
                users.into_iter().map(|u| (id, u.to_string())).collect()
            };
            outcome.read.extend(pairs(written.read));
            outcome.confirmed.extend(pairs(written.confirmed));
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

/// The state of one receipt row before a batch: delivered, read and
/// confirmed times.
type Before = (Option<i64>, Option<i64>, Option<i64>);

/// What writing `users` (user → strongest kind) will change for one
/// announcement: who is not yet delivered, read or confirmed. Read under
/// the announcement's outbox lock, so two nodes' batches do not both
/// report the same user.
fn changes(
    conn: &mut DbConn,
    id: AnnouncementId,
    users: &BTreeMap<&str, ReceiptKind>,
    at: i64,
) -> Result<ReceiptChanges, diesel::result::Error> {
    let names: Vec<&str> = users.keys().copied().collect();
    let mut before: HashMap<String, Before> = HashMap::new();
    for chunk in names.chunks(1_000) {
        let rows: Vec<(String, Before)> = r::table
            .filter(r::announcement_id.eq(id.0))
            .filter(r::user_id.eq_any(chunk))
            .select((r::user_id, (r::delivered_at, r::read_at, r::confirmed_at)))
            .load(conn)?;
        before.extend(rows);
    }
    let mut changes = ReceiptChanges::default();
    for (&user, &kind) in users {
        let (delivered, read, confirmed) = before.get(user).copied().unwrap_or_default();
        if delivered.is_none() {
            changes.delivered.push((user.to_string(), at));
        }
        if kind >= ReceiptKind::Read && read.is_none() {
            changes.read.push((user.to_string(), at));
        }
        if kind >= ReceiptKind::Confirmed && confirmed.is_none() {
            changes.confirmed.push((user.to_string(), at));
        }
    }
    Ok(changes)
}

/// The users of one announcement whose read (or confirmation) a batch wrote.
struct Written<'u> {
    read: Vec<&'u str>,
    confirmed: Vec<&'u str>,
}

/// Writes one announcement's receipts from `users` (user → strongest kind):
/// inserts the rows that are missing, then sets delivered_at, read_at and
/// confirmed_at where they are still empty.
fn write_one<'u>(
    conn: &mut DbConn,
    id: AnnouncementId,
    users: &BTreeMap<&'u str, ReceiptKind>,
    at: i64,
) -> Result<Written<'u>, diesel::result::Error> {
    let rows: Vec<ReceiptRow> = users
        .iter()
        .map(|(user, kind)| ReceiptRow {
            announcement_id: id.0,
            user_id: user.to_string(),
            delivered_at: Some(at),
            read_at: (*kind >= ReceiptKind::Read).then_some(at),
            confirmed_at: (*kind == ReceiptKind::Confirmed).then_some(at),
            archived_at: None,
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        crate::insert_ignore!(conn, r::table, chunk)?;
    }
    let at_least = |least: ReceiptKind| -> Vec<&'u str> {
        users
            .iter()
            .filter(|(_, k)| **k >= least)
            .map(|(u, _)| *u)
            .collect()
    };
    let (all, read, confirmed) = (
        at_least(ReceiptKind::Delivered),
        at_least(ReceiptKind::Read),
        at_least(ReceiptKind::Confirmed),
    );
    let of = |chunk: &[&'u str]| {
        r::table
            .filter(r::announcement_id.eq(id.0))
            .filter(r::user_id.eq_any(chunk.to_vec()))
    };
    for chunk in all.chunks(1_000) {
        diesel::update(of(chunk).filter(r::delivered_at.is_null()))
            .set(r::delivered_at.eq(at))
            .execute(conn)?;
    }
    for chunk in read.chunks(1_000) {
        diesel::update(of(chunk).filter(r::read_at.is_null()))
            .set(r::read_at.eq(at))
            .execute(conn)?;
    }
    for chunk in confirmed.chunks(1_000) {
        diesel::update(of(chunk).filter(r::confirmed_at.is_null()))
            .set(r::confirmed_at.eq(at))
            .execute(conn)?;
    }
    Ok(Written { read, confirmed })
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
