//! The simulated browsers: N WebSocket sessions spread over loopback source
//! addresses, each recording which announcements arrived (exactly once, by
//! id) and how long after `publish_at`.

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

/// Per-announcement delivery record.
pub struct Round {
    pub received: u64,
    pub latency_us: Histogram<u64>,
    pub last_at: Instant,
}

#[derive(Default)]
pub struct Stats {
    pub rounds: Mutex<HashMap<i64, Round>>,
    pub duplicates: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub closed: AtomicU64,
}

impl Stats {
    fn record(&self, id: i64, latency_us: u64) {
        if let Ok(mut rounds) = self.rounds.lock() {
            let round = rounds.entry(id).or_insert_with(|| Round {
                received: 0,
                latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)
                    .expect("histogram bounds"),
                last_at: Instant::now(),
            });
            round.received += 1;
            round.last_at = Instant::now();
            let _ = round.latency_us.record(latency_us.max(1));
        }
    }

    pub fn received(&self, id: i64) -> u64 {
        self.rounds
            .lock()
            .map(|r| r.get(&id).map_or(0, |round| round.received))
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    id: Option<i64>,
    #[serde(borrow)]
    publish_at: Option<&'a str>,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub struct Plan {
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
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        handshakes.push(ready_rx);
        tasks.push(tokio::spawn(async move {
            let opened = open(server, source, &url, &protocols).await;
            drop(permit);
            match opened {
                Ok(ws) => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    let _ = ready_tx.send(());
                    run(ws, ack, stats).await;
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

async fn open(
    server: SocketAddr,
    source: Ipv4Addr,
    url: &str,
    protocols: &[String],
) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    socket
        .set_recv_buffer_size(16 * 1024)
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
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
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        if frame.kind != "announcement" {
            continue;
        }
        let Some(data) = frame.data else { continue };
        let (Some(id), Some(at)) = (data.id, data.publish_at) else {
            continue;
        };
        let Ok(published) = chrono::DateTime::parse_from_rfc3339(at) else {
            continue;
        };
        let latency = now_us() - published.timestamp_micros();
        if !seen.insert(id) {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.record(id, latency.max(0) as u64);
        if ack {
            let frame = format!(r#"{{"type":"ack","data":{{"ids":[{id}]}}}}"#);
            if ws.send(Message::text(frame)).await.is_err() {
                break;
            }
        }
    }
    stats.closed.fetch_add(1, Ordering::Relaxed);
}
