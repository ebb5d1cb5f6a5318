//! The sender: one per node, started with the server when webhook URLs are
//! configured. Each round reports the expiries that have come, claims runs
//! of due deliveries (an announcement's next events to one endpoint; a
//! lease makes exactly one node send each attempt), posts them signed, each
//! run in order, and records how each attempt ended. A node that dies
//! mid-round loses nothing: its leases run out and any node takes the rows.

use super::sign::WebhookSecret;
use crate::db::outbox::{self, Attempt, Claimed, Outbox};
use crate::db::{self, DbError, DbPool};
use crate::domain::webhook::next_attempt;
use crate::metrics::METRICS;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// Runs one round claims at most.
const BATCH: i64 = 100;
/// Requests one round has in flight at most (one per run being sent).
const CONCURRENCY: usize = 32;
/// Consecutive events of one announcement to one endpoint a run takes at
/// most, posted one after the other, so that a busy announcement (a
/// `receipts` event per flush) is not held to one event per round.
const RUN: i64 = 16;
/// What a lease keeps beyond two timeouts: time for the claim to return
/// before the first POSTs, and for the round to record the answers after
/// its last POST has ended.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Of that, what is kept for recording.
const RECORD_MARGIN: Duration = Duration::from_secs(5);
/// Expiries one round reports at most.
const EXPIRIES_PER_ROUND: i64 = 100;
/// How often the pending gauges are refreshed and old rows pruned.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// Response bytes read (so the connection can be reused) before giving up on it.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How a run ended: the attempts made (id, outcome), and the ids not sent.
type RunEnd = (Vec<(i64, Attempt)>, Vec<i64>);

/// Posts the outbox's events. Clone it to drive rounds by hand (`step`).
#[derive(Clone)]
pub struct Sender {
    pool: DbPool,
    outbox: Outbox,
    secret: WebhookSecret,
    client: reqwest::Client,
    retry_base_ms: u64,
    timeout: Duration,
    lease_ms: i64,
    nap: Duration,
}

impl Sender {
    /// `timeout` bounds each POST, connection included, answer read; the
    /// lease on a claimed delivery is twice that and `LEASE_MARGIN` more.
    /// A round posts a row only if that POST ends, answered or timed out,
    /// `RECORD_MARGIN` before the lease does (runs waiting for a free slot
    /// behind a slow receiver may not get one in time); the rows it does not
    /// reach go back unsent. So a lease holds until its row is sent and
    /// recorded, and only a sender that is gone (or stalled) loses rows.
    pub fn new(
        pool: DbPool,
        outbox: Outbox,
        secret: WebhookSecret,
        retry_base_ms: u64,
        timeout: Duration,
    ) -> Result<Sender, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        let lease_ms = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(2)
            .saturating_add(LEASE_MARGIN.as_millis() as i64);
        Ok(Sender {
            pool,
            outbox,
            secret,
            client,
            retry_base_ms,
            timeout,
            lease_ms,
            // Retries come due at multiples of the base: look at least as often.
            nap: Duration::from_millis(retry_base_ms.clamp(10, 1_000)),
        })
    }

    /// Runs rounds on the current actix system until it stops.
    pub fn start(self) {
        actix_web::rt::spawn(async move { self.run().await });
    }

    async fn run(self) {
        let bell = self.outbox.bell();
        let mut housekept: Option<Instant> = None;
        loop {
            let attempted = match self.step().await {
                Ok(attempted) => attempted,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook round failed; trying again");
                    0
                }
            };
            if housekept.is_none_or(|at| at.elapsed() >= HOUSEKEEPING) {
                housekept = Some(Instant::now());
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(error = %e, "webhook housekeeping failed");
                }
            }
            if attempted == 0 {
                tokio::select! {
                    _ = bell.notified() => {},
                    _ = actix_web::rt::time::sleep(self.nap) => {},
                }
            }
        }
    }

    /// One round: report due expiries, claim, send, record. Answers how
    /// many attempts it made.
    pub async fn step(&self) -> Result<usize, DbError> {
        let outbox = self.outbox.clone();
        db::run(&self.pool, move |conn| {
            let now = db::now_ms();
            for (id, _) in outbox::expired(conn, now, EXPIRIES_PER_ROUND)? {
                outbox::report_expiry(conn, &outbox, id, now)?;
            }
            Ok(())
        })
        .await?;
        let token = format!("{:032x}", rand::random::<u128>());
        let (lease_ms, claim_token) = (self.lease_ms, token.clone());
        let claimed_at = Instant::now();
        let runs = db::run(&self.pool, move |conn| {
            let now = db::now_ms();
            outbox::claim(conn, &claim_token, now, lease_ms, BATCH, RUN)
        })
        .await?;
        if runs.is_empty() {
            return Ok(0);
        }
        let lease = Duration::from_millis(u64::try_from(self.lease_ms).unwrap_or(0));
        let last_start = (claimed_at + lease)
            .checked_sub(RECORD_MARGIN + self.timeout)
            .unwrap_or(claimed_at);
        let ended: Vec<RunEnd> = futures_util::stream::iter(runs)
            .map(|run| self.send_run(run, last_start))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let attempted = ended.iter().map(|(sent, _)| sent.len()).sum();
        db::run(&self.pool, move |conn| {
            db::write_transaction::<_, DbError, _>(conn, |conn| {
                let now = db::now_ms();
                for (sent, unsent) in &ended {
                    for (id, attempt) in sent {
                        outbox::finish(conn, *id, &token, now, attempt)?;
                    }
                    outbox::release(conn, &token, unsent)?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(attempted)
    }

    /// Posts a run's deliveries in order until one is refused (it waits for
    /// its retry, and the later ones behind it) or `last_start` has passed.
    /// Answers the attempts and the ids left unsent.
    async fn send_run(&self, run: Vec<Claimed>, last_start: Instant) -> RunEnd {
        let mut sent = Vec::with_capacity(run.len());
        let mut rows = run.into_iter();
        for delivery in rows.by_ref() {
            if Instant::now() > last_start {
                return (
                    sent,
                    std::iter::once(delivery.id)
                        .chain(rows.map(|d| d.id))
                        .collect(),
                );
            }
            let attempt = self.attempt(&delivery).await;
            let delivered = attempt.delivered();
            sent.push((delivery.id, attempt));
            if !delivered {
                break;
            }
        }
        (sent, rows.map(|d| d.id).collect())
    }

    /// One signed POST of one delivery, and what comes of it.
    async fn attempt(&self, delivery: &Claimed) -> Attempt {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self
            .secret
            .sign(&delivery.event_id, timestamp, &delivery.payload);
        let sent = self
            .client
            .post(&delivery.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        let (status, error) = match sent {
            Ok(mut response) => {
                let status = response.status();
                drain(&mut response).await;
                if status.is_success() {
                    METRICS.webhooks_sent.inc();
                    return Attempt::Delivered {
                        status: status.as_u16(),
                    };
                }
                (
                    Some(status.as_u16()),
                    format!("the receiver answered {status}"),
                )
            }
            Err(e) => (None, describe(e)),
        };
        METRICS.webhook_attempt_errors.inc();
        let retry_at = next_attempt(
            self.retry_base_ms,
            delivery.attempts,
            delivery.give_up_at,
            db::now_ms(),
        );
        let endpoint = db::redacted(&delivery.endpoint);
        match retry_at {
            Some(_) => {
                tracing::debug!(event_id = %delivery.event_id, %endpoint, attempts = delivery.attempts, %error, "webhook attempt failed; will retry")
            }
            None => {
                METRICS.webhooks_failed.inc();
                tracing::warn!(event_id = %delivery.event_id, %endpoint, attempts = delivery.attempts, %error, "webhook delivery failed for a day; given up (POST /api/webhooks/deliveries/{{id}}/retry sends it again)");
            }
        }
        Attempt::Refused {
            status,
            error,
            retry_at,
        }
    }

    /// Refreshes the pending gauges and prunes finished rows.
    async fn housekeeping(&self) -> Result<(), DbError> {
        let (pending, oldest, pruned) = db::run(&self.pool, |conn| {
            let now = db::now_ms();
            let (pending, oldest) = db::deliveries::pending(conn)?;
            let pruned = db::deliveries::prune(conn, now)?;
            Ok((pending, oldest.map(|at| (now - at).max(0) / 1_000), pruned))
        })
        .await?;
        METRICS.webhooks_pending.set(pending);
        METRICS.webhooks_oldest_pending.set(oldest.unwrap_or(0));
        if pruned > 0 {
            tracing::info!(pruned, "pruned finished webhook deliveries");
        }
        Ok(())
    }
}

/// Reads (and drops) up to `DRAIN_LIMIT` bytes of the answer.
async fn drain(response: &mut reqwest::Response) {
    let mut read = 0;
    while read < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

/// The error and its causes, without the URL (which may carry credentials).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return "no answer within the webhook timeout".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
