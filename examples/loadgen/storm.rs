//! Connection storms (issue 17): N sessions opening at a fixed rate with
//! the per-address limit off, then broadcasts right after the storm and
//! later; optionally a restart (SIGTERM, start again on the same port and
//! database) that every session rides out like herald.js does: wait the
//! close reason's `reconnect in N ms`, resume with `since=<cursor>`.
//!
//!   target/release/examples/loadgen storm --sessions 19000 --rate 4000 \
//!       [--postgres postgres://postgres@127.0.0.1:5432/test] [--restart]

use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};

const PORT: u16 = 9201;

pub struct StormPlan {
    pub herald: String,
    pub sessions: usize,
    pub rate: u32,
    pub postgres: Option<String>,
    pub restart: bool,
    pub broadcasts: usize,
    pub source_ips: u8,
}

#[derive(Default)]
struct Round {
    received: u64,
    latency_us: Vec<u64>,
}

#[derive(Default)]
struct Shared {
    handshake_us: Mutex<Vec<u64>>,
    /// Sessions closed after the upgrade other than by a restart's 1001,
    /// and handshakes that failed.
    dropped: AtomicU64,
    failed_handshakes: AtomicU64,
    opened: AtomicU64,
    duplicates: AtomicU64,
    rounds: Mutex<HashMap<i64, Round>>,
    /// Set from the SIGTERM on: welcomes count as resumes.
    restarting: AtomicBool,
    resumed: AtomicU64,
    last_resume: Mutex<Option<Instant>>,
}

impl Shared {
    fn received(&self, id: i64) -> u64 {
        self.rounds
            .lock()
            .map(|r| r.get(&id).map_or(0, |x| x.received))
            .unwrap_or(0)
    }
}

struct Herald(Child);
impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_herald(plan: &StormPlan, db: &str) -> Herald {
    let child = Command::new(&plan.herald)
        .args(["--bind", &format!("127.0.0.1:{PORT}"), "--database-url", db])
        .args([
            "--max-connects-per-ip",
            "0",
            "--max-sessions-per-user",
            "100",
        ])
        .args(["--heartbeat-interval", "60", "--heartbeat-timeout", "120"])
        .env("HERALD_ADMIN_TOKEN", super::ADMIN)
        .env("HERALD_JWT_SECRET", super::SECRET)
        // STORM_HERALD_LOG=info shows herald's own timeline (the shutdown).
        .env(
            "RUST_LOG",
            std::env::var("STORM_HERALD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(match std::env::var_os("STORM_HERALD_LOG") {
            Some(_) => Stdio::inherit(),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start herald");
    Herald(child)
}

async fn listening() {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", PORT))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("herald did not start on {PORT}");
}

fn pct(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}

/// A fresh PostgreSQL database for the run, dropped at the end.
fn fresh_postgres(base: &str) -> (String, String) {
    use diesel::{Connection, RunQueryDsl};
    let name = format!("herald_storm_{}", std::process::id());
    let mut conn = diesel::PgConnection::establish(base).expect("postgres");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create database");
    let (head, _) = base.rsplit_once('/').expect("url with a database");
    (format!("{head}/{name}"), name)
}

fn drop_postgres(base: &str, name: &str) {
    use diesel::{Connection, RunQueryDsl};
    if let Ok(mut conn) = diesel::PgConnection::establish(base) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn);
    }
}

pub async fn run(plan: StormPlan) {
    let dir = std::env::temp_dir().join(format!("herald-storm-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (db, pg_name) = match &plan.postgres {
        Some(base) => {
            let (url, name) = fresh_postgres(base);
            (url, Some(name))
        }
        None => (
            format!("sqlite://{}", dir.join("herald.db").display()),
            None,
        ),
    };
    let mut herald = start_herald(&plan, &db);
    listening().await;
    let shared = Arc::new(Shared::default());
    let keys = herald::auth::TokenKeys::new(super::SECRET);
    let server: SocketAddr = format!("127.0.0.1:{PORT}").parse().expect("addr");
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.sessions);
    for i in 0..plan.sessions {
        let at = started + Duration::from_secs_f64(i as f64 / plan.rate as f64);
        let token = keys.mint(&format!("u{i}"), &[], 24 * 3600).expect("mint").0;
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % plan.source_ips as usize) as u8);
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            session(server, source, i, token, shared).await;
        }));
    }
    let total = plan.sessions as u64;
    let settled = |s: &Shared| {
        s.opened.load(Ordering::Relaxed) + s.failed_handshakes.load(Ordering::Relaxed) >= total
    };
    while !settled(&shared) && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let storm_took = started.elapsed();
    let mut hs = shared
        .handshake_us
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let http = reqwest::Client::new();
    let mut p99s = Vec::new();
    let mut exact = true;
    for round in 0..plan.broadcasts {
        let id = publish(&http, &format!("storm {round}"), None).await;
        let online = shared.opened.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while shared.received(id) < online && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (received, mut lat) = shared
            .rounds
            .lock()
            .map(|r| {
                r.get(&id)
                    .map_or((0, Vec::new()), |x| (x.received, x.latency_us.clone()))
            })
            .unwrap_or_default();
        exact &= received == online;
        let p99 = pct(&mut lat, 0.99);
        eprintln!(
            "broadcast {round}: {received}/{online} received, p50 {:.1} ms, p99 {p99:.1} ms",
            pct(&mut lat, 0.5)
        );
        p99s.push(p99);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let later: Vec<f64> = p99s.iter().skip(1).copied().collect();
    let later_p99 = later.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "| storm {} sessions at {}/s | {} |",
        plan.sessions,
        plan.rate,
        if plan.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!("|---|---|");
    println!("| storm took | {:.1} s |", storm_took.as_secs_f64());
    println!(
        "| dropped (closed after upgrade, not 1001) | {} |",
        shared.dropped.load(Ordering::Relaxed)
    );
    println!(
        "| handshakes failed | {} |",
        shared.failed_handshakes.load(Ordering::Relaxed)
    );
    println!(
        "| handshake (connect → welcome) p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        pct(&mut hs, 0.5),
        pct(&mut hs, 0.99),
        pct(&mut hs, 1.0)
    );
    if let Some(first) = p99s.first() {
        println!(
            "| first broadcast p99 / worst later p99 | {first:.1} / {later_p99:.1} ms ({:.2}×) |",
            first / later_p99
        );
    }
    if plan.restart {
        let (resumed_in, lost) = restart(&plan, &db, &mut herald, &shared, &http).await;
        println!("| restart: all resumed after the new start | {resumed_in} |");
        println!("| restart: lost (announcements not received) | {lost} |");
    }
    println!(
        "| exactly once (every round complete, duplicates) | {} , {} |",
        if exact { "yes" } else { "NO" },
        shared.duplicates.load(Ordering::Relaxed)
    );
    for t in tasks {
        t.abort();
    }
    drop(herald);
    if let (Some(base), Some(name)) = (&plan.postgres, pg_name) {
        drop_postgres(base, &name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM, start again, wait until every session resumed and has what was
/// published meanwhile; answers (time until all resumed, lost deliveries).
async fn restart(
    plan: &StormPlan,
    db: &str,
    herald: &mut Herald,
    shared: &Arc<Shared>,
    http: &reqwest::Client,
) -> (String, u64) {
    let online = shared.opened.load(Ordering::Relaxed);
    let due = publish(http, "due while down", Some(herald::db::now_ms() + 1_500)).await;
    shared.restarting.store(true, Ordering::SeqCst);
    shared.resumed.store(0, Ordering::SeqCst);
    let term = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &herald.0.id().to_string()])
        .status();
    let _ = herald.0.wait();
    let down_for = term.elapsed();
    *herald = start_herald(plan, db);
    let restarted = Instant::now();
    listening().await;
    let after = publish(http, "published during the storm", None).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.resumed.load(Ordering::Relaxed) < online && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = shared.resumed.load(Ordering::Relaxed);
    let last = shared.last_resume.lock().ok().and_then(|l| *l);
    let took = last.map_or(f64::NAN, |l| (l - restarted).as_secs_f64());
    while (shared.received(due) < online || shared.received(after) < online)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lost = 2 * online - shared.received(due).min(online) - shared.received(after).min(online);
    eprintln!("restart: down for {down_for:?}; {resumed}/{online} resumed");
    (
        format!(
            "{took:.2} s ({resumed}/{online} sessions; SIGTERM to exit {:.2} s)",
            down_for.as_secs_f64()
        ),
        lost,
    )
}

async fn publish(http: &reqwest::Client, title: &str, at_ms: Option<i64>) -> i64 {
    let mut body =
        serde_json::json!({"title": title, "content": "storm", "audience": {"all": true}});
    if let Some(at) = at_ms {
        body["publish_at"] = serde_json::json!(herald::domain::rfc3339(at));
    }
    for _ in 0..100 {
        let sent = http
            .post(format!("http://127.0.0.1:{PORT}/api/announcements"))
            .bearer_auth(super::ADMIN)
            .json(&body)
            .send()
            .await;
        if let Ok(res) = sent {
            if let Ok(v) = res.json::<serde_json::Value>().await {
                if let Some(id) = v["id"].as_i64() {
                    return id;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not publish");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(
    server: SocketAddr,
    source: Ipv4Addr,
    url: &str,
    token: &str,
) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(16 * 1024)
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("herald.v1, {token}")
            .parse()
            .map_err(|_| "header".to_string())?,
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// One browser: connects, and after a close waits the hinted delay (or a
/// short jittered pause) and resumes after its cursor.
async fn session(server: SocketAddr, source: Ipv4Addr, i: usize, token: String, s: Arc<Shared>) {
    let mut cursor: Option<i64> = None;
    let mut seen: HashSet<i64> = HashSet::new();
    let mut first = true;
    loop {
        let since = cursor.map_or(String::new(), |c| format!("&since={c}"));
        let url = format!("ws://{server}/ws?id=u{i}{since}");
        let t0 = Instant::now();
        let mut pause = Duration::from_millis(200 + rand::random::<u64>() % 800);
        match connect(server, source, &url, &token).await {
            Err(e) => {
                if first {
                    s.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                    if s.failed_handshakes.load(Ordering::Relaxed) <= 5 {
                        eprintln!("session {i}: {e}");
                    }
                }
            }
            Ok(mut ws) => {
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(text) => {
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str())
                            else {
                                continue;
                            };
                            match v["type"].as_str() {
                                Some("welcome") => {
                                    cursor = cursor.or(v["data"]["cursor"].as_i64());
                                    if first {
                                        first = false;
                                        let us = t0.elapsed().as_micros() as u64;
                                        if let Ok(mut h) = s.handshake_us.lock() {
                                            h.push(us);
                                        }
                                        s.opened.fetch_add(1, Ordering::Relaxed);
                                    } else if s.restarting.load(Ordering::Relaxed) {
                                        s.resumed.fetch_add(1, Ordering::Relaxed);
                                        if let Ok(mut l) = s.last_resume.lock() {
                                            *l = Some(Instant::now());
                                        }
                                    }
                                }
                                Some("announcement") => {
                                    let d = &v["data"];
                                    let Some(id) = d["id"].as_i64() else { continue };
                                    cursor = cursor.max(d["cursor"].as_i64());
                                    if !seen.insert(id) {
                                        s.duplicates.fetch_add(1, Ordering::Relaxed);
                                        continue;
                                    }
                                    let at = d["publish_at"]
                                        .as_str()
                                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                        .map_or(0, |t| t.timestamp_micros());
                                    let lat = (chrono::Utc::now().timestamp_micros() - at).max(0);
                                    if let Ok(mut r) = s.rounds.lock() {
                                        let round = r.entry(id).or_default();
                                        round.received += 1;
                                        round.latency_us.push(lat as u64);
                                    }
                                }
                                _ => {}
                            }
                        }
                        Message::Close(frame) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            if code != 1001 {
                                s.dropped.fetch_add(1, Ordering::Relaxed);
                                eprintln!("session {i} closed {code} {reason}");
                            }
                            if let Some(ms) = reason
                                .split("reconnect in ")
                                .nth(1)
                                .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
                            {
                                pause = Duration::from_millis(ms);
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                if first {
                    s.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}
