//! The admin REST API: auth, validation, listing, presence, tokens, health.

use crate::helpers::*;
use serde_json::{json, Value};

both_backends!(admin_endpoints_need_the_admin_token);
async fn admin_endpoints_need_the_admin_token() {
    let app = spawn_app().await;
    let url = format!("{}/api/announcements", app.address);
    let none = app.http.get(&url).send().await.expect("request");
    assert_eq!(none.status().as_u16(), 401);
    let body: Value = none.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);
    let user = app
        .http
        .get(&url)
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .expect("request");
    assert_eq!(user.status().as_u16(), 401);
    assert_eq!(
        app.admin_get("/api/announcements").await.status().as_u16(),
        200
    );
}

both_backends!(invalid_announcements_get_422_with_the_field);
async fn invalid_announcements_get_422_with_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"content":"c","audience":{"all":true}}), "title"),
        (json!({"title":"t","content":"c"}), "audience"),
        (
            json!({"title":"t","content":"c","audience":{"users":[]}}),
            "audience.users",
        ),
        (
            json!({"title":"t","content":"c","audience":{"all":true},"level":"loud"}),
            "level",
        ),
        (
            json!({"title":"x".repeat(201),"content":"c","audience":{"all":true}}),
            "title",
        ),
        (
            json!({"title":"t","content":"c","audience":{"all":true},"publish_at":"soon"}),
            "publish_at",
        ),
    ];
    for (body, field) in cases {
        let res = app.admin_post("/api/announcements", &body).await;
        assert_eq!(res.status().as_u16(), 422, "{body}");
        let err: Value = res.json().await.expect("json");
        assert_eq!(err["error"]["code"], "validation_failed");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
}

both_backends!(malformed_json_gets_400_in_the_error_format);
async fn malformed_json_gets_400_in_the_error_format() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(format!("{}/api/announcements", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 400);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalid_json");
}

both_backends!(list_filters_by_status_and_pages_by_cursor);
async fn list_filters_by_status_and_pages_by_cursor() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.announce(json!({"title": format!("later {i}"), "content":"c",
            "audience":{"all":true}, "publish_at":"2099-01-01T00:00:00Z"}))
            .await;
    }
    let page: Value = app
        .admin_get("/api/announcements?status=scheduled&limit=2")
        .await
        .json()
        .await
        .expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["title"], "later 2");
    let before = page["next_before"].as_i64().expect("more pages");
    let rest: Value = app
        .admin_get(&format!(
            "/api/announcements?status=scheduled&limit=2&before={before}"
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(rest["items"].as_array().expect("items").len(), 1);
    assert_eq!(rest["next_before"], Value::Null);
    let published: Value = app
        .admin_get("/api/announcements?status=published")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(published["items"].as_array().expect("items").len(), 0);
    let bad = app.admin_get("/api/announcements?status=nonsense").await;
    assert_eq!(bad.status().as_u16(), 400);
}

both_backends!(unknown_announcement_is_404);
async fn unknown_announcement_is_404() {
    let app = spawn_app().await;
    assert_eq!(
        app.admin_get("/api/announcements/999")
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        app.admin_get("/api/announcements/abc")
            .await
            .status()
            .as_u16(),
        404
    );
}

both_backends!(presence_counts_sessions_per_user);
async fn presence_counts_sessions_per_user() {
    let app = spawn_app().await;
    let _a1 = app.connect("alice").await;
    let _a2 = app.connect("alice").await;
    let _b = app.connect("bob").await;
    let all: Value = app
        .admin_get("/api/presence")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["total_users"], 2);
    assert_eq!(all["total_sessions"], 3);
    let alice: Value = app
        .admin_get("/api/presence/alice")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(alice["sessions"], 2);
    assert_eq!(alice["online"], true);
}

both_backends!(minted_token_opens_a_session);
async fn minted_token_opens_a_session() {
    let app = spawn_app().await;
    let res = app
        .admin_post(
            "/api/tokens",
            &json!({"user_id":"dora","groups":["ops"],"ttl_seconds":60}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    let claims = app
        .state
        .keys
        .verify_for(token, "dora")
        .expect("valid token");
    assert_eq!(claims.groups, vec!["ops".to_string()]);
}

both_backends!(health_and_readiness);
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status().as_u16(), 200);
    let ready: Value = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
}

both_backends!(demo_pages_are_served_with_types);
async fn demo_pages_are_served_with_types() {
    let app = spawn_app().await;
    for (path, ty) in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/admin.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/admin.js", "text/javascript"),
        ("/herald.js", "text/javascript"),
        ("/herald.css", "text/css"),
    ] {
        let res = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let got = res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(got.starts_with(ty), "{path}: {got}");
        // Revalidated on every load, so an upgraded herald never serves a
        // stale script beside a new page; unchanged files cost a 304.
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let etag = res.headers()["etag"].clone();
        let again = app
            .http
            .get(format!("{}{path}", app.address))
            .header("If-None-Match", etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    let missing = app
        .http
        .get(format!("{}/nope.js", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status().as_u16(), 404);
}

both_backends!(patch_that_would_expire_before_publishing_gets_422_with_the_field);
async fn patch_that_would_expire_before_publishing_gets_422_with_the_field() {
    let app = spawn_app().await;
    let now = herald::db::now_ms();
    let at = |ms: i64| herald::domain::rfc3339(now + ms);
    let hour = 3_600_000;
    let created = app
        .announce(
            json!({"title": "t", "content": "c", "audience": {"all": true},
            "publish_at": at(hour), "expires_at": at(2 * hour)}),
        )
        .await;
    let id = created["id"].as_i64().expect("id");

    // Each change alone is a valid time; merged with what is stored, the
    // announcement would expire before (or as) it publishes: seen by no one.
    let cases = [
        (json!({"expires_at": at(hour / 2)}), "expires_at"),
        (json!({"expires_at": at(hour)}), "expires_at"),
        (json!({"publish_at": at(3 * hour)}), "publish_at"),
        (json!({"publish_at": at(2 * hour)}), "publish_at"),
        (
            json!({"publish_at": at(3 * hour), "expires_at": at(3 * hour)}),
            "expires_at",
        ),
    ];
    for (change, field) in cases {
        let res = app
            .admin_patch(&format!("/api/announcements/{id}"), &change)
            .await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 422, "{change}: {body}");
        assert_eq!(
            body["error"]["code"], "validation_failed",
            "{change}: {body}"
        );
        assert_eq!(body["error"]["field"], field, "{change}: {body}");
    }
    let stored = app.announcement(id).await;
    assert_eq!(
        (&stored["publish_at"], &stored["expires_at"]),
        (&created["publish_at"], &created["expires_at"]),
        "a refused patch changes nothing"
    );

    // Moves that keep the announcement visible for a while are still taken.
    let later = app
        .admin_patch(
            &format!("/api/announcements/{id}"),
            &json!({"publish_at": at(hour + hour / 2)}),
        )
        .await;
    assert_eq!(later.status().as_u16(), 200);
    let both = app
        .admin_patch(
            &format!("/api/announcements/{id}"),
            &json!({"publish_at": at(3 * hour), "expires_at": at(4 * hour)}),
        )
        .await;
    assert_eq!(both.status().as_u16(), 200);
}
