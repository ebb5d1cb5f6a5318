//! What one node tells every node through PostgreSQL `NOTIFY`, sent inside
//! the transaction that made it true: PostgreSQL delivers a notification
//! only if and when its transaction commits, and in commit order. On SQLite
//! there is one node and nothing to tell.

use super::DbConn;
use crate::domain::{AnnouncementId, Cursor, SessionId};
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// The one channel every node listens on.
pub const CHANNEL: &str = "herald_events";

/// An event, kept small: the table holds the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An announcement was claimed and got this cursor.
    Published { id: AnnouncementId, cursor: Cursor },
    /// A published announcement was withdrawn.
    Retracted { id: AnnouncementId },
    /// The user read these (and confirmed `confirmed` among them); `except`
    /// is the session (on `node`) that read them, which needs no telling.
    Read {
        user_id: String,
        ids: Vec<AnnouncementId>,
        /// Absent from a node that predates confirmation.
        #[serde(default)]
        confirmed: Vec<AnnouncementId>,
        node: String,
        except: Option<SessionId>,
    },
    /// The user archived these (`archived`) or restored them to the inbox.
    Archive {
        user_id: String,
        ids: Vec<AnnouncementId>,
        archived: bool,
        node: String,
        except: Option<SessionId>,
    },
}

/// Tells every node (this one included) about `event` on PostgreSQL; inside
/// a transaction, only if and when it commits. Nothing on SQLite.
pub fn notify(conn: &mut DbConn, event: &Event) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        let payload = serde_json::to_string(event)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_small_tagged_json() {
        let published = Event::Published {
            id: AnnouncementId(7),
            cursor: Cursor(42),
        };
        let text = serde_json::to_string(&published).expect("json");
        assert_eq!(text, r#"{"kind":"published","id":7,"cursor":42}"#);
        assert_eq!(
            serde_json::from_str::<Event>(&text).expect("parse"),
            published
        );
    }
}
