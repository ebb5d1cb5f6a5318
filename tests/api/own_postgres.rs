//! A PostgreSQL server of a test's own, for tests that stop and start it:
//! `initdb` into a temporary directory, `pg_ctl start` on a free port.
//!
//! The server binaries come from `HERALD_TEST_PG_BIN`, else `pg_config
//! --bindir`, else the newest `/usr/lib/postgresql/*/bin` (Debian's
//! layout). PostgreSQL refuses to run as root, so when the tests run as root
//! the binaries run as the `postgres` user through `runuser`, in a directory
//! handed to that user. Without binaries (or, as root, without `runuser` or
//! a `postgres` user) `OwnPostgres::start` says why and gives `None`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    pub port: u16,
}

impl OwnPostgres {
    /// A fresh server, running; `None` (after printing why) when this
    /// machine cannot run one.
    pub fn start() -> Option<OwnPostgres> {
        let bin = match server_binaries() {
            Some(bin) => bin,
            None => {
                eprintln!("skipped: no PostgreSQL server binaries (initdb, pg_ctl); set HERALD_TEST_PG_BIN");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = if running_as_root() {
            match hand_to_postgres_user(dir.path()) {
                Ok(()) => Some("postgres".to_string()),
                Err(why) => {
                    eprintln!("skipped: running as root and {why}");
                    return None;
                }
            }
        } else {
            None
        };
        let port = free_port();
        let pg = OwnPostgres {
            dir,
            bin,
            run_as,
            port,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
            &["--no-sync"],
        );
        // Appended by us, the file stays the server user's.
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n",
            pg.dir.path().display()
        );
        let conf_path = Path::new(&pg.data()).join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("write postgresql.conf");
        pg.start_again();
        Some(pg)
    }

    /// The server's `postgres` database (herald's database in these tests).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way an administrator would (`-m fast`: every
    /// session is terminated, no new connection accepted), and waits.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"],
            &[],
        );
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
            &[],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs a server binary, panicking with its output when it fails.
    fn run(&self, program: &str, args: &[&str], optional: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .args(optional)
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL binary");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // `immediate`: the test is over, nothing needs to be kept.
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("HERALD_TEST_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_both(d));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_both(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `/proc/self` belongs to the process's user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Gives `dir` to the `postgres` user, who will own the cluster in it.
fn hand_to_postgres_user(dir: &Path) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("`id` cannot run: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "there is no `postgres` user to run PostgreSQL as".to_string())
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    let runuser = Command::new("runuser")
        .arg("--help")
        .stdout(Stdio::null())
        .status();
    if !runuser.is_ok_and(|s| s.success()) {
        return Err("`runuser` is missing".into());
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
