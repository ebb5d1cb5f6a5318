//! WebSocket protocol v1: frames from clients (with the seeds' heartbeat
//! aliases) and frames to clients, including the legacy shapes the seeds'
//! hand-written clients understand.

pub mod codes;

use codes::error;

use crate::domain::{rfc3339, Announcement, AnnouncementId, Cursor, Level};
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `{"type":"ping"}`, `{"type":"headerBeat"}`, `{"sendType":"HEALTH"}`,
    /// or the bare texts `ping` and `heartCheck`.
    Heartbeat,
    Ack(Vec<AnnouncementId>),
    Read(Vec<AnnouncementId>),
    /// "I have read and understood": confirms (and reads) these.
    Confirm(Vec<AnnouncementId>),
    Sync(Cursor),
    Refresh(String),
}

/// Why a client frame was not understood; sent back as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub msg: String,
}

impl FrameError {
    fn new(code: &'static str, msg: impl Into<String>) -> FrameError {
        FrameError {
            code,
            msg: msg.into(),
        }
    }
}

/// The most ids one ack, read or confirm frame may carry.
pub const MAX_IDS_PER_FRAME: usize = 1_000;

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "sendType")]
    send_type: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct IdsData {
    ids: Vec<AnnouncementId>,
}

#[derive(Deserialize)]
struct SyncData {
    since: i64,
}

#[derive(Deserialize)]
struct RefreshData {
    token: String,
}

fn data<T: for<'de> Deserialize<'de>>(
    kind: &str,
    value: Value,
    shape: &str,
) -> Result<T, FrameError> {
    serde_json::from_value(value).map_err(|_| {
        FrameError::new(
            error::BAD_FRAME,
            format!("'{kind}' needs data of the form {shape}"),
        )
    })
}

fn ids(kind: &str, value: Value) -> Result<Vec<AnnouncementId>, FrameError> {
    let IdsData { ids } = data(kind, value, r#"{"ids":[1,2]}"#)?;
    if ids.len() > MAX_IDS_PER_FRAME {
        return Err(FrameError::new(
            error::BAD_FRAME,
            format!("at most {MAX_IDS_PER_FRAME} ids per frame"),
        ));
    }
    Ok(ids)
}

/// Parses one text frame. Never panics, whatever the bytes.
pub fn parse_client_text(text: &str) -> Result<ClientFrame, FrameError> {
    let trimmed = text.trim();
    if trimmed == "ping" || trimmed == "heartCheck" {
        return Ok(ClientFrame::Heartbeat);
    }
    let envelope: Envelope = serde_json::from_str(trimmed).map_err(|_| {
        FrameError::new(
            error::BAD_JSON,
            "frames are JSON objects like {\"type\":\"ping\"}",
        )
    })?;
    if envelope.send_type.as_deref() == Some("HEALTH") {
        return Ok(ClientFrame::Heartbeat);
    }
    let Some(kind) = envelope.kind else {
        return Err(FrameError::new(
            error::BAD_FRAME,
            "the frame has no \"type\"",
        ));
    };
    match kind.as_str() {
        "ping" | "headerBeat" | "heartbeat" => Ok(ClientFrame::Heartbeat),
        "ack" => ids(&kind, envelope.data).map(ClientFrame::Ack),
        "read" => ids(&kind, envelope.data).map(ClientFrame::Read),
        "confirm" => ids(&kind, envelope.data).map(ClientFrame::Confirm),
        "sync" => data::<SyncData>(&kind, envelope.data, r#"{"since":0}"#)
            .map(|d| ClientFrame::Sync(Cursor(d.since.max(0)))),
        "refresh" => data::<RefreshData>(&kind, envelope.data, r#"{"token":"..."}"#)
            .map(|d| ClientFrame::Refresh(d.token)),
        other => Err(FrameError::new(
            error::UNKNOWN_TYPE,
            format!("unknown frame type '{}'", truncate(other, 40)),
        )),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An announcement as clients and the inbox see it. `publish_at` is the
/// time it was scheduled for (what the admin set, or the moment the create
/// request was accepted), as the admin API shows it; `published_at` is when
/// herald actually published it (claimed it for delivery), never earlier.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnnouncementView {
    pub id: AnnouncementId,
    pub title: String,
    pub content: String,
    pub level: Level,
    pub link: Option<String>,
    /// RFC 3339: the time it was scheduled for.
    pub publish_at: String,
    /// RFC 3339: when herald published it (claimed it for delivery).
    pub published_at: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Its place in publish order: resume after it with `since`.
    pub cursor: Option<Cursor>,
    pub requires_confirmation: bool,
    /// Whether the user this view is for confirmed it; a live publish goes
    /// out before anyone could have.
    pub confirmed: bool,
}

impl From<&Announcement> for AnnouncementView {
    fn from(a: &Announcement) -> Self {
        AnnouncementView {
            id: a.id,
            title: a.title.clone(),
            content: a.content.clone(),
            level: a.level,
            link: a.link.clone(),
            publish_at: rfc3339(a.publish_at),
            // Frames and the inbox carry published announcements only, which
            // always have it; the scheduled time stands in otherwise.
            published_at: rfc3339(a.published_at.unwrap_or(a.publish_at)),
            expires_at: a.expires_at.map(rfc3339),
            cursor: a.cursor,
            requires_confirmation: a.requires_confirmation,
            confirmed: false,
        }
    }
}

impl AnnouncementView {
    /// The view for a user who has (or has not) confirmed it.
    pub fn confirmed(mut self, confirmed: bool) -> AnnouncementView {
        self.confirmed = confirmed;
        self
    }
}

/// An announcement serialized once per publish, in both shapes, and shared
/// by every session it goes to.
#[derive(Debug)]
pub struct Prepared {
    pub id: AnnouncementId,
    pub cursor: Cursor,
    pub v1: ByteString,
    pub legacy: ByteString,
}

impl From<&Announcement> for Prepared {
    fn from(a: &Announcement) -> Prepared {
        let view = AnnouncementView::from(a);
        Prepared {
            id: a.id,
            cursor: a.cursor.unwrap_or_default(),
            v1: ByteString::from(announcement(&view, false)),
            legacy: ByteString::from(announcement(&view, true)),
        }
    }
}

fn frame(kind: &str, data: Value) -> String {
    json!({ "type": kind, "data": data }).to_string()
}

/// `announcement`; the legacy form repeats the display fields at the top
/// level for clients that read `title` off the frame itself.
pub fn announcement(view: &AnnouncementView, legacy: bool) -> String {
    let data = serde_json::to_value(view).unwrap_or(Value::Null);
    if !legacy {
        return frame("announcement", data);
    }
    json!({
        "type": "announcement",
        "data": data,
        "id": view.id,
        "title": view.title,
        "content": view.content,
        "level": view.level,
        "link": view.link,
    })
    .to_string()
}

pub struct Welcome<'a> {
    pub user_id: &'a str,
    pub session_id: u64,
    pub heartbeat_ms: u64,
    pub server_time: i64,
    pub cursor: Cursor,
    pub unread: i64,
}

pub fn welcome(w: &Welcome<'_>) -> String {
    frame(
        "welcome",
        json!({
            "user_id": w.user_id,
            "session_id": w.session_id.to_string(),
            "heartbeat_ms": w.heartbeat_ms,
            "server_time": rfc3339(w.server_time),
            "cursor": w.cursor,
            "unread": w.unread,
        }),
    )
}

pub fn retract(id: AnnouncementId) -> String {
    frame("retract", json!({ "id": id }))
}

/// `read`: these were read in another tab or device; `confirmed` lists
/// those of them that were confirmed (confirming implies reading, so a
/// client that knows only `read` still learns the part it understands).
pub fn read(ids: &[AnnouncementId], confirmed: &[AnnouncementId]) -> String {
    frame("read", json!({ "ids": ids, "confirmed": confirmed }))
}

/// `archive`: these were archived (or, with `archived: false`, restored to
/// the inbox) in another tab or device.
pub fn archive(ids: &[AnnouncementId], archived: bool) -> String {
    frame("archive", json!({ "ids": ids, "archived": archived }))
}

/// `pong`; legacy clients also get `"code": 2`, which seed 004 treats as
/// "the server is alive".
pub fn pong(ts: i64, legacy: bool) -> String {
    if legacy {
        json!({ "type": "pong", "code": 2, "data": { "ts": ts } }).to_string()
    } else {
        frame("pong", json!({ "ts": ts }))
    }
}

pub fn error(code: &str, msg: &str) -> String {
    frame("error", json!({ "code": code, "msg": msg }))
}

#[cfg(test)]
mod tests;
