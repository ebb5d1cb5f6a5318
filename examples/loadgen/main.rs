//! herald's load generator. `compare` starts herald (release binary, fresh
//! SQLite database) and the floor server side by side and runs the same
//! scenarios against each, printing a table of herald, floor and ratio.
//!
//!   cargo build --release --examples
//!   target/release/examples/loadgen compare --sessions 1000
//!
//! It reads each server's RSS and CPU time from /proc/<pid>. One process
//! holds at most ~19 000 sockets here (`ulimit -Hn` is 20 000).

mod clients;
mod floor;
mod storm;

use clap::{Parser, Subcommand};
use clients::{Plan, Stats};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for herald, with a floor server to compare against")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the floor server (no database, no actors, same frames).
    Floor {
        #[arg(long, default_value = "127.0.0.1:9100")]
        bind: String,
    },
    /// Start herald and the floor, run the scenarios against both.
    Compare {
        /// The herald binary to start.
        #[arg(long, default_value = "target/release/herald")]
        herald: String,
        /// Sessions to open (one user each).
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Comma-separated: idle, broadcast, sustained, targeted, receipts.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "idle,broadcast,sustained,targeted"
        )]
        scenarios: Vec<String>,
        /// Broadcast rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Sustained: broadcasts per second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// Targeted: single-user announcements per second.
        #[arg(long, default_value_t = 2000)]
        targeted_rate: u32,
        /// Seconds each rate scenario lasts.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Loopback source addresses to spread sessions over (127.0.0.2, .3, ...).
        #[arg(long, default_value_t = 8)]
        source_ips: u8,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Extra environment for herald, KEY=VALUE (e.g. DATABASE_URL=postgres://...).
        #[arg(long = "herald-env")]
        herald_env: Vec<String>,
        /// Compare herald over Server-Sent Events with herald over WebSocket
        /// (instead of herald with the floor); idle and broadcast only.
        #[arg(long)]
        sse: bool,
    },
    /// A connection storm (and optionally a restart storm) against herald.
    Storm(StormArgs),
}

/// `storm`: see storm.rs.
#[derive(clap::Args)]
struct StormArgs {
    /// The herald binary to start.
    #[arg(long, default_value = "target/release/herald")]
    herald: String,
    /// Sessions to open (one user each).
    #[arg(long, default_value_t = 19_000)]
    sessions: usize,
    /// Sessions opened per second.
    #[arg(long, default_value_t = 4_000)]
    rate: u32,
    /// A PostgreSQL URL to create a fresh database beside (SQLite without).
    #[arg(long)]
    postgres: Option<String>,
    /// Then SIGTERM herald, start it again and time the resumes.
    #[arg(long)]
    restart: bool,
    /// Broadcasts after the storm (the first right after it).
    #[arg(long, default_value_t = 5)]
    broadcasts: usize,
    /// Loopback source addresses to spread sessions over.
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
}

const ADMIN: &str = "loadgen-admin-token";
const SECRET: &str = "loadgen-jwt-secret-0123456789";

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Cmd::Floor { bind } => {
            if let Err(e) = floor::serve(&bind).await {
                eprintln!("floor: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Storm(a) => {
            storm::run(storm::StormPlan {
                herald: a.herald,
                sessions: a.sessions,
                rate: a.rate,
                postgres: a.postgres,
                restart: a.restart,
                broadcasts: a.broadcasts,
                source_ips: a.source_ips,
            })
            .await
        }
        Cmd::Compare {
            herald,
            sessions,
            scenarios,
            rounds,
            rate,
            targeted_rate,
            duration,
            source_ips,
            concurrency,
            herald_env,
            sse,
        } => {
            let mut settings = Settings {
                sessions,
                rounds,
                rate,
                targeted_rate,
                duration: Duration::from_secs(duration),
                source_ips,
                concurrency,
                transport: clients::Transport::WebSocket,
            };
            let mut rows: Vec<(String, Option<f64>, Option<f64>, &'static str)> = Vec::new();
            let dir = std::env::temp_dir().join(format!("herald-loadgen-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let db = format!("sqlite://{}", dir.join("herald.db").display());
            let herald_command = || {
                let mut command = Command::new(&herald);
                command
                    .args([
                        "--bind",
                        "127.0.0.1:9200",
                        "--database-url",
                        &db,
                        "--max-connects-per-ip",
                        "0",
                        "--max-sessions-per-user",
                        "100",
                        "--heartbeat-interval",
                        "60",
                        "--heartbeat-timeout",
                        "120",
                    ])
                    .envs(herald_env.iter().filter_map(|kv| kv.split_once('=')))
                    .env("HERALD_ADMIN_TOKEN", ADMIN)
                    .env("HERALD_JWT_SECRET", SECRET)
                    .env("RUST_LOG", "warn");
                command
            };
            let herald_node = start(&mut herald_command(), 9200).await;
            let h = run_target(
                Target::herald(9200),
                herald_node.id(),
                &settings,
                &scenarios,
            )
            .await;
            drop(herald_node);
            let f = if sse {
                // A fresh database, so the SSE run starts where the WebSocket one did.
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::create_dir_all(&dir);
                settings.transport = clients::Transport::Sse;
                let node = start(&mut herald_command(), 9200).await;
                let f = run_target(Target::herald(9200), node.id(), &settings, &scenarios).await;
                drop(node);
                f
            } else {
                let exe = std::env::current_exe().expect("own path");
                let floor_node = start(
                    Command::new(exe).args(["floor", "--bind", "127.0.0.1:9100"]),
                    9100,
                )
                .await;
                let f = run_target(
                    Target::Floor {
                        port: 9100,
                        control: tokio::sync::Mutex::new(None),
                    },
                    floor_node.id(),
                    &settings,
                    &scenarios,
                )
                .await;
                drop(floor_node);
                f
            };
            for (name, hv, unit) in &h {
                let fv = f
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .and_then(|(_, v, _)| *v);
                rows.push((name.clone(), *hv, fv, unit));
            }
            let (a, b) = if sse {
                ("herald WebSocket", "herald SSE")
            } else {
                ("herald", "floor")
            };
            println!(
                "\n| scenario ({sessions} sessions) | {a} | {b} | {a} / {b} |\n|---|---|---|---|"
            );
            for (name, hv, fv, unit) in rows {
                let show =
                    |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1} {unit}"));
                let ratio = match (hv, fv) {
                    (Some(h), Some(f)) if f > 0.0 => format!("{:.2}", h / f),
                    _ => "–".into(),
                };
                println!("| {name} | {} | {} | {ratio} |", show(hv), show(fv));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

struct Settings {
    sessions: usize,
    rounds: usize,
    rate: u32,
    targeted_rate: u32,
    duration: Duration,
    source_ips: u8,
    concurrency: usize,
    transport: clients::Transport,
}

/// A child server, killed when dropped.
struct Node(Child);
impl Node {
    fn id(&self) -> u32 {
        self.0.id()
    }
}
impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(cmd: &mut Command, port: u16) -> Node {
    let child = cmd.stdout(Stdio::null()).spawn().expect("start server");
    let node = Node(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not start");
}

enum Target {
    Herald {
        port: u16,
        http: reqwest::Client,
        keys: Box<herald::auth::TokenKeys>,
    },
    Floor {
        port: u16,
        control: tokio::sync::Mutex<
            Option<
                futures_util::stream::SplitSink<
                    tokio_tungstenite::WebSocketStream<
                        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
                    >,
                    tokio_tungstenite::tungstenite::Message,
                >,
            >,
        >,
    },
}

impl Target {
    fn herald(port: u16) -> Target {
        Target::Herald {
            port,
            http: reqwest::Client::new(),
            keys: Box::new(herald::auth::TokenKeys::new(SECRET)),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Target::Herald { port, .. } | Target::Floor { port, .. } => *port,
        }
    }

    fn session_url(&self, i: usize) -> (String, Vec<String>) {
        let url = format!("ws://127.0.0.1:{}/ws?id=u{i}", self.port());
        match self {
            Target::Herald { keys, .. } => {
                let token = keys.mint(&format!("u{i}"), &[], 24 * 3600).expect("mint").0;
                (url, vec!["herald.v1".into(), token])
            }
            Target::Floor { .. } => (url, vec!["herald.v1".into()]),
        }
    }

    /// Publishes one announcement now (to everyone, or one user); returns
    /// its id and the publish time asked for (µs since the epoch): herald's
    /// stored `publish_at` (the request asks for "now"), or the moment the
    /// floor's control frame was sent.
    async fn publish(&self, seq: i64, user: Option<usize>) -> Option<(i64, i64)> {
        match self {
            Target::Herald { port, http, .. } => {
                let audience = match user {
                    Some(u) => serde_json::json!({"users": [format!("u{u}")]}),
                    None => serde_json::json!({"all": true}),
                };
                let res = http.post(format!("http://127.0.0.1:{port}/api/announcements"))
                    .bearer_auth(ADMIN)
                    .json(&serde_json::json!({"title": "load", "content": "load test", "audience": audience}))
                    .send().await.ok()?;
                let created = res.json::<serde_json::Value>().await.ok()?;
                let asked =
                    chrono::DateTime::parse_from_rfc3339(created["publish_at"].as_str()?).ok()?;
                Some((created["id"].as_i64()?, asked.timestamp_micros()))
            }
            Target::Floor { port, control } => {
                use futures_util::{SinkExt, StreamExt};
                let mut guard = control.lock().await;
                if guard.is_none() {
                    let (ws, _) =
                        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/control"))
                            .await
                            .ok()?;
                    *guard = Some(ws.split().0);
                }
                let cmd = match user {
                    Some(u) => serde_json::json!({"id": seq, "user": format!("u{u}")}),
                    None => serde_json::json!({"id": seq}),
                };
                let asked = clients::now_us();
                guard
                    .as_mut()?
                    .send(tokio_tungstenite::tungstenite::Message::text(
                        cmd.to_string(),
                    ))
                    .await
                    .ok()?;
                Some((seq, asked))
            }
        }
    }
}

/// (RSS KiB, CPU seconds) of a process.
fn proc_usage(pid: u32) -> (u64, f64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

type Row = (String, Option<f64>, &'static str);

async fn wait_for(stats: &Stats, id: i64, expected: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if stats.received(id) >= expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

fn ms(us: u64) -> Option<f64> {
    Some(us as f64 / 1000.0)
}

async fn run_target(target: Target, pid: u32, s: &Settings, scenarios: &[String]) -> Vec<Row> {
    let name = match target {
        Target::Herald { .. } => "herald",
        Target::Floor { .. } => "floor",
    };
    let target = Arc::new(target);
    let mut rows: Vec<Row> = Vec::new();
    let stats = Arc::new(Stats::default());
    let server: SocketAddr = format!("127.0.0.1:{}", target.port())
        .parse()
        .expect("addr");
    let ack = scenarios.iter().any(|sc| sc == "receipts");
    let plan = Plan {
        transport: s.transport,
        server,
        sessions: s.sessions,
        source_ips: s.source_ips,
        concurrency: s.concurrency,
        ack,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, _) = proc_usage(pid);
    let (took, tasks) = clients::open_all(&plan, |i| target.session_url(i), stats.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, _) = proc_usage(pid);
    let online = stats.connected.load(Ordering::Relaxed);
    eprintln!(
        "{name}: {online} sessions open ({} failed) in {took:?}; RSS {rss0} -> {rss1} KiB",
        stats.failed.load(Ordering::Relaxed)
    );
    let mut seq = 0i64;
    for scenario in scenarios {
        match scenario.as_str() {
            "idle" => {
                rows.push(("idle: sessions open".into(), Some(online as f64), ""));
                rows.push((
                    "idle: RSS per session".into(),
                    Some(rss1.saturating_sub(rss0) as f64 * 1024.0 / online.max(1) as f64 / 1024.0),
                    "KiB",
                ));
                rows.push((
                    "idle: handshakes per second".into(),
                    Some(online as f64 / took.as_secs_f64()),
                    "/s",
                ));
            }
            "broadcast" | "receipts" => {
                let mut ids = Vec::new();
                let mut to_last = Vec::new();
                let rounds = if scenario == "receipts" { 1 } else { s.rounds };
                for _ in 0..rounds {
                    seq += 1;
                    let sent = Instant::now();
                    let Some((id, asked)) = target.publish(seq, None).await else {
                        continue;
                    };
                    stats.asked(id, asked);
                    let complete = wait_for(&stats, id, online, Duration::from_secs(20)).await;
                    if !complete {
                        eprintln!(
                            "{name}: round {id} incomplete: {}/{online}",
                            stats.received(id)
                        );
                    }
                    to_last.push(sent.elapsed());
                    ids.push(id);
                    if scenario == "receipts" {
                        if let Target::Herald { port, http, .. } = target.as_ref() {
                            let deadline = Instant::now() + Duration::from_secs(30);
                            let mut written = None;
                            while Instant::now() < deadline {
                                let v: serde_json::Value = match http
                                    .get(format!("http://127.0.0.1:{port}/api/announcements/{id}"))
                                    .bearer_auth(ADMIN)
                                    .send()
                                    .await
                                {
                                    Ok(r) => r.json().await.unwrap_or_default(),
                                    Err(_) => serde_json::Value::Null,
                                };
                                if v["stats"]["delivered"].as_u64() >= Some(online) {
                                    written = Some(sent.elapsed());
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            rows.push((
                                format!("receipts: {online} acks written"),
                                written.map(|d| d.as_secs_f64() * 1000.0),
                                "ms",
                            ));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let (h, received) = stats.latencies(&ids);
                let expected = online * ids.len() as u64;
                let label = if scenario == "receipts" {
                    "receipts broadcast"
                } else {
                    "broadcast"
                };
                rows.push((
                    format!("{label}: delivered exactly once"),
                    Some(100.0 * received as f64 / expected.max(1) as f64),
                    "%",
                ));
                rows.push((format!("{label}: p50"), ms(h.value_at_quantile(0.5)), "ms"));
                rows.push((format!("{label}: p90"), ms(h.value_at_quantile(0.9)), "ms"));
                rows.push((format!("{label}: p99"), ms(h.value_at_quantile(0.99)), "ms"));
                rows.push((format!("{label}: max"), ms(h.max()), "ms"));
                let mean_last = to_last.iter().map(Duration::as_secs_f64).sum::<f64>()
                    / to_last.len().max(1) as f64;
                rows.push((
                    format!("{label}: request to last delivery"),
                    Some(mean_last * 1000.0),
                    "ms",
                ));
                rows.push((
                    format!("{label}: deliveries per second"),
                    Some(online as f64 / mean_last.max(1e-9)),
                    "/s",
                ));
            }
            "sustained" | "targeted" => {
                let targeted = scenario == "targeted";
                let per_sec = if targeted { s.targeted_rate } else { s.rate };
                let total = per_sec as u64 * s.duration.as_secs();
                let (_, cpu0) = proc_usage(pid);
                let started = Instant::now();
                let ids = Arc::new(tokio::sync::Mutex::new(Vec::new()));
                // At most 64 requests in flight; each leaves at its due time
                // (a request is a task of its own, started when due: held
                // back until 64 had piled up, as before, they went out in
                // bursts of 64 and measured the burst, not the rate).
                let gate = Arc::new(tokio::sync::Semaphore::new(64));
                let mut pending = Vec::with_capacity(total as usize);
                for n in 0..total {
                    let due = started + Duration::from_secs_f64(n as f64 / per_sec as f64);
                    tokio::time::sleep_until(due.into()).await;
                    seq += 1;
                    let user = targeted.then(|| rand::random::<usize>() % s.sessions);
                    let permit = gate.clone().acquire_owned().await.expect("gate");
                    let (ids, target, stats, this) =
                        (ids.clone(), target.clone(), stats.clone(), seq);
                    pending.push(tokio::spawn(async move {
                        let published = target.publish(this, user).await;
                        drop(permit);
                        if let Some((id, asked)) = published {
                            stats.asked(id, asked);
                            ids.lock().await.push(id);
                        }
                    }));
                }
                futures_util::future::join_all(pending).await;
                let ids = ids.lock().await.clone();
                let per = if targeted { 1 } else { online };
                let expected = per * ids.len() as u64;
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline && stats.received_all(&ids) < expected {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let (_, cpu1) = proc_usage(pid);
                let (h, received) = stats.latencies(&ids);
                let offered = per as f64 * per_sec as f64;
                rows.push((
                    format!(
                        "{scenario} {per_sec}/s × {}s: offered deliveries/s",
                        s.duration.as_secs()
                    ),
                    Some(offered),
                    "/s",
                ));
                rows.push((
                    format!("{scenario}: delivered"),
                    Some(100.0 * received as f64 / expected.max(1) as f64),
                    "%",
                ));
                rows.push((
                    format!("{scenario}: p50"),
                    ms(h.value_at_quantile(0.5)),
                    "ms",
                ));
                rows.push((
                    format!("{scenario}: p99"),
                    ms(h.value_at_quantile(0.99)),
                    "ms",
                ));
                rows.push((format!("{scenario}: max"), ms(h.max()), "ms"));
                rows.push((
                    format!("{scenario}: CPU s per million deliveries"),
                    Some((cpu1 - cpu0) / (received.max(1) as f64 / 1e6)),
                    "s",
                ));
            }
            other => eprintln!("unknown scenario {other}"),
        }
    }
    rows.push((
        "duplicates seen".into(),
        Some(stats.duplicates.load(Ordering::Relaxed) as f64),
        "",
    ));
    for t in tasks {
        t.abort();
    }
    rows
}
