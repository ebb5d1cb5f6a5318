//! A PostgreSQL outage, survived: herald nodes (child processes) run on a
//! PostgreSQL server of the test's own, with open sessions; the server is
//! stopped for ten seconds while announcements fall due and receipts
//! arrive, then started again. Sessions stay up, REST answers 503 and
//! `/readyz` 503 meanwhile, then 200; every due announcement reaches every
//! session exactly once afterwards, no receipt is lost, and each node's
//! cluster listener reconnects. Once with one node, once with two.
//! Without PostgreSQL server binaries these say why and pass.

use crate::helpers::*;
use crate::own_postgres::OwnPostgres;
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(10);
/// Longer than herald's pool timeout (5 s), which a request waits out
/// before it answers 503.
const REST_WAIT: Duration = Duration::from_secs(15);
/// The listener's reconnect backoff reaches 5 s during the outage.
const RECOVERY: Duration = Duration::from_secs(30);

#[actix_web::test]
async fn one_node_survives_a_postgres_outage() {
    survive_outage(1).await;
}

#[actix_web::test]
async fn two_nodes_survive_a_postgres_outage() {
    survive_outage(2).await;
}

/// A user's session and what it received.
struct Tab {
    user: String,
    ws: Ws,
    seen: HashMap<i64, usize>,
}

impl Tab {
    /// Reads frames for `within`, counting announcements; pongs and read
    /// syncs are skipped. A close ends the test.
    async fn read_for(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.ws.next_message(left).await {
                Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if frame["type"] == "announcement" {
                        let id = frame["data"]["id"].as_i64().expect("id");
                        *self.seen.entry(id).or_default() += 1;
                    }
                }
                Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                    panic!("{}'s session closed: {frame:?}", self.user)
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Reads until every id in `ids` came, then a little longer for repeats.
    async fn receive_all(&mut self, ids: &[i64], within: Duration) {
        let deadline = Instant::now() + within;
        while !ids.iter().all(|id| self.seen.contains_key(id)) {
            assert!(
                Instant::now() < deadline,
                "{} has {:?}, wants {ids:?}",
                self.user,
                self.seen
            );
            self.read_for(Duration::from_millis(200)).await;
        }
        self.read_for(Duration::from_millis(1500)).await;
    }

    /// A ping answered proves the session is up.
    async fn alive(&mut self) {
        self.ws.send_json(json!({"type": "ping"})).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = self
                .ws
                .try_next_json(WAIT)
                .await
                .unwrap_or_else(|| panic!("{}'s session ended", self.user));
            match frame["type"].as_str() {
                Some("pong") => return,
                Some("announcement") => {
                    let id = frame["data"]["id"].as_i64().expect("id");
                    *self.seen.entry(id).or_default() += 1;
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "no pong for {}", self.user);
        }
    }
}

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    match http
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .timeout(REST_WAIT)
        .send()
        .await
    {
        Ok(res) => res.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Polls `url` until it answers `want` (each answer may take the pool
/// timeout while the database is down).
async fn wait_for_status(http: &reqwest::Client, url: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = status(http, url).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} answered {got}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn survive_outage(node_count: usize) {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let nodes: Vec<Node> = (0..node_count).map(|_| Node::start(&pg.url())).collect();
    let http = reqwest::Client::new();
    let mut tabs = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let node = &nodes[i % node_count];
        tabs.push(Tab {
            user: user.to_string(),
            ws: open_reader(node.port, user, 0).await,
            seen: HashMap::new(),
        });
    }

    // One announcement delivered before the outage, acked and read during it.
    let before = nodes[0]
        .announce(&json!({"title": "before", "content": "c", "audience": {"all": true}}))
        .await;
    for tab in &mut tabs {
        tab.receive_all(&[before], WAIT).await;
    }
    // Due while the database is down, published through both nodes.
    let now = herald::db::now_ms();
    let mut due = Vec::new();
    for (i, delay_ms) in [2_500, 4_000, 6_000].into_iter().enumerate() {
        let publish_at = now + delay_ms;
        let body = json!({"title": format!("due {i}"), "content": "c", "audience": {"all": true},
            "publish_at": herald::domain::rfc3339(publish_at)});
        due.push((nodes[i % node_count].announce(&body).await, publish_at));
    }

    let stopping_at = herald::db::now_ms();
    pg.stop();
    let stopped = Instant::now();
    for tab in &mut tabs {
        tab.ws
            .send_json(json!({"type": "ack", "data": {"ids": [before]}}))
            .await;
        tab.ws
            .send_json(json!({"type": "read", "data": {"ids": [before]}}))
            .await;
    }
    // Every node at once: each answer waits out the pool timeout.
    let answers = join_all(nodes.iter().map(|node| async {
        let (list, readyz) = (node.url("/api/announcements"), node.url("/readyz"));
        let rest = status(&http, &list);
        let ready = wait_for_status(&http, &readyz, 503, OUTAGE);
        futures_util::future::join(rest, ready).await.0
    }))
    .await;
    assert!(
        answers.iter().all(|s| *s == 503),
        "REST answered {answers:?}"
    );
    assert!(stopped.elapsed() < OUTAGE, "checks outlasted the outage");
    // Sessions keep answering pings until the database is back.
    while stopped.elapsed() < OUTAGE {
        for tab in &mut tabs {
            tab.alive().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // (On a machine slow enough to reach a publish time before the stop,
    // that announcement went out before the outage, which is no failure.)
    for tab in &tabs {
        let early: Vec<_> = due
            .iter()
            .filter(|(id, at)| *at > stopping_at && tab.seen.contains_key(id))
            .collect();
        assert!(early.is_empty(), "published without a database: {early:?}");
    }
    let due: Vec<i64> = due.into_iter().map(|(id, _)| id).collect();
    pg.start_again();

    for node in &nodes {
        wait_for_status(&http, &node.url("/readyz"), 200, RECOVERY).await;
        let ready = node.admin_get("/readyz").await;
        assert_eq!(ready["listener"], "ok", "{ready}");
    }
    for tab in &mut tabs {
        tab.receive_all(&due, RECOVERY).await;
        tab.alive().await;
    }
    for tab in &tabs {
        let mut ids: Vec<i64> = tab.seen.keys().copied().collect();
        ids.sort_unstable();
        let mut want = due.clone();
        want.push(before);
        want.sort_unstable();
        assert_eq!(ids, want, "{} got the wrong set", tab.user);
        let repeated: Vec<_> = tab.seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            repeated.is_empty(),
            "{} got repeats: {repeated:?}",
            tab.user
        );
    }

    // The receipts sent while the database was down were all written.
    let users = tabs.len() as i64;
    let deadline = Instant::now() + RECOVERY;
    loop {
        let view = nodes[0]
            .admin_get(&format!("/api/announcements/{before}"))
            .await;
        let stats = &view["stats"];
        if stats["delivered"] == users && stats["read"] == users {
            break;
        }
        assert!(Instant::now() < deadline, "receipts lost: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each listener reconnected, and live delivery works again on every node.
    for node in &nodes {
        assert!(
            !node.log_lines("cluster listener reconnected").is_empty(),
            "a node's listener never said it reconnected"
        );
    }
    let after = nodes[node_count - 1]
        .announce(&json!({"title": "after", "content": "c", "audience": {"all": true}}))
        .await;
    for tab in &mut tabs {
        tab.receive_all(&[after], WAIT).await;
        assert_eq!(tab.seen.get(&after), Some(&1), "{}", tab.user);
    }

    // A session that opens now loads its catch-up on the catch-up's own
    // connections, which the outage left dead (they are lent without a
    // test query): each is found lost, dropped and replaced, and the
    // welcome still carries the unread count and the replay follows.
    for (i, node) in nodes.iter().enumerate() {
        let user = format!("late{i}");
        let url = format!("ws://127.0.0.1:{}/ws?id={user}&since=0", node.port);
        let (mut ws, _) = Ws::open(&url, &["herald.v1", &user_token(&user)])
            .await
            .expect("open");
        let welcome = ws.next_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["data"]["unread"], due.len() as i64 + 2, "{welcome}");
        for _ in 0..due.len() + 2 {
            ws.next_of("announcement").await;
        }
    }
}
