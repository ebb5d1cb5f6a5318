//! Announcements reaching the right sessions at the right time, once.

use crate::helpers::*;
use herald::actors::scheduler::publish_due;
use serde_json::json;
use std::time::{Duration, Instant};

fn in_ms(ms: i64) -> String {
    herald::domain::rfc3339(herald::db::now_ms() + ms)
}

both_backends!(two_tabs_of_one_user_both_receive);
async fn two_tabs_of_one_user_both_receive() {
    let app = spawn_app().await;
    let mut tab1 = app.connect("alice").await;
    let mut tab2 = app.connect("alice").await;
    let created = app.announce_all("hello").await;
    for tab in [&mut tab1, &mut tab2] {
        let frame = tab.next_of("announcement").await;
        assert_eq!(frame["data"]["id"], created["id"]);
        assert_eq!(frame["data"]["title"], "hello");
        assert!(frame["data"]["cursor"].is_i64());
    }
}

both_backends!(untargeted_user_receives_nothing);
async fn untargeted_user_receives_nothing() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    app.announce(json!({"title":"for alice","content":"c","audience":{"users":["alice"]}}))
        .await;
    assert_eq!(
        alice.next_of("announcement").await["data"]["title"],
        "for alice"
    );
    bob.assert_no("announcement", Duration::from_millis(500))
        .await;
}

both_backends!(group_audience_reaches_members_only);
async fn group_audience_reaches_members_only() {
    let app = spawn_app().await;
    let mut ops = app.connect_with("alice", &["ops"], "").await;
    let mut both = app.connect_with("carol", &["dev", "ops"], "").await;
    let mut dev = app.connect_with("bob", &["dev"], "").await;
    app.announce(json!({"title":"ops only","content":"c","audience":{"groups":["ops"]}}))
        .await;
    assert_eq!(
        ops.next_of("announcement").await["data"]["title"],
        "ops only"
    );
    assert_eq!(
        both.next_of("announcement").await["data"]["title"],
        "ops only"
    );
    dev.assert_no("announcement", Duration::from_millis(500))
        .await;
}

both_backends!(all_audience_reaches_everyone_online);
async fn all_audience_reaches_everyone_online() {
    let app = spawn_app().await;
    let mut sockets = Vec::new();
    for user in ["u1", "u2", "u3"] {
        sockets.push(app.connect(user).await);
    }
    let created = app.announce_all("everyone").await;
    for ws in &mut sockets {
        assert_eq!(
            ws.next_of("announcement").await["data"]["id"],
            created["id"]
        );
    }
}

both_backends!(publish_now_arrives_within_200_ms_of_the_request);
async fn publish_now_arrives_within_200_ms_of_the_request() {
    let app = spawn_app_with(|s| s.poll_interval_ms = 60_000).await;
    let mut ws = app.connect("alice").await;
    let started = Instant::now();
    app.announce_all("now").await;
    ws.next_of("announcement").await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "took {took:?}");
}

both_backends!(scheduled_announcement_arrives_at_its_time_not_before);
async fn scheduled_announcement_arrives_at_its_time_not_before() {
    let app = spawn_app_with(|s| s.poll_interval_ms = 1_000).await;
    let mut ws = app.connect("alice").await;
    let publish_at = herald::db::now_ms() + 1_500;
    app.announce(
        json!({"title":"later","content":"c","audience":{"all":true},
        "publish_at": herald::domain::rfc3339(publish_at)}),
    )
    .await;
    let frame = ws.next_of("announcement").await;
    let arrived = herald::db::now_ms();
    assert_eq!(frame["data"]["title"], "later");
    assert!(
        arrived >= publish_at,
        "arrived {} ms early",
        publish_at - arrived
    );
    assert!(
        arrived - publish_at <= 1_000,
        "arrived {} ms late",
        arrived - publish_at
    );
    // `publish_at` is the time asked for, the same in the frame, the admin
    // view and the inbox; `published_at` is when herald published it, the
    // same in all three too, and not before the time asked for.
    let data = &frame["data"];
    let asked = herald::domain::rfc3339(publish_at);
    assert_eq!(data["publish_at"], asked.as_str(), "{data}");
    let stored = app.announcement(data["id"].as_i64().expect("id")).await;
    assert_eq!(stored["publish_at"], asked.as_str());
    assert_eq!(stored["published_at"], data["published_at"], "{stored}");
    let published = data["published_at"].as_str().expect("published_at");
    assert!(
        published >= asked.as_str(),
        "published {published} before {asked}"
    );
    let inbox: serde_json::Value = app
        .user_get(&app.token("alice"), "/api/me/inbox")
        .await
        .json()
        .await
        .expect("inbox json");
    let item = &inbox["items"][0];
    assert_eq!(
        (&item["publish_at"], &item["published_at"]),
        (&data["publish_at"], &data["published_at"]),
        "{inbox}"
    );
}

both_backends!(racing_scheduler_ticks_deliver_exactly_once);
async fn racing_scheduler_ticks_deliver_exactly_once() {
    let app = spawn_app_with(|s| s.poll_interval_ms = 60_000).await;
    let mut tabs = vec![app.connect("alice").await, app.connect("alice").await];
    let mut bob = app.connect("bob").await;
    let publish_at = herald::db::now_ms() + 300;
    let created = app
        .announce(json!({"title":"race","content":"c","audience":{"all":true},
            "publish_at": herald::domain::rfc3339(publish_at)}))
        .await;
    tokio::time::sleep(Duration::from_millis(320)).await;
    let (pool, fanout) = (app.state.pool.clone(), app.state.fanout.clone());
    let outbox = app.state.outbox.clone();
    let (a, b) = tokio::join!(
        publish_due(pool.clone(), fanout.clone(), outbox.clone()),
        publish_due(pool, fanout, outbox)
    );
    let manual = a.expect("tick").0 + b.expect("tick").0;
    assert!(manual <= 1, "two ticks published {manual}");
    tabs.push(bob);
    for ws in &mut tabs {
        assert_eq!(
            ws.next_of("announcement").await["data"]["id"],
            created["id"]
        );
        ws.assert_no("announcement", Duration::from_millis(300))
            .await;
    }
    bob = tabs.pop().expect("bob");
    drop(bob);
    let view = app.announcement(created["id"].as_i64().expect("id")).await;
    assert_eq!(view["status"], "published");
    assert_eq!(view["cursor"], 1);
}

both_backends!(cancelled_announcement_is_never_delivered);
async fn cancelled_announcement_is_never_delivered() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    let created = app
        .announce(json!({"title":"nope","content":"c","audience":{"all":true},
            "publish_at": in_ms(800)}))
        .await;
    let id = created["id"].as_i64().expect("id");
    let res = app.admin_delete(&format!("/api/announcements/{id}")).await;
    assert_eq!(res.status().as_u16(), 200);
    ws.assert_no("announcement", Duration::from_millis(1_300))
        .await;
    assert_eq!(app.announcement(id).await["status"], "cancelled");
}

both_backends!(patch_moves_a_scheduled_announcement_and_409s_after_publish);
async fn patch_moves_a_scheduled_announcement_and_409s_after_publish() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    let created = app
        .announce(
            json!({"title":"draft","content":"c","audience":{"all":true},
            "publish_at": in_ms(60_000)}),
        )
        .await;
    let id = created["id"].as_i64().expect("id");
    let res = app
        .admin_patch(
            &format!("/api/announcements/{id}"),
            &json!({"title": "final", "publish_at": in_ms(0)}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(ws.next_of("announcement").await["data"]["title"], "final");

    let res = app
        .admin_patch(
            &format!("/api/announcements/{id}"),
            &json!({"title": "too late"}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 409);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_scheduled");
}
