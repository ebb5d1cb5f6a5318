//! Outbox throughput: how many events per second one node's sender gets
//! accepted by a local receiver. A measurement, not a test: run by hand,
//!
//! ```sh
//! cargo test --release --test api webhooks::throughput -- --ignored --nocapture
//! ```
//!
//! (`HERALD_WEBHOOK_EVENTS`, default 5 000, sets the count; the PostgreSQL
//! run needs `HERALD_TEST_POSTGRES_URL`). Ignored because its number
//! depends on the machine, and timing is no pass/fail criterion.

use super::receiver::{Receiver, SECRET};
use crate::helpers::{spawn_app, use_backend, TestBackend};
use diesel::Connection;
use herald::db::outbox::{self, Outbox};
use herald::domain::webhook::OutboundEvent;
use herald::domain::AnnouncementId;
use herald::webhooks::sender::Sender;
use herald::webhooks::sign::WebhookSecret;
use std::time::{Duration, Instant};

fn events() -> usize {
    std::env::var("HERALD_WEBHOOK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// Writes `count` events into the outbox: one per announcement (`spread`),
/// or all about one announcement, which go out one at a time in order.
fn fill(pool: &herald::db::DbPool, outbox: &Outbox, count: usize, spread: bool) {
    let mut pooled = pool.get().expect("connection");
    let conn: &mut herald::db::DbConn = &mut pooled;
    let now = herald::db::now_ms();
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for &i in chunk {
                let id = AnnouncementId(if spread { 1_000_000 + i as i64 } else { 1 });
                outbox::lock(conn, id)?;
                outbox::enqueue(conn, outbox, id, &[OutboundEvent::retracted(id, now)], now)?;
            }
            Ok(())
        })
        .expect("fill the outbox");
    }
}

async fn measure(backend: &str, spread: bool, count: usize) {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    let outbox = Outbox::new(vec![receiver.url.clone()]);
    fill(&app.state.pool, &outbox, count, spread);
    let sender = Sender::new(
        app.state.pool.clone(),
        outbox,
        WebhookSecret::parse(SECRET).expect("secret"),
        1_000,
        Duration::from_secs(10),
    )
    .expect("sender");
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
