//! A busy announcement: a round sends a run of its consecutive events in
//! order, and a refusal stops the run there, the later events waiting
//! behind the retry.

use super::receiver::{assert_signed, Receiver};
use super::{enqueue_retractions, sender};
use crate::helpers::spawn_app;
use diesel::prelude::*;
use herald::db::outbox::Outbox;
use herald::db::schema::webhook_outbox as o;
use std::time::Duration;

const EVENTS: usize = 40;

both_backends!(a_round_sends_a_run_of_one_announcements_events_in_order);
async fn a_round_sends_a_run_of_one_announcements_events_in_order() {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    let outbox = Outbox::new(vec![receiver.url.clone()]);
    enqueue_retractions(&app.state.pool, &outbox, &[7; EVENTS]);
    let mut conn = app.state.pool.get().expect("connection");
    let in_order: Vec<String> = o::table
        .order(o::seq)
        .select(o::event_id)
        .load(&mut *conn)
        .expect("event ids");
    let sender = sender(&app.state.pool, outbox, 20, Duration::from_secs(5));

    let first = sender.step().await.expect("round");
    assert!(first > 1, "one round sent {first} of the events");
    receiver.refuse_first(1);
    let refused = sender.step().await.expect("round");
    assert_eq!(refused, 1, "the refusal ends the run");
    let attempts: Vec<i64> = o::table
        .filter(o::status.eq("pending"))
        .order(o::seq)
        .select(o::attempts)
        .load(&mut *conn)
        .expect("attempts");
    assert_eq!(attempts[0], 1, "the refused one counts its attempt");
    assert!(
        attempts[1..].iter().all(|a| *a == 0),
        "the rest were handed back unsent: {attempts:?}"
    );
    let deadline = tokio::time::Instant::now() + super::HOOK_WAIT;
    while receiver.hits().iter().filter(|h| h.accepted()).count() < EVENTS {
        assert!(tokio::time::Instant::now() < deadline, "not all sent");
        if sender.step().await.expect("round") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let hits = receiver.hits();
    for hit in &hits {
        assert_signed(hit);
    }
    let accepted: Vec<String> = hits
        .iter()
        .filter(|h| h.accepted())
        .map(|h| h.id.clone())
        .collect();
    assert_eq!(accepted, in_order, "in order, each once");
    let refused_at = hits.iter().position(|h| !h.accepted()).expect("refused");
    assert_eq!(
        hits[refused_at].id,
        hits[refused_at + 1].id,
        "retried first"
    );
}
