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
