//! The test harness: `spawn_app()` starts a real herald on port 0 with its
//! own database; `TestApp` has one method per endpoint; `Ws` is a real
//! WebSocket client that awaits frames with timeouts; `Node` is herald as a
//! child process.
//!
//! Every shared test runs on both backends: `both_backends!(name)` above
//! `async fn name()` makes `name::sqlite` and `name::postgres`. The
//! PostgreSQL run needs `HERALD_TEST_POSTGRES_URL` (`.ci/run` sets it) and
//! gets a database of its own, created from that URL and dropped at the end;
//! without the variable it says why it skipped and passes.

use diesel::{Connection, PgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use herald::config::Settings;
use herald::startup::Application;
use herald::state::AppState;
use serde_json::{json, Value};
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";
/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

pub const POSTGRES_URL_VAR: &str = "HERALD_TEST_POSTGRES_URL";

/// Which database the tests on this thread run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: Cell<TestBackend> = const { Cell::new(TestBackend::Sqlite) };
}

/// Runs the test `async fn $name()` on SQLite, and on PostgreSQL when
/// `HERALD_TEST_POSTGRES_URL` is set, as `$name::sqlite` and `$name::postgres`.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                $crate::helpers::use_backend($crate::helpers::TestBackend::Sqlite);
                super::$name().await;
            }

            #[actix_web::test]
            async fn postgres() {
                if $crate::helpers::postgres_url().is_some() {
                    $crate::helpers::use_backend($crate::helpers::TestBackend::Postgres);
                    super::$name().await;
                }
            }
        }
    };
}

pub fn use_backend(backend: TestBackend) {
    BACKEND.with(|b| b.set(backend));
}

/// The PostgreSQL server to test against, or `None` after saying why not.
///
/// Without an `sslmode` of its own the URL gets `sslmode=disable`: the test
/// server is on loopback, and libpq's TLS is OpenSSL, whose exit-time cleanup
/// crashed the test process (SIGSEGV in libcrypto, after every test had
/// passed) while a node's listener thread was still inside a TLS read.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() && url.contains("sslmode=") => Some(url),
        Ok(url) if !url.is_empty() => {
            let joiner = if url.contains('?') { '&' } else { '?' };
            Some(format!("{url}{joiner}sslmode=disable"))
        }
        _ => {
            eprintln!("skipped: {POSTGRES_URL_VAR} not set");
            None
        }
    }
}

/// One test's own database: a SQLite file in a temporary directory, or a
/// PostgreSQL database created for the test and dropped with this value.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A database on the backend this thread's tests use.
    pub fn new() -> TestDb {
        match BACKEND.with(Cell::get) {
            TestBackend::Sqlite => TestDb::sqlite(),
            TestBackend::Postgres => {
                TestDb::postgres(&postgres_url().expect("a PostgreSQL test needs the URL"))
            }
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDb {
            url: format!("sqlite://{}", dir.path().join("herald.db").display()),
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// Creates `herald_test_<random>` on the server `base` points at.
    pub fn postgres(base: &str) -> TestDb {
        let name = format!("herald_test_{:016x}", rand::random::<u64>());
        let mut admin =
            PgConnection::establish(base).expect("connect to the PostgreSQL test server");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create the test database");
        TestDb {
            url: with_database(base, &name),
            _dir: None,
            postgres: Some((base.to_string(), name)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort: FORCE ends the connections the stopped app still holds.
        if let Some((base, name)) = self.postgres.take() {
            if let Ok(mut admin) = PgConnection::establish(&base) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

/// `url` with its database name replaced by `name`, query string kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{authority}/{name}{query}")
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub state: actix_web::web::Data<AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    _db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Settings every test starts from: port 0, the test's own database, known
/// secrets, a short poll so scheduled tests are quick.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::defaults();
    s.bind = "127.0.0.1:0".into();
    s.database_url = db.url.clone();
    // Tests run in parallel on one PostgreSQL server; keep each one small.
    s.db_pool_size = 8;
    s.admin_token = Some(ADMIN_TOKEN.into());
    s.jwt_secret = Some(JWT_SECRET.into());
    s.poll_interval_ms = 200;
    s.receipt_flush_ms = 20;
    s.workers = 1;
    s.allowed_origins = vec![];
    s
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new();
    let mut settings = test_settings(&db);
    customize(&mut settings);
    let app = Application::build(settings).await.expect("herald starts");
    let port = app.port();
    let state = app.state.clone();
    let handle = app.handle();
    actix_web::rt::spawn(app.into_server());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        state,
        http: reqwest::Client::new(),
        handle,
        _db: db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop without waiting (the command is sent when `stop` is called;
        // the future only reports completion); the runtime ends with the
        // test anyway.
        drop(self.handle.stop(false));
        if let Some(cluster) = &self.state.cluster {
            cluster.shutdown();
        }
    }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.token_with_groups(user, &[])
    }

    pub fn token_with_groups(&self, user: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.state
            .keys
            .mint(user, &groups, 3600)
            .expect("mint token")
            .0
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path_and_query)
    }

    /// Connects as `user` with `["herald.v1", token]` and reads the welcome.
    pub async fn connect(&self, user: &str) -> Ws {
        self.connect_with(user, &[], "").await
    }

    pub async fn connect_with(&self, user: &str, groups: &[&str], extra_query: &str) -> Ws {
        let token = self.token_with_groups(user, groups);
        let url = self.ws_url(&format!("/ws?id={user}{extra_query}"));
        let (mut ws, _) = Ws::open(&url, &["herald.v1", &token])
            .await
            .expect("connects");
        let welcome = ws.next_json().await;
        assert_eq!(welcome["type"], "welcome", "first frame: {welcome}");
        ws.welcome = welcome;
        ws
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .patch(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
    }

    /// Creates an announcement and returns its JSON, asserting 201.
    pub async fn announce(&self, body: Value) -> Value {
        let res = self.admin_post("/api/announcements", &body).await;
        let status = res.status().as_u16();
        let json: Value = res.json().await.expect("json body");
        assert_eq!(status, 201, "create failed: {json}");
        json
    }

    /// Creates an announcement for everyone, published now.
    /// Announces to `group` and waits until `ws` receives it.
    pub async fn group_announcement_reaches(&self, ws: &mut Ws, group: &str) {
        let created = self
            .announce(json!({"title": group, "content": "c", "audience": {"groups": [group]}}))
            .await;
        assert_eq!(
            ws.next_of("announcement").await["data"]["id"],
            created["id"]
        );
    }

    pub async fn announce_all(&self, title: &str) -> Value {
        self.announce(json!({"title": title, "content": "body", "audience": {"all": true}}))
            .await
    }

    pub async fn announcement(&self, id: i64) -> Value {
        let res = self.admin_get(&format!("/api/announcements/{id}")).await;
        assert_eq!(res.status().as_u16(), 200);
        res.json().await.expect("json")
    }

    pub async fn user_get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn user_post(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Waits until `check` holds for the announcement's admin view.
    pub async fn wait_for_announcement(&self, id: i64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.announcement(id).await;
            if check(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition never held: {view}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

type Stream = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client for tests.
pub struct Ws {
    pub stream: Stream,
    pub welcome: Value,
    /// The subprotocol the server answered with.
    pub protocol: Option<String>,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    NoCode,
}

impl Ws {
    /// Opens a socket offering `protocols` (none when empty).
    pub async fn open(
        url: &str,
        protocols: &[&str],
    ) -> Result<
        (
            Ws,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        String,
    > {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).map_err(|e| e.to_string())?,
            );
        }
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| e.to_string())?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((
            Ws {
                stream,
                welcome: Value::Null,
                protocol,
            },
            response,
        ))
    }

    /// The next message of any kind, or None on timeout or end of stream.
    pub async fn next_message(&mut self, within: Duration) -> Option<Message> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            _ => None,
        }
    }

    /// The next JSON text frame, skipping control frames; panics on timeout.
    pub async fn next_json(&mut self) -> Value {
        self.try_next_json(WAIT)
            .await
            .expect("a JSON frame within the wait")
    }

    pub async fn try_next_json(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                Message::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame of `kind`, skipping others (pongs, reads...).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Asserts no frame of `kind` arrives within `within`.
    pub async fn assert_no(&mut self, kind: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            if let Some(frame) = self.try_next_json(left).await {
                assert_ne!(frame["type"], kind, "unexpected frame: {frame}");
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await {
                Some(Message::Close(Some(frame))) => return Closed::Code(frame.code.into()),
                Some(Message::Close(None)) | None => return Closed::NoCode,
                Some(_) => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// A token for `user` signed with the test secret, for child-process nodes.
pub fn user_token(user: &str) -> String {
    herald::auth::TokenKeys::new(JWT_SECRET)
        .mint(user, &[], 600)
        .expect("mint")
        .0
}

/// herald as a child process (the real binary) on port 0, killed when
/// dropped. Its log lines are kept for tests to look at.
pub struct Node {
    pub child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub fn start(db: &str) -> Node {
        Node::start_with(db, &[])
    }

    /// Starts with the test secrets, a 200 ms poll and `extra` flags, and
    /// waits for the printed address.
    pub fn start_with(db: &str, extra: &[&str]) -> Node {
        Node::start_configured(db, extra, |_| {})
    }

    /// As `start_with`, with a last say over the command (its environment).
    /// Binds port 0 unless `extra` names a `--bind`.
    pub fn start_configured(
        db: &str,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Node {
        // `HERALD_TEST_BIN` runs the child-process tests against another
        // herald binary (an older build, to show a test fails without a fix).
        let bin = std::env::var("HERALD_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_herald").to_string());
        let mut command = Command::new(bin);
        if !extra.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        command
            .args(["--database-url", db])
            .args(["--poll-interval-ms", "200", "--workers", "1"])
            .args(["--db-pool-size", "6"])
            .args(extra)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HERALD_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let mut child = command.spawn().expect("spawn herald");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            // Keeps reading to the end so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // `address=http://...` in text logs, `"address":"http://..."` in JSON.
                let listening = line.contains("herald is listening");
                if let Some(rest) = line.split("http://127.0.0.1:").nth(1).filter(|_| listening) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap_or(0));
                }
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("herald printed its address");
        Node { child, port, log }
    }

    /// The log lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .map(|log| log.iter().filter(|l| l.contains(needle)).cloned().collect())
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{path_and_query}", self.port)
    }

    /// SIGKILL: no shutdown path runs.
    /// `GET` on an admin endpoint of this node, as JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Creates an announcement on this node, asserting 201; returns its id.
    pub async fn announce(&self, body: &Value) -> i64 {
        let res = reqwest::Client::new()
            .post(self.url("/api/announcements"))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 201);
        res.json::<Value>().await.expect("json")["id"]
            .as_i64()
            .expect("id")
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A socket with a tiny receive buffer that the test never reads.
pub async fn stalled_socket(port: u16, user: &str, extra_query: &str) -> Ws {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4_096).expect("rcvbuf");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    socket.set_nonblocking(true).expect("nonblocking");
    let _ = socket.connect(&addr.into());
    let stream = tokio::net::TcpStream::from_std(socket.into()).expect("tokio stream");
    stream.writable().await.expect("connected");
    let mut request = format!("ws://127.0.0.1:{port}/ws?id={user}{extra_query}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("herald.v1, {}", user_token(user))
            .parse()
            .expect("header"),
    );
    let (stream, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
    Ws {
        stream,
        welcome: Value::Null,
        protocol: Some("herald.v1".into()),
    }
}

/// A reading client of a child node that resumes after `since`.
pub async fn open_reader(port: u16, user: &str, since: i64) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/ws?id={user}&since={since}");
    let (mut ws, _) = Ws::open(&url, &["herald.v1", &user_token(user)])
        .await
        .expect("open");
    assert_eq!(ws.next_json().await["type"], "welcome");
    ws
}

/// herald's `/metrics` text.
pub async fn metrics_text(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text")
}

/// The value of one sample line (`name{labels}`) in the metrics text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
