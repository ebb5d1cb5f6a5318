//! A restart storm on PostgreSQL: thousands of sessions on a child herald
//! that gets SIGTERM (1001 with a jittered reconnect hint) and starts again
//! on the same port and database, while a second node publishes. Every
//! session comes back by cursor, nothing published meanwhile is lost or
//! repeated, and the resumes cost storage half what they did (the
//! database's own transaction counter says so).

use crate::helpers::*;
use diesel::prelude::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::Message;

/// Sessions of the storm (one user each): the test process and the node
/// each hold this many sockets, well inside the 20 000 descriptors here.
const SESSIONS: usize = 2_000;
/// Handshakes in flight while the sessions first open.
const OPENING: usize = 200;
/// Transactions the restarted node may cost storage per resumed session:
/// a resume is the unread count and the replay page (the catch-up's own
/// connections are lent without a test query); the batched known-user
/// reads, the scheduler's ticks and the other node add a little (2.24
/// measured). Before issue 17 a resume took six (the known user twice, the
/// newest cursor, the unread count, the replay and the pool's check-out
/// ping); with the ping alone left, about three.
const MAX_TRANSACTIONS_PER_RESUME: f64 = 2.75;
/// How long everything may take.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Tally {
    /// Sessions that had a welcome since `restarted`.
    resumed: HashSet<usize>,
    restarted: Option<Instant>,
    last_resume: Option<Instant>,
    /// announcement id → sessions it reached
    delivered: HashMap<i64, usize>,
    duplicates: usize,
    /// Closes other than the restart's 1001 and a hinted 1013: (code, reason).
    refused: Vec<(u16, String)>,
    /// 1013 closes with a reconnect hint: the node was too busy to load a
    /// catch-up within its bounded wait; the client comes back by cursor.
    busy: usize,
    opened: usize,
}

/// One simulated browser: connects, resumes after its cursor, and after a
/// close waits as long as the reason's hint says (a refused connect: a
/// short jittered pause), like herald.js.
async fn browse(port: u16, i: usize, tally: Rc<RefCell<Tally>>, stop: Rc<Cell<bool>>) {
    let user = format!("s{i}");
    let token = user_token(&user);
    let mut cursor: Option<i64> = None;
    let mut seen: HashSet<i64> = HashSet::new();
    while !stop.get() {
        let query = cursor.map_or(String::new(), |c| format!("&since={c}"));
        let url = format!("ws://127.0.0.1:{port}/ws?id={user}{query}");
        let mut pause = Duration::from_millis(100 + rand::random::<u64>() % 200);
        if let Ok((mut ws, _)) = Ws::open(&url, &["herald.v1", &token]).await {
            while let Some(Ok(message)) = ws.stream.next().await {
                match message {
                    Message::Text(text) => {
                        let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                        let data = &frame["data"];
                        match frame["type"].as_str() {
                            Some("welcome") => {
                                // Only a fresh session takes the welcome's cursor;
                                // a resuming one keeps its own until the replay.
                                cursor = cursor.or(data["cursor"].as_i64());
                                let mut t = tally.borrow_mut();
                                t.opened += 1;
                                if t.restarted.is_some() && t.resumed.insert(i) {
                                    t.last_resume = Some(Instant::now());
                                }
                            }
                            Some("announcement") => {
                                let id = data["id"].as_i64().expect("id");
                                cursor = cursor.max(data["cursor"].as_i64());
                                let mut t = tally.borrow_mut();
                                if seen.insert(id) {
                                    *t.delivered.entry(id).or_default() += 1;
                                } else {
                                    t.duplicates += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    Message::Close(frame) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        // 1001 (the restart) and 1013 (the catch-up waited its
                        // bounded time) carry a hint and lose nothing; anything
                        // else drops the session.
                        let hinted = hinted_delay(&reason).is_some();
                        if code == 1013 && hinted {
                            tally.borrow_mut().busy += 1;
                        } else if code != 1001 {
                            tally.borrow_mut().refused.push((code, reason.clone()));
                        }
                        if let Some(ms) = hinted_delay(&reason) {
                            pause = Duration::from_millis(ms);
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// The `N` of a close reason's `reconnect in N ms`.
fn hinted_delay(reason: &str) -> Option<u64> {
    let rest = reason.split("reconnect in ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// Waits until `done` holds for the tally, within what is left of `LIMIT`.
async fn until(
    tally: &Rc<RefCell<Tally>>,
    started: Instant,
    what: &str,
    done: impl Fn(&Tally) -> bool,
) {
    while !done(&tally.borrow()) {
        let t = tally.borrow();
        assert!(
            started.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; resumed {}, delivered {:?}, refused {:?}",
            t.resumed.len(),
            t.delivered,
            t.refused.iter().take(5).collect::<Vec<_>>()
        );
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Committed and rolled-back transactions in the database so far, as the
/// statistics have them (a backend reports its own when it exits).
fn transactions(conn: &mut PgConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
         WHERE datname = current_database())",
    ))
    .get_result(conn)
    .expect("pg_stat_database")
}

/// Waits until no backend of `app` (its `application_name`) is left.
async fn gone(conn: &mut PgConnection, app: &str) {
    let started = Instant::now();
    loop {
        let left: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
            "(SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}')"
        )))
        .get_result(conn)
        .expect("pg_stat_activity");
        if left == 0 {
            return;
        }
        assert!(started.elapsed() < WAIT, "{app} still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn terminate(node: &mut Node) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn exited(node: &mut Node) {
    let started = Instant::now();
    loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status:?}");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_storm_node(db: &str, bind: &str, name: &'static str) -> Node {
    Node::start_configured(
        db,
        &[
            "--bind",
            bind,
            "--max-connects-per-ip",
            "0",
            "--shutdown-grace",
            "5",
        ],
        |c| {
            c.env("PGAPPNAME", name).env("RUST_LOG", "warn,herald=info");
        },
    )
}

async fn announce_all(node: &Node, title: &str, at_ms: Option<i64>) -> i64 {
    let mut body = json!({"title": title, "content": "storm", "audience": {"all": true}});
    if let Some(at) = at_ms {
        body["publish_at"] = json!(herald::domain::rfc3339(at));
    }
    node.announce(&body).await
}

/// The restart storm of issue 17, on PostgreSQL.
#[actix_web::test]
async fn a_restart_storm_resumes_every_session_exactly_once() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: the restart storm needs {POSTGRES_URL_VAR} (PostgreSQL)");
        return;
    };
    let test_db = TestDb::postgres(&base);
    let db = test_db.url.clone();
    let started = Instant::now();
    let mut a = start_storm_node(&db, "127.0.0.1:0", "storm-a1");
    let port = a.port;
    let b = Node::start_with(&db, &[]);
    let tally = Rc::new(RefCell::new(Tally::default()));
    let stop = Rc::new(Cell::new(false));
    let mut tasks = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        tasks.push(actix_web::rt::spawn(browse(
            port,
            i,
            tally.clone(),
            stop.clone(),
        )));
        if i % OPENING == OPENING - 1 {
            until(&tally, started, "opening", |t| t.opened > i - OPENING / 2).await;
        }
    }
    until(&tally, started, "all open", |t| t.opened == SESSIONS).await;
    let before = announce_all(&b, "before", None).await;
    until(&tally, started, "before delivered", |t| {
        t.delivered.get(&before) == Some(&SESSIONS)
    })
    .await;

    // Due while the node is down: the other node claims it.
    let due = announce_all(&b, "due while down", Some(herald::db::now_ms() + 1_000)).await;
    tally.borrow_mut().restarted = Some(Instant::now());
    terminate(&mut a);
    exited(&mut a).await;
    let during = announce_all(&b, "published while down", None).await;
    let mut stats = PgConnection::establish(&db).expect("stats connection");
    gone(&mut stats, "storm-a1").await;
    let before_storm = transactions(&mut stats);
    let restart = Instant::now();
    let mut a = start_storm_node(&db, &format!("127.0.0.1:{port}"), "storm-a2");
    let storm = announce_all(&b, "published during the storm", None).await;

    until(&tally, started, "all resumed", |t| {
        t.resumed.len() == SESSIONS
    })
    .await;
    let last = tally.borrow().last_resume.expect("resumed");
    eprintln!(
        "restart storm: {SESSIONS} sessions resumed {:?} after the new node started ({:?} after SIGTERM)",
        last - restart,
        last - tally.borrow().restarted.expect("restarted"),
    );
    for id in [due, during, storm] {
        until(&tally, started, "delivered", |t| {
            t.delivered.get(&id) == Some(&SESSIONS)
        })
        .await;
    }
    // Late duplicates would come with the replays just finished.
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.set(true);
    terminate(&mut a);
    exited(&mut a).await;
    gone(&mut stats, "storm-a2").await;
    let storm_transactions = transactions(&mut stats) - before_storm;
    for task in tasks {
        task.abort();
    }
    let t = tally.borrow();
    // A session told 1013 resumed twice.
    let per_resume = storm_transactions as f64 / (SESSIONS + t.busy) as f64;
    eprintln!(
        "restart storm: {storm_transactions} transactions from the restart to the stop ({per_resume:.2} per session); {} hinted 1013 closes (came back by cursor)",
        t.busy
    );
    assert_eq!(t.duplicates, 0, "each announcement exactly once");
    assert!(
        t.refused.is_empty(),
        "{} sessions closed other than by the restart: {:?}",
        t.refused.len(),
        t.refused.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        per_resume <= MAX_TRANSACTIONS_PER_RESUME,
        "{per_resume:.2} transactions per resumed session (at most {MAX_TRANSACTIONS_PER_RESUME})"
    );
    drop(b);
}
