//! Storage: one connection type for SQLite and PostgreSQL, an r2d2 pool,
//! embedded migrations, and plain synchronous query functions.
//!
//! Every query function takes `&mut DbConn` and is called from a blocking
//! thread (`db::run`), never from an actor's event loop.

pub mod announcements;
pub mod audiences;
pub mod catch_up;
pub mod deliveries;
pub mod events;
pub mod inbox;
pub mod load_pool;
mod models;
pub mod outbox;
pub mod receipts;
pub mod recipients;
pub mod schema;
pub mod settings;
pub mod timeline;
pub mod users;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConn>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConn>>;

/// Which backend a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("database worker failed: {0}")]
    Blocking(String),
    /// Work that waited its bounded time for a connection and got none.
    #[error("database busy: {0}")]
    Busy(&'static str),
    #[error("database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The URL with any password replaced by `***`, for logs:
/// `postgres://herald:secret@db/herald` → `postgres://herald:***@db/herald`.
pub fn redacted(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest
                .split_once('/')
                .map_or((rest, None), |(a, p)| (a, Some(p)));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_string(),
            };
            match path {
                Some(path) => format!("{scheme}://{authority}/{path}"),
                None => format!("{scheme}://{authority}"),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

/// The form the SQLite path takes in a URL: `sqlite://herald.db`,
/// `sqlite:herald.db` and a bare path all mean the file `herald.db`.
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Creates the SQLite file readable and writable by its owner only, before
/// SQLite would create it 0644: it holds the generated JWT secret and admin
/// token. SQLite gives the `-wal` and `-shm` files it creates later the main
/// file's mode, so they are 0600 too. An existing file keeps its mode (the
/// operator may have chosen it); one readable by others is warned about.
#[cfg(unix)]
fn create_private(path: &str) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
            if mode & 0o077 != 0 {
                tracing::warn!(path, mode = format!("{:o}", mode & 0o777), "the database file, which holds herald's secrets, is readable by other users; consider chmod 600");
            }
            Ok(())
        }
        Err(source) => Err(DbError::File {
            path: path.to_string(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn create_private(_: &str) -> Result<(), DbError> {
    Ok(())
}

/// Sets the SQLite pragmas herald relies on for every pooled connection:
/// WAL so readers never wait for the writer, a busy timeout so concurrent
/// writers queue instead of failing, and enforced foreign keys.
#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
}

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        if let DbConn::Sqlite(c) = conn {
            let pragmas = format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                self.busy_timeout_ms
            );
            c.batch_execute(&pragmas)
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Builds the pool for `url` and applies the embedded migrations.
pub fn connect(url: &str, max_size: u32, busy_timeout_ms: u64) -> Result<DbPool, DbError> {
    let pool = open(url, max_size, busy_timeout_ms)?;
    let mut conn = pool.get()?;
    migrate(&mut conn)?;
    Ok(pool)
}

/// Builds the pool for `url`, leaving the schema as it is.
pub fn open(url: &str, max_size: u32, busy_timeout_ms: u64) -> Result<DbPool, DbError> {
    let manager = ConnectionManager::<DbConn>::new(connection_target(url)?);
    let pool = Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(5))
        .connection_customizer(Box::new(SqlitePragmas { busy_timeout_ms }))
        .build(manager)?;
    Ok(pool)
}

/// What a connection manager opens for `url`: the URL itself for
/// PostgreSQL, the file path for SQLite (created private when missing).
fn connection_target(url: &str) -> Result<String, DbError> {
    Ok(match Backend::of(url) {
        Backend::Postgres => url.to_string(),
        Backend::Sqlite => {
            create_private(sqlite_path(url))?;
            sqlite_path(url).to_string()
        }
    })
}

/// Key of the PostgreSQL advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64; // "herald"

/// Applies every pending embedded migration for the connection's backend.
/// On PostgreSQL several nodes may start at once: an advisory lock lets one
/// migrate while the others wait, then find nothing pending.
pub fn migrate(conn: &mut DbConn) -> Result<(), DbError> {
    let migrations = match conn {
        DbConn::Pg(_) => POSTGRES_MIGRATIONS,
        DbConn::Sqlite(_) => SQLITE_MIGRATIONS,
    };
    if let DbConn::Pg(c) = conn {
        advisory_lock(c, "pg_advisory_lock")?;
    }
    let migrated = conn
        .run_pending_migrations(migrations)
        .map(|_| ())
        .map_err(|e| DbError::Migration(e.to_string()));
    if let DbConn::Pg(c) = conn {
        advisory_lock(c, "pg_advisory_unlock")?;
    }
    migrated
}

fn advisory_lock(conn: &mut diesel::PgConnection, function: &str) -> Result<(), DbError> {
    diesel::sql_query(format!("SELECT {function}($1)"))
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(conn)?;
    Ok(())
}

/// Runs blocking database work on actix's blocking thread pool.
pub fn run<T, F>(
    pool: &DbPool,
    f: F,
) -> impl std::future::Future<Output = Result<T, DbError>> + 'static
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, DbError> + Send + 'static,
{
    let pool = pool.clone();
    async move {
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Blocking(e.to_string()))?
    }
}

/// Runs `f` in a transaction meant to write. SQLite begins it `IMMEDIATE`:
/// a deferred transaction that reads and then writes fails at once with
/// "database is locked" when another connection committed in between (its
/// snapshot is stale, and the busy timeout does not apply to that case), so
/// an archive racing the receipt writer answered 503. Taking the write lock
/// first makes it wait its turn under the busy timeout instead. PostgreSQL
/// keeps its default transaction.
pub fn write_transaction<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConn as Connection>::TransactionManager;
    let DbConn::Sqlite(sqlite) = conn else {
        return conn.transaction(f);
    };
    // Inside a transaction already (the write lock question was settled
    // when it began): a savepoint, as Diesel nests.
    if AnsiTransactionManager::transaction_manager_status_mut(sqlite)
        .transaction_depth()?
        .is_some()
    {
        return conn.transaction(f);
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Milliseconds since the Unix epoch, the unit every stored time uses.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `INSERT ... ON CONFLICT DO NOTHING` on both backends (SQLite spells it
/// `INSERT OR IGNORE` for multi-row inserts). Evaluates to the rows inserted.
#[macro_export]
macro_rules! insert_ignore {
    ($conn:expr, $table:expr, $values:expr) => {
        match $conn {
            $crate::db::DbConn::Pg(c) => diesel::insert_into($table)
                .values($values)
                .on_conflict_do_nothing()
                .execute(c),
            $crate::db::DbConn::Sqlite(c) => diesel::insert_or_ignore_into($table)
                .values($values)
                .execute(c),
        }
    };
}

/// A multi-row `INSERT` on both backends (Diesel's multi-backend connection
/// cannot express SQLite's batch insert). Evaluates to the rows inserted.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $values:expr) => {
        match $conn {
            $crate::db::DbConn::Pg(c) => diesel::insert_into($table).values($values).execute(c),
            $crate::db::DbConn::Sqlite(c) => diesel::insert_into($table).values($values).execute(c),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction that reads, sees another connection commit, then
    /// writes: on SQLite a deferred one fails "database is locked" at once;
    /// a write transaction holds the lock from its start, so it commits and
    /// the other writer is the one that waits (and here times out).
    #[test]
    fn a_write_transaction_survives_a_commit_between_its_read_and_its_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = connect(&url, 2, 200).expect("pool");
        let (mut first, mut second) = (pool.get().expect("first"), pool.get().expect("second"));
        let raced = write_transaction(&mut first, |conn| {
            let before: i64 = schema::announcements::table.count().get_result(conn)?;
            // the other connection writes between this read and the write
            let _ = second.batch_execute("INSERT INTO settings (key, value) VALUES ('a', 'b')");
            conn.batch_execute("INSERT INTO settings (key, value) VALUES ('c', 'd')")?;
            Ok::<_, diesel::result::Error>(before)
        });
        assert_eq!(raced.map_err(|e| e.to_string()), Ok(0));
    }

    #[test]
    fn passwords_are_redacted_from_logged_urls() {
        assert_eq!(
            redacted("postgres://herald:s3cret@db:5432/herald"),
            "postgres://herald:***@db:5432/herald"
        );
        assert_eq!(
            redacted("postgres://db/herald?user=h&password=s3cret&sslmode=require"),
            "postgres://db/herald?user=h&password=***&sslmode=require"
        );
        assert_eq!(
            redacted("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redacted("sqlite://herald.db"), "sqlite://herald.db");
    }
}
