//! The newest cursor this node knows, kept in memory so that a handshake
//! need not ask storage for it.
//!
//! Every announcement a session may receive live reaches the registry as a
//! `Publish`, after its claim committed and in cursor order (the scheduler
//! on SQLite, the cluster listener on PostgreSQL); the registry advances
//! this cursor before it routes the announcement. A session reads it after
//! the registry accepted it, so every cursor at or below what it reads is
//! in the table (the replay finds it) and every later one is routed to it
//! live. Seeded from the table at start, after the cluster listens.

use crate::domain::Cursor;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct NewestCursor(Arc<AtomicI64>);

impl NewestCursor {
    pub fn get(&self) -> Cursor {
        Cursor(self.0.load(Ordering::SeqCst))
    }

    /// Moves the cursor on to `cursor` unless it is there already.
    pub fn advance(&self, cursor: Cursor) {
        self.0.fetch_max(cursor.0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_only_moves_forward() {
        let newest = NewestCursor::default();
        newest.advance(Cursor(5));
        newest.clone().advance(Cursor(3));
        assert_eq!(newest.get(), Cursor(5));
    }
}
