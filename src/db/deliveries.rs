//! The outbox as the admin and the metrics see it: deliveries listed by
//! status, a manual retry, the pending count and age, and pruning of the
//! finished ones.

use super::schema::webhook_outbox as o;
use super::{DbConn, DbError};
use crate::domain::webhook::{DeliveryStatus, GIVE_UP_AFTER_MS};
use crate::domain::AnnouncementId;
use diesel::prelude::*;

type Backend = <DbConn as Connection>::Backend;

/// Delivered rows are kept this long, failed ones (which a retry may still
/// want) four times as long.
pub const KEEP_DELIVERED_MS: i64 = 7 * 24 * 3_600_000;

/// One delivery as the admin API lists it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = o)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub announcement_id: i64,
    pub seq: i64,
    pub endpoint: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

impl Delivery {
    pub fn announcement(&self) -> AnnouncementId {
        AnnouncementId(self.announcement_id)
    }
}

/// Newest first; `before` is an id from the previous page.
pub fn list(
    conn: &mut DbConn,
    status: Option<DeliveryStatus>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    let mut query = o::table
        .select(Delivery::as_select())
        .order(o::id.desc())
        .limit(limit)
        .into_boxed::<Backend>();
    if let Some(status) = status {
        query = query.filter(o::status.eq(status.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(o::id.lt(before));
    }
    Ok(query.load(conn)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Pending again (or still), due now, with a fresh schedule.
    Scheduled,
    AlreadyDelivered,
    NotFound,
}

/// Makes a failed or pending delivery due now, on a fresh schedule: its
/// attempts start again from 0 (a failure right after waits the base delay,
/// not the hour the old count had reached) and it has a new day. An
/// operator retries once the receiver is fixed, and should see the outcome
/// soon. Its event id and body stay the same: to the receiver it is one
/// more attempt at the same event.
pub fn retry(conn: &mut DbConn, id: i64, now: i64) -> Result<RetryOutcome, DbError> {
    let changed = diesel::update(
        o::table
            .filter(o::id.eq(id))
            .filter(o::status.ne(DeliveryStatus::Delivered.as_str())),
    )
    .set((
        o::status.eq(DeliveryStatus::Pending.as_str()),
        o::next_attempt_at.eq(now),
        o::give_up_at.eq(now + GIVE_UP_AFTER_MS),
        o::attempts.eq(0i64),
    ))
    .execute(conn)?;
    if changed == 1 {
        return Ok(RetryOutcome::Scheduled);
    }
    let found: i64 = o::table.filter(o::id.eq(id)).count().get_result(conn)?;
    Ok(if found > 0 {
        RetryOutcome::AlreadyDelivered
    } else {
        RetryOutcome::NotFound
    })
}

/// Pending deliveries, and when the oldest of them was written.
pub fn pending(conn: &mut DbConn) -> Result<(i64, Option<i64>), DbError> {
    let pending = o::table.filter(o::status.eq(DeliveryStatus::Pending.as_str()));
    let count: i64 = pending.count().get_result(conn)?;
    let oldest: Option<i64> = pending
        .select(diesel::dsl::min(o::created_at))
        .first(conn)?;
    Ok((count, oldest))
}

/// Deletes delivered rows older than `KEEP_DELIVERED_MS` and failed ones
/// older than four times that; answers how many.
pub fn prune(conn: &mut DbConn, now: i64) -> Result<usize, DbError> {
    let delivered = diesel::delete(
        o::table
            .filter(o::status.eq(DeliveryStatus::Delivered.as_str()))
            .filter(o::created_at.lt(now - KEEP_DELIVERED_MS)),
    )
    .execute(conn)?;
    let failed = diesel::delete(
        o::table
            .filter(o::status.eq(DeliveryStatus::Failed.as_str()))
            .filter(o::created_at.lt(now - 4 * KEEP_DELIVERED_MS)),
    )
    .execute(conn)?;
    Ok(delivered + failed)
}
