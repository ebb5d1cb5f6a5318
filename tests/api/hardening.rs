//! Every bound and what it answers; slow and dead clients; token expiry;
//! database outage; graceful shutdown; metrics.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[actix_web::test]
async fn sessions_beyond_the_per_user_limit_close_with_4029() {
    let app = spawn_app_with(|s| s.max_sessions_per_user = 2).await;
    let _a = app.connect("alice").await;
    let _b = app.connect("alice").await;
    let token = app.token("alice");
    let (mut third, _) = Ws::open(&app.ws_url("/ws?id=alice"), &["herald.v1", &token])
        .await
        .expect("upgrade");
    assert_eq!(third.next_json().await["data"]["code"], "too_many_sessions");
    assert_eq!(third.closed().await, Closed::Code(4029));
    // Another user is not affected.
    app.connect("bob").await;
}

#[actix_web::test]
async fn connection_rate_per_address_is_limited_before_the_upgrade() {
    let app = spawn_app_with(|s| s.max_connects_per_ip = 2).await;
    let token = app.token("alice");
    let mut refused = 0;
    for _ in 0..8 {
        match Ws::open(&app.ws_url("/ws?id=alice"), &["herald.v1", &token]).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.contains("429"), "refused with {e}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 3, "only {refused} of 8 refused");
}

#[actix_web::test]
async fn oversized_rest_body_gets_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 1_024).await;
    let body = json!({"title": "t", "content": "x".repeat(4_096), "audience": {"all": true}});
    let res = app.admin_post("/api/announcements", &body).await;
    assert_eq!(res.status().as_u16(), 413);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"]["code"], "payload_too_large");
}

#[actix_web::test]
async fn too_many_recipients_get_422() {
    let app = spawn_app_with(|s| s.max_recipients = 3).await;
    let res = app
        .admin_post(
            "/api/announcements",
            &json!({"title":"t","content":"c","audience":{"users":["a","b","c","d"]}}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 422);
}

#[actix_web::test]
async fn origin_allow_list_refuses_other_sites() {
    let app = spawn_app_with(|s| s.allowed_origins = vec!["https://app.example".into()]).await;
    let token = app.token("alice");
    for (origin, allowed) in [
        ("https://evil.example", false),
        ("https://app.example", true),
    ] {
        let mut request = app
            .ws_url("/ws?id=alice")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("herald.v1, {token}").parse().expect("header"),
        );
        let result = tokio_tungstenite::connect_async(request).await;
        match (allowed, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => assert!(e.to_string().contains("403"), "{e}"),
            (allowed, other) => panic!(
                "origin {origin}: allowed={allowed}, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[actix_web::test]
async fn frame_flood_gets_rate_limited_then_4008() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    for _ in 0..120 {
        ws.send_text("ping").await;
    }
    let mut limited = false;
    loop {
        match ws.try_next_json(WAIT).await {
            Some(frame) if frame["data"]["code"] == "rate_limited" => limited = true,
            Some(_) => continue,
            None => break,
        }
    }
    assert!(limited, "an error frame said rate_limited");
    // The close frame was consumed by the loop above; the socket is gone.
    assert!(ws.try_next_json(Duration::from_millis(200)).await.is_none());
}

/// Runs against a herald child process so that its memory is measured
/// alone, not together with the other tests in this process.
#[actix_web::test]
async fn client_that_never_reads_is_dropped_with_bounded_memory_and_resumes() {
    const ROUNDS: usize = 50;
    const CONTENT: usize = 100_000;
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let node = Node::start_with(
        &db,
        &[
            "--max-queued-bytes",
            "262144",
            "--max-content-chars",
            &CONTENT.to_string(),
            "--max-body-bytes",
            &(4 * CONTENT).to_string(),
        ],
    );
    let (port, pid) = (node.port, node.child.id());
    let mut stalled = stalled_socket(port, "sleepy", "").await;
    let mut healthy = open_reader(port, "awake", 0).await;
    let content = "x".repeat(CONTENT);
    let mut ids = Vec::new();
    let mut rss = Vec::new();
    // Phase one fills the stalled client's buffers and overflows its queue;
    // phase two measures what further broadcasts cost while it stays stalled.
    for phase in 0..2 {
        rss.push(rss_kib(pid));
        // Phase two is longer so the bound stands out from allocator noise.
        for i in 0..ROUNDS * (1 + 2 * phase) {
            let id = node
                .announce(&json!({"title": format!("big {phase}.{i}"), "content": content, "audience": {"all": true}}))
                .await;
            ids.push(id);
            let frame = healthy.next_of("announcement").await;
            assert_eq!(frame["data"]["id"], id, "the reading client keeps up");
        }
    }
    rss.push(rss_kib(pid));
    let offered_kib = (3 * ROUNDS * CONTENT / 1024) as u64;
    let growth = rss[2].saturating_sub(rss[1]);
    eprintln!(
        "slow client: herald RSS {} -> {} -> {} KiB; phase two offered {offered_kib} KiB to the stalled client, RSS grew {growth} KiB",
        rss[0], rss[1], rss[2]
    );
    let presence = node.admin_get("/api/presence/sleepy").await;
    assert_eq!(
        presence["sessions"], 0,
        "the stalled session is no longer routed to"
    );
    assert!(
        growth < offered_kib / 3,
        "memory grew {growth} KiB for {offered_kib} KiB offered"
    );

    // When it reads again it learns why and resumes by cursor.
    let mut last_cursor = 0;
    let mut got = Vec::new();
    let closed = loop {
        match stalled.next_message(WAIT).await {
            Some(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "announcement" {
                    got.push(v["data"]["id"].as_i64().expect("id"));
                    last_cursor = v["data"]["cursor"].as_i64().expect("cursor");
                }
            }
            Some(tokio_tungstenite::tungstenite::Message::Close(f)) => {
                break f.map(|f| u16::from(f.code))
            }
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(closed, Some(4029));
    let mut resumed = open_reader(port, "sleepy", last_cursor).await;
    while got.len() < ids.len() {
        got.push(
            resumed.next_of("announcement").await["data"]["id"]
                .as_i64()
                .expect("id"),
        );
    }
    assert_eq!(got, ids, "every announcement exactly once, in order");
}

#[actix_web::test]
async fn expired_token_closes_the_session_unless_refreshed() {
    let app = spawn_app().await;
    let short = |user: &str, secs: u64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": user, "exp": herald::auth::now_secs() + secs}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("encode")
    };
    let (mut lapsing, _) = Ws::open(
        &app.ws_url("/ws?id=alice"),
        &["herald.v1", &short("alice", 2)],
    )
    .await
    .expect("open");
    let (mut refreshed, _) = Ws::open(&app.ws_url("/ws?id=bob"), &["herald.v1", &short("bob", 2)])
        .await
        .expect("open");
    assert_eq!(refreshed.next_json().await["type"], "welcome");
    refreshed
        .send_json(json!({"type": "refresh", "data": {"token": app.token("bob")}}))
        .await;
    assert_eq!(
        lapsing.next_of("error").await["data"]["code"],
        "token_expired"
    );
    assert_eq!(lapsing.closed().await, Closed::Code(4001));
    refreshed.send_text("ping").await;
    assert_eq!(refreshed.next_of("pong").await["type"], "pong");
}

#[actix_web::test]
async fn locked_database_gives_503_keeps_sessions_and_publishes_after() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let app = spawn_app_with(|s| s.db_busy_timeout_ms = 100).await;
    let mut ws = app.connect("alice").await;
    let due = herald::db::now_ms() + 400;
    let created = app
        .announce(
            json!({"title":"during outage","content":"c","audience":{"all":true},
            "publish_at": herald::domain::rfc3339(due)}),
        )
        .await;

    let path = herald::db::sqlite_path(&app.state.settings.database_url).to_string();
    let mut locker = diesel::SqliteConnection::establish(&path).expect("second connection");
    locker.batch_execute("BEGIN EXCLUSIVE").expect("lock");

    let res = app
        .admin_post(
            "/api/announcements",
            &json!({"title":"t","content":"c","audience":{"all":true}}),
        )
        .await;
    assert_eq!(res.status().as_u16(), 503);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"]["code"], "database_unavailable");

    // Past the due time the scheduler fails and says so.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .expect("request");
        if ready.status().as_u16() == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ws.send_text("ping").await;
    assert_eq!(ws.next_of("pong").await["type"], "pong", "sessions stay up");

    locker.batch_execute("ROLLBACK").expect("unlock");
    let frame = ws.next_of("announcement").await;
    assert_eq!(frame["data"]["id"], created["id"]);
    ws.assert_no("announcement", Duration::from_millis(300))
        .await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status().as_u16(), 200);
}

#[actix_web::test]
async fn sigterm_closes_sessions_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut node = Node::start_with(&db, &["--shutdown-grace", "5"]);
    let url = format!("ws://127.0.0.1:{}/ws?id=alice", node.port);
    let token = herald::auth::TokenKeys::new(JWT_SECRET)
        .mint("alice", &[], 60)
        .expect("mint")
        .0;
    let (mut ws, _) = Ws::open(&url, &["herald.v1", &token]).await.expect("open");
    assert_eq!(ws.next_json().await["type"], "welcome");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let close = loop {
        match ws.next_message(WAIT).await {
            Some(tokio_tungstenite::tungstenite::Message::Close(f)) => {
                break f.expect("close frame")
            }
            Some(_) => continue,
            None => panic!("no close frame"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    assert!(close.reason.contains("reconnect in"), "{}", close.reason);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "herald did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[actix_web::test]
async fn metrics_are_prometheus_text_with_the_promised_series() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    app.announce_all("count").await;
    ws.next_of("announcement").await;
    let res = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("text");
    let mut values = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value.parse().expect("numeric sample");
        values.insert(name.split('{').next().expect("name").to_string(), value);
    }
    for series in [
        "herald_sessions",
        "herald_users_online",
        "herald_connects_total",
        "herald_frames_in_total",
        "herald_frames_out_total",
        "herald_deliveries_total",
        "herald_publish_lag_seconds_bucket",
        "herald_scheduler_ticks_total",
        "herald_db_pool_connections",
    ] {
        assert!(values.contains_key(series), "missing {series}");
    }
    assert!(values["herald_sessions"] >= 1.0);
    assert!(values["herald_deliveries_total"] >= 1.0);
}
