//! The WebSocket handshake, tokens, heartbeats and bad input.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::Message;

both_backends!(herald_v1_offer_is_answered_with_herald_v1);
async fn herald_v1_offer_is_answered_with_herald_v1() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let (mut ws, _) = Ws::open(&app.ws_url("/ws?id=alice"), &["herald.v1", &token])
        .await
        .expect("handshake");
    assert_eq!(ws.protocol.as_deref(), Some("herald.v1"));
    assert_eq!(ws.next_json().await["type"], "welcome");
}

both_backends!(token_only_offer_is_answered_with_the_token);
async fn token_only_offer_is_answered_with_the_token() {
    let app = spawn_app().await;
    let token = app.token("1");
    let (mut ws, _) = Ws::open(&app.ws_url("/ws?id=1"), &[&token])
        .await
        .expect("handshake");
    assert_eq!(ws.protocol.as_deref(), Some(token.as_str()));
    assert_eq!(ws.next_json().await["type"], "welcome");
}

both_backends!(token_query_parameter_is_accepted);
async fn token_query_parameter_is_accepted() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let (mut ws, _) = Ws::open(&app.ws_url(&format!("/ws?id=alice&token={token}")), &[])
        .await
        .expect("handshake");
    assert_eq!(ws.protocol, None);
    assert_eq!(ws.next_json().await["type"], "welcome");
}

both_backends!(welcome_describes_the_session);
async fn welcome_describes_the_session() {
    let app = spawn_app().await;
    app.announce_all("before").await;
    let ws = app.connect("alice").await;
    let w = &ws.welcome["data"];
    assert_eq!(w["user_id"], "alice");
    assert!(w["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(w["heartbeat_ms"], 25_000);
    assert!(w["server_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(w["cursor"].is_i64());
    assert!(w["unread"].is_i64());
}

async fn expect_rejection(
    app: &TestApp,
    url: &str,
    protocols: &[&str],
) -> (serde_json::Value, Closed) {
    let (mut ws, _) = Ws::open(&app.ws_url(url), protocols)
        .await
        .expect("the upgrade is accepted so the client can read the close code");
    let error = ws.next_json().await;
    assert_eq!(error["type"], "error", "{error}");
    (error, ws.closed().await)
}

both_backends!(forged_token_closes_with_4001);
async fn forged_token_closes_with_4001() {
    let app = spawn_app().await;
    let forged = herald::auth::TokenKeys::new("some-other-secret-value")
        .mint("alice", &[], 60)
        .expect("mint")
        .0;
    let (_, closed) = expect_rejection(&app, "/ws?id=alice", &["herald.v1", &forged]).await;
    assert_eq!(closed, Closed::Code(4001));
}

both_backends!(missing_garbage_and_expired_tokens_close_with_4001);
async fn missing_garbage_and_expired_tokens_close_with_4001() {
    let app = spawn_app().await;
    let (error, closed) = expect_rejection(&app, "/ws?id=alice", &[]).await;
    assert_eq!(error["data"]["code"], "missing_token");
    assert_eq!(closed, Closed::Code(4001));

    let (_, closed) = expect_rejection(&app, "/ws?id=alice", &["herald.v1", "not.a.jwt"]).await;
    assert_eq!(closed, Closed::Code(4001));

    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 1_000}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let (error, closed) = expect_rejection(&app, "/ws?id=alice", &["herald.v1", &expired]).await;
    assert_eq!(error["data"]["code"], "token_expired");
    assert_eq!(closed, Closed::Code(4001));
}

both_backends!(token_signed_with_another_algorithm_closes_with_4001);
async fn token_signed_with_another_algorithm_closes_with_4001() {
    let app = spawn_app().await;
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"sub": "alice", "exp": herald::auth::now_secs() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let (_, closed) = expect_rejection(&app, "/ws?id=alice", &["herald.v1", &hs512]).await;
    assert_eq!(closed, Closed::Code(4001));
}

both_backends!(token_of_another_user_closes_with_4003);
async fn token_of_another_user_closes_with_4003() {
    let app = spawn_app().await;
    let bobs = app.token("bob");
    let (error, closed) = expect_rejection(&app, "/ws?id=alice", &["herald.v1", &bobs]).await;
    assert_eq!(error["data"]["code"], "forbidden");
    assert_eq!(closed, Closed::Code(4003));
}

both_backends!(every_heartbeat_alias_gets_a_pong);
async fn every_heartbeat_alias_gets_a_pong() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    for alias in [
        r#"{"type":"ping"}"#,
        r#"{"type":"headerBeat","msg":"test"}"#,
        r#"{"sendType":"HEALTH"}"#,
        "ping",
        "heartCheck",
    ] {
        ws.send_text(alias).await;
        let pong = ws.next_json().await;
        assert_eq!(pong["type"], "pong", "answer to {alias}: {pong}");
        assert!(pong["data"]["ts"].is_i64());
    }
}

both_backends!(server_pings_at_the_requested_interval);
async fn server_pings_at_the_requested_interval() {
    let app = spawn_app_with(|s| s.heartbeat_min = 1).await;
    let mut ws = app.connect_with("alice", &[], "&heartbeat=1").await;
    assert_eq!(ws.welcome["data"]["heartbeat_ms"], 1_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_message(left).await {
            Some(Message::Ping(_)) => break,
            Some(_) => continue,
            None => panic!("no server ping within 3 s"),
        }
    }
}

both_backends!(silent_client_is_closed_with_4000);
async fn silent_client_is_closed_with_4000() {
    let app = spawn_app_with(|s| {
        s.heartbeat_min = 1;
        s.heartbeat_timeout = 2;
    })
    .await;
    let mut ws = app.connect_with("alice", &[], "&heartbeat=1").await;
    // Not reading means not answering pings: the server sees silence.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(ws.closed().await, Closed::Code(4000));
}

both_backends!(malformed_frames_get_errors_and_the_session_stays_open);
async fn malformed_frames_get_errors_and_the_session_stays_open() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    for (frame, code) in [
        ("{not json", "bad_json"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"ack","data":{"ids":"x"}}"#, "bad_frame"),
    ] {
        ws.send_text(frame).await;
        let error = ws.next_json().await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["data"]["code"], code, "{frame}");
    }
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong");
}

both_backends!(repeated_bad_input_closes_with_4008);
async fn repeated_bad_input_closes_with_4008() {
    let app = spawn_app().await;
    let mut ws = app.connect("alice").await;
    for _ in 0..12 {
        ws.send_text("{broken").await;
    }
    assert_eq!(ws.closed().await, Closed::Code(4008));
}

both_backends!(oversized_frame_closes_with_1009);
async fn oversized_frame_closes_with_1009() {
    let app = spawn_app_with(|s| s.max_frame_bytes = 1024).await;
    let mut ws = app.connect("alice").await;
    ws.send_text(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(4096)
    ))
    .await;
    assert_eq!(ws.closed().await, Closed::Code(1009));
}

/// Opens a socket that carries its token in a cookie, as a page on herald's
/// origin does with code it cannot change.
async fn open_with_cookie(url: &str, cookie: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().expect("header value"));
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake");
    Ws {
        stream,
        welcome: serde_json::Value::Null,
        protocol: None,
    }
}

#[actix_web::test]
async fn seed_url_forms_get_the_legacy_frames() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let cookie = format!("herald_token={token}");
    let mut sockets = vec![
        open_with_cookie(&app.ws_url("/ws/alice:1795300000000"), &cookie).await,
        open_with_cookie(&app.ws_url("/websocket/alice"), &cookie).await,
        Ws::open(&app.ws_url("/ws/alice"), &[&token])
            .await
            .expect("handshake")
            .0,
        Ws::open(
            &app.ws_url(&format!("/ws?token={token}&project=jd-shop&uid=alice")),
            &[],
        )
        .await
        .expect("handshake")
        .0,
    ];
    for ws in &mut sockets {
        ws.send_text("heartCheck").await;
        let first = ws.next_json().await;
        assert_eq!(first["type"], "pong", "no welcome first: {first}");
        assert_eq!(first["code"], 2);
    }

    let created = app.announce_all("Maintenance").await;
    for ws in &mut sockets {
        let frame = ws.next_of("announcement").await;
        assert_eq!(frame["id"], created["id"]);
        assert_eq!(frame["title"], "Maintenance");
        assert_eq!(frame["content"], "body");
        assert_eq!(frame["level"], "info");
        assert_eq!(frame["data"]["title"], "Maintenance");
        assert!(frame["data"]["cursor"].is_i64());
    }

    // The protocol-v1 form keeps the v1 shapes.
    let mut v1 = app.connect("alice").await;
    v1.send_text("heartCheck").await;
    let pong = v1.next_of("pong").await;
    assert!(pong.get("code").is_none(), "{pong}");
}

#[actix_web::test]
async fn token_cookie_name_is_configurable() {
    let app = spawn_app_with(|s| s.token_cookie = "sid".into()).await;
    let token = app.token("alice");
    let mut ws = open_with_cookie(&app.ws_url("/ws/alice"), &format!("sid={token}")).await;
    ws.send_text("ping").await;
    assert_eq!(ws.next_json().await["type"], "pong");

    let mut ws = open_with_cookie(&app.ws_url("/ws/alice"), &format!("herald_token={token}")).await;
    assert_eq!(ws.next_json().await["data"]["code"], "missing_token");
    assert_eq!(ws.closed().await, Closed::Code(4001));
}
