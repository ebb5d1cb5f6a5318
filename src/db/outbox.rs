//! The webhook outbox. An event is written in the transaction of the fact
//! it reports (the publish claim, the retraction, a receipt batch, the
//! expiry sweep), one row per endpoint, so that it exists if and only if
//! the fact committed. Senders on any node claim due rows with a lease:
//! exactly one sends each attempt, and a sender that dies leaves rows whose
//! lease runs out for another to take. Nothing is written when no endpoint
//! is configured.

use super::schema::{webhook_announcements as wa, webhook_outbox as o};
use super::{DbConn, DbError};
use crate::domain::webhook::{DeliveryStatus, OutboundEvent, GIVE_UP_AFTER_MS};
use crate::domain::AnnouncementId;
use diesel::prelude::*;
use std::sync::Arc;
use tokio::sync::Notify;

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

/// One delivery a sender claimed.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = o)]
pub struct Claimed {
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    pub payload: String,
    pub attempts: i64,
    pub give_up_at: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Claims up to `limit` due deliveries for `lease_ms`, marked with `token`.
/// A delivery is due when its time has come, no live lease holds it, and no
/// earlier event of the same announcement to the same endpoint is still
/// pending (events of one announcement go out in order). The UPDATE
/// re-checks the lease, so of two senders on two nodes that picked the same
/// rows only one wins each (PostgreSQL re-evaluates the WHERE on the row
/// version it waited for, and finds the lease taken, or the row delivered or
/// waiting for its next attempt; SQLite has one writer).
pub fn claim(
    conn: &mut DbConn,
    token: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    // Integers only are formatted in; there is nothing to bind.
    let candidates = diesel::sql_query(format!(
        "SELECT o.id FROM webhook_outbox o \
         WHERE o.status = 'pending' AND o.next_attempt_at <= {now} \
         AND (o.lease_until IS NULL OR o.lease_until <= {now}) \
         AND NOT EXISTS (SELECT 1 FROM webhook_outbox e \
             WHERE e.announcement_id = o.announcement_id AND e.endpoint = o.endpoint \
             AND e.status = 'pending' AND e.seq < o.seq) \
         ORDER BY o.next_attempt_at, o.id LIMIT {limit}"
    ));
    let ids: Vec<IdRow> = match conn {
        DbConn::Pg(c) => candidates.load(c)?,
        DbConn::Sqlite(c) => candidates.load(c)?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = ids.into_iter().map(|r| r.id).collect();
    diesel::update(
        o::table
            .filter(o::id.eq_any(&ids))
            .filter(o::status.eq(PENDING))
            .filter(o::next_attempt_at.le(now))
            .filter(
                o::lease_until
                    .is_null()
                    .or(o::lease_until.assume_not_null().le(now)),
            ),
    )
    .set((
        o::lease_until.eq(now + lease_ms),
        o::claim_token.eq(token),
        o::attempts.eq(o::attempts + 1),
        o::last_attempt_at.eq(now),
    ))
    .execute(conn)?;
    Ok(o::table
        .filter(o::claim_token.eq(token))
        .filter(o::status.eq(PENDING))
        .order(o::id)
        .select(Claimed::as_select())
        .load(conn)?)
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx, with the status.
    Delivered { status: u16 },
    /// Anything else; tried again at `retry_at`, or failed when `None`.
    Refused {
        status: Option<u16>,
        error: String,
        retry_at: Option<i64>,
    },
}

/// Records an attempt's end, if `token` still holds the delivery (a sender
/// whose lease ran out while it waited must not overwrite the next one's).
pub fn finish(
    conn: &mut DbConn,
    id: i64,
    token: &str,
    now: i64,
    attempt: &Attempt,
) -> QueryResult<bool> {
    let mine = o::table
        .filter(o::id.eq(id))
        .filter(o::claim_token.eq(token))
        .filter(o::status.eq(PENDING));
    let changed = match attempt {
        Attempt::Delivered { status } => diesel::update(mine)
            .set((
                o::status.eq(DeliveryStatus::Delivered.as_str()),
                o::delivered_at.eq(now),
                o::last_status.eq(i64::from(*status)),
                o::last_error.eq(None::<String>),
                o::lease_until.eq(None::<i64>),
                o::claim_token.eq(None::<String>),
            ))
            .execute(conn)?,
        Attempt::Refused {
            status,
            error,
            retry_at,
        } => {
            let status_after = match retry_at {
                Some(_) => DeliveryStatus::Pending,
                None => DeliveryStatus::Failed,
            };
            diesel::update(mine)
                .set((
                    o::status.eq(status_after.as_str()),
                    o::next_attempt_at.eq(retry_at.unwrap_or(now)),
                    o::last_status.eq(status.map(i64::from)),
                    o::last_error.eq(error),
                    o::lease_until.eq(None::<i64>),
                    o::claim_token.eq(None::<String>),
                ))
                .execute(conn)?
        }
    };
    Ok(changed == 1)
}

/// When the next pending delivery is due (ignoring leases and order).
pub fn next_due(conn: &mut DbConn) -> Result<Option<i64>, DbError> {
    Ok(o::table
        .filter(o::status.eq(PENDING))
        .select(diesel::dsl::min(o::next_attempt_at))
        .first(conn)?)
}
