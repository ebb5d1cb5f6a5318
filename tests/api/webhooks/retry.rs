//! Refused deliveries: retried with the same event id until accepted, later
//! events of the announcement waiting behind; failed ones listed and sent
//! again by hand.

use super::receiver::{assert_signed, Receiver};
use super::{app_posting_to, sequence_of, HOOK_WAIT};
use crate::helpers::{metrics_text, spawn_app_with};
use diesel::prelude::*;
use herald::db::schema::webhook_outbox as o;
use serde_json::Value;
use std::time::Duration;

both_backends!(a_receiver_refusing_twice_gets_the_event_on_the_third_attempt);
/// The first two attempts get 500; the third is accepted: the same
/// webhook-id all three times, exactly one success, and the retraction
/// (written while the publication was still pending) only after it.
async fn a_receiver_refusing_twice_gets_the_event_on_the_third_attempt() {
    let receiver = Receiver::start();
    receiver.refuse_first(2);
    let app = app_posting_to(&receiver).await;
    let id = app.announce_all("Third time").await["id"]
        .as_i64()
        .expect("id");
    receiver
        .wait_until(HOOK_WAIT, |hits| !hits.is_empty())
        .await;
    let res = app.admin_delete(&format!("/api/announcements/{id}")).await;
    assert_eq!(res.status().as_u16(), 200);
    let hits = receiver.accepted(2, HOOK_WAIT).await;
    let all = receiver.hits();
    let published: Vec<_> = all
        .iter()
        .filter(|h| h.kind() == "announcement.published")
        .collect();
    assert_eq!(
        published.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [500, 500, 204],
        "{all:#?}"
    );
    assert!(
        published.iter().all(|h| h.id == published[0].id),
        "same webhook-id: {published:#?}"
    );
    assert!(
        published.iter().all(|h| h.body == published[0].body),
        "same body"
    );
    for hit in &all {
        assert_signed(hit);
    }
    assert_eq!(
        sequence_of(&hits, id),
        ["announcement.published", "announcement.retracted"]
    );
    let retracted_at = all
        .iter()
        .position(|h| h.kind() == "announcement.retracted")
        .expect("retracted");
    assert_eq!(
        retracted_at, 3,
        "the retraction went out after the third attempt: {all:#?}"
    );

    // The receiver saw the 2xx go out; herald records it a moment later.
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    let listed = loop {
        let res = app
            .admin_get("/api/webhooks/deliveries?status=delivered")
            .await;
        assert_eq!(res.status().as_u16(), 200);
        let listed: Value = res.json().await.expect("json");
        if listed["items"].as_array().is_some_and(|i| i.len() == 2) {
            break listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let items = listed["items"].as_array().expect("items");
    let first = items
        .iter()
        .find(|d| d["type"] == "announcement.published")
        .expect("published");
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["event_id"], published[0].id.as_str());
    assert_eq!(first["last_status"], 204);
    let text = metrics_text(&app).await;
    assert!(
        text.contains("herald_webhooks_sent_total"),
        "metrics list the sent count"
    );
    assert!(text.contains("herald_webhooks_oldest_pending_seconds"));
}

both_backends!(a_failed_delivery_is_listed_and_sent_again_by_hand);
/// A receiver that keeps refusing: once the day is over (made so here by
/// moving the deadline) the delivery is failed and listed; the admin's
/// retry sends it again with the same webhook-id. Only the admin may, and
/// a delivered one cannot be retried.
async fn a_failed_delivery_is_listed_and_sent_again_by_hand() {
    let receiver = Receiver::start();
    receiver.answer(503);
    let app = app_posting_to(&receiver).await;
    let id = app.announce_all("Refused").await["id"]
        .as_i64()
        .expect("id");
    receiver
        .wait_until(HOOK_WAIT, |hits| !hits.is_empty())
        .await;
    {
        let mut conn = app.state.pool.get().expect("connection");
        diesel::update(o::table.filter(o::announcement_id.eq(id)))
            .set(o::give_up_at.eq(0i64))
            .execute(&mut *conn)
            .expect("move the deadline");
    }
    let failed = loop {
        let listed: Value = app
            .admin_get("/api/webhooks/deliveries?status=failed")
            .await
            .json()
            .await
            .expect("json");
        if let Some(item) = listed["items"].as_array().and_then(|i| i.first()).cloned() {
            break item;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["last_status"], 503);
    assert!(failed["next_attempt_at"].is_null());
    let pending: Value = app
        .admin_get("/api/webhooks/deliveries?status=pending")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(pending["items"], serde_json::json!([]));
    let bad = app.admin_get("/api/webhooks/deliveries?status=lost").await;
    assert_eq!(bad.status().as_u16(), 400);
    let refused_before = receiver.hits().len();

    receiver.answer(200);
    let path = format!("/api/webhooks/deliveries/{}/retry", failed["id"]);
    let anonymous = app
        .http
        .post(format!("{}{path}", app.address))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status().as_u16(), 401);
    let retried = app.admin_post(&path, &Value::Null).await;
    assert_eq!(retried.status().as_u16(), 202);
    let hits = receiver.accepted(1, HOOK_WAIT).await;
    assert_eq!(hits[0].id, failed["event_id"].as_str().expect("event id"));
    assert_signed(&hits[0]);
    assert!(receiver.hits().len() > refused_before);
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    let delivered = loop {
        let listed: Value = app
            .admin_get("/api/webhooks/deliveries?status=delivered")
            .await
            .json()
            .await
            .expect("json");
        if listed["items"][0]["id"] == failed["id"] {
            break listed["items"][0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    // A manual retry starts a fresh schedule: its attempts count from 0,
    // so a failure after it waits the base delay again, not the hour.
    assert!(failed["attempts"].as_i64().is_some_and(|n| n >= 1));
    assert_eq!(delivered["attempts"], 1, "{delivered}");
    let again = app.admin_post(&path, &Value::Null).await;
    assert_eq!(again.status().as_u16(), 409);
    let missing = app
        .admin_post("/api/webhooks/deliveries/999999/retry", &Value::Null)
        .await;
    assert_eq!(missing.status().as_u16(), 404);
}

both_backends!(a_receiver_slower_than_the_timeout_gets_the_event_again_with_its_id);
/// The receiver holds the first request past --webhook-timeout-ms, then
/// answers it 204 (too late: herald has given up on it). herald retries
/// with the same webhook-id and records exactly one success.
async fn a_receiver_slower_than_the_timeout_gets_the_event_again_with_its_id() {
    let receiver = Receiver::start();
    receiver.delay_first(1, Duration::from_millis(3_000));
    let url = receiver.url.clone();
    let app = spawn_app_with(move |s| {
        s.webhook_urls = vec![url];
        s.webhook_secret = Some(super::receiver::SECRET.into());
        s.webhook_retry_base_ms = 50;
        // Long enough that an answer without the delay is never late,
        // even on a loaded machine.
        s.webhook_timeout_ms = 1_000;
    })
    .await;
    app.announce_all("Slow").await;
    let hits = receiver.wait_until(HOOK_WAIT, |hits| hits.len() >= 2).await;
    assert_eq!(hits[0].id, hits[1].id, "same webhook-id: {hits:#?}");
    for hit in &hits {
        assert_signed(hit);
    }
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    let delivered = loop {
        let listed: Value = app
            .admin_get("/api/webhooks/deliveries")
            .await
            .json()
            .await
            .expect("json");
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if items.iter().all(|d| d["status"] == "delivered") && !items.is_empty() {
            break items;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0]["event_id"], hits[0].id.as_str());
    assert_eq!(delivered[0]["attempts"], 2, "timed out once, then accepted");
    assert_eq!(delivered[0]["last_status"], 204);
}
