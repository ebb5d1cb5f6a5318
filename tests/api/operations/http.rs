//! What every HTTP response gets: an `X-Request-Id` that the request's log
//! lines carry (JSON logs, one object per line), compression when asked
//! for (never on the WebSocket upgrade), and metrics by route template.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

const GZIP: &str = "gzip";

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

/// GET with an `Accept-Encoding`; the status, `Content-Encoding` and raw body.
async fn get_encoded(app: &TestApp, path: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(accept) = accept {
        request = request.header("Accept-Encoding", accept);
    }
    let res = request.send().await.expect("request");
    let status = res.status().as_u16();
    let encoding = res
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, encoding, res.bytes().await.expect("body").to_vec())
}

#[actix_web::test]
async fn responses_echo_a_client_request_id_or_carry_a_fresh_one() {
    let app = spawn_app().await;
    let get = |id: Option<&str>| {
        let mut request = app.http.get(format!("{}/healthz", app.address));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        request.send()
    };

    let echoed = get(Some("req-7f3a")).await.expect("request");
    assert_eq!(echoed.headers()["x-request-id"], "req-7f3a");

    let fresh = get(None).await.expect("request");
    let id = fresh.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 32, "{id}");

    // An id that could break a log line or a header is replaced.
    let odd = get(Some("a b\"c")).await.expect("request");
    assert_ne!(odd.headers()["x-request-id"], "a b\"c");

    // Error responses carry it too.
    let missing = app
        .http
        .get(format!("{}/api/announcements/424242", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Request-Id", "req-404")
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(missing.headers()["x-request-id"], "req-404");
}

#[actix_web::test]
async fn json_logs_are_one_object_per_line_and_carry_the_request_id() {
    let db = TestDb::sqlite();
    let node = Node::start_configured(&db.url, &[], |cmd| {
        cmd.env("HERALD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,herald=debug");
    });
    let http = reqwest::Client::new();

    let created = http
        .post(node.url("/api/announcements"))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Request-Id", "req-create-1")
        .json(&json!({"title": "t", "content": "c", "audience": {"all": true}}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(created.headers()["x-request-id"], "req-create-1");
    let mut ws = open_reader(node.port, "alice", 0).await;
    assert_eq!(ws.next_of("announcement").await["type"], "announcement");

    // Wait for the request's last line (its outcome) to be written.
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.log_lines("\"status\":201").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no request line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = node.log_lines("");
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request: Vec<&Value> = parsed
        .iter()
        .filter(|v| v["span"]["request_id"] == "req-create-1")
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .filter_map(|v| v["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"announcement created"), "{messages:?}");
    assert!(messages.contains(&"request"), "{messages:?}");
    let outcome = of_request
        .iter()
        .find(|v| v["fields"]["message"] == "request")
        .expect("the request line");
    assert_eq!(outcome["fields"]["route"], "/api/announcements");
    assert_eq!(outcome["span"]["method"], "POST");
    // WebSocket sessions log their session id.
    assert!(
        parsed
            .iter()
            .any(|v| v["fields"]["message"] == "session open"
                && v["fields"]["session_id"].is_number()),
        "no session line"
    );
}

#[actix_web::test]
async fn a_large_list_is_compressed_as_asked() {
    let app = spawn_app().await;
    let content = "Maintenance tonight between 22:00 and 23:00 UTC. ".repeat(40);
    for i in 0..20 {
        // Scheduled far ahead: nothing publishes (and changes the list's
        // stats) between the requests compared below.
        app.announce(json!({"title": format!("notice {i}"), "content": content,
            "audience": {"all": true}, "publish_at": "2100-01-01T00:00:00Z"}))
            .await;
    }
    let (status, encoding, plain) = get_encoded(&app, "/api/announcements", None).await;
    assert_eq!(
        (status, encoding.as_str()),
        (200, ""),
        "not compressed unasked"
    );
    let plain: Value = serde_json::from_slice(&plain).expect("json");

    let (_, encoding, gzipped) = get_encoded(&app, "/api/announcements", Some(GZIP)).await;
    assert_eq!(encoding, GZIP);
    assert!(
        gzipped.len() * 5 < plain.to_string().len(),
        "{} bytes",
        gzipped.len()
    );
    let unzipped: Value = serde_json::from_slice(&gunzip(&gzipped)).expect("json");
    assert_eq!(unzipped, plain);

    let (_, encoding, brotlied) = get_encoded(&app, "/api/announcements", Some("br")).await;
    assert_eq!(encoding, "br");
    let unbrotlied: Value = serde_json::from_slice(&unbrotli(&brotlied)).expect("json");
    assert_eq!(unbrotlied, plain);
}

#[actix_web::test]
async fn herald_js_is_compressed_and_still_revalidates() {
    let app = spawn_app().await;
    let (_, _, plain) = get_encoded(&app, "/herald.js", None).await;

    let res = app
        .http
        .get(format!("{}/herald.js", app.address))
        .header("Accept-Encoding", "gzip, deflate, br;q=0.5")
        .send()
        .await
        .expect("request");
    assert_eq!(res.headers()["content-encoding"], GZIP);
    let etag = res.headers()["etag"].clone();
    assert_eq!(gunzip(&res.bytes().await.expect("body")), plain);

    let again = app
        .http
        .get(format!("{}/herald.js", app.address))
        .header("Accept-Encoding", GZIP)
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status().as_u16(), 304);
}

#[actix_web::test]
async fn the_websocket_upgrade_is_never_compressed() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app().await;
    let mut request = app
        .ws_url("/ws?id=alice")
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert("Accept-Encoding", "gzip, br".parse().expect("header"));
    headers.insert(
        "Sec-WebSocket-Protocol",
        format!("herald.v1, {}", app.token("alice"))
            .parse()
            .expect("header"),
    );

    let (stream, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake");

    assert_eq!(response.status().as_u16(), 101);
    assert!(response.headers().get("content-encoding").is_none());
    let mut ws = Ws {
        stream,
        welcome: Value::Null,
        protocol: Some("herald.v1".into()),
    };
    assert_eq!(ws.next_json().await["type"], "welcome");
    app.announce_all("plain frames").await;
    assert_eq!(
        ws.next_of("announcement").await["data"]["title"],
        "plain frames"
    );
}

#[actix_web::test]
async fn http_metrics_are_labelled_by_route_template() {
    let app = spawn_app().await;
    let send = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        app.http
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    send("GET", "/api/announcements/987654")
        .await
        .expect("request");
    send("GET", "/no/such/route/31337").await.expect("request");
    send("BREW", "/api/announcements").await.expect("request");

    let metrics = send("GET", "/metrics")
        .await
        .expect("request")
        .text()
        .await
        .expect("text");

    for line in [
        r#"herald_http_requests_total{method="GET",route="/api/announcements/{id}",status="404"}"#,
        r#"herald_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"herald_http_request_duration_seconds_bucket{method="GET",route="/api/announcements/{id}",le="0.5"}"#,
        r#"herald_http_request_duration_seconds_count{method="GET",route="unmatched"}"#,
        r#"herald_build_info{version=""#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    assert!(
        metrics.contains(r#"method="other",route="/api/announcements""#),
        "{metrics}"
    );
    for raw in ["987654", "31337", "BREW"] {
        assert!(!metrics.contains(raw), "raw {raw} became a label");
    }
}
