//! Archiving: `POST /api/me/inbox/{id}/archive` and `/unarchive` hide an
//! announcement from the inbox and the unread count, `?archived=true`
//! lists them, and an `archive` event reaches the user's other tabs and
//! streams, on one node and across nodes; a confirm made on one node
//! reaches a tab on another.

use crate::helpers::*;
use crate::sse::Stream;
use serde_json::{json, Value};
use std::time::Duration;

async fn inbox_ids(app: &TestApp, user: &str, query: &str) -> Vec<i64> {
    let page: Value = app
        .user_get(&app.token(user), &format!("/api/me/inbox{query}"))
        .await
        .json()
        .await
        .expect("json");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

async fn unread(app: &TestApp, user: &str) -> i64 {
    let body: Value = app
        .user_get(&app.token(user), "/api/me/unread-count")
        .await
        .json()
        .await
        .expect("json");
    body["unread"].as_i64().expect("unread")
}

async fn set_archived(app: &TestApp, user: &str, id: i64, action: &str) -> u16 {
    app.user_post(&app.token(user), &format!("/api/me/inbox/{id}/{action}"))
        .await
        .status()
        .as_u16()
}

both_backends!(archive_leaves_the_inbox_on_every_tab_and_stream);
/// Archived in one place: every tab and stream of the user hears `archive`,
/// the inbox and the unread count leave it out, `archived=true` lists it;
/// a repeat changes nothing and tells no one; unarchive brings it back.
async fn archive_leaves_the_inbox_on_every_tab_and_stream() {
    let app = spawn_app().await;
    let mut tab_a = app.connect("alice").await;
    let mut tab_b = app.connect("alice").await;
    let mut stream = Stream::connect(&app, "alice", "").await;
    stream.next_of("welcome").await;
    let first = app.announce_all("first").await["id"].as_i64().expect("id");
    let second = app.announce_all("second").await["id"].as_i64().expect("id");
    for tab in [&mut tab_a, &mut tab_b] {
        tab.next_of("announcement").await;
        tab.next_of("announcement").await;
    }
    assert_eq!(unread(&app, "alice").await, 2);

    assert_eq!(set_archived(&app, "alice", first, "archive").await, 200);
    let expected = json!({"ids": [first], "archived": true});
    for tab in [&mut tab_a, &mut tab_b] {
        assert_eq!(tab.next_of("archive").await["data"], expected);
    }
    assert_eq!(stream.next_of("archive").await.data, expected);
    assert_eq!(inbox_ids(&app, "alice", "").await, vec![second]);
    assert_eq!(
        inbox_ids(&app, "alice", "?archived=true").await,
        vec![first]
    );
    assert_eq!(unread(&app, "alice").await, 1);
    let archived: Value = app
        .user_get(&app.token("alice"), "/api/me/inbox?archived=true")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(archived["items"][0]["archived"], true, "{archived}");
    assert_eq!(archived["items"][0]["read"], false, "{archived}");

    // Archiving is not reading: no receipt counts move.
    let stats = app.announcement(first).await["stats"].clone();
    assert_eq!(stats["read"], 0, "{stats}");

    assert_eq!(set_archived(&app, "alice", first, "archive").await, 200);
    tab_a.assert_no("archive", Duration::from_millis(300)).await;

    assert_eq!(set_archived(&app, "alice", first, "unarchive").await, 200);
    assert_eq!(
        tab_b.next_of("archive").await["data"],
        json!({"ids": [first], "archived": false})
    );
    assert_eq!(inbox_ids(&app, "alice", "").await, vec![second, first]);
    assert!(inbox_ids(&app, "alice", "?archived=true").await.is_empty());
    assert_eq!(unread(&app, "alice").await, 2);
}

both_backends!(archive_is_only_for_the_users_own_inbox);
/// 404 for another user's announcement, an unknown id and a bad id; the
/// owner's tabs hear nothing of the attempts.
async fn archive_is_only_for_the_users_own_inbox() {
    let app = spawn_app().await;
    let mut tab = app.connect("alice").await;
    let own = app
        .announce(json!({"title": "t", "content": "c", "audience": {"users": ["alice"]}}))
        .await["id"]
        .as_i64()
        .expect("id");
    tab.next_of("announcement").await;
    for action in ["archive", "unarchive"] {
        assert_eq!(set_archived(&app, "mallory", own, action).await, 404);
        assert_eq!(set_archived(&app, "alice", 999_999, action).await, 404);
    }
    let bad = app
        .user_post(&app.token("alice"), "/api/me/inbox/x/archive")
        .await;
    assert_eq!(bad.status().as_u16(), 404);
    tab.assert_no("archive", Duration::from_millis(300)).await;
    assert_eq!(inbox_ids(&app, "alice", "").await, vec![own]);
}

/// Two nodes on one PostgreSQL: an archive made through node B reaches the
/// tab on node A, and a confirm frame on node A reaches the tab on node B.
#[actix_web::test]
async fn archive_and_confirm_reach_tabs_on_other_nodes() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: set {POSTGRES_URL_VAR} to run the two-node test");
        return;
    };
    let db = TestDb::postgres(&base);
    let nodes = [Node::start(&db.url), Node::start(&db.url)];
    let mut tabs = Vec::new();
    for node in &nodes {
        let url = node.ws_url("/ws?id=alice");
        let (mut ws, _) = Ws::open(&url, &["herald.v1", &user_token("alice")])
            .await
            .expect("connect");
        assert_eq!(ws.next_json().await["type"], "welcome");
        tabs.push(ws);
    }
    let id = nodes[0]
        .announce(
            &json!({"title": "t", "content": "c", "audience": {"all": true},
            "requires_confirmation": true}),
        )
        .await;
    for tab in &mut tabs {
        let frame = tab.next_of("announcement").await;
        assert_eq!(frame["data"]["requires_confirmation"], true);
    }

    tabs[0]
        .send_json(json!({"type": "confirm", "data": {"ids": [id]}}))
        .await;
    let read = tabs[1].next_of("read").await;
    assert_eq!(read["data"], json!({"ids": [id], "confirmed": [id]}));

    let res = reqwest::Client::new()
        .post(nodes[1].url(&format!("/api/me/inbox/{id}/archive")))
        .bearer_auth(user_token("alice"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    for tab in &mut tabs {
        assert_eq!(
            tab.next_of("archive").await["data"],
            json!({"ids": [id], "archived": true})
        );
    }
    let view = nodes[1]
        .admin_get(&format!("/api/announcements/{id}"))
        .await;
    assert_eq!(view["stats"]["confirmed"], 1, "{view}");
}
