//! A herald child process with its own SQLite file, killed when dropped,
//! that can be killed and restarted on the same port and database.

use super::{ADMIN_TOKEN, JWT_SECRET, WAIT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A herald child process with its own SQLite file; killed when dropped.
pub struct Herald {
    child: Option<Child>,
    pub port: u16,
    database_url: String,
    log: Arc<Mutex<Vec<String>>>,
    /// Flags beyond the harness's own, kept for restarts.
    extra: Vec<String>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Herald {
    pub fn start() -> Herald {
        Herald::start_with(&[])
    }

    /// Starts with these flags besides the harness's own.
    pub fn start_with(extra: &[&str]) -> Herald {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let log = Arc::new(Mutex::new(Vec::new()));
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let (child, port) =
            spawn_herald("127.0.0.1:0", &database_url, &extra, &log).expect("herald starts");
        Herald {
            child: Some(child),
            port,
            database_url,
            log,
            extra,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown path runs, sockets just drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the graceful exit (sessions closed with 1001).
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM herald");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("herald did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same port and database (retrying briefly in case
    /// the port is not free yet).
    pub fn restart(&mut self) {
        self.kill();
        let bind = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + WAIT;
        loop {
            match spawn_herald(&bind, &self.database_url, &self.extra, &self.log) {
                Ok((child, port)) => {
                    assert_eq!(port, self.port, "restarted on the same port");
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("herald restart failed ({e}), retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("herald did not restart: {e}"),
            }
        }
    }

    /// Creates an announcement through the admin API; returns its JSON.
    pub async fn announce(&self, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}/api/announcements", self.base()))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let json: Value = res.json().await.expect("json");
        assert_eq!(status, 201, "create failed: {json}");
        json
    }

    /// An announcement for everyone, published now.
    pub async fn announce_all(&self, title: &str) -> Value {
        self.announce(json!({"title": title, "content": format!("About {title}."), "audience": {"all": true}}))
            .await
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(60)..];
            eprintln!("---- herald log (last {} lines) ----", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts the herald binary; returns it and the port it printed.
fn spawn_herald(
    bind: &str,
    database_url: &str,
    extra: &[String],
    log: &Arc<Mutex<Vec<String>>>,
) -> Result<(Child, u16), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--bind", bind, "--database-url", database_url])
        .args(["--poll-interval-ms", "200", "--receipt-flush-ms", "20"])
        .args(["--workers", "1"])
        .args(extra)
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("HERALD_JWT_SECRET", JWT_SECRET)
        .env("RUST_LOG", "info,herald=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn herald: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    collect_lines(stderr, log.clone(), None);
    collect_lines(
        stdout,
        log.clone(),
        Some(Box::new(move |line: &str| {
            if let Some(rest) = line.split("address=http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().unwrap_or(0));
            }
        })),
    );
    match rx.recv_timeout(WAIT) {
        Ok(port) if port > 0 => Ok((child, port)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err("herald did not print its address".into())
        }
    }
}

type LineHook = Box<dyn FnMut(&str) + Send>;

/// Copies a child's output lines into `log` on a thread, showing each to `hook`.
fn collect_lines(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    mut hook: Option<LineHook>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(hook) = hook.as_mut() {
                hook(&line);
            }
            if let Ok(mut log) = log.lock() {
                log.push(line);
            }
        }
    });
}
