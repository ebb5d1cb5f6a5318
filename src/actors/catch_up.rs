//! Where a session's catch-up loads come from: storage's resume contract
//! (`db::catch_up`) on the blocking pool, with the frames built there too.
//! Loads running at once are bounded below the pool size, so a burst of
//! handshakes never takes every connection the scheduler, the receipt
//! writer and REST need.

use super::session::effects::{Load, Opening, ReplayPage};
use crate::db::catch_up::{self, PageLimits, ReplayRows};
use crate::db::{self, DbError, DbPool};
use crate::protocol::{self, AnnouncementView};
use std::sync::Arc;
use tokio::sync::Semaphore;

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
    pool: DbPool,
    permits: Arc<Semaphore>,
}

impl CatchUpStore {
    /// Loads hold at most `permits` of the pool's connections at once.
    pub fn new(pool: DbPool, permits: usize) -> CatchUpStore {
        CatchUpStore {
            pool,
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// Runs `load` on its own task, not inside the session: a session is
    /// polled only while its client reads, and a stalled one must not sit on
    /// a permit.
    pub fn load(
        &self,
        load: Load,
        reader: Reader,
    ) -> impl std::future::Future<Output = Result<Loaded, DbError>> {
        let (pool, permits) = (self.pool.clone(), self.permits.clone());
        let work = actix_web::rt::spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| DbError::Blocking(e.to_string()))?;
            db::run(&pool, move |conn| run(conn, load, &reader)).await
        });
        async move { work.await.map_err(|e| DbError::Blocking(e.to_string()))? }
    }
}

fn run(conn: &mut db::DbConn, load: Load, r: &Reader) -> Result<Loaded, DbError> {
    let now = db::now_ms();
    Ok(match load {
        Load::Open { since, first } => {
            let o = catch_up::open(conn, &r.user_id, &r.groups, since, first, PAGE, now)?;
            Loaded::Opening(Opening {
                cursor: o.cursor,
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
