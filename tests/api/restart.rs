//! Restart safety with a real child process killed with SIGKILL: nothing
//! scheduled is lost, nothing published is published again.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

async fn create(node: &Node, title: &str, at_ms: i64) -> i64 {
    node.announce(
        &json!({"title": title, "content": "c", "audience": {"all": true},
        "publish_at": herald::domain::rfc3339(at_ms)}),
    )
    .await
}

async fn connect(port: u16, since: i64) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/ws?id=alice&since={since}");
    let (mut ws, _) = Ws::open(&url, &["herald.v1", &user_token("alice")])
        .await
        .expect("connect");
    assert_eq!(ws.next_json().await["type"], "welcome");
    ws
}

both_backends!(sigkill_with_pending_announcements_loses_none_and_repeats_none);
async fn sigkill_with_pending_announcements_loses_none_and_repeats_none() {
    let test_db = TestDb::new();
    let db = test_db.url.clone();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut cursor = 0;

    let node = Node::start(&db);
    let mut ws = connect(node.port, 0).await;
    let now = herald::db::now_ms();
    let before_crash = create(&node, "before crash", now).await;
    let frame = ws.next_of("announcement").await;
    assert_eq!(frame["data"]["id"], before_crash);
    *seen.entry(before_crash).or_default() += 1;
    cursor = cursor.max(frame["data"]["cursor"].as_i64().expect("cursor"));

    let due_while_down: Vec<i64> = [
        create(&node, "down 1", now + 1_500).await,
        create(&node, "down 2", now + 1_600).await,
        create(&node, "down 3", now + 1_700).await,
    ]
    .to_vec();
    let due_after: Vec<i64> = [
        create(&node, "after 1", now + 6_000).await,
        create(&node, "after 2", now + 6_100).await,
    ]
    .to_vec();
    node.kill();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(
        (now + 2_000 - herald::db::now_ms()).max(0) as u64,
    ))
    .await;

    let node = Node::start(&db);
    let mut ws = connect(node.port, cursor).await;
    let expected: Vec<i64> = due_while_down.iter().chain(&due_after).copied().collect();
    while expected.iter().any(|id| !seen.contains_key(id)) {
        let frame = ws.next_of("announcement").await;
        *seen
            .entry(frame["data"]["id"].as_i64().expect("id"))
            .or_default() += 1;
    }
    ws.assert_no("announcement", Duration::from_millis(500))
        .await;
    assert!(
        seen.values().all(|n| *n == 1),
        "each exactly once: {seen:?}"
    );
    assert_eq!(seen.len(), 6);

    // The table agrees: six distinct cursors 1..=6, all published.
    let list = node.admin_get("/api/announcements?limit=10").await;
    let mut cursors: Vec<i64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            assert_eq!(i["status"], "published");
            i["cursor"].as_i64().expect("cursor")
        })
        .collect();
    cursors.sort_unstable();
    assert_eq!(cursors, [1, 2, 3, 4, 5, 6]);
}
