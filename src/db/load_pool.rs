//! The catch-up's own connections: a handshake's loads (unread count,
//! replay pages) are read-only and retried, so a connection is lent without
//! the round trip r2d2 spends testing it on every checkout (`SELECT 1`,
//! which doubled the round trips of a storm's handshake on PostgreSQL).
//! A connection a query found lost is marked and dropped on its return
//! instead, and the load retries on a fresh one.

use super::{DbConn, DbError, SqlitePragmas};
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool, R2D2Connection,
};
use std::time::Duration;

/// A lent connection, and whether a query on it lost the connection.
pub struct LoadConn {
    conn: DbConn,
    lost: bool,
}

pub struct LoadManager {
    inner: ConnectionManager<DbConn>,
    pragmas: SqlitePragmas,
}

impl ManageConnection for LoadManager {
    type Connection = LoadConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<LoadConn, Self::Error> {
        let mut conn = self.inner.connect()?;
        self.pragmas.on_acquire(&mut conn)?;
        Ok(LoadConn { conn, lost: false })
    }

    /// Not called on checkout (the pool does not test); kept honest for
    /// r2d2's other callers.
    fn is_valid(&self, c: &mut LoadConn) -> Result<(), Self::Error> {
        c.conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, c: &mut LoadConn) -> bool {
        c.lost || c.conn.is_broken()
    }
}

pub type LoadPool = Pool<LoadManager>;

/// `size` connections for loads; checking one out runs no query.
pub fn open(url: &str, size: u32, busy_timeout_ms: u64) -> Result<LoadPool, DbError> {
    let manager = LoadManager {
        inner: ConnectionManager::new(super::connection_target(url)?),
        pragmas: SqlitePragmas { busy_timeout_ms },
    };
    Ok(Pool::builder()
        .max_size(size.max(1))
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(false)
        .build(manager)?)
}

/// Runs `f` on a blocking thread with a lent connection; a connection the
/// query lost is not lent again.
pub async fn run<T, F>(pool: &LoadPool, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, DbError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut lent = pool.get()?;
        let result = f(&mut lent.conn);
        if let Err(e) = &result {
            lent.lost = connection_lost(e);
        }
        result
    })
    .await
    .map_err(|e| DbError::Blocking(e.to_string()))?
}

/// The connection itself failed (the server closed it, or a command could
/// not be sent), as opposed to the query.
pub fn connection_lost(e: &DbError) -> bool {
    use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
    matches!(
        e,
        DbError::Query(diesel::result::Error::DatabaseError(
            ClosedConnection | UnableToSendCommand,
            _
        ))
    )
}
