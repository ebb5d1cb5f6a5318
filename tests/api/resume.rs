//! Nothing missed, nothing twice: inbox, resume by cursor, receipts,
//! read sync, stats, retract and expiry.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

async fn inbox(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.user_get(token, &format!("/api/me/inbox{query}")).await;
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("json")
}

async fn wait_published(app: &TestApp, id: i64) -> Value {
    app.wait_for_announcement(id, |v| {
        v["status"] == "published" && v["stats"]["online_at_publish"].is_i64()
    })
    .await
}

both_backends!(offline_user_finds_announcement_in_inbox_and_on_resume);
async fn offline_user_finds_announcement_in_inbox_and_on_resume() {
    let app = spawn_app().await;
    let created = app.announce_all("while you were away").await;
    wait_published(&app, id_of(&created)).await;

    // A user herald has never seen.
    let token = app.token("newcomer");
    let page = inbox(&app, &token, "").await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["title"], "while you were away");
    assert_eq!(items[0]["read"], false);
    let count: Value = app
        .user_get(&token, "/api/me/unread-count")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(count["unread"], 1);

    let mut ws = app.connect_with("newcomer", &[], "&since=0").await;
    assert_eq!(ws.welcome["data"]["unread"], 1);
    assert_eq!(ws.welcome["data"]["cursor"], 1);
    let replayed = ws.next_of("announcement").await;
    assert_eq!(replayed["data"]["id"], created["id"]);
}

both_backends!(inbox_is_per_user_newest_first_paged_and_filters_unread);
async fn inbox_is_per_user_newest_first_paged_and_filters_unread() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (title, audience) in [
        ("for all", json!({"all": true})),
        ("for alice", json!({"users": ["alice"]})),
        ("for ops", json!({"groups": ["ops"]})),
        ("for bob", json!({"users": ["bob"]})),
    ] {
        let a = app
            .announce(json!({"title": title, "content": "c", "audience": audience}))
            .await;
        ids.push(id_of(&a));
    }
    for id in &ids {
        wait_published(&app, *id).await;
    }
    let alice = app.token_with_groups("alice", &["ops"]);
    let page = inbox(&app, &alice, "").await;
    let titles: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["title"].as_str().expect("title"))
        .collect();
    assert_eq!(titles, ["for ops", "for alice", "for all"]);

    let first = inbox(&app, &alice, "?limit=2").await;
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    let before = first["next_before"].as_i64().expect("next page");
    let second = inbox(&app, &alice, &format!("?limit=2&before={before}")).await;
    assert_eq!(second["items"][0]["title"], "for all");

    let res = app
        .user_post(&alice, &format!("/api/me/inbox/{}/read", ids[1]))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let unread = inbox(&app, &alice, "?unread=true").await;
    assert_eq!(unread["items"].as_array().expect("items").len(), 2);
    // Bob's announcement is not alice's to read.
    let res = app
        .user_post(&alice, &format!("/api/me/inbox/{}/read", ids[3]))
        .await;
    assert_eq!(res.status().as_u16(), 404);
    let res = app.user_post(&alice, "/api/me/inbox/read-all").await;
    assert_eq!(res.status().as_u16(), 200);
    let count: Value = app
        .user_get(&alice, "/api/me/unread-count")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(count["unread"], 0);
    let bob = app.token("bob");
    let count: Value = app
        .user_get(&bob, "/api/me/unread-count")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(count["unread"], 2);
    assert_eq!(
        app.user_get("garbage", "/api/me/inbox")
            .await
            .status()
            .as_u16(),
        401
    );
}

both_backends!(reconnect_mid_stream_of_200_publishes_loses_none_and_repeats_none);
async fn reconnect_mid_stream_of_200_publishes_loses_none_and_repeats_none() {
    let app = spawn_app().await;
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut cursor = 0;
    let mut ws = app.connect_with("alice", &[], "&since=0").await;

    let publisher = {
        let address = app.address.clone();
        let http = app.http.clone();
        actix_web::rt::spawn(async move {
            for i in 0..200 {
                let res = http
                    .post(format!("{address}/api/announcements"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"title": format!("n{i}"), "content": "c", "audience": {"all": true}}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(res.status().as_u16(), 201);
            }
        })
    };

    // Reconnect every 25 announcements (8 times in all), each resuming from the last cursor.
    for drop_after in (1..8).map(|n| n * 25).chain([usize::MAX]) {
        loop {
            if seen.len() == 200 || seen.values().sum::<usize>() >= drop_after {
                break;
            }
            let frame = ws.next_of("announcement").await;
            *seen
                .entry(frame["data"]["id"].as_i64().expect("id"))
                .or_default() += 1;
            cursor = cursor.max(frame["data"]["cursor"].as_i64().expect("cursor"));
        }
        if seen.len() == 200 {
            break;
        }
        ws.close().await;
        ws = app
            .connect_with("alice", &[], &format!("&since={cursor}"))
            .await;
    }
    publisher.await.expect("publisher");
    assert_eq!(seen.len(), 200, "every announcement arrived");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    ws.assert_no("announcement", Duration::from_millis(300))
        .await;
}

both_backends!(sync_frame_replays_after_the_cursor_in_order);
async fn sync_frame_replays_after_the_cursor_in_order() {
    let app = spawn_app().await;
    for i in 0..3 {
        let a = app.announce_all(&format!("a{i}")).await;
        wait_published(&app, id_of(&a)).await;
    }
    let mut ws = app.connect("alice").await;
    ws.send_json(json!({"type": "sync", "data": {"since": 1}}))
        .await;
    let first = ws.next_of("announcement").await;
    let second = ws.next_of("announcement").await;
    assert_eq!(
        (
            first["data"]["cursor"].as_i64(),
            second["data"]["cursor"].as_i64()
        ),
        (Some(2), Some(3))
    );
}

both_backends!(cursor_from_a_reset_server_does_not_hide_new_announcements);
async fn cursor_from_a_reset_server_does_not_hide_new_announcements() {
    let app = spawn_app().await;
    // A client that kept cursor 500 from a database that no longer exists.
    let mut ws = app.connect_with("alice", &[], "&since=500").await;
    assert_eq!(ws.welcome["data"]["cursor"], 0);
    let id = id_of(&app.announce_all("fresh start").await);
    assert_eq!(ws.next_of("announcement").await["data"]["id"], id);
}

both_backends!(receipts_are_idempotent_and_counted);
async fn receipts_are_idempotent_and_counted() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let _carol = app.connect("carol").await;
    let created = app.announce_all("count me").await;
    let id = id_of(&created);
    for ws in [&mut alice, &mut bob] {
        ws.next_of("announcement").await;
        ws.send_json(json!({"type": "ack", "data": {"ids": [id]}}))
            .await;
        ws.send_json(json!({"type": "ack", "data": {"ids": [id]}}))
            .await;
    }
    alice
        .send_json(json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    alice
        .send_json(json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    // An ack for an announcement that does not exist is ignored.
    bob.send_json(json!({"type": "ack", "data": {"ids": [9999]}}))
        .await;
    let view = app
        .wait_for_announcement(id, |v| {
            v["stats"]["delivered"] == 2 && v["stats"]["read"] == 1
        })
        .await;
    assert_eq!(view["stats"]["targeted"], 3);
    assert_eq!(view["stats"]["online_at_publish"], 3);
    // Nothing more arrives later: the counts stay put.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let view = app.announcement(id).await;
    assert_eq!(
        (
            view["stats"]["delivered"].as_i64(),
            view["stats"]["read"].as_i64()
        ),
        (Some(2), Some(1))
    );
}

both_backends!(read_in_one_tab_is_pushed_to_the_other);
async fn read_in_one_tab_is_pushed_to_the_other() {
    let app = spawn_app().await;
    let mut tab1 = app.connect("alice").await;
    let mut tab2 = app.connect("alice").await;
    let id = id_of(&app.announce_all("read me").await);
    tab1.next_of("announcement").await;
    tab2.next_of("announcement").await;
    tab1.send_json(json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    let read = tab2.next_of("read").await;
    assert_eq!(read["data"]["ids"], json!([id]));
    tab1.assert_no("read", Duration::from_millis(300)).await;

    // A read through REST reaches every tab.
    let id2 = id_of(&app.announce_all("read me too").await);
    tab1.next_of("announcement").await;
    tab2.next_of("announcement").await;
    let token = app.token("alice");
    app.user_post(&token, &format!("/api/me/inbox/{id2}/read"))
        .await;
    assert_eq!(tab1.next_of("read").await["data"]["ids"], json!([id2]));
    assert_eq!(tab2.next_of("read").await["data"]["ids"], json!([id2]));
}

both_backends!(retract_reaches_open_tabs_and_leaves_inboxes);
async fn retract_reaches_open_tabs_and_leaves_inboxes() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    let id = id_of(&app.announce_all("oops").await);
    ws.next_of("announcement").await;
    wait_published(&app, id).await;
    let res = app.admin_delete(&format!("/api/announcements/{id}")).await;
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "retracted");
    assert_eq!(ws.next_of("retract").await["data"]["id"], id);
    let token = app.token("alice");
    assert_eq!(
        inbox(&app, &token, "").await["items"]
            .as_array()
            .expect("items")
            .len(),
        0
    );
    let mut resumed = app.connect_with("alice", &[], "&since=0").await;
    resumed
        .assert_no("announcement", Duration::from_millis(300))
        .await;
}

both_backends!(expired_announcements_are_not_listed_or_replayed);
async fn expired_announcements_are_not_listed_or_replayed() {
    let app = spawn_app().await;
    let expires = herald::domain::rfc3339(herald::db::now_ms() + 600);
    let id = id_of(
        &app.announce(
            json!({"title":"brief","content":"c","audience":{"all":true},"expires_at": expires}),
        )
        .await,
    );
    wait_published(&app, id).await;
    let token = app.token("alice");
    assert_eq!(
        inbox(&app, &token, "").await["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        inbox(&app, &token, "").await["items"]
            .as_array()
            .expect("items")
            .len(),
        0
    );
    let mut ws = app.connect_with("alice", &[], "&since=0").await;
    assert_eq!(ws.welcome["data"]["unread"], 0);
    ws.assert_no("announcement", Duration::from_millis(300))
        .await;
}
