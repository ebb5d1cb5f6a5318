//! Abuse from the network side: cross-site WebSocket hijacking through the
//! token cookie, connection floods behind and around proxies, headers that
//! keep the pages out of frames, metric labels clients cannot inflate.

use crate::helpers::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::tungstenite::Error as WsError;

/// How a handshake ended: upgraded, or refused with a status and body.
enum Handshake {
    Upgraded(Box<Ws>),
    Refused(u16, String),
}

/// Opens `url` with extra request headers, as a browser page (or a proxy in
/// front of herald) would send them.
async fn open_with_headers(url: &str, headers: &[(&str, &str)]) -> Handshake {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().expect("header name");
        request
            .headers_mut()
            .append(name, value.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, _)) => Handshake::Upgraded(Box::new(Ws {
            stream,
            welcome: Value::Null,
            protocol: None,
        })),
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Handshake::Refused(response.status().as_u16(), body)
        }
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
    }
}

const ORIGIN_REJECTIONS: &str = "herald_rejected_connects_total{reason=\"origin\"}";

both_backends!(cookie_token_from_another_site_is_refused_before_the_upgrade);
async fn cookie_token_from_another_site_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let cookie = format!("herald_token={}", app.token("alice"));
    let before = sample(&metrics_text(&app).await, ORIGIN_REJECTIONS);
    for url in ["/ws?id=alice", "/ws/alice", "/websocket/alice"] {
        let headers = [
            ("Cookie", cookie.as_str()),
            ("Origin", "https://evil.example"),
        ];
        match open_with_headers(&app.ws_url(url), &headers).await {
            Handshake::Refused(status, body) => {
                assert_eq!(status, 403, "{url}: {body}");
                let body: Value = serde_json::from_str(&body).expect("a JSON error body");
                assert_eq!(body["error"]["code"], "forbidden", "{url}: {body}");
            }
            Handshake::Upgraded(_) => {
                panic!("{url}: a page on evil.example opened alice's session")
            }
        }
    }
    let after = sample(&metrics_text(&app).await, ORIGIN_REJECTIONS);
    assert!(
        after >= before + 3.0,
        "origin rejections {before} -> {after}"
    );
}

both_backends!(cookie_token_from_herald_own_origin_or_without_origin_connects);
async fn cookie_token_from_herald_own_origin_or_without_origin_connects() {
    let app = spawn_app().await;
    let cookie = format!("herald_token={}", app.token("alice"));
    let own_http = format!("http://127.0.0.1:{}", app.port);
    let own_https = format!("https://127.0.0.1:{}", app.port);
    for origin in [Some(own_http.as_str()), Some(own_https.as_str()), None] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        match open_with_headers(&app.ws_url("/ws?id=alice"), &headers).await {
            Handshake::Upgraded(mut ws) => {
                assert_eq!(ws.next_json().await["type"], "welcome", "{origin:?}");
            }
            Handshake::Refused(status, body) => panic!("{origin:?}: refused {status} {body}"),
        }
    }
}

both_backends!(cookie_token_from_an_allowed_origin_connects);
async fn cookie_token_from_an_allowed_origin_connects() {
    let app = spawn_app_with(|s| s.allowed_origins = vec!["https://app.example".into()]).await;
    let cookie = format!("herald_token={}", app.token("alice"));
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Origin", "https://app.example"),
    ];
    match open_with_headers(&app.ws_url("/ws?id=alice"), &headers).await {
        Handshake::Upgraded(mut ws) => assert_eq!(ws.next_json().await["type"], "welcome"),
        Handshake::Refused(status, body) => panic!("refused {status} {body}"),
    }
}

both_backends!(explicit_tokens_work_from_any_origin_without_an_allow_list);
async fn explicit_tokens_work_from_any_origin_without_an_allow_list() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let offer = format!("herald.v1, {token}");
    let by_protocol = [
        ("Origin", "https://evil.example"),
        ("Sec-WebSocket-Protocol", offer.as_str()),
    ];
    let by_query = [("Origin", "https://evil.example")];
    for (url, headers) in [
        ("/ws?id=alice".to_string(), &by_protocol[..]),
        (format!("/ws?id=alice&token={token}"), &by_query[..]),
    ] {
        match open_with_headers(&app.ws_url(&url), headers).await {
            Handshake::Upgraded(mut ws) => assert_eq!(ws.next_json().await["type"], "welcome"),
            Handshake::Refused(status, body) => panic!("{url}: refused {status} {body}"),
        }
    }
}

/// `count` quick handshakes, the i-th claiming (through `X-Forwarded-For`)
/// to come from `forwarded_for(i)`; returns how many were refused with 429.
async fn refused_connects(
    app: &TestApp,
    count: usize,
    forwarded_for: impl Fn(usize) -> String,
) -> usize {
    let mut refused = 0;
    for i in 0..count {
        let user = format!("u{i}");
        let offer = format!("herald.v1, {}", app.token(&user));
        let from = forwarded_for(i);
        let headers = [
            ("Sec-WebSocket-Protocol", offer.as_str()),
            ("X-Forwarded-For", from.as_str()),
        ];
        let url = app.ws_url(&format!("/ws?id={user}"));
        match open_with_headers(&url, &headers).await {
            Handshake::Upgraded(ws) => drop(ws),
            Handshake::Refused(429, _) => refused += 1,
            Handshake::Refused(status, body) => panic!("refused {status} {body}"),
        }
    }
    refused
}

fn distinct_address(i: usize) -> String {
    format!("198.51.{}.{}", i / 250, 1 + i % 250)
}

both_backends!(behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget);
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec![trusted("127.0.0.1/32")]).await;
    let refused = refused_connects(&app, 300, distinct_address).await;
    assert_eq!(
        refused, 0,
        "distinct X-Forwarded-For: {refused} of 300 refused"
    );
    let refused = refused_connects(&app, 300, |_| "203.0.113.7".into()).await;
    assert!(
        refused > 0,
        "one X-Forwarded-For address: none of 300 refused"
    );
}

both_backends!(forwarded_addresses_from_an_untrusted_peer_are_ignored);
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let app = spawn_app_with(|s| s.trusted_proxies = vec![trusted("10.0.0.0/8")]).await;
    let refused = refused_connects(&app, 300, distinct_address).await;
    assert!(
        refused > 0,
        "a client picked its own budget with X-Forwarded-For"
    );
}

fn trusted(net: &str) -> ipnet::IpNet {
    herald::proxy::parse_trusted(net).expect("a CIDR block")
}

both_backends!(pages_forbid_framing_and_foreign_content);
async fn pages_forbid_framing_and_foreign_content() {
    let app = spawn_app().await;
    for path in ["/", "/admin.html", "/index.html", "/app.js", "/herald.css"] {
        let res = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let csp = header("Content-Security-Policy");
        for directive in ["default-src 'self'", "frame-ancestors 'none'"] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive}"
            );
        }
        assert_eq!(header("X-Frame-Options"), "DENY", "{path}");
    }
}

/// SQLite only: PostgreSQL keeps its files itself.
#[actix_web::test]
async fn a_fresh_sqlite_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    app.announce_all("written through the WAL").await;
    let db = herald::db::sqlite_path(&app.state.settings.database_url).to_string();
    // WAL mode: SQLite made the -wal and -shm files beside the database.
    for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        let meta = std::fs::metadata(&file).expect("the file exists");
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
}

fn is_log_line(line: &str) -> bool {
    [" TRACE ", " DEBUG ", " INFO ", " WARN ", " ERROR "]
        .iter()
        .any(|level| line.contains(level))
}

/// The admin token the database holds.
fn stored_admin_token(url: &str) -> String {
    use diesel::{QueryDsl, RunQueryDsl};
    use herald::db::schema::settings;
    let pool = herald::db::connect(url, 1, 5_000).expect("database");
    let mut conn = pool.get().expect("connection");
    settings::table
        .find("admin_token")
        .select(settings::value)
        .first(&mut conn)
        .expect("a stored admin token")
}

both_backends!(a_generated_admin_token_is_printed_once_and_never_logged);
async fn a_generated_admin_token_is_printed_once_and_never_logged() {
    let db = TestDb::new();
    let node = Node::start_configured(&db.url, &[], |command| {
        command.env_remove("HERALD_ADMIN_TOKEN");
    });
    let token = stored_admin_token(&db.url);
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.log_lines(&token).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines = node.log_lines(&token);
    assert_eq!(lines.len(), 1, "printed once: {lines:?}");
    assert!(
        !is_log_line(&lines[0]),
        "the token went through the log: {lines:?}"
    );
    let said = node.log_lines("admin token");
    assert!(
        said.iter().any(|l| is_log_line(l)),
        "the log says a token was generated: {said:?}"
    );
    let res = reqwest::Client::new()
        .get(node.url("/api/presence"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        200,
        "the printed token is the admin token"
    );
}

both_backends!(close_codes_herald_does_not_know_are_counted_as_other);
async fn close_codes_herald_does_not_know_are_counted_as_other() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let app = spawn_app().await;
    let disconnects = "herald_disconnects_total{code=";
    let before = sample(
        &metrics_text(&app).await,
        &format!("{disconnects}\"other\"}}"),
    );
    let mut ws = app.connect("alice").await;
    let frame = CloseFrame {
        code: CloseCode::from(4321),
        reason: "".into(),
    };
    ws.stream
        .send(Message::Close(Some(frame)))
        .await
        .expect("close");
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let text = metrics_text(&app).await;
        let other = sample(&text, &format!("{disconnects}\"other\"}}"));
        if other > before
            || text.contains("code=\"4321\"")
            || tokio::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        !text.contains("code=\"4321\""),
        "a client chose a label value"
    );
    assert!(sample(&text, &format!("{disconnects}\"other\"}}")) > before);
}

both_backends!(user_ids_cannot_forge_log_lines);
async fn user_ids_cannot_forge_log_lines() {
    let db = TestDb::new();
    let node = Node::start_configured(&db.url, &[], |command| {
        command.env("RUST_LOG", "debug");
    });
    let user = "eve\n2030-01-01T00:00:00Z  INFO FORGED admin signed in \u{1b}[2K";
    let url = node.ws_url(
        "/ws?id=eve%0A2030-01-01T00%3A00%3A00Z%20%20INFO%20FORGED%20admin%20signed%20in%20%1B%5B2K",
    );
    let (mut ws, _) = Ws::open(&url, &["herald.v1", &user_token(user)])
        .await
        .expect("open");
    assert_eq!(ws.next_json().await["data"]["user_id"], user);
    ws.close().await;
    // The session's open and close lines are written by now or shortly.
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.log_lines("session open").is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !node.log_lines("session open").is_empty(),
        "debug logging is on"
    );
    let forged = node.log_lines("FORGED");
    assert!(
        forged
            .iter()
            .all(|l| !l.starts_with("2030") && !l.contains('\u{1b}')),
        "a user id wrote its own log line: {forged:?}"
    );
}

fn signal(node: &Node, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

async fn exit_status(node: &mut Node) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald did not exit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

both_backends!(a_second_signal_does_not_cut_the_receipt_flush_short);
async fn a_second_signal_does_not_cut_the_receipt_flush_short() {
    let db = TestDb::new();
    // Receipts wait a minute for their batch: only the shutdown flush writes them.
    let slow_batches = ["--receipt-flush-ms", "60000", "--shutdown-grace", "5"];
    let mut node = Node::start_with(&db.url, &slow_batches);
    let (mut ws, _) = Ws::open(
        &node.ws_url("/ws?id=alice"),
        &["herald.v1", &user_token("alice")],
    )
    .await
    .expect("open");
    assert_eq!(ws.next_json().await["type"], "welcome");
    let id = node
        .announce(&serde_json::json!({"title": "t", "content": "c", "audience": {"all": true}}))
        .await;
    assert_eq!(ws.next_of("announcement").await["data"]["id"], id);
    ws.send_json(serde_json::json!({"type": "ack", "data": {"ids": [id]}}))
        .await;
    ws.send_json(serde_json::json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    // A pong means the session has handed both receipts to the writer.
    ws.send_text("ping").await;
    ws.next_of("pong").await;

    // A request whose body is still arriving keeps the graceful stop
    // waiting (up to the grace), so the further signals arrive while herald
    // is still shutting down; closed sessions and idle connections alone no
    // longer hold it (an upgraded connection ends with its session, an idle
    // one is closed when the stop begins).
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/announcements HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\""
    );
    slow.write_all(head.as_bytes())
        .await
        .expect("half a request");

    signal(&node, "TERM");
    signal(&node, "TERM");
    signal(&node, "INT");
    let exit = exit_status(&mut node).await;
    assert!(exit.success(), "exit status {exit:?}");
    let noted = node.log_lines("shutdown already in progress");
    // Signals of one kind that arrive together may be seen as one.
    assert!(!noted.is_empty(), "a further signal is logged");
    drop(node);

    let node = Node::start(&db.url);
    let stats = &node.admin_get(&format!("/api/announcements/{id}")).await["stats"];
    assert_eq!(stats["delivered"], 1, "{stats}");
    assert_eq!(stats["read"], 1, "{stats}");
}
