//! herald killed with SIGKILL while events are pending and in flight: the
//! next start sends every one of them.

use super::receiver::{assert_signed, Receiver, SECRET};
use super::HOOK_WAIT;
use crate::helpers::{Node, TestDb, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn start_node(db: &str, receiver: &Receiver) -> Node {
    Node::start_with(
        db,
        &[
            "--webhook-url",
            &receiver.url,
            "--webhook-secret",
            SECRET,
            "--webhook-retry-base-ms",
            "100",
            "--webhook-timeout-ms",
            "500",
        ],
    )
}

/// The pending deliveries' attempt counts, as the admin API lists them.
async fn pending_attempts(node: &Node) -> Vec<i64> {
    let listed: Value = node
        .admin_get("/api/webhooks/deliveries?status=pending")
        .await;
    listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|d| d["attempts"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

both_backends!(events_pending_when_herald_is_killed_arrive_after_the_restart);
/// Three announcements whose events are being sent (the receiver does not
/// answer yet) and a retraction waiting behind one of them; SIGKILL. The
/// restarted herald sends all four (the in-flight ones once their lease
/// runs out), with their webhook-ids unchanged, in order per announcement.
async fn events_pending_when_herald_is_killed_arrive_after_the_restart() {
    let db = TestDb::new();
    let receiver = Receiver::start();
    receiver.hold(true);
    let node = start_node(&db.url, &receiver);
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(
            node.announce(&json!({"title": title, "content": "c", "audience": {"all": true}}))
                .await,
        );
    }
    // Retracted once published (before, it would be cancelled: no events).
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    while node
        .admin_get(&format!("/api/announcements/{}", ids[0]))
        .await["status"]
        != "published"
    {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retract = reqwest::Client::new()
        .delete(node.url(&format!("/api/announcements/{}", ids[0])))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("retract");
    assert_eq!(retract.status().as_u16(), 200);
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    while pending_attempts(&node)
        .await
        .iter()
        .filter(|a| **a > 0)
        .count()
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the three were never in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pending_attempts(&node).await.len(),
        4,
        "three published, one retracted"
    );
    node.kill();

    let restarted = start_node(&db.url, &receiver);
    receiver.hold(false);
    let hits = receiver.accepted(4, Duration::from_secs(30)).await;
    for hit in &hits {
        assert_signed(hit);
    }
    let events: BTreeSet<(String, i64)> =
        hits.iter().map(|h| (h.kind(), h.announcement())).collect();
    let mut expected: BTreeSet<(String, i64)> = ids
        .iter()
        .map(|id| ("announcement.published".to_string(), *id))
        .collect();
    expected.insert(("announcement.retracted".to_string(), ids[0]));
    assert_eq!(events, expected);
    let distinct: BTreeSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(distinct.len(), 4, "a resent event keeps its webhook-id");
    let order: Vec<String> = hits
        .iter()
        .filter(|h| h.announcement() == ids[0])
        .map(|h| h.kind())
        .collect();
    assert_eq!(
        order.last().map(String::as_str),
        Some("announcement.retracted"),
        "{order:?}"
    );
    assert_eq!(
        order.first().map(String::as_str),
        Some("announcement.published"),
        "{order:?}"
    );
    let deadline = tokio::time::Instant::now() + HOOK_WAIT;
    while !pending_attempts(&restarted).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
