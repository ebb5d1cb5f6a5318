//! What the session core and its transport say to each other: the effects
//! the core asks for, the loads it needs, and what those loads bring back.

use crate::actors::messages::SessionId;
use crate::db::receipts::ReceiptKind;
use crate::domain::{AnnouncementId, Cursor};
use bytestring::ByteString;
use std::sync::Arc;

/// The effects of one step, on the stack: a step rarely has more than two.
pub type Effects = smallvec::SmallVec<[Effect; 4]>;

/// What the transport must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this frame.
    Send(ByteString),
    /// Send this announcement frame (a delivery).
    Deliver(ByteString),
    /// Close with this code and reason, after what was sent before.
    Close(u16, String),
    /// Record these receipts.
    Record(Vec<AnnouncementId>, ReceiptKind),
    /// The session's groups changed: the registry must route by these.
    Regroup(Arc<[String]>),
    /// Load something, then call `opened` or `paged` (or `load_failed`).
    Load(Load),
    /// These bytes of routed frames left the session's queue.
    Dequeued(usize),
    /// Check this `refresh` token the way the handshake checks one
    /// (fetching a rotated key first when needed), then call `refreshed`.
    Verify(String),
}

/// A load the catch-up needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The opening: newest cursor, unread count (when `first`) and the first
    /// page of the replay after `since` (none without one).
    Open { since: Option<Cursor>, first: bool },
    /// The replay page after `after`, up to `upto`.
    Page { after: Cursor, upto: Cursor },
}

/// Announcement frames of one replay page, oldest first, with their cursors;
/// `more` when rows past the last one may still be due.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayPage {
    pub frames: Vec<(Cursor, String)>,
    pub more: bool,
}

/// What an opening load found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opening {
    pub cursor: Cursor,
    pub unread: i64,
    pub page: ReplayPage,
}

/// One piece of a fragmented message (RFC 6455 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    First { text: bool, bytes: Vec<u8> },
    Continue(Vec<u8>),
    Last(Vec<u8>),
}

/// Who the session is and how it behaves, fixed at the handshake.
pub struct CoreParams {
    pub id: SessionId,
    pub user_id: Arc<str>,
    pub groups: Arc<[String]>,
    pub token_exp: u64,
    /// Seed-style URL: no welcome, legacy announcement and pong shapes.
    pub legacy: bool,
    pub since: Option<Cursor>,
    pub heartbeat_ms: u64,
    pub frames_per_second: u32,
    pub max_frame_bytes: usize,
}
