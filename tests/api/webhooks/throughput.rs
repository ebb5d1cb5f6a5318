//! Outbox throughput: how many events per second one node's sender gets
//! accepted by a local receiver. A measurement, not a test: run by hand,
//!
//! ```sh
//! cargo test --release --test api webhooks::throughput -- --ignored --nocapture --test-threads 1
//! ```
//!
//! (`HERALD_WEBHOOK_EVENTS`, default 5 000, sets the count; the PostgreSQL
//! run needs `HERALD_TEST_POSTGRES_URL`). Ignored because its number
//! depends on the machine, and timing is no pass/fail criterion.

use super::receiver::Receiver;
use super::{enqueue_retractions, sender};
use crate::helpers::{spawn_app, use_backend, TestBackend};
use herald::db::outbox::Outbox;
use std::time::{Duration, Instant};

fn events() -> usize {
    std::env::var("HERALD_WEBHOOK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

async fn measure(backend: &str, spread: bool, count: usize) {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    let outbox = Outbox::new(vec![receiver.url.clone()]);
    // One event per announcement, or all about one announcement (which go
    // out in order, a run of them per round).
    let ids: Vec<i64> = (0..count as i64)
        .map(|i| if spread { 1_000_000 + i } else { 1 })
        .collect();
    enqueue_retractions(&app.state.pool, &outbox, &ids);
    let sender = sender(&app.state.pool, outbox, 1_000, Duration::from_secs(10));
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let attempted = sender.step().await.expect("round");
        assert!(
            attempted > 0 || started.elapsed() < Duration::from_secs(600),
            "stuck at {sent}"
        );
        sent += attempted;
    }
    let elapsed = started.elapsed();
    let accepted = receiver.hits().iter().filter(|h| h.accepted()).count();
    assert_eq!(accepted, count);
    let shape = if spread {
        "one per announcement"
    } else {
        "all about one announcement"
    };
    eprintln!(
        "{backend}: {count} events ({shape}) delivered in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

#[actix_web::test]
#[ignore = "a measurement, run by hand (see the module doc)"]
async fn outbox_throughput_sqlite() {
    use_backend(TestBackend::Sqlite);
    measure("sqlite", true, events()).await;
    measure("sqlite", false, events() / 10).await;
}

#[actix_web::test]
#[ignore = "a measurement, run by hand (see the module doc)"]
async fn outbox_throughput_postgres() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    use_backend(TestBackend::Postgres);
    measure("postgres", true, events()).await;
    measure("postgres", false, events() / 10).await;
}
