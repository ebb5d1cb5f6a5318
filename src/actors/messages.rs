//! Every message the actors exchange, grouped by recipient.

use crate::db::receipts::ReceiptEvent;
use crate::domain::{AnnouncementId, Audience};
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;

pub use crate::protocol::Prepared;

// ---- to a session ----------------------------------------------------------

/// Something for one session to send.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Push {
    Announcement(Arc<Prepared>),
    /// A ready frame (retract, read) that looks the same on every URL form.
    Frame(ByteString),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

impl Push {
    /// Bytes this push will put on the wire (both announcement forms are
    /// about the same size; the larger counts).
    pub fn len(&self) -> usize {
        match self {
            Push::Announcement(p) => p.v1.len().max(p.legacy.len()),
            Push::Frame(f) => f.len(),
            Push::Close(..) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---- to the registry -------------------------------------------------------

pub use crate::domain::SessionId;

/// Shared between a session and the registry: how many bytes of frames the
/// registry has handed the session that it has not taken yet, and whether
/// the registry gave up on it. A session whose client stops reading stops
/// taking frames; once `queued` would pass the bound the registry stops
/// routing to it and sets `overflowed`, so one stalled client costs at most
/// the bound, never an unbounded backlog.
#[derive(Debug, Default)]
pub struct SessionLink {
    pub queued: std::sync::atomic::AtomicUsize,
    pub overflowed: std::sync::atomic::AtomicBool,
}

/// A session opened; the registry answers whether it may stay (false: the
/// user already has the most sessions allowed).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Connect {
    pub user_id: Arc<str>,
    pub session_id: SessionId,
    pub groups: Arc<[String]>,
    pub addr: Recipient<Push>,
    pub link: Arc<SessionLink>,
}

/// A session's token was refreshed with other groups: route group
/// announcements by the new ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Regroup {
    pub user_id: Arc<str>,
    pub session_id: SessionId,
    pub groups: Arc<[String]>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub user_id: Arc<str>,
    pub session_id: SessionId,
}

/// Deliver a published announcement to every online session in its audience.
/// Answers how many distinct users were online to receive it.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Publish {
    pub announcement: Arc<Prepared>,
    pub audience: Audience,
}

/// Tell the audience's open tabs to remove an announcement.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retract {
    pub id: AnnouncementId,
    pub audience: Audience,
}

/// The user read these in one tab (and confirmed `confirmed`, a subset of
/// `ids`): tell the user's other tabs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadSync {
    pub user_id: String,
    pub ids: Vec<AnnouncementId>,
    pub confirmed: Vec<AnnouncementId>,
    pub except: Option<SessionId>,
}

/// The user archived these (or restored them, `archived: false`): tell the
/// user's other tabs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ArchiveSync {
    pub user_id: String,
    pub ids: Vec<AnnouncementId>,
    pub archived: bool,
    pub except: Option<SessionId>,
}

/// Close every session (server shutting down).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserPresence {
    pub user_id: String,
    pub sessions: usize,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PresenceSnapshot {
    pub users: Vec<UserPresence>,
    pub total_users: usize,
    pub total_sessions: usize,
}

#[derive(Message)]
#[rtype(result = "PresenceSnapshot")]
pub struct GetPresence;

#[derive(Message)]
#[rtype(result = "usize")]
pub struct GetUserSessions(pub String);

// ---- to the scheduler ------------------------------------------------------

/// Publish whatever is due now; answers how many this tick published.
#[derive(Message)]
#[rtype(result = "Result<usize, crate::db::DbError>")]
pub struct Tick;

/// An announcement was created or moved to `publish_at` (epoch ms): wake
/// then if that is before the next poll.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake {
    pub publish_at: i64,
}

// ---- to the receipt writer -------------------------------------------------

/// Receipts to write in the next batch. `origin` is the session they came
/// from, so read sync skips the tab that did the reading.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record {
    pub events: Vec<ReceiptEvent>,
    pub origin: Option<SessionId>,
}

/// Write everything pending now; answers how many receipts were written.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;
