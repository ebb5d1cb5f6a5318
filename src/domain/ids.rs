//! Ids of different things as different types. An announcement id and a
//! cursor are both a BIGINT in the tables and a number on the wire, and
//! they travel side by side (a replay page is cursors and announcements, a
//! read sync is ids, the admin list pages by id while the inbox pages by
//! cursor): as plain `i64`s one passes for the other without a word from
//! the compiler. On the wire they stay plain numbers (`serde(transparent)`);
//! storage unwraps them at the Diesel boundary.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// An announcement's primary key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct AnnouncementId(pub i64);

/// Where a published announcement stands in publish order: handed out by
/// the claim, one per publish, in commit order across every node. A client
/// resumes after one; `Cursor::default()` (0) comes before the first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(transparent)]
pub struct Cursor(pub i64);

impl fmt::Display for AnnouncementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_on_the_wire() {
        let pair = (AnnouncementId(7), Cursor(42));
        assert_eq!(serde_json::to_string(&pair).expect("json"), "[7,42]");
        assert_eq!(
            serde_json::from_str::<Vec<AnnouncementId>>("[1,2]").expect("parse"),
            [AnnouncementId(1), AnnouncementId(2)]
        );
        assert_eq!(
            format!("announcement {}", AnnouncementId(9)),
            "announcement 9"
        );
    }
}
