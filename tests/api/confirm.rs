//! Announcements a recipient must confirm: the `confirm` frame and
//! `POST /api/me/inbox/{id}/confirm` (idempotent, implies read, only inside
//! the user's audience), the flags in frames and the inbox, the confirmed
//! count, the recipients pages (pending over explicit users, groups and
//! "all"), and the flag on create and PATCH.

use crate::helpers::*;
use herald::actors::messages::Flush;
use serde_json::{json, Value};
use std::time::Duration;

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

async fn confirm_rest(app: &TestApp, user: &str, id: impl std::fmt::Display) -> u16 {
    app.user_post(&app.token(user), &format!("/api/me/inbox/{id}/confirm"))
        .await
        .status()
        .as_u16()
}

/// One recipients page: the user ids and `next_after`.
async fn recipients(app: &TestApp, id: i64, query: &str) -> (Vec<String>, Value) {
    let res = app
        .admin_get(&format!("/api/announcements/{id}/recipients?{query}"))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let page: Value = res.json().await.expect("json");
    let users = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["user_id"].as_str().expect("user_id").to_string())
        .collect();
    (users, page["next_after"].clone())
}

/// Creates an announcement and waits until the scheduler published it.
async fn published(app: &TestApp, body: Value) -> i64 {
    let id = id_of(&app.announce(body).await);
    app.wait_for_announcement(id, |v| v["status"] == "published")
        .await;
    id
}

async fn flush(app: &TestApp) {
    app.state.receipts.send(Flush).await.expect("flush");
}

both_backends!(confirm_by_frame_reaches_other_tabs_and_implies_read);
/// A confirm frame in one tab: the other tab hears `read` with the id in
/// `confirmed`, the stats count it as read and confirmed, the inbox and a
/// replay say `confirmed`.
async fn confirm_by_frame_reaches_other_tabs_and_implies_read() {
    let app = spawn_app().await;
    let mut tab_a = app.connect("alice").await;
    let mut tab_b = app.connect("alice").await;
    let created = app
        .announce(json!({"title": "policy", "content": "read it",
            "audience": {"all": true}, "requires_confirmation": true}))
        .await;
    assert_eq!(created["requires_confirmation"], true);
    let id = id_of(&created);
    for tab in [&mut tab_a, &mut tab_b] {
        let frame = tab.next_of("announcement").await;
        assert_eq!(frame["data"]["requires_confirmation"], true);
        assert_eq!(frame["data"]["confirmed"], false);
    }

    tab_a
        .send_json(json!({"type": "confirm", "data": {"ids": [id]}}))
        .await;
    let read = tab_b.next_of("read").await;
    assert_eq!(read["data"], json!({"ids": [id], "confirmed": [id]}));
    tab_a.assert_no("read", Duration::from_millis(300)).await;

    let view = app
        .wait_for_announcement(id, |v| v["stats"]["confirmed"] == 1)
        .await;
    assert_eq!(view["stats"]["read"], 1, "{view}");
    assert_eq!(view["stats"]["delivered"], 1, "{view}");

    let inbox: Value = app
        .user_get(&app.token("alice"), "/api/me/inbox")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(inbox["items"][0]["confirmed"], true, "{inbox}");
    assert_eq!(inbox["items"][0]["read"], true, "{inbox}");
    assert_eq!(inbox["items"][0]["requires_confirmation"], true, "{inbox}");

    // A tab that resumes from before it says so in the replayed frame.
    let mut again = app.connect_with("alice", &[], "&since=0").await;
    let replayed = again.next_of("announcement").await;
    assert_eq!(replayed["data"]["id"], id);
    assert_eq!(replayed["data"]["confirmed"], true, "{replayed}");
}

both_backends!(confirm_by_rest_is_idempotent_and_only_inside_the_audience);
/// REST confirm: 200 twice with the first time kept, 404 for an id that is
/// not in the user's inbox; a confirm frame for one is ignored.
async fn confirm_by_rest_is_idempotent_and_only_inside_the_audience() {
    let app = spawn_app().await;
    let mut tab = app.connect("bob").await;
    let id = id_of(
        &app.announce(json!({"title": "t", "content": "c",
            "audience": {"users": ["bob"]}, "requires_confirmation": true}))
            .await,
    );
    tab.next_of("announcement").await;
    let foreign = id_of(
        &app.announce(json!({"title": "t", "content": "c",
            "audience": {"users": ["carol"]}, "requires_confirmation": true}))
            .await,
    );

    assert_eq!(confirm_rest(&app, "bob", id).await, 200);
    let read = tab.next_of("read").await;
    assert_eq!(read["data"]["confirmed"], json!([id]));
    let (_, first) = recipients(&app, id, "state=confirmed").await;
    assert!(first.is_null());
    let page: Value = app
        .admin_get(&format!(
            "/api/announcements/{id}/recipients?state=confirmed"
        ))
        .await
        .json()
        .await
        .expect("json");
    let confirmed_at = page["items"][0]["confirmed_at"].clone();
    assert!(confirmed_at.is_string(), "{page}");
    assert!(page["items"][0]["read_at"].is_string(), "{page}");

    tokio::time::sleep(Duration::from_millis(5)).await; // a later millisecond
    assert_eq!(confirm_rest(&app, "bob", id).await, 200);
    let page: Value = app
        .admin_get(&format!(
            "/api/announcements/{id}/recipients?state=confirmed"
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"][0]["confirmed_at"], confirmed_at);
    assert_eq!(app.announcement(id).await["stats"]["confirmed"], 1);

    assert_eq!(confirm_rest(&app, "bob", foreign).await, 404);
    assert_eq!(confirm_rest(&app, "bob", 999_999).await, 404);
    assert_eq!(confirm_rest(&app, "bob", "nope").await, 404);
    tab.send_json(json!({"type": "confirm", "data": {"ids": [foreign]}}))
        .await;
    flush(&app).await;
    assert_eq!(app.announcement(foreign).await["stats"]["confirmed"], 0);
    tab.assert_no("error", Duration::from_millis(100)).await;
}

both_backends!(pending_pages_cover_users_groups_and_all);
/// Who is pending, page by page: the named users of a users audience
/// (connected or not), the known users of a group or of "all"; without
/// confirmation, pending means not read.
async fn pending_pages_cover_users_groups_and_all() {
    let app = spawn_app().await;
    for (user, groups) in [
        ("u1", &["ops"][..]),
        ("u2", &["ops"][..]),
        ("u3", &["dev"][..]),
        ("u4", &[][..]),
    ] {
        app.connect_with(user, groups, "").await.close().await;
    }
    let ask = |audience: Value, confirm: bool| {
        json!({"title": "t", "content": "c", "audience": audience,
            "requires_confirmation": confirm})
    };

    let users = published(&app, ask(json!({"users": ["u1", "u2", "u3", "x9"]}), true)).await;
    assert_eq!(confirm_rest(&app, "u1", users).await, 200);
    let (page, next) = recipients(&app, users, "state=pending&limit=2").await;
    assert_eq!(
        (page, next.clone()),
        (vec!["u2".into(), "u3".into()], json!("u3"))
    );
    let (page, next) = recipients(&app, users, "state=pending&limit=2&after=u3").await;
    assert_eq!((page, next), (vec!["x9".to_string()], Value::Null));
    let (page, _) = recipients(&app, users, "state=confirmed").await;
    assert_eq!(page, vec!["u1".to_string()]);

    let groups = published(&app, ask(json!({"groups": ["ops"]}), true)).await;
    let (page, _) = recipients(&app, groups, "state=pending").await;
    assert_eq!(page, vec!["u1".to_string(), "u2".to_string()]);
    let u2 = app.token_with_groups("u2", &["ops"]);
    let res = app
        .user_post(&u2, &format!("/api/me/inbox/{groups}/confirm"))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let (page, _) = recipients(&app, groups, "").await; // pending by default
    assert_eq!(page, vec!["u1".to_string()]);
    assert_eq!(app.announcement(groups).await["stats"]["confirmed"], 1);

    // Without confirmation: pending until read, over every known user.
    let all = published(&app, ask(json!({"all": true}), false)).await;
    let (page, next) = recipients(&app, all, "state=pending&limit=3").await;
    assert_eq!(page, vec!["u1", "u2", "u3"]);
    let after = next.as_str().expect("a next page");
    let (rest, _) = recipients(&app, all, &format!("state=pending&after={after}")).await;
    assert_eq!(rest, vec!["u4"]);
    let res = app
        .user_post(&app.token("u3"), &format!("/api/me/inbox/{all}/read"))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let (page, _) = recipients(&app, all, "state=pending").await;
    assert_eq!(page, vec!["u1", "u2", "u4"]);
    let (page, _) = recipients(&app, all, "state=read").await;
    assert_eq!(page, vec!["u3"]);
    let (page, _) = recipients(&app, all, "state=delivered").await;
    assert_eq!(page, vec!["u3"]);

    let bad = app
        .admin_get(&format!("/api/announcements/{all}/recipients?state=maybe"))
        .await;
    assert_eq!(bad.status().as_u16(), 400);
    let missing = app
        .admin_get("/api/announcements/999999/recipients?state=pending")
        .await;
    assert_eq!(missing.status().as_u16(), 404);
    let as_user = app
        .user_get(
            &app.token("u1"),
            &format!("/api/announcements/{all}/recipients"),
        )
        .await;
    assert_eq!(as_user.status().as_u16(), 401);
}

both_backends!(patch_sets_requires_confirmation_while_scheduled);
/// The flag is false unless asked for, can be changed while scheduled, and
/// must be a boolean.
async fn patch_sets_requires_confirmation_while_scheduled() {
    let app = spawn_app().await;
    let later = herald::domain::rfc3339(herald::db::now_ms() + 3_600_000);
    let created = app
        .announce(
            json!({"title": "t", "content": "c", "audience": {"all": true},
            "publish_at": later}),
        )
        .await;
    assert_eq!(created["requires_confirmation"], false);
    let id = id_of(&created);
    let path = format!("/api/announcements/{id}");

    let res = app
        .admin_patch(&path, &json!({"requires_confirmation": true}))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let patched: Value = res.json().await.expect("json");
    assert_eq!(patched["requires_confirmation"], true);
    assert_eq!(app.announcement(id).await["requires_confirmation"], true);
    let res = app.admin_patch(&path, &json!({"title": "t2"})).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(app.announcement(id).await["requires_confirmation"], true);

    let res = app
        .admin_patch(&path, &json!({"requires_confirmation": null}))
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.expect("json");
    assert!(body.to_string().contains("requires_confirmation"), "{body}");
    let res = app
        .admin_patch(&path, &json!({"requires_confirmation": "yes"}))
        .await;
    assert_eq!(res.status().as_u16(), 400);
    let res = app
        .admin_post(
            "/api/announcements",
            &json!({"title": "t", "content": "c", "audience": {"all": true},
                "requires_confirmation": 1}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 400);

    let published = id_of(&app.announce_all("now").await);
    app.wait_for_announcement(published, |v| v["status"] == "published")
        .await;
    let res = app
        .admin_patch(
            &format!("/api/announcements/{published}"),
            &json!({"requires_confirmation": true}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 409);
}
