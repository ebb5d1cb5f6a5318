//! The floor: the least a broadcast server can do with tokio and a plain
//! WebSocket crate — no database, no actors, no auth — speaking herald's
//! frames. herald's figures are reported as ratios to this.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Tx = mpsc::UnboundedSender<Utf8Bytes>;

#[derive(Default)]
struct Hub {
    /// user → connection id → outgoing queue (indexed by user so a
    /// targeted publish costs the user's sessions, as in herald's registry)
    sessions: Mutex<HashMap<String, HashMap<u64, Tx>>>,
    next_id: AtomicU64,
}

pub async fn serve(bind: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    eprintln!("floor listening on {}", listener.local_addr()?);
    let hub = Arc::new(Hub::default());
    loop {
        let (stream, _) = listener.accept().await?;
        // As herald does (HttpServer::tcp_nodelay): small frames leave at once.
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let _ = connection(stream, hub).await;
        });
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, hub: Arc<Hub>) -> Result<(), Box<dyn std::error::Error>> {
    let mut path = String::new();
    let callback = |req: &Request, mut res: Response| {
        path = req.uri().to_string();
        if let Some(offered) = req.headers().get("Sec-WebSocket-Protocol") {
            let offered = offered.to_str().unwrap_or_default();
            let answer = if offered.split(',').any(|p| p.trim() == "herald.v1") {
                "herald.v1".to_string()
            } else {
                offered
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            if let Ok(v) = HeaderValue::from_str(&answer) {
                res.headers_mut().insert("Sec-WebSocket-Protocol", v);
            }
        }
        Ok(res)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    let user = path
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("id="))
        .unwrap_or("anonymous")
        .to_string();
    // One stream, not split: `split` puts the stream behind a shared lock
    // in an allocation of its own (1.7 KiB a session, heaptrack showed),
    // which a minimal server does not need.
    if path.starts_with("/control") {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                publish(&hub, t.as_str());
            }
        }
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut sessions) = hub.sessions.lock() {
        sessions.entry(user.clone()).or_default().insert(id, tx);
    }
    let welcome = serde_json::json!({"type":"welcome","data":{"user_id": user, "session_id": id.to_string(),
        "heartbeat_ms": 25000, "server_time": now_rfc3339(), "cursor": 0, "unread": 0}});
    ws.send(Message::text(welcome.to_string())).await?;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(frame) => ws.send(Message::Text(frame)).await?,
                None => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) if t.as_str().contains("ping") => {
                    let pong = serde_json::json!({"type":"pong","data":{"ts": chrono::Utc::now().timestamp_millis()}});
                    ws.send(Message::text(pong.to_string())).await?;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Ok(mut sessions) = hub.sessions.lock() {
        if let Some(tabs) = sessions.get_mut(&user) {
            tabs.remove(&id);
            if tabs.is_empty() {
                sessions.remove(&user);
            }
        }
    }
    Ok(())
}

/// `{"id": n, "user": optional}` → one announcement frame, serialized once,
/// to every session (or that user's sessions).
fn publish(hub: &Hub, control: &str) {
    let Ok(cmd) = serde_json::from_str::<serde_json::Value>(control) else {
        return;
    };
    let id = cmd["id"].as_i64().unwrap_or(0);
    let user = cmd["user"].as_str();
    let frame = serde_json::json!({"type":"announcement","data":{"id": id, "title": "load", "content": "load test",
        "level": "info", "link": null, "publish_at": now_rfc3339(), "expires_at": null, "cursor": id}});
    let frame = Utf8Bytes::from(frame.to_string());
    let Ok(sessions) = hub.sessions.lock() else {
        return;
    };
    let send_all = |tabs: &HashMap<u64, Tx>| {
        for tx in tabs.values() {
            let _ = tx.send(frame.clone());
        }
    };
    match user {
        Some(user) => sessions.get(user).into_iter().for_each(send_all),
        None => sessions.values().for_each(send_all),
    }
}
