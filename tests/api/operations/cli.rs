//! The binary's command line: settings layered flag > environment > file >
//! default, errors that name the key and the file, `herald config` with its
//! secrets hidden, `migrate` then `serve --no-migrate`, `healthcheck`, and
//! shell completions.

use super::{herald, stderr, stdout};
use crate::helpers::*;
use diesel::{Connection, RunQueryDsl};
use std::time::{Duration, Instant};

fn effective(output: &std::process::Output) -> toml::Table {
    assert!(output.status.success(), "herald config: {}", stderr(output));
    stdout(output).parse().expect("`herald config` prints TOML")
}

#[test]
fn flags_beat_environment_beats_file_beats_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "bind = \"0.0.0.0:9000\"\nheartbeat_interval = 30\npoll_interval_ms = 300\n\
         token_ttl = 60\nallowed_origins = [\"https://app.example\"]\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let env = [
        ("HERALD_HEARTBEAT_INTERVAL", "35"),
        ("HERALD_POLL_INTERVAL_MS", "400"),
    ];

    let shown = effective(&herald(
        dir.path(),
        &["--config", path, "--poll-interval-ms", "500", "config"],
        &env,
    ));

    assert_eq!(
        shown["bind"].as_str(),
        Some("0.0.0.0:9000"),
        "file over default"
    );
    assert_eq!(
        shown["token_ttl"].as_integer(),
        Some(60),
        "file over default"
    );
    assert_eq!(
        shown["heartbeat_interval"].as_integer(),
        Some(35),
        "environment over file"
    );
    assert_eq!(
        shown["poll_interval_ms"].as_integer(),
        Some(500),
        "flag over environment"
    );
    assert_eq!(shown["max_title_chars"].as_integer(), Some(200), "default");
    let origins = shown["allowed_origins"].as_array().expect("a list");
    assert_eq!(origins[0].as_str(), Some("https://app.example"));

    // HERALD_CONFIG names the file as well as --config does.
    let by_env = effective(&herald(dir.path(), &["config"], &[("HERALD_CONFIG", path)]));
    assert_eq!(by_env["bind"].as_str(), Some("0.0.0.0:9000"));
}

#[test]
fn a_bad_file_stops_herald_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (content, key) in [
        (
            "bind = \"127.0.0.1:0\"\nheartbeat_intervall = 30\n",
            "heartbeat_intervall",
        ),
        ("max_frame_bytes = \"lots\"\n", "max_frame_bytes"),
        ("log_format = \"xml\"\n", "log_format"),
    ] {
        let file = dir.path().join(format!("{key}.toml"));
        std::fs::write(&file, content).expect("write");
        let path = file.to_str().expect("utf-8");
        // `serve` (the default) as well as `config`: the server never starts.
        for args in [vec!["--config", path, "config"], vec!["--config", path]] {
            let out = herald(dir.path(), &args, &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(key), "{key} not named: {err}");
            assert!(err.contains(path), "file not named: {err}");
            assert!(!stdout(&out).contains("herald is listening"));
        }
    }
}

#[test]
fn herald_config_hides_secrets_and_database_passwords() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = herald(
        dir.path(),
        &["config"],
        &[
            ("HERALD_JWT_SECRET", "jwt-secret-that-must-not-show"),
            ("HERALD_ADMIN_TOKEN", "admin-token-that-must-not-show"),
            (
                "DATABASE_URL",
                "postgres://herald:db-password-hidden@db:5432/herald",
            ),
        ],
    );
    let text = stdout(&out);
    for secret in ["jwt-secret-that", "admin-token-that", "db-password-hidden"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let shown = effective(&out);
    assert_eq!(shown["jwt_secret"].as_str(), Some("***"));
    assert_eq!(shown["admin_token"].as_str(), Some("***"));
    assert_eq!(
        shown["database_url"].as_str(),
        Some("postgres://herald:***@db:5432/herald")
    );
}

both_backends!(migrate_then_serve_without_migrating);
async fn migrate_then_serve_without_migrating() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("temp dir");

    let migrated = herald(dir.path(), &["migrate", "--database-url", &db.url], &[]);
    assert!(migrated.status.success(), "migrate: {}", stderr(&migrated));
    assert!(stdout(&migrated).contains("database schema is up to date"));

    let node = Node::start_with(&db.url, &["serve", "--no-migrate"]);
    let ready = reqwest::get(node.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let id = node
        .announce(&serde_json::json!({"title": "t", "content": "c", "audience": {"all": true}}))
        .await;
    assert!(id > 0);
}

#[test]
fn serve_without_migrating_leaves_an_empty_database_alone() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");

    let out = herald(
        dir.path(),
        &[
            "serve",
            "--no-migrate",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ],
        &[("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)],
    );

    assert!(!out.status.success(), "served on an unmigrated database");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::SqliteConnection::establish(herald::db::sqlite_path(&db.url))
        .expect("open the file");
    let tables = diesel::sql_query("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'")
        .get_result::<Count>(&mut conn)
        .expect("count");
    assert_eq!(tables.n, 0, "--no-migrate created tables");
}

#[actix_web::test]
async fn healthcheck_is_0_when_ready_and_1_when_not() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&db.url);
    let url = node.url("/readyz");
    let bind = format!("127.0.0.1:{}", node.port);

    assert!(herald(dir.path(), &["healthcheck", "--url", &url], &[])
        .status
        .success());
    // Without --url: /readyz on the --bind address (here from the environment).
    let by_bind = herald(dir.path(), &["healthcheck"], &[("HERALD_BIND", &bind)]);
    assert!(by_bind.status.success(), "{}", stdout(&by_bind));

    node.kill();
    let down = herald(dir.path(), &["healthcheck", "--url", &url], &[]);
    assert_eq!(down.status.code(), Some(1));

    // A server that accepts but never answers: 1 after the 2 s limit.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}/readyz", silent.local_addr().expect("addr"));
    let started = Instant::now();
    let hung = herald(dir.path(), &["healthcheck", "--url", &silent_url], &[]);
    assert_eq!(hung.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        let out = herald(dir.path(), &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["healthcheck", "migrate", "database-url"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// deploy/herald.service runs herald command lines that parse, and it
/// passes `systemd-analyze verify` without a warning where that exists (with the binary path
/// pointed at the one under test, which verify requires to exist).
#[test]
fn the_systemd_unit_runs_valid_commands_and_verifies() {
    let unit = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/herald.service"
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = "/usr/local/bin/herald";
    let commands: Vec<&str> = unit
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ExecStartPre=")
                .or(l.strip_prefix("ExecStart="))
        })
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    for command in &commands {
        let args: Vec<&str> = command
            .strip_prefix(binary)
            .expect("the installed path")
            .split_whitespace()
            .chain(["--help"])
            .collect();
        let out = herald(dir.path(), &args, &[]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }

    let path = dir.path().join("herald.service");
    std::fs::write(&path, unit.replace(binary, env!("CARGO_BIN_EXE_herald"))).expect("write");
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        // A misspelt key is only a warning to verify: any output fails.
        Ok(out) => assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify: {}{}",
            stdout(&out),
            stderr(&out)
        ),
        Err(e) => eprintln!("skipped systemd-analyze verify: {e}"),
    }
}
