//! Where a session's catch-up loads come from: storage's resume contract
//! (`db::catch_up`) on the blocking pool, with the frames built there too.
//! Loads run on connections of their own (`db::load_pool`: lent without a
//! test query), as many at once as there are, so a burst of handshakes
//! never takes a connection REST or the background work needs. The newest
//! cursor comes from memory, so an opening with nothing to replay or count
//! touches no connection; the known-user note goes to the batching writer.
//!
//! A load queues for a bounded time and retries a connection that timed
//! out; only when that time is up does it fail, and the session closes with
//! 1013 and a reconnect hint (its client resumes by cursor).

use super::newest::NewestCursor;
use super::session::effects::{Load, Opening, ReplayPage};
use super::users::{Saw, UserWriter};
use crate::db::catch_up::{self, PageLimits, ReplayRows};
use crate::db::load_pool::{self, LoadPool};
use crate::db::users::Seen;
use crate::db::{self, DbError};
use crate::domain::Cursor;
use crate::protocol::{self, AnnouncementView};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long a load may wait for a permit and a connection, retries included.
const QUEUE_FOR: Duration = Duration::from_secs(10);

/// One replay page: at most 100 rows and about 64 KiB of text. The next
/// page is read only when the session runs again, and a session runs only
/// while its client reads (actix polls it as the response body, and stops
/// while the socket is full): a client that stops reading mid-replay holds
/// about a page, not its whole backlog.
const PAGE: PageLimits = PageLimits {
    rows: 100,
    bytes: 64 * 1024,
};

/// What a load produced.
pub enum Loaded {
    Opening(Opening),
    Page(ReplayPage),
}

/// Who a load is for.
pub struct Reader {
    pub user_id: Arc<str>,
    pub groups: Arc<[String]>,
    pub legacy: bool,
}

#[derive(Clone)]
pub struct CatchUpStore {
    pool: LoadPool,
    permits: Arc<Semaphore>,
    newest: NewestCursor,
    users: Addr<UserWriter>,
}

impl CatchUpStore {
    /// Loads run at most one per connection of `pool` at once; the others
    /// wait their turn here, not on a blocking thread.
    pub fn new(pool: LoadPool, newest: NewestCursor, users: Addr<UserWriter>) -> CatchUpStore {
        let permits = pool.max_size() as usize;
        CatchUpStore {
            pool,
            permits: Arc::new(Semaphore::new(permits.max(1))),
            newest,
            users,
        }
    }

    /// Runs `load` on its own task, not inside the session: a session is
    /// polled only while its client reads, and a stalled one must not sit on
    /// a permit. Call it after the registry accepted the session: the newest
    /// cursor is read here.
    pub fn load(
        &self,
        load: Load,
        reader: Reader,
    ) -> impl std::future::Future<Output = Result<Loaded, DbError>> {
        if let Load::Open { first: true, .. } = load {
            self.users.do_send(Saw(Seen {
                user_id: reader.user_id.to_string(),
                groups: reader.groups.to_vec(),
            }));
        }
        let job = Job::new(load, self.newest.get());
        let (pool, permits) = (self.pool.clone(), self.permits.clone());
        let work = actix_web::rt::spawn(async move {
            if let Some(done) = job.without_storage() {
                return Ok(done);
            }
            with_retries(&pool, &permits, job, reader).await
        });
        async move { work.await.map_err(|e| DbError::Blocking(e.to_string()))? }
    }
}

/// A load with the newest cursor it runs up to.
#[derive(Clone, Copy)]
struct Job {
    load: Load,
    newest: Cursor,
}

impl Job {
    fn new(load: Load, newest: Cursor) -> Job {
        Job { load, newest }
    }

    /// An opening with nothing to count or replay needs no connection.
    fn without_storage(&self) -> Option<Loaded> {
        match self.load {
            Load::Open {
                since,
                first: false,
            } if since.is_none_or(|s| s >= self.newest) => Some(Loaded::Opening(Opening {
                cursor: self.newest,
                unread: 0,
                page: ReplayPage::default(),
            })),
            _ => None,
        }
    }
}

/// Waits for a permit, then a connection, until `QUEUE_FOR` is up; a pool
/// timeout or a lost connection is retried after a short jittered pause.
async fn with_retries(
    pool: &LoadPool,
    permits: &Arc<Semaphore>,
    job: Job,
    reader: Reader,
) -> Result<Loaded, DbError> {
    let deadline = Instant::now() + QUEUE_FOR;
    let reader = Arc::new(reader);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let permit = tokio::time::timeout(left, permits.clone().acquire_owned())
            .await
            .map_err(|_| DbError::Busy("catch-up queue"))?
            .map_err(|e| DbError::Blocking(e.to_string()))?;
        let r = reader.clone();
        let result = load_pool::run(pool, move |conn| run(conn, job, &r)).await;
        drop(permit);
        match result {
            Err(e) if transient(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "catch-up load retrying");
                let pause = 50 + rand::random::<u64>() % 200;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

/// Errors another attempt may not meet: no connection in time, or one lost.
fn transient(e: &DbError) -> bool {
    match e {
        DbError::Pool(_) | DbError::Busy(_) | DbError::Connect(_) => true,
        e => load_pool::connection_lost(e),
    }
}

fn run(conn: &mut db::DbConn, job: Job, r: &Reader) -> Result<Loaded, DbError> {
    let now = db::now_ms();
    Ok(match job.load {
        Load::Open { since, first } => {
            let o = catch_up::open(
                conn, &r.user_id, &r.groups, since, job.newest, first, PAGE, now,
            )?;
            Loaded::Opening(Opening {
                cursor: job.newest,
                unread: o.unread,
                page: frames(o.replay, r.legacy),
            })
        }
        Load::Page { after, upto } => {
            let rows = catch_up::replay(conn, &r.user_id, &r.groups, after, upto, PAGE, now)?;
            Loaded::Page(frames(rows, r.legacy))
        }
    })
}

fn frames(rows: ReplayRows, legacy: bool) -> ReplayPage {
    ReplayPage {
        frames: rows
            .rows
            .iter()
            .map(|row| {
                let view = AnnouncementView::from(row).confirmed(rows.confirmed.contains(&row.id));
                (
                    row.cursor.unwrap_or_default(),
                    protocol::announcement(&view, legacy),
                )
            })
            .collect(),
        more: rows.more,
    }
}
