//! How senders take deliveries from the outbox: runs of one announcement's
//! consecutive events to one endpoint, leased to one sender, and how an
//! attempt's end is recorded or an unsent delivery handed back.

use super::PENDING;
use crate::db::schema::webhook_outbox as o;
use crate::db::{DbConn, DbError};
use crate::domain::webhook::DeliveryStatus;
use diesel::prelude::*;
use std::collections::HashMap;

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

/// The first pending delivery of an announcement to an endpoint, and
/// whether more pending ones follow it.
#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    announcement_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    endpoint: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    more: bool,
}

/// Claims up to `runs` runs of at most `run_len` deliveries for `lease_ms`,
/// marked with `token`; answers each run in the order its rows must be
/// sent. A run starts at a due delivery that no live lease holds and that
/// no earlier pending event of its announcement to its endpoint waits
/// before (events of one announcement go out in order), and goes on with
/// the next pending events of that announcement and endpoint while they
/// are due and free, so that a busy announcement is not held to one event
/// per round.
///
/// The UPDATE re-checks the lease, so of two senders on two nodes that
/// picked the same rows only one wins each (PostgreSQL re-evaluates the
/// WHERE on the row version it waited for, and finds the lease taken, or
/// the row delivered or waiting for its next attempt; SQLite has one
/// writer). A run is cut at its first row this sender did not win, and the
/// rows after the cut are handed back unsent: a later row must not go out
/// while another sender may still be sending an earlier one.
///
/// "First pending" is `seq = (SELECT MIN(seq) ...)`, not `NOT EXISTS (an
/// earlier pending seq)`: over the partial index of pending rows by
/// (announcement, endpoint, seq) it is one probe per due row on both
/// backends, where PostgreSQL planned the NOT EXISTS as a hash anti join
/// comparing every pending row of an announcement with every other
/// (quadratic: 0.6 s per round for 5 000 pending events of one
/// announcement, 48 ms this way for 10 000). Rows waiting behind an earlier
/// event are still visited once per round; runs drain them 16 at a time.
pub fn claim(
    conn: &mut DbConn,
    token: &str,
    now: i64,
    lease_ms: i64,
    runs: i64,
    run_len: i64,
) -> Result<Vec<Vec<Claimed>>, DbError> {
    // Integers only are formatted in; there is nothing to bind.
    let heads = diesel::sql_query(format!(
        "SELECT o.id, o.announcement_id, o.endpoint, o.seq, \
         EXISTS (SELECT 1 FROM webhook_outbox n \
             WHERE n.announcement_id = o.announcement_id AND n.endpoint = o.endpoint \
             AND n.status = 'pending' AND n.seq > o.seq) AS more \
         FROM webhook_outbox o \
         WHERE o.status = 'pending' AND o.next_attempt_at <= {now} \
         AND (o.lease_until IS NULL OR o.lease_until <= {now}) \
         AND o.seq = (SELECT MIN(e.seq) FROM webhook_outbox e \
             WHERE e.announcement_id = o.announcement_id AND e.endpoint = o.endpoint \
             AND e.status = 'pending') \
         ORDER BY o.next_attempt_at, o.id LIMIT {runs}"
    ));
    let heads: Vec<Head> = match conn {
        DbConn::Pg(c) => heads.load(c)?,
        DbConn::Sqlite(c) => heads.load(c)?,
    };
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut plan = Vec::with_capacity(heads.len());
    for head in heads {
        let mut run = vec![head.id];
        if head.more && run_len > 1 {
            run.extend(followers(conn, &head, now, run_len - 1)?);
        }
        plan.push(run);
    }
    let ids: Vec<i64> = plan.iter().flatten().copied().collect();
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
    let mut won: HashMap<i64, Claimed> = o::table
        .filter(o::claim_token.eq(token))
        .filter(o::status.eq(PENDING))
        .select(Claimed::as_select())
        .load(conn)?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut runs = Vec::with_capacity(plan.len());
    for run in plan {
        let claimed: Vec<Claimed> = run.iter().map_while(|id| won.remove(id)).collect();
        if !claimed.is_empty() {
            runs.push(claimed);
        }
    }
    let cut: Vec<i64> = won.into_keys().collect();
    release(conn, token, &cut)?;
    Ok(runs)
}

/// The pending deliveries after `head` (same announcement and endpoint),
/// in order, as long as they are due and no lease holds them.
fn followers(conn: &mut DbConn, head: &Head, now: i64, limit: i64) -> QueryResult<Vec<i64>> {
    let next: Vec<(i64, i64, Option<i64>)> = o::table
        .filter(o::announcement_id.eq(head.announcement_id))
        .filter(o::endpoint.eq(&head.endpoint))
        .filter(o::status.eq(PENDING))
        .filter(o::seq.gt(head.seq))
        .order(o::seq)
        .limit(limit)
        .select((o::id, o::next_attempt_at, o::lease_until))
        .load(conn)?;
    Ok(next
        .into_iter()
        .map_while(|(id, due, lease)| (due <= now && lease.is_none_or(|l| l <= now)).then_some(id))
        .collect())
}

/// Hands claimed deliveries back unsent: free for the next round at once,
/// the claim's attempt not counted.
pub fn release(conn: &mut DbConn, token: &str, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::update(
        o::table
            .filter(o::id.eq_any(ids))
            .filter(o::claim_token.eq(token))
            .filter(o::status.eq(PENDING)),
    )
    .set((
        o::lease_until.eq(None::<i64>),
        o::claim_token.eq(None::<String>),
        o::attempts.eq(o::attempts - 1),
    ))
    .execute(conn)
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

impl Attempt {
    pub fn delivered(&self) -> bool {
        matches!(self, Attempt::Delivered { .. })
    }
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
