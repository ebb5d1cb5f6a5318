//! Wiring: pool and migrations, secrets, the registry, the cluster link (on
//! PostgreSQL), scheduler and receipt writer (each started once, before the
//! HTTP server), bind, serve (src/server).

use crate::actors::catch_up::CatchUpStore;
use crate::actors::cluster;
use crate::actors::fanout::Fanout;
use crate::actors::messages::{CloseAll, Flush};
use crate::actors::newest::NewestCursor;
use crate::actors::receipts::ReceiptWriter;
use crate::actors::registry::Registry;
use crate::actors::scheduler::Scheduler;
use crate::actors::session::SessionDeps;
use crate::actors::users::UserWriter;
use crate::auth::{random_secret, TokenKeys};
use crate::config::Settings;
use crate::db::load_pool::LoadPool;
use crate::db::{self, settings as stored, DbPool};
use crate::identity;
use crate::protocol::codes::close;
use crate::server;
pub use crate::state::AppState;
use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Secrets in force: from settings when given, else generated once and kept
/// in the database. `generated_admin` is set when this start created it.
pub struct Secrets {
    pub jwt_secret: String,
    pub admin_token: String,
    pub generated_admin: bool,
}

pub fn load_secrets(pool: &DbPool, settings: &Settings) -> Result<Secrets, db::DbError> {
    let mut conn = pool.get()?;
    let jwt_secret = match &settings.jwt_secret {
        Some(secret) => secret.clone(),
        None => stored::get_or_create(&mut conn, stored::JWT_SECRET, || random_secret(32))?.0,
    };
    let (admin_token, generated_admin) = match &settings.admin_token {
        Some(token) => (token.clone(), false),
        None => stored::get_or_create(&mut conn, stored::ADMIN_TOKEN, || random_secret(24))?,
    };
    Ok(Secrets {
        jwt_secret,
        admin_token,
        generated_admin,
    })
}

/// herald's own token keys, and the identity provider's when configured.
async fn token_keys(settings: &Settings, secret: &str) -> Result<TokenKeys, StartError> {
    let keys = TokenKeys::new(secret);
    Ok(match identity::from_settings(settings).await {
        Ok(Some(identity)) => keys.with_identity(identity),
        Ok(None) => keys,
        Err(e) => return Err(StartError::Settings(e.to_string())),
    })
}

/// Whether start-up brings the database schema up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply pending migrations first (plain `herald` and `herald serve`).
    Migrate,
    /// Leave the schema alone (`herald serve --no-migrate`, after a
    /// separate `herald migrate`).
    AsIs,
}

/// The pool, with the schema brought up to date or left as it is.
async fn open_pool(settings: &Settings, schema: Schema) -> Result<DbPool, StartError> {
    let url = settings.database_url.clone();
    let (pool_size, busy) = (settings.db_pool_size, settings.db_busy_timeout_ms);
    blocking(move || match schema {
        Schema::Migrate => db::connect(&url, pool_size, busy),
        Schema::AsIs => db::open(&url, pool_size, busy),
    })
    .await
}

/// Connections of the background pool: the scheduler, the receipt writer,
/// the known-user writer and the cluster's node actor each run one job at
/// a time. Request traffic (handshakes, REST) never takes these, so a
/// connection storm cannot starve a claim.
pub const BACKGROUND_POOL_SIZE: u32 = 4;

/// The background pool, beside the main one (the schema is migrated).
async fn open_background_pool(settings: &Settings) -> Result<DbPool, StartError> {
    let url = settings.database_url.clone();
    let busy = settings.db_busy_timeout_ms;
    blocking(move || db::open(&url, BACKGROUND_POOL_SIZE, busy)).await
}

/// The handshakes' catch-up connections, half as many as the main pool's,
/// beside it: a storm of handshakes queues for these (see
/// `actors::catch_up`) and leaves every connection of the main pool to REST.
async fn open_load_pool(settings: &Settings) -> Result<LoadPool, StartError> {
    let url = settings.database_url.clone();
    let (size, busy) = (settings.db_pool_size / 2, settings.db_busy_timeout_ms);
    blocking(move || db::load_pool::open(&url, size, busy)).await
}

/// Builds a pool (which connects) on a blocking thread.
async fn blocking<T: Send + 'static>(
    build: impl FnOnce() -> Result<T, db::DbError> + Send + 'static,
) -> Result<T, StartError> {
    Ok(actix_web::rt::task::spawn_blocking(build)
        .await
        .map_err(|e| db::DbError::Blocking(e.to_string()))??)
}

/// Starts the actors once, before the HTTP server: the registry, the
/// cluster link (PostgreSQL; listening before the scheduler's first claim),
/// the fan-out chosen for the backend, the scheduler and the two writers.
/// The newest cursor is seeded before anything is published: from the
/// cluster's first read on PostgreSQL, from the table on SQLite.
async fn start_actors(
    pool: DbPool,
    settings: Arc<Settings>,
    keys: TokenKeys,
    secrets: &Secrets,
) -> Result<AppState, StartError> {
    let background = open_background_pool(&settings).await?;
    let newest = NewestCursor::default();
    let registry = Registry::new(settings.max_sessions_per_user, settings.max_queued_bytes)
        .with_newest(newest.clone())
        .start();
    let cluster = match db::Backend::of(&settings.database_url) {
        db::Backend::Postgres => {
            let join = cluster::Join {
                pool: pool.clone(),
                background: background.clone(),
                registry: registry.clone(),
                newest: newest.clone(),
            };
            Some(cluster::start(&settings.database_url, join).await?)
        }
        db::Backend::Sqlite => {
            newest.advance(db::run(&background, db::timeline::latest_cursor).await?);
            None
        }
    };
    let fanout = match &cluster {
        Some(handle) => Fanout::cluster(registry.clone(), handle.clone()),
        None => Fanout::local(registry.clone()),
    };
    let flush_every = Duration::from_millis(settings.receipt_flush_ms.max(1));
    let users = UserWriter::new(background.clone(), flush_every).start();
    let outbox = crate::webhooks::start(&background, &settings).map_err(StartError::Settings)?;
    let scheduler_alive = Arc::new(AtomicI64::new(db::now_ms()));
    let scheduler_failing = Arc::new(AtomicBool::new(false));
    let scheduler = Scheduler::new(
        background.clone(),
        fanout.clone(),
        settings.poll_interval(),
        scheduler_alive.clone(),
    )
    .with_failure_flag(scheduler_failing.clone())
    .with_users(users.clone())
    .with_outbox(outbox.clone())
    .start();
    let receipts = ReceiptWriter::new(background, fanout.clone(), flush_every)
        .with_outbox(outbox.clone())
        .start();
    let catch_up = CatchUpStore::new(
        open_load_pool(&settings).await?,
        newest.clone(),
        users.clone(),
    );
    let sessions = Arc::new(SessionDeps {
        registry: registry.clone(),
        receipts: receipts.clone(),
        keys: keys.clone(),
        store: catch_up.clone(),
    });
    Ok(AppState {
        catch_up,
        sessions,
        connect_limiter: Arc::new(crate::limits::ConnectLimiter::new(
            settings.max_connects_per_ip,
        )),
        pool,
        settings,
        keys,
        admin_token: secrets.admin_token.clone(),
        registry,
        scheduler,
        receipts,
        users,
        newest,
        scheduler_alive,
        scheduler_failing,
        cluster,
        fanout,
        outbox,
    })
}

/// A built, bound, not yet running herald.
pub struct Application {
    port: u16,
    server: Server,
    pub state: web::Data<AppState>,
    pub generated_admin_token: Option<String>,
}

impl Application {
    /// Connects, migrates, starts the actors and binds. Call inside an
    /// actix system (`#[actix_web::main]` or `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Application::build_with(settings, Schema::Migrate).await
    }

    /// As `build`, migrating or not.
    pub async fn build_with(settings: Settings, schema: Schema) -> Result<Application, StartError> {
        settings.validate().map_err(StartError::Settings)?;
        let settings = Arc::new(settings);
        let pool = open_pool(&settings, schema).await?;
        let secrets = {
            let (pool, settings) = (pool.clone(), settings.clone());
            actix_web::rt::task::spawn_blocking(move || load_secrets(&pool, &settings))
                .await
                .map_err(|e| db::DbError::Blocking(e.to_string()))??
        };
        let keys = token_keys(&settings, &secrets.jwt_secret).await?;
        let state = web::Data::new(start_actors(pool, settings.clone(), keys, &secrets).await?);
        crate::limits::spawn_sweeper(&state.connect_limiter);

        let listener = TcpListener::bind(&settings.bind).map_err(|source| StartError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = server::serve(listener, state.clone(), &settings).map_err(|source| {
            StartError::Bind {
                addr: settings.bind.clone(),
                source,
            }
        })?;
        Ok(Application {
            port,
            server,
            state,
            generated_admin_token: secrets.generated_admin.then_some(secrets.admin_token),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The server future without herald's signal handling, for embedding
    /// and tests that stop it through `handle()`.
    pub fn into_server(self) -> Server {
        self.server
    }

    /// Serves until SIGTERM/SIGINT (or a stop through `handle()`): then stops
    /// accepting, closes every session with 1001, and lets in-flight requests
    /// finish within the grace period.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let state = self.state.clone();
        let server = self.server;
        let handle = server.handle();
        // Listening starts before the server runs, so that no early signal
        // meets the default action (an abrupt exit).
        let mut signals = ShutdownSignals::listen();
        actix_web::rt::spawn(async move {
            signals.next().await;
            let stopping = std::pin::pin!(shutdown(&state, &handle));
            signals.ignore_until(stopping).await;
        });
        let cluster = self.state.cluster.clone();
        let served = server.await;
        if let Some(cluster) = cluster {
            cluster.stop_and_join(Duration::from_secs(3));
        }
        served
    }
}

/// The orderly stop: no new connections, every session told 1001 with a
/// jittered reconnect hint, pending receipts written, in-flight requests
/// given the grace period.
pub async fn shutdown(state: &AppState, handle: &ServerHandle) {
    tracing::info!("shutting down: closing sessions with 1001");
    handle.pause().await;
    let closed = state
        .registry
        .send(CloseAll {
            code: close::GOING_AWAY,
            reason: "server shutting down",
        })
        .await
        .unwrap_or(0);
    let grace = Duration::from_secs(state.settings.shutdown_grace);
    let flushed = async {
        let _ = state.users.send(Flush).await;
        state.receipts.send(Flush).await
    };
    match tokio::time::timeout(grace, flushed).await {
        Ok(Ok(written)) => tracing::info!(
            sessions = closed,
            receipts = written,
            "sessions closed, receipts written"
        ),
        _ => tracing::warn!(
            sessions = closed,
            "pending receipts could not be written before the grace period"
        ),
    }
    handle.stop(true).await;
    tracing::info!("stopped");
}

/// SIGTERM and SIGINT, listened to from start to exit. The first starts
/// the orderly stop; the ones after it (an impatient operator, a process
/// manager repeating itself) must not end the process while pending
/// receipts are written, so they are logged and otherwise ignored: the
/// flush and the grace period decide when herald exits.
struct ShutdownSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    fn listen() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
            if let Err(e) = &streams {
                tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT");
            }
            ShutdownSignals {
                streams: streams.ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Waits for the next signal (forever when none can be received).
    async fn next(&mut self) {
        #[cfg(unix)]
        match &mut self.streams {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            None => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Runs `stopping` to its end, logging each further signal.
    async fn ignore_until(
        &mut self,
        mut stopping: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) {
        loop {
            tokio::select! {
                _ = &mut stopping => return,
                _ = self.next() => tracing::warn!(
                    "shutdown already in progress; herald exits once pending receipts are written (within the grace period)"
                ),
            }
        }
    }
}
