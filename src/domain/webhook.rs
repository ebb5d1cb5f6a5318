//! Outbound events as webhook receivers see them: the event types, the body
//! `{"type", "timestamp", "data"}`, and the retry schedule. No I/O: storage
//! writes these into the outbox, the sender signs and posts them.

use super::{rfc3339, Announcement, AnnouncementId, Audience, AudienceSummary};
use serde_json::{json, Value};

/// Longest wait between two attempts.
pub const MAX_BACKOFF_MS: i64 = 3_600_000;
/// How long after an event was written herald keeps trying; then it is failed.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;
/// Users per list in one `receipts` event; a larger batch becomes several
/// events, so that no body grows with the audience.
pub const RECEIPTS_PER_EVENT: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Published,
    Retracted,
    Expired,
    Receipts,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Published => "announcement.published",
            EventType::Retracted => "announcement.retracted",
            EventType::Expired => "announcement.expired",
            EventType::Receipts => "receipts",
        }
    }
}

/// One event to report about one announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundEvent {
    pub kind: EventType,
    pub announcement_id: AnnouncementId,
    pub data: Value,
}

impl OutboundEvent {
    /// The announcement as published; the audience as the admin API
    /// summarizes it (its first values and how many there are).
    pub fn published(a: &Announcement, audience: &Audience) -> OutboundEvent {
        OutboundEvent {
            kind: EventType::Published,
            announcement_id: a.id,
            data: json!({
                "id": a.id,
                "title": a.title,
                "content": a.content,
                "level": a.level.as_str(),
                "link": a.link,
                "audience": AudienceSummary::of(audience).to_json(),
                "publish_at": rfc3339(a.publish_at),
                "expires_at": a.expires_at.map(rfc3339),
                "published_at": a.published_at.map(rfc3339),
                "cursor": a.cursor,
                "targeted": a.targeted,
            }),
        }
    }

    pub fn retracted(id: AnnouncementId, at: i64) -> OutboundEvent {
        OutboundEvent {
            kind: EventType::Retracted,
            announcement_id: id,
            data: json!({ "id": id, "retracted_at": rfc3339(at) }),
        }
    }

    pub fn expired(id: AnnouncementId, expires_at: i64) -> OutboundEvent {
        OutboundEvent {
            kind: EventType::Expired,
            announcement_id: id,
            data: json!({ "id": id, "expires_at": rfc3339(expires_at) }),
        }
    }

    /// What one receipt batch changed for one announcement, in events of
    /// at most `RECEIPTS_PER_EVENT` users each; none when nothing changed.
    pub fn receipts(id: AnnouncementId, changes: &ReceiptChanges) -> Vec<OutboundEvent> {
        let users: std::collections::BTreeSet<&str> = changes
            .delivered
            .iter()
            .chain(&changes.read)
            .chain(&changes.confirmed)
            .map(|(u, _)| u.as_str())
            .collect();
        let users: Vec<&str> = users.into_iter().collect();
        users
            .chunks(RECEIPTS_PER_EVENT)
            .map(|chunk| {
                let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
                let list = |entries: &[(String, i64)]| -> Vec<Value> {
                    entries
                        .iter()
                        .filter(|(u, _)| u.as_str() >= first && u.as_str() <= last)
                        .map(|(u, at)| json!({ "user_id": u, "at": rfc3339(*at) }))
                        .collect()
                };
                OutboundEvent {
                    kind: EventType::Receipts,
                    announcement_id: id,
                    data: json!({
                        "announcement_id": id,
                        "delivered": list(&changes.delivered),
                        "read": list(&changes.read),
                        "confirmed": list(&changes.confirmed),
                    }),
                }
            })
            .collect()
    }

    /// The body sent on every attempt; `at` is when the fact happened.
    pub fn body(&self, at: i64) -> String {
        json!({
            "type": self.kind.as_str(),
            "timestamp": rfc3339(at),
            "data": self.data,
        })
        .to_string()
    }
}

/// Who newly received, read or confirmed one announcement in one receipt
/// batch, with the time it was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptChanges {
    pub delivered: Vec<(String, i64)>,
    pub read: Vec<(String, i64)>,
    pub confirmed: Vec<(String, i64)>,
}

impl ReceiptChanges {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.read.is_empty() && self.confirmed.is_empty()
    }
}

/// Where one delivery (an event to one endpoint) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet accepted by the receiver; attempted again when due.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Not accepted within `GIVE_UP_AFTER_MS`; only a manual retry sends it.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// The wait after the `attempts`-th failed attempt: `base_ms`, doubling
/// with each attempt, never more than an hour.
pub fn backoff_ms(base_ms: u64, attempts: i64) -> i64 {
    let base = i64::try_from(base_ms.max(1)).unwrap_or(MAX_BACKOFF_MS);
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    base.saturating_mul(2i64.saturating_pow(doublings))
        .min(MAX_BACKOFF_MS)
}

/// When to try again after the `attempts`-th failed attempt at `now`, or
/// `None` when that would be past `give_up_at`: the delivery has failed.
pub fn next_attempt(base_ms: u64, attempts: i64, give_up_at: i64, now: i64) -> Option<i64> {
    let at = now.saturating_add(backoff_ms(base_ms, attempts));
    (at <= give_up_at).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour() {
        assert_eq!(backoff_ms(1_000, 1), 1_000);
        assert_eq!(backoff_ms(1_000, 2), 2_000);
        assert_eq!(backoff_ms(1_000, 3), 4_000);
        assert_eq!(backoff_ms(1_000, 12), 2_048_000);
        assert_eq!(backoff_ms(1_000, 13), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1_000, 10_000), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u64::MAX, 1), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0, 1), 1);
    }

    #[test]
    fn retries_stop_after_a_day() {
        let created = 0;
        let give_up = created + GIVE_UP_AFTER_MS;
        assert_eq!(next_attempt(1_000, 1, give_up, 10), Some(1_010));
        // Attempts keep coming an hour apart until the day is over.
        let mut now = created;
        let mut attempts = 0;
        while let Some(at) = next_attempt(1_000, attempts + 1, give_up, now) {
            attempts += 1;
            now = at;
        }
        assert!(now <= give_up && give_up - now < MAX_BACKOFF_MS, "{now}");
        // 12 doublings (1 s to 34 min, 68 min in all), then hourly.
        assert_eq!(attempts, 12 + 22);
    }

    #[test]
    fn receipts_are_cut_into_bounded_events() {
        let delivered: Vec<(String, i64)> = (0..2_500).map(|i| (format!("u{i:05}"), 7)).collect();
        let changes = ReceiptChanges {
            read: delivered[..10].to_vec(),
            delivered,
            confirmed: vec![],
        };
        let events = OutboundEvent::receipts(AnnouncementId(3), &changes);
        assert_eq!(events.len(), 3);
        let sizes: Vec<usize> = events
            .iter()
            .map(|e| e.data["delivered"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
        assert_eq!(events[0].data["read"].as_array().map(Vec::len), Some(10));
        assert_eq!(events[0].data["confirmed"], json!([]));
        assert_eq!(events[0].data["delivered"][0]["user_id"], "u00000");
        assert!(OutboundEvent::receipts(AnnouncementId(3), &ReceiptChanges::default()).is_empty());
    }

    #[test]
    fn the_body_has_type_timestamp_and_data() {
        let body = OutboundEvent::retracted(AnnouncementId(9), 1_000).body(2_000);
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["type"], "announcement.retracted");
        assert_eq!(value["timestamp"], "1970-01-01T00:00:02.000Z");
        assert_eq!(value["data"]["id"], 9);
    }
}
