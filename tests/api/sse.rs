//! Server-Sent Events: the same session as a WebSocket, over an event stream.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

/// One event off the stream: `event:`, `id:`, `data:` (as JSON) or a comment.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
    pub comment: Option<String>,
}

/// An open event stream.
pub struct Stream {
    pub response: reqwest::Response,
    buf: String,
}

impl Stream {
    /// Opens `/sse?<query>` with `token` as a bearer token and `headers`.
    pub async fn open(
        app: &TestApp,
        query: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = app
            .http
            .get(format!("{}/sse?{query}", app.address))
            .bearer_auth(token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("request")
    }

    /// A stream over a response that answered 200.
    pub fn from_response(response: reqwest::Response) -> Stream {
        assert_eq!(response.status().as_u16(), 200);
        Stream {
            response,
            buf: String::new(),
        }
    }

    pub async fn connect(app: &TestApp, user: &str, query: &str) -> Stream {
        let response = Stream::open(app, &format!("id={user}{query}"), &app.token(user), &[]).await;
        assert_eq!(response.status().as_u16(), 200);
        Stream {
            response,
            buf: String::new(),
        }
    }

    /// The next event (comments included) within `within`, or None.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Event {
        loop {
            let event = self.next(WAIT).await.expect("an event within the wait");
            if event.event == kind {
                return event;
            }
        }
    }

    /// Reads until the stream ends; true when it ended within the wait.
    pub async fn ended(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(_) => return true,
                Err(_) => return false,
            }
        }
    }
}

fn parse(block: &str) -> Event {
    let mut event = Event::default();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comment = Some(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_string(),
                "id" => event.id = Some(value.to_string()),
                "data" => data.push_str(value),
                _ => {}
            }
        }
    }
    event.data = serde_json::from_str(&data).unwrap_or(Value::Null);
    event
}

both_backends!(a_stream_starts_with_welcome_then_announcements_carry_their_cursor);
async fn a_stream_starts_with_welcome_then_announcements_carry_their_cursor() {
    let app = spawn_app().await;
    let mut stream = Stream::connect(&app, "alice", "").await;
    let headers = stream.response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let welcome = stream.next_of("welcome").await;
    assert_eq!(welcome.data["user_id"], "alice");
    let created = app.announce_all("over sse").await;
    let announcement = stream.next_of("announcement").await;
    assert_eq!(announcement.data["id"], created["id"]);
    assert_eq!(announcement.data["title"], "over sse");
    let cursor = announcement.data["cursor"].as_i64().expect("cursor");
    assert_eq!(announcement.id, Some(cursor.to_string()));
}

both_backends!(last_event_id_resumes_after_that_cursor);
async fn last_event_id_resumes_after_that_cursor() {
    let app = spawn_app().await;
    let first = app.announce_all("one").await;
    let second = app.announce_all("two").await;
    let third = app.announce_all("three").await;
    app.wait_for_announcement(third["id"].as_i64().expect("id"), |v| v["cursor"].is_i64())
        .await;
    let cursor = app.announcement(first["id"].as_i64().expect("id")).await["cursor"].clone();
    let response = Stream::open(
        &app,
        "id=alice&since=0",
        &app.token("alice"),
        &[("Last-Event-ID", &cursor.to_string())],
    )
    .await;
    let mut stream = Stream {
        response,
        buf: String::new(),
    };
    stream.next_of("welcome").await;
    assert_eq!(
        stream.next_of("announcement").await.data["id"],
        second["id"]
    );
    assert_eq!(stream.next_of("announcement").await.data["id"], third["id"]);
}

both_backends!(refusals_come_as_json_before_the_stream);
async fn refusals_come_as_json_before_the_stream() {
    let app = spawn_app_with(|s| s.max_sessions_per_user = 1).await;
    let forged = herald::auth::TokenKeys::new("another-secret-entirely")
        .mint("alice", &[], 60)
        .expect("mint")
        .0;
    let res = Stream::open(&app, "id=alice", &forged, &[]).await;
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = Stream::open(&app, "id=bob", &app.token("alice"), &[]).await;
    assert_eq!(res.status().as_u16(), 403);
    // Sessions per user count WebSocket sessions and streams together.
    let _ws = app.connect("carol").await;
    let res = Stream::open(&app, "id=carol", &app.token("carol"), &[]).await;
    assert_eq!(res.status().as_u16(), 429);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_requests");
}

both_backends!(retracts_and_reads_reach_the_stream_and_rest_receipts_count);
async fn retracts_and_reads_reach_the_stream_and_rest_receipts_count() {
    let app = spawn_app().await;
    let mut stream = Stream::connect(&app, "alice", "").await;
    let mut tab = app.connect("alice").await;
    stream.next_of("welcome").await;
    let created = app.announce_all("receipts").await;
    let id = created["id"].as_i64().expect("id");
    stream.next_of("announcement").await;
    tab.next_of("announcement").await;

    let res = app
        .http
        .post(format!("{}/api/me/receipts", app.address))
        .bearer_auth(app.token("alice"))
        .json(&json!({"delivered": [id], "read": [id]}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(tab.next_of("read").await["data"]["ids"], json!([id]));
    assert_eq!(stream.next_of("read").await.data["ids"], json!([id]));
    let view = app
        .wait_for_announcement(id, |v| v["stats"]["read"] == 1)
        .await;
    assert_eq!(view["stats"]["delivered"], 1);

    app.admin_delete(&format!("/api/announcements/{id}")).await;
    assert_eq!(stream.next_of("retract").await.data["id"], id);
}

#[actix_web::test]
async fn a_ping_comment_keeps_an_idle_stream_open() {
    let app = spawn_app_with(|s| s.heartbeat_min = 1).await;
    let mut stream = Stream::connect(&app, "alice", "&heartbeat=1").await;
    stream.next_of("welcome").await;
    let ping = stream
        .next(Duration::from_secs(3))
        .await
        .expect("a comment");
    assert_eq!(ping.comment.as_deref(), Some("ping"));
}

#[actix_web::test]
async fn shutdown_ends_the_stream_so_the_browser_reconnects() {
    let app = spawn_app().await;
    let mut stream = Stream::connect(&app, "alice", "").await;
    stream.next_of("welcome").await;
    app.state
        .registry
        .do_send(herald::actors::messages::CloseAll {
            code: herald::protocol::codes::close::GOING_AWAY,
            reason: "server shutting down",
        });
    assert!(stream.ended().await, "the stream ended");
    let presence = app.admin_get("/api/presence/alice").await;
    let presence: Value = presence.json().await.expect("json");
    assert_eq!(presence["sessions"], 0);
}

/// A stream whose client stops reading is dropped like a slow WebSocket
/// session, with bounded memory, and resumes by `Last-Event-ID`.
#[actix_web::test]
async fn a_stream_that_is_not_read_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.max_queued_bytes = 64 * 1024;
        s.max_content_chars = 50_000;
    })
    .await;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4_096).expect("rcvbuf");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", app.port).parse().expect("addr");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut stalled = tokio::net::TcpStream::from_std(socket.into()).expect("tokio");
    let request = format!(
        "GET /sse?id=sleepy HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token("sleepy")
    );
    stalled.write_all(request.as_bytes()).await.expect("send");
    let deadline = tokio::time::Instant::now() + WAIT;
    while app
        .state
        .registry
        .send(herald::actors::messages::GetUserSessions("sleepy".into()))
        .await
        .unwrap_or(0)
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the stream opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let content = "x".repeat(40_000);
    for i in 0..60 {
        app.announce(
            json!({"title": format!("big {i}"), "content": content, "audience": {"all": true}}),
        )
        .await;
        let sessions = app
            .state
            .registry
            .send(herald::actors::messages::GetUserSessions("sleepy".into()))
            .await
            .unwrap_or(0);
        if sessions == 0 {
            return;
        }
    }
    panic!("a stream that was never read is still routed to after 2.4 MB");
}

#[actix_web::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = spawn_app().await;
    let short = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": herald::auth::now_secs() + 2}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let response = Stream::open(&app, "id=alice", &short, &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = Stream {
        response,
        buf: String::new(),
    };
    stream.next_of("welcome").await;
    assert_eq!(stream.next_of("error").await.data["code"], "token_expired");
    assert!(stream.ended().await, "the stream ended");
}

both_backends!(reconnecting_streams_mid_200_publishes_lose_none_and_repeat_none);
/// The resume test of the WebSocket, over event streams: reconnect every 25
/// announcements with `Last-Event-ID` while 200 are published.
async fn reconnecting_streams_mid_200_publishes_lose_none_and_repeat_none() {
    let app = spawn_app().await;
    let mut seen: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut last_id = String::from("0");
    let mut stream = Stream::connect(&app, "alice", "&since=0").await;
    let publisher = {
        let (address, http) = (app.address.clone(), app.http.clone());
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
    for drop_after in (1..8).map(|n| n * 25).chain([usize::MAX]) {
        while seen.len() < 200 && seen.values().sum::<usize>() < drop_after {
            let event = stream.next_of("announcement").await;
            *seen
                .entry(event.data["id"].as_i64().expect("id"))
                .or_default() += 1;
            last_id = event.id.clone().expect("an id on every announcement");
        }
        if seen.len() == 200 {
            break;
        }
        drop(stream);
        let response = Stream::open(
            &app,
            "id=alice",
            &app.token("alice"),
            &[("Last-Event-ID", &last_id)],
        )
        .await;
        stream = Stream::from_response(response);
    }
    publisher.await.expect("publisher");
    assert_eq!(seen.len(), 200, "every announcement arrived");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
}

both_backends!(a_read_in_a_websocket_tab_reaches_the_stream);
async fn a_read_in_a_websocket_tab_reaches_the_stream() {
    let app = spawn_app().await;
    let mut stream = Stream::connect(&app, "alice", "").await;
    stream.next_of("welcome").await;
    let mut tab = app.connect("alice").await;
    let id = app.announce_all("read me").await["id"]
        .as_i64()
        .expect("id");
    tab.next_of("announcement").await;
    stream.next_of("announcement").await;
    tab.send_json(json!({"type": "read", "data": {"ids": [id]}}))
        .await;
    assert_eq!(stream.next_of("read").await.data["ids"], json!([id]));
}

/// SIGTERM on a real herald process: the stream ends (so an EventSource
/// reconnects by itself after the restart) and herald exits 0.
#[actix_web::test]
async fn sigterm_ends_the_stream_and_herald_exits_0() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut node = Node::start_with(&db, &["--shutdown-grace", "5"]);
    let response = reqwest::Client::new()
        .get(node.url("/sse?id=alice"))
        .bearer_auth(user_token("alice"))
        .send()
        .await
        .expect("request");
    let mut stream = Stream::from_response(response);
    stream.next_of("welcome").await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(stream.ended().await, "the stream ended");
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
