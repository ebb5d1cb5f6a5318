//! What every HTTP response gets: an `X-Request-Id` that the request's log
//! lines carry (JSON logs, one object per line).

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

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
