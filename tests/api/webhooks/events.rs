//! Each kind of event arrives, signed, with the data it promises, in order
//! per announcement; without endpoints nothing is written.

use super::receiver::{assert_signed, Receiver};
use super::{app_posting_to, sequence_of, HOOK_WAIT};
use crate::helpers::spawn_app;
use diesel::prelude::*;
use herald::db::schema::{webhook_announcements, webhook_outbox};
use herald::domain::rfc3339;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The user ids in one list (`delivered`, `read`) over all receipts events.
fn receipted(hits: &[super::receiver::Hit], id: i64, list: &str) -> BTreeSet<String> {
    hits.iter()
        .filter(|h| h.accepted() && h.kind() == "receipts" && h.announcement() == id)
        .flat_map(|h| {
            h.json()["data"][list]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["user_id"].as_str().map(str::to_string))
        .collect()
}

both_backends!(published_retracted_expired_and_receipts_events_arrive_signed);
/// An announcement that alice receives and reads, then expires; another
/// that is retracted. Every event comes once, signed, with its data, and
/// each announcement's events in the order the facts happened.
async fn published_retracted_expired_and_receipts_events_arrive_signed() {
    let receiver = Receiver::start();
    let app = app_posting_to(&receiver).await;
    let mut alice = app.connect("alice").await;
    let expires_at = herald::db::now_ms() + 1_500;
    let first = app
        .announce(
            json!({"title": "Maintenance", "content": "tonight", "audience": {"all": true},
            "expires_at": rfc3339(expires_at)}),
        )
        .await["id"]
        .as_i64()
        .expect("id");
    let frame = alice.next_of("announcement").await;
    assert_eq!(frame["data"]["id"], first);
    alice
        .send_json(json!({"type": "ack", "data": {"ids": [first]}}))
        .await;
    alice
        .send_json(json!({"type": "read", "data": {"ids": [first]}}))
        .await;
    let second = app.announce_all("Oops").await["id"].as_i64().expect("id");
    alice.next_of("announcement").await;
    let res = app
        .admin_delete(&format!("/api/announcements/{second}"))
        .await;
    assert_eq!(res.status().as_u16(), 200);

    let hits = receiver
        .wait_until(HOOK_WAIT, |hits| {
            let kinds = |id| sequence_of(hits, id);
            kinds(first).contains(&"announcement.expired".to_string())
                && receipted(hits, first, "read").contains("alice")
                && kinds(second).contains(&"announcement.retracted".to_string())
        })
        .await;
    for hit in &hits {
        assert_signed(hit);
        assert!(hit.accepted(), "the receiver accepted everything: {hit:?}");
    }
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "each event once: {ids:?}");

    let first_events = sequence_of(&hits, first);
    assert_eq!(
        first_events.first().map(String::as_str),
        Some("announcement.published")
    );
    assert_eq!(
        first_events.last().map(String::as_str),
        Some("announcement.expired")
    );
    assert!(
        first_events[1..first_events.len() - 1]
            .iter()
            .all(|k| k == "receipts"),
        "{first_events:?}"
    );
    assert_eq!(
        receipted(&hits, first, "delivered"),
        BTreeSet::from(["alice".to_string()])
    );
    assert_eq!(
        receipted(&hits, first, "read"),
        BTreeSet::from(["alice".to_string()])
    );
    assert_eq!(
        sequence_of(&hits, second).first().map(String::as_str),
        Some("announcement.published")
    );
    assert_eq!(
        sequence_of(&hits, second).last().map(String::as_str),
        Some("announcement.retracted")
    );

    let published: Value = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "announcement.published" && b["data"]["id"] == first)
        .expect("published");
    assert_eq!(published["data"]["title"], "Maintenance");
    assert_eq!(published["data"]["audience"], json!({"all": true}));
    assert_eq!(published["data"]["expires_at"], rfc3339(expires_at));
    assert!(published["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let receipts = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "receipts")
        .expect("receipts");
    assert_eq!(receipts["data"]["confirmed"], json!([]));
    assert!(
        receipts["data"]["delivered"][0]["at"].is_string(),
        "{receipts}"
    );

    // A read sent again changes nothing, so it reports nothing: once the
    // batch after it is reported, the outbox still holds two rows for it.
    let later = app.announce_all("Later").await["id"].as_i64().expect("id");
    alice.next_of("announcement").await;
    let read = |ids: Vec<i64>| json!({"type": "read", "data": {"ids": ids}});
    alice.send_json(read(vec![later])).await;
    receiver
        .wait_until(HOOK_WAIT, |hits| {
            receipted(hits, later, "read").contains("alice")
        })
        .await;
    alice.send_json(read(vec![later])).await;
    let last = app.announce_all("Last").await["id"].as_i64().expect("id");
    alice.next_of("announcement").await;
    alice.send_json(read(vec![last])).await;
    receiver
        .wait_until(HOOK_WAIT, |hits| {
            receipted(hits, last, "read").contains("alice")
        })
        .await;
    let mut conn = app.state.pool.get().expect("connection");
    let rows: i64 = webhook_outbox::table
        .filter(webhook_outbox::announcement_id.eq(later))
        .count()
        .get_result(&mut *conn)
        .expect("count");
    assert_eq!(rows, 2, "published and one receipts event");
}

both_backends!(without_endpoints_nothing_is_written);
/// No webhook URL: publishing, reading and retracting leave the outbox
/// tables empty (and no sender runs).
async fn without_endpoints_nothing_is_written() {
    let app = spawn_app().await;
    assert!(!app.state.outbox.is_enabled());
    let mut alice = app.connect("alice").await;
    let id = app.announce_all("Quiet").await["id"].as_i64().expect("id");
    alice.next_of("announcement").await;
    alice
        .send_json(json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    app.wait_for_announcement(id, |v| v["stats"]["read"] == 1)
        .await;
    assert_eq!(
        app.admin_delete(&format!("/api/announcements/{id}"))
            .await
            .status()
            .as_u16(),
        200
    );
    let mut conn = app.state.pool.get().expect("connection");
    let rows: i64 = webhook_outbox::table
        .count()
        .get_result(&mut *conn)
        .expect("count");
    let marks: i64 = webhook_announcements::table
        .count()
        .get_result(&mut *conn)
        .expect("count");
    assert_eq!((rows, marks), (0, 0));
}

both_backends!(a_confirmation_is_reported_in_a_receipts_event);
/// Alice confirms an announcement that requires it (a confirm frame, which
/// implies read): a receipts event lists her under `confirmed` (and `read`),
/// with when.
async fn a_confirmation_is_reported_in_a_receipts_event() {
    let receiver = Receiver::start();
    let app = app_posting_to(&receiver).await;
    let mut alice = app.connect("alice").await;
    let id = app
        .announce(json!({"title": "Policy", "content": "sign here",
            "audience": {"all": true}, "requires_confirmation": true}))
        .await["id"]
        .as_i64()
        .expect("id");
    alice.next_of("announcement").await;
    alice
        .send_json(json!({"type": "confirm", "data": {"ids": [id]}}))
        .await;
    let hits = receiver
        .wait_until(HOOK_WAIT, |hits| {
            receipted(hits, id, "confirmed").contains("alice")
        })
        .await;
    assert_eq!(
        receipted(&hits, id, "confirmed"),
        BTreeSet::from(["alice".to_string()])
    );
    assert!(receipted(&hits, id, "read").contains("alice"));
    let confirmed = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "receipts" && b["data"]["confirmed"] != json!([]))
        .expect("receipts with a confirmation");
    assert_eq!(confirmed["data"]["announcement_id"], id, "{confirmed}");
    assert!(
        confirmed["data"]["confirmed"][0]["at"].is_string(),
        "{confirmed}"
    );
    for hit in &hits {
        assert_signed(hit);
    }
}
