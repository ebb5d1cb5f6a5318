//! The webhook outbox. An event is written in the transaction of the fact
//! it reports (the publish claim, the retraction, a receipt batch, the
//! expiry sweep), one row per endpoint, so that it exists if and only if
//! the fact committed. Senders on any node claim due rows with a lease:
//! exactly one sends each attempt, and a sender that dies leaves rows whose
//! lease runs out for another to take. Nothing is written when no endpoint
//! is configured.

use super::schema::{webhook_announcements as wa, webhook_outbox as o};
use super::{DbConn, DbError};
use crate::domain::webhook::{OutboundEvent, GIVE_UP_AFTER_MS};
use crate::domain::AnnouncementId;
use diesel::prelude::*;
use std::sync::Arc;
use tokio::sync::Notify;

mod claim;
pub use claim::{claim, finish, release, Attempt, Claimed};

const PENDING: &str = "pending";

/// Where events go, and the bell the local sender listens to. Cheap to
/// clone; `Outbox::disabled()` writes nothing.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    endpoints: Arc<[String]>,
    written: Arc<Notify>,
}

impl Outbox {
    pub fn new(endpoints: Vec<String>) -> Outbox {
        Outbox {
            endpoints: endpoints.into(),
            written: Arc::default(),
        }
    }

    pub fn disabled() -> Outbox {
        Outbox::default()
    }

    pub fn is_enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Rings after a commit that wrote events, so this node's sender does
    /// not wait for its next poll (a permit is kept if it is busy).
    pub fn ring(&self) {
        self.written.notify_one();
    }

    /// What the sender waits on.
    pub fn bell(&self) -> Arc<Notify> {
        self.written.clone()
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = o)]
struct OutboxInsertForm {
    event_id: String,
    event_type: &'static str,
    announcement_id: i64,
    seq: i64,
    endpoint: String,
    payload: String,
    status: &'static str,
    created_at: i64,
    give_up_at: i64,
    next_attempt_at: i64,
}

/// Takes the announcement's event lock: its `webhook_announcements` row,
/// created on first use. Every event of one announcement is written under
/// this lock, so their numbers follow commit order (PostgreSQL holds the
/// row lock to commit; SQLite has one writer). Taken before reading what a
/// receipt batch changes, so that two nodes' batches cannot both report a
/// user as newly delivered.
pub fn lock(conn: &mut DbConn, id: AnnouncementId) -> QueryResult<()> {
    let row = (
        wa::announcement_id.eq(id.0),
        wa::last_seq.eq(0i64),
        wa::expiry_due.eq(None::<i64>),
    );
    match conn {
        DbConn::Pg(c) => diesel::insert_into(wa::table)
            .values(row)
            .on_conflict(wa::announcement_id)
            .do_update()
            .set(wa::last_seq.eq(wa::last_seq))
            .execute(c)?,
        DbConn::Sqlite(c) => diesel::insert_into(wa::table)
            .values(row)
            .on_conflict(wa::announcement_id)
            .do_update()
            .set(wa::last_seq.eq(wa::last_seq))
            .execute(c)?,
    };
    Ok(())
}

/// When the expiry sweep should report the announcement (`None`: never,
/// as after a retraction). Call under `lock`.
pub fn set_expiry(conn: &mut DbConn, id: AnnouncementId, due: Option<i64>) -> QueryResult<()> {
    diesel::update(wa::table.find(id.0))
        .set(wa::expiry_due.eq(due))
        .execute(conn)?;
    Ok(())
}

/// Writes `events` of one announcement, in this order, for every endpoint;
/// `at` is when the fact happened. Call inside the fact's transaction,
/// after `lock`. Answers how many rows it wrote.
pub fn enqueue(
    conn: &mut DbConn,
    outbox: &Outbox,
    id: AnnouncementId,
    events: &[OutboundEvent],
    at: i64,
) -> QueryResult<usize> {
    if !outbox.is_enabled() || events.is_empty() {
        return Ok(0);
    }
    let count = events.len() as i64;
    diesel::update(wa::table.find(id.0))
        .set(wa::last_seq.eq(wa::last_seq + count))
        .execute(conn)?;
    let last: i64 = wa::table.find(id.0).select(wa::last_seq).first(conn)?;
    let mut rows = Vec::with_capacity(events.len() * outbox.endpoints.len());
    for (seq, event) in (last - count + 1..).zip(events) {
        let event_id = format!("msg_{:032x}", rand::random::<u128>());
        let payload = event.body(at);
        for endpoint in outbox.endpoints.iter() {
            rows.push(OutboxInsertForm {
                event_id: event_id.clone(),
                event_type: event.kind.as_str(),
                announcement_id: id.0,
                seq,
                endpoint: endpoint.clone(),
                payload: payload.clone(),
                status: PENDING,
                created_at: at,
                give_up_at: at + GIVE_UP_AFTER_MS,
                next_attempt_at: at,
            });
        }
    }
    let mut written = 0;
    for chunk in rows.chunks(500) {
        written += crate::insert_rows!(conn, o::table, chunk)?;
    }
    Ok(written)
}

/// Announcements whose expiry is due to be reported, oldest first.
pub fn expired(
    conn: &mut DbConn,
    now: i64,
    limit: i64,
) -> Result<Vec<(AnnouncementId, i64)>, DbError> {
    let rows: Vec<(i64, Option<i64>)> = wa::table
        .filter(wa::expiry_due.le(now))
        .order(wa::expiry_due)
        .select((wa::announcement_id, wa::expiry_due))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, due)| Some((AnnouncementId(id), due?)))
        .collect())
}

/// Reports one announcement's expiry, exactly once across nodes: the event
/// is written only by the transaction whose conditional UPDATE cleared
/// `expiry_due` (a concurrent one waits for the row, then finds it clear).
pub fn report_expiry(
    conn: &mut DbConn,
    outbox: &Outbox,
    id: AnnouncementId,
    now: i64,
) -> Result<bool, DbError> {
    let reported = crate::db::write_transaction(conn, |conn| {
        let due: Option<Option<i64>> = wa::table
            .find(id.0)
            .select(wa::expiry_due)
            .first(conn)
            .optional()?;
        let Some(Some(expires_at)) = due else {
            return Ok::<_, diesel::result::Error>(false);
        };
        let won = diesel::update(
            wa::table
                .filter(wa::announcement_id.eq(id.0))
                .filter(wa::expiry_due.le(now)),
        )
        .set(wa::expiry_due.eq(None::<i64>))
        .execute(conn)?;
        if won != 1 {
            return Ok(false);
        }
        enqueue(
            conn,
            outbox,
            id,
            &[OutboundEvent::expired(id, expires_at)],
            now,
        )?;
        Ok(true)
    })?;
    Ok(reported)
}
