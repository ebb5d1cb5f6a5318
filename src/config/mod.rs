//! Settings from flags, environment variables and an optional TOML file,
//! with the defaults a fresh machine runs on. Every setting has a flag, a
//! `HERALD_*` variable and a key in the file (the flag's name with `_`);
//! `load` layers them (flag > environment > file > default) into the one
//! `Settings` type.

mod load;
mod webhooks;

pub use load::{load, LoadError, Loaded};

use crate::domain::DraftLimits;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Real-time announcement server")]
pub struct Cli {
    /// TOML file of settings, keys named like the flags with `_` for `-`
    /// (`bind = "0.0.0.0:8080"`); flags and environment variables win over it.
    #[arg(long, env = "HERALD_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the server (the default): migrate the database, then serve.
    Serve {
        /// Start without touching the schema (run `herald migrate` first).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Exit 0 when the server's `/readyz` answers 200 within 2 s, else 1.
    Healthcheck {
        /// The readiness URL (default: `/readyz` on the `--bind` address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the effective settings as TOML, secrets redacted.
    Config,
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print a user token signed with this server's secret.
    Token {
        /// The user id the token is for (its `sub`).
        user_id: String,
        /// Groups to put in the token, comma separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// How log lines are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Every setting. The field names are the clap argument ids and the file's
/// keys at once, which is what lets `load` tell which values came from the
/// command line or the environment. Unknown keys in a file are errors.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    #[arg(
        long,
        global = true,
        env = "HERALD_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: String,

    /// `sqlite://path` (embedded, the default) or `postgres://...`.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://herald.db"
    )]
    pub database_url: String,

    /// Largest number of pooled database connections.
    #[arg(long, global = true, env = "HERALD_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// HS256 secret for user tokens; generated and stored in the database when unset.
    #[arg(long, global = true, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Admin bearer token; generated, stored and printed once when unset.
    #[arg(
        long,
        global = true,
        env = "HERALD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Seconds between server pings on each WebSocket.
    #[arg(
        long,
        global = true,
        env = "HERALD_HEARTBEAT_INTERVAL",
        default_value_t = 25
    )]
    pub heartbeat_interval: u64,

    /// Seconds of silence after which a session is closed with 4000.
    #[arg(
        long,
        global = true,
        env = "HERALD_HEARTBEAT_TIMEOUT",
        default_value_t = 60
    )]
    pub heartbeat_timeout: u64,

    /// Smallest `?heartbeat=` a client may ask for, in seconds.
    #[arg(long, global = true, env = "HERALD_HEARTBEAT_MIN", default_value_t = 5)]
    pub heartbeat_min: u64,

    /// Largest `?heartbeat=` a client may ask for, in seconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_HEARTBEAT_MAX",
        default_value_t = 120
    )]
    pub heartbeat_max: u64,

    /// Milliseconds between scheduler polls for due announcements.
    #[arg(
        long,
        global = true,
        env = "HERALD_POLL_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub poll_interval_ms: u64,

    /// Milliseconds receipts (ack, read) are gathered before one batched write.
    #[arg(
        long,
        global = true,
        env = "HERALD_RECEIPT_FLUSH_MS",
        default_value_t = 100
    )]
    pub receipt_flush_ms: u64,

    /// Largest incoming WebSocket frame in bytes (larger: close 1009).
    #[arg(long, global = true, env = "HERALD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Client frames per second one session may send on average, in bursts
    /// of twice that (beyond: an `error` frame; repeated, close 4008).
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_FRAMES_PER_SECOND",
        default_value_t = 20
    )]
    pub max_frames_per_second: u32,

    /// Most open sessions (tabs) per user (more: close 4029).
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_SESSIONS_PER_USER",
        default_value_t = 16
    )]
    pub max_sessions_per_user: usize,

    /// Bytes of frames one session may have waiting to be sent; a client
    /// that stops reading past this is dropped (close 4029) and resumes by cursor.
    #[arg(long, global = true, env = "HERALD_MAX_QUEUED_BYTES", default_value_t = 1024 * 1024)]
    pub max_queued_bytes: usize,

    /// New WebSocket connections per second from one source address (bursts
    /// of twice that); more get 429 before the upgrade. 0 disables the limit.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_CONNECTS_PER_IP",
        default_value_t = 50
    )]
    pub max_connects_per_ip: u32,

    /// Reverse proxies (CIDR blocks or addresses, comma separated) whose
    /// `X-Forwarded-For` / `Forwarded: for=` is believed for the per-address
    /// connection limit; empty: the TCP peer is the client.
    #[arg(long, global = true, env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::proxy::parse_trusted)]
    #[serde(deserialize_with = "load::trusted_proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Milliseconds a database call waits for a lock (SQLite busy timeout)
    /// before the request fails with 503.
    #[arg(
        long,
        global = true,
        env = "HERALD_DB_BUSY_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_busy_timeout_ms: u64,

    /// Largest REST request body in bytes (larger: 413).
    #[arg(long, global = true, env = "HERALD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest announcement title in characters.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_TITLE_CHARS",
        default_value_t = 200
    )]
    pub max_title_chars: usize,

    /// Longest announcement content in characters.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_CONTENT_CHARS",
        default_value_t = 20_000
    )]
    pub max_content_chars: usize,

    /// Most explicit recipients (users or groups) per announcement.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_RECIPIENTS",
        default_value_t = 10_000
    )]
    pub max_recipients: usize,

    /// Cookie that may carry a user token on the legacy WebSocket URLs.
    #[arg(
        long,
        global = true,
        env = "HERALD_TOKEN_COOKIE",
        default_value = "herald_token"
    )]
    pub token_cookie: String,

    /// Allowed WebSocket `Origin`s, comma separated; empty allows any.
    #[arg(
        long,
        global = true,
        env = "HERALD_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) of the app's identity
    /// provider: its tokens are accepted beside herald's own.
    #[arg(long, global = true, env = "HERALD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// JWKS URL of the app's identity provider (fetched at start, cached,
    /// refetched for an unknown `kid` at most every 30 s, and every 10 min).
    #[arg(long, global = true, env = "HERALD_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// The `iss` the identity provider's tokens must carry.
    #[arg(long, global = true, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// An `aud` the identity provider's tokens must carry.
    #[arg(long, global = true, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim (dot path) holding the user id in the provider's tokens.
    #[arg(
        long,
        global = true,
        env = "HERALD_JWT_USER_CLAIM",
        default_value = "sub"
    )]
    pub jwt_user_claim: String,

    /// The claim (dot path) holding the groups: an array, or one string.
    #[arg(
        long,
        global = true,
        env = "HERALD_JWT_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub jwt_groups_claim: String,

    /// Default lifetime of tokens minted by `POST /api/tokens`, in seconds.
    #[arg(long, global = true, env = "HERALD_TOKEN_TTL", default_value_t = 24 * 3600)]
    pub token_ttl: u64,

    /// HTTP worker threads (0: one per core).
    #[arg(long, global = true, env = "HERALD_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Seconds to finish in-flight work after SIGTERM before exiting.
    #[arg(
        long,
        global = true,
        env = "HERALD_SHUTDOWN_GRACE",
        default_value_t = 10
    )]
    pub shutdown_grace: u64,

    /// Webhook endpoints (http or https URLs, comma separated) that receive
    /// signed events about announcements; empty: no webhooks.
    #[arg(
        long = "webhook-url",
        global = true,
        env = "HERALD_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,

    /// Key of the webhook signatures, `whsec_<base64>` (Standard Webhooks;
    /// at least 24 bytes). Required with `--webhook-url`.
    #[arg(
        long,
        global = true,
        env = "HERALD_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,

    /// Milliseconds before the first retry of a refused webhook; each next
    /// wait doubles, up to an hour, and a delivery fails after a day.
    #[arg(
        long,
        global = true,
        env = "HERALD_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 1_000
    )]
    pub webhook_retry_base_ms: u64,

    /// Milliseconds one webhook POST may take, connecting included.
    #[arg(
        long,
        global = true,
        env = "HERALD_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub webhook_timeout_ms: u64,

    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, global = true, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// Settings as the defaults give them, for tests and embedding.
    pub fn defaults() -> Settings {
        Cli::parse_from(["herald"]).settings
    }

    pub fn draft_limits(&self) -> DraftLimits {
        DraftLimits {
            max_title_chars: self.max_title_chars,
            max_content_chars: self.max_content_chars,
            max_recipients: self.max_recipients,
        }
    }

    /// `http://host:port` to reach this server from the same machine: a
    /// wildcard bind address (`0.0.0.0`, `[::]`) becomes the loopback one.
    /// `port` is the bound port when known (the bind address may say 0).
    pub fn local_url(&self, port: Option<u16>) -> String {
        let (host, bound) = self
            .bind
            .rsplit_once(':')
            .unwrap_or((self.bind.as_str(), "8080"));
        let host = match host {
            "" | "0.0.0.0" => "127.0.0.1",
            "[::]" => "[::1]",
            other => other,
        };
        match port {
            Some(port) => format!("http://{host}:{port}"),
            None => format!("http://{host}:{bound}"),
        }
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    /// The ping interval for a session that asked for `requested` seconds.
    pub fn heartbeat_for(&self, requested: Option<u64>) -> Duration {
        let secs = requested.unwrap_or(self.heartbeat_interval).clamp(
            self.heartbeat_min,
            self.heartbeat_max.max(self.heartbeat_min),
        );
        Duration::from_secs(secs.max(1))
    }

    /// The silence allowed for a session pinged every `interval`: the
    /// configured timeout, but never less than two missed pings.
    pub fn timeout_for(&self, interval: Duration) -> Duration {
        Duration::from_secs(self.heartbeat_timeout).max(interval * 2)
    }

    /// Checks combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_min > self.heartbeat_max {
            return Err("--heartbeat-min must not exceed --heartbeat-max".into());
        }
        if self.heartbeat_interval == 0 || self.heartbeat_timeout == 0 {
            return Err("heartbeat interval and timeout must be positive".into());
        }
        if self.db_pool_size == 0 {
            return Err("--db-pool-size must be at least 1".into());
        }
        if self.jwt_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return Err("HERALD_JWT_SECRET must be at least 16 bytes".into());
        }
        webhooks::check(webhooks::Webhooks {
            urls: &self.webhook_urls,
            secret: self.webhook_secret.as_deref(),
            retry_base_ms: self.webhook_retry_base_ms,
            timeout_ms: self.webhook_timeout_ms,
        })
    }
}

#[cfg(test)]
mod tests;
