//! Outbound webhooks: events written with the facts, signed, retried,
//! in order per announcement, surviving a SIGKILL, sent once by two nodes.

mod cluster;
mod events;
mod readme;
mod receiver;
mod restart;
mod retry;
mod runs;
mod throughput;

use crate::helpers::{spawn_app_with, TestApp};
use diesel::Connection;
use herald::db::outbox::{self, Outbox};
use herald::db::DbPool;
use herald::domain::webhook::OutboundEvent;
use herald::domain::AnnouncementId;
use herald::webhooks::sender::Sender;
use herald::webhooks::sign::WebhookSecret;
use receiver::{Receiver, SECRET};
use std::time::Duration;

/// How long a test waits for webhook traffic that should come.
pub const HOOK_WAIT: Duration = Duration::from_secs(15);

/// A herald posting to `receiver`, retrying after 50 ms (doubling).
pub async fn app_posting_to(receiver: &Receiver) -> TestApp {
    let url = receiver.url.clone();
    spawn_app_with(move |s| {
        s.webhook_urls = vec![url];
        s.webhook_secret = Some(SECRET.into());
        s.webhook_retry_base_ms = 50;
        s.webhook_timeout_ms = 2_000;
    })
    .await
}

/// Ids of the announcements the hits are about, with their event types,
/// in the order the receiver accepted them.
pub fn sequence_of(hits: &[receiver::Hit], announcement: i64) -> Vec<String> {
    hits.iter()
        .filter(|h| h.accepted() && h.announcement() == announcement)
        .map(receiver::Hit::kind)
        .collect()
}

/// Writes one `retracted` event about each of `ids` straight into the
/// outbox (an id given again gets its next event), 500 to a transaction.
pub fn enqueue_retractions(pool: &DbPool, outbox: &Outbox, ids: &[i64]) {
    let mut conn = pool.get().expect("connection");
    let now = herald::db::now_ms();
    for chunk in ids.chunks(500) {
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for &id in chunk {
                let id = AnnouncementId(id);
                outbox::lock(conn, id)?;
                outbox::enqueue(conn, outbox, id, &[OutboundEvent::retracted(id, now)], now)?;
            }
            Ok(())
        })
        .expect("fill the outbox");
    }
}

/// A sender that a test drives round by round (`step`).
pub fn sender(pool: &DbPool, outbox: Outbox, retry_base_ms: u64, timeout: Duration) -> Sender {
    let secret = WebhookSecret::parse(SECRET).expect("secret");
    Sender::new(pool.clone(), outbox, secret, retry_base_ms, timeout).expect("sender")
}
