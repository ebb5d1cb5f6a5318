//! Two herald nodes on one PostgreSQL database, both sending: each event
//! reaches the receiver once, and in order per announcement, even when the
//! receiver is slow.

use super::receiver::{assert_signed, Receiver, SECRET};
use super::{enqueue_retractions, sequence_of, HOOK_WAIT};
use crate::helpers::{postgres_url, test_settings, TestDb, ADMIN_TOKEN};
use diesel::prelude::*;
use herald::db::outbox::Outbox;
use herald::db::schema::webhook_outbox as o;
use herald::startup::Application;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A node of the cluster, running in this test's system; its address.
async fn node(db: &TestDb, receiver: &Receiver) -> (String, Stop) {
    node_with_timeout(db, receiver, 10_000).await
}

async fn node_with_timeout(db: &TestDb, receiver: &Receiver, timeout_ms: u64) -> (String, Stop) {
    let mut settings = test_settings(db);
    settings.webhook_urls = vec![receiver.url.clone()];
    settings.webhook_secret = Some(SECRET.into());
    settings.webhook_retry_base_ms = 20;
    settings.webhook_timeout_ms = timeout_ms;
    let app = Application::build(settings).await.expect("node starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = Stop(app.handle(), app.state.clone());
    actix_web::rt::spawn(app.into_server());
    (address, stop)
}

/// The node's first page of pending deliveries.
async fn pending(node: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{node}/api/webhooks/deliveries?status=pending"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json")
}

/// Stops a node (its server and its cluster listener) when dropped.
struct Stop(
    actix_web::dev::ServerHandle,
    actix_web::web::Data<herald::state::AppState>,
);

impl Drop for Stop {
    fn drop(&mut self) {
        drop(self.0.stop(false));
        if let Some(cluster) = &self.1.cluster {
            cluster.shutdown();
        }
    }
}

#[actix_web::test]
async fn two_nodes_on_one_postgres_send_each_event_once() {
    let Some(url) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&url);
    let receiver = Receiver::start();
    let (a, stop_a) = node(&db, &receiver).await;
    let (b, stop_b) = node(&db, &receiver).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..12 {
        let at = if i % 2 == 0 { &a } else { &b };
        let created: Value = http
            .post(format!("{at}/api/announcements"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"title": format!("n{i}"), "content": "c", "audience": {"all": true}}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        ids.push(created["id"].as_i64().expect("id"));
    }
    // Published (not cancelled) before a third of them are retracted,
    // through the other node.
    receiver.accepted(ids.len(), HOOK_WAIT).await;
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let at = if i % 2 == 0 { &b } else { &a };
        let res = http
            .delete(format!("{at}/api/announcements/{id}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("retract");
        assert_eq!(res.status().as_u16(), 200);
    }
    let expected = ids.len() + ids.len().div_ceil(3);
    receiver.accepted(expected, HOOK_WAIT).await;
    // Both nodes keep polling; give a duplicate the time to show up.
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    loop {
        let pending = pending(&a).await;
        if pending["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits();
    for hit in &hits {
        assert_signed(hit);
    }
    let distinct: BTreeSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(hits.len(), expected, "{hits:#?}");
    assert_eq!(distinct.len(), expected, "each event sent once");
    for (i, id) in ids.iter().enumerate() {
        let order = sequence_of(&hits, *id);
        if i % 3 == 0 {
            assert_eq!(order, ["announcement.published", "announcement.retracted"]);
        } else {
            assert_eq!(order, ["announcement.published"]);
        }
    }
    drop((stop_a, stop_b));
}

#[actix_web::test]
async fn a_slow_receiver_still_gets_each_event_once_from_two_nodes() {
    let Some(url) = postgres_url() else {
        return;
    };
    // Every answer takes 5 s, within the 6 s timeout; more events than a
    // round sends at once. A lease that ran out before its row was sent
    // and recorded would let the second node post the row again.
    const EVENTS: i64 = 100;
    let db = TestDb::postgres(&url);
    let receiver = Receiver::start();
    receiver.delay(Duration::from_secs(5));
    let ids: Vec<i64> = (1..=EVENTS).collect();
    let outbox = Outbox::new(vec![receiver.url.clone()]);
    let pool = herald::db::connect(&db.url, 2, 5_000).expect("pool");
    enqueue_retractions(&pool, &outbox, &ids);
    let (a, stop_a) = node_with_timeout(&db, &receiver, 6_000).await;
    // The first node claims before the second one starts.
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    loop {
        let mut conn = pool.get().expect("connection");
        let leased: i64 = o::table
            .filter(o::claim_token.is_not_null())
            .count()
            .get_result(&mut *conn)
            .expect("count");
        if leased > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_b, stop_b) = node_with_timeout(&db, &receiver, 6_000).await;
    receiver
        .accepted(EVENTS as usize, Duration::from_secs(90))
        .await;
    // Rounds still running post their last rows and record them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let pending = pending(&a).await;
        let left = pending["items"].as_array().map_or(0, Vec::len);
        if left == 0 || tokio::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut posts: BTreeMap<String, usize> = BTreeMap::new();
    for hit in receiver.hits() {
        *posts.entry(hit.id).or_default() += 1;
    }
    let twice = posts.values().filter(|n| **n > 1).count();
    assert_eq!(posts.len(), EVENTS as usize);
    assert_eq!(
        (twice, pending),
        (0, 0),
        "events posted more than once, and deliveries still pending after 30 s; posts per event: {:?}",
        posts.values().collect::<Vec<_>>()
    );
    drop((stop_a, stop_b));
}
