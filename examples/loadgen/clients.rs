//! The simulated browsers: N WebSocket sessions (or Server-Sent Events
//! streams) spread over loopback source addresses, each recording which
//! announcements arrived (exactly once, by id) and when. Latency is taken
//! afterwards, per announcement id, from the publish time the request asked
//! for (see `Stats::asked`), not from anything the server put in the frame.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Per-announcement delivery record: when each copy arrived (µs since the
/// Unix epoch, this machine's clock, which the servers share).
#[derive(Default)]
pub struct Round {
    pub arrivals_us: Vec<i64>,
}

#[derive(Default)]
pub struct Stats {
    pub rounds: Mutex<HashMap<i64, Round>>,
    /// Announcement id → the publish time its request asked for (µs since
    /// the epoch): herald's stored `publish_at` from the REST answer (a
    /// request without one asks for "now", which herald fixes when it
    /// accepts it), the floor's control-frame send time.
    pub asked: Mutex<HashMap<i64, i64>>,
    pub duplicates: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub closed: AtomicU64,
}

impl Stats {
    fn record(&self, id: i64, arrived_us: i64) {
        if let Ok(mut rounds) = self.rounds.lock() {
            rounds.entry(id).or_default().arrivals_us.push(arrived_us);
        }
    }

    pub fn received(&self, id: i64) -> u64 {
        self.rounds
            .lock()
            .map(|r| r.get(&id).map_or(0, |round| round.arrivals_us.len() as u64))
            .unwrap_or(0)
    }

    /// Deliveries of the given announcements so far (cheap: no latencies).
    pub fn received_all(&self, ids: &[i64]) -> u64 {
        self.rounds
            .lock()
            .map(|r| {
                ids.iter()
                    .filter_map(|id| r.get(id))
                    .map(|round| round.arrivals_us.len() as u64)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Notes the publish time announcement `id` was asked for.
    pub fn asked(&self, id: i64, at_us: i64) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(id, at_us);
        }
    }

    /// Latencies of the given announcements' deliveries, from the publish
    /// time asked for, and how many deliveries there were.
    pub fn latencies(&self, ids: &[i64]) -> (Histogram<u64>, u64) {
        let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
        let mut received = 0;
        let asked = self.asked.lock().map(|a| a.clone()).unwrap_or_default();
        if let Ok(rounds) = self.rounds.lock() {
            for id in ids {
                let (Some(r), Some(at)) = (rounds.get(id), asked.get(id)) else {
                    continue;
                };
                for arrived in &r.arrivals_us {
                    let _ = all.record((arrived - at).max(1) as u64);
                }
                received += r.arrivals_us.len() as u64;
            }
        }
        (all, received)
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    id: Option<i64>,
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// How the simulated browsers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// `GET /sse` with the token as a bearer token (HTTP/1.0, so the body is
    /// the raw event stream); acks are not sent.
    Sse,
}

pub struct Plan {
    pub transport: Transport,
    pub server: SocketAddr,
    pub sessions: usize,
    pub source_ips: u8,
    pub concurrency: usize,
    pub ack: bool,
}

/// Opens every session; returns the time the handshakes took and the
/// running sessions' tasks (abort them to close the sockets).
pub async fn open_all(
    plan: &Plan,
    url_for: impl Fn(usize) -> (String, Vec<String>),
    stats: Arc<Stats>,
) -> (Duration, Vec<tokio::task::JoinHandle<()>>) {
    let gate = Arc::new(Semaphore::new(plan.concurrency));
    let started = Instant::now();
    let mut handshakes = Vec::with_capacity(plan.sessions);
    let mut tasks = Vec::with_capacity(plan.sessions);
    for i in 0..plan.sessions {
        let permit = gate.clone().acquire_owned().await.expect("semaphore open");
        let (url, protocols) = url_for(i);
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % plan.source_ips as usize) as u8);
        let (server, ack, stats) = (plan.server, plan.ack, stats.clone());
        let transport = plan.transport;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        handshakes.push(ready_rx);
        tasks.push(tokio::spawn(async move {
            let opened = match transport {
                Transport::WebSocket => open(server, source, &url, &protocols)
                    .await
                    .map(|ws| Client::WebSocket(Box::new(ws))),
                Transport::Sse => open_sse(server, source, &url, &protocols)
                    .await
                    .map(Client::Sse),
            };
            drop(permit);
            match opened {
                Ok(client) => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    let _ = ready_tx.send(());
                    match client {
                        Client::WebSocket(ws) => run(*ws, ack, stats).await,
                        Client::Sse(stream) => run_sse(stream, stats).await,
                    }
                }
                Err(e) => {
                    if stats.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("session {i} failed: {e}");
                    }
                    let _ = ready_tx.send(());
                }
            }
        }));
    }
    for ready in handshakes {
        let _ = ready.await;
    }
    (started.elapsed(), tasks)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

enum Client {
    WebSocket(Box<Ws>),
    Sse(SseStream),
}

/// An event stream after its response head, with what was read past it.
struct SseStream {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

async fn connect_from(
    server: SocketAddr,
    source: Ipv4Addr,
) -> Result<tokio::net::TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    socket
        .set_recv_buffer_size(16 * 1024)
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// `url` is the WebSocket URL of the session; the stream is `/sse` with the
/// same query, the token (the second protocol) as a bearer token.
async fn open_sse(
    server: SocketAddr,
    source: Ipv4Addr,
    url: &str,
    protocols: &[String],
) -> Result<SseStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(server, source).await?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let token = protocols.get(1).ok_or("no token")?;
    let request = format!(
        "GET /sse?{query} HTTP/1.0\r\nHost: {server}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                return Err(head.lines().next().unwrap_or_default().to_string());
            }
            buf.drain(..end + 4);
            return Ok(SseStream { stream, buf });
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn run_sse(mut sse: SseStream, stats: Arc<Stats>) {
    use tokio::io::AsyncReadExt;
    let mut seen: HashSet<i64> = HashSet::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        while let Some(end) = sse.buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = sse.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if !text.contains("event: announcement") {
                continue;
            }
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let arrived = now_us();
            let Ok(Data { id: Some(id) }) = serde_json::from_str::<Data>(data) else {
                continue;
            };
            if !seen.insert(id) {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            stats.record(id, arrived);
        }
        match sse.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => sse.buf.extend_from_slice(&chunk[..n]),
        }
    }
    stats.closed.fetch_add(1, Ordering::Relaxed);
}

async fn open(
    server: SocketAddr,
    source: Ipv4Addr,
    url: &str,
    protocols: &[String],
) -> Result<Ws, String> {
    let stream = connect_from(server, source).await?;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols
                .join(", ")
                .parse()
                .map_err(|_| "bad protocol header".to_string())?,
        );
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn run(mut ws: Ws, ack: bool, stats: Arc<Stats>) {
    let mut seen: HashSet<i64> = HashSet::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let arrived = now_us();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        if frame.kind != "announcement" {
            continue;
        }
        let Some(Data { id: Some(id) }) = frame.data else {
            continue;
        };
        if !seen.insert(id) {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.record(id, arrived);
        if ack {
            let frame = format!(r#"{{"type":"ack","data":{{"ids":[{id}]}}}}"#);
            if ws.send(Message::text(frame)).await.is_err() {
                break;
            }
        }
    }
    stats.closed.fetch_add(1, Ordering::Relaxed);
}
