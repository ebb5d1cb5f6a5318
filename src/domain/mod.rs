//! herald's vocabulary without I/O: announcements with their level, status
//! and audience, drafts and their validation, and the time format the API
//! speaks. Every layer above speaks these types; storage converts its rows
//! into them.

pub mod announcement;
pub mod draft;
pub mod ids;
pub mod webhook;

pub use announcement::{Announcement, FullAnnouncement, Level, Status, SummarizedAnnouncement};
pub use draft::{AnnouncementDraft, AnnouncementPatch, DraftLimits, FieldError};
pub use ids::{AnnouncementId, Cursor};

use chrono::{DateTime, SecondsFormat, Utc};

/// One open session (a tab), unique within a node.
pub type SessionId = u64;

/// Who receives an announcement. "all" and groups are resolved when a user
/// connects or reads the inbox, so later users still find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    All,
    Users(Vec<String>),
    Groups(Vec<String>),
}

/// Which of the three audiences an announcement has, without its values:
/// what the announcement itself records, while the values are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AudienceKind {
    All,
    Users,
    Groups,
}

impl AudienceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceKind::All => "all",
            AudienceKind::Users => "users",
            AudienceKind::Groups => "groups",
        }
    }

    pub fn parse(s: &str) -> Option<AudienceKind> {
        match s {
            "all" => Some(AudienceKind::All),
            "users" => Some(AudienceKind::Users),
            "groups" => Some(AudienceKind::Groups),
            _ => None,
        }
    }

    /// The audience of this kind naming `values` ("all" names none).
    pub fn with_values(self, values: Vec<String>) -> Audience {
        match self {
            AudienceKind::All => Audience::All,
            AudienceKind::Users => Audience::Users(values),
            AudienceKind::Groups => Audience::Groups(values),
        }
    }
}

impl Audience {
    pub fn kind(&self) -> AudienceKind {
        match self {
            Audience::All => AudienceKind::All,
            Audience::Users(_) => AudienceKind::Users,
            Audience::Groups(_) => AudienceKind::Groups,
        }
    }

    /// The explicit target values (user ids or group names); empty for "all".
    pub fn values(&self) -> &[String] {
        match self {
            Audience::All => &[],
            Audience::Users(v) | Audience::Groups(v) => v,
        }
    }

    /// The JSON form the API speaks: `{"all":true}`, `{"users":[..]}`, `{"groups":[..]}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Audience::All => serde_json::json!({ "all": true }),
            Audience::Users(v) => serde_json::json!({ "users": v }),
            Audience::Groups(v) => serde_json::json!({ "groups": v }),
        }
    }

    /// True when a user with these groups is in the audience.
    pub fn includes(&self, user_id: &str, groups: &[String]) -> bool {
        match self {
            Audience::All => true,
            Audience::Users(users) => users.iter().any(|u| u == user_id),
            Audience::Groups(wanted) => wanted.iter().any(|g| groups.contains(g)),
        }
    }
}

/// How many values of an audience listings show; the rest are paged from
/// `GET /api/announcements/{id}/audience`.
pub const AUDIENCE_SAMPLE: usize = 20;

/// An audience as listings show it: its first values and how many it names
/// in all, so that a page of announcements for 10 000 users each stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceSummary {
    /// The audience cut to its first `AUDIENCE_SAMPLE` values.
    pub sample: Audience,
    /// How many values the whole audience names (0 for "all").
    pub count: i64,
}

impl AudienceSummary {
    pub fn of(audience: &Audience) -> AudienceSummary {
        let cut = |values: &[String]| values.iter().take(AUDIENCE_SAMPLE).cloned().collect();
        let sample = match audience {
            Audience::All => Audience::All,
            Audience::Users(v) => Audience::Users(cut(v)),
            Audience::Groups(v) => Audience::Groups(cut(v)),
        };
        AudienceSummary {
            sample,
            count: audience.values().len() as i64,
        }
    }

    /// `Audience::to_json` of the sample; when values were cut off it adds
    /// `"count"` and `"truncated": true`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The summary as the API shows it (see `AudienceView`).
    pub fn view(&self) -> AudienceView {
        let values = |v: &Vec<String>| Some(v.clone());
        let cut = self.count > self.sample.values().len() as i64;
        AudienceView {
            all: matches!(self.sample, Audience::All).then_some(true),
            users: match &self.sample {
                Audience::Users(v) => values(v),
                _ => None,
            },
            groups: match &self.sample {
                Audience::Groups(v) => values(v),
                _ => None,
            },
            count: cut.then_some(self.count),
            truncated: cut.then_some(true),
        }
    }
}

/// An audience in the admin API's answers: exactly one of `all`, `users`
/// and `groups`, as it was given. A listing shows at most the first
/// `AUDIENCE_SAMPLE` values; when it cut some off it adds `count` and
/// `truncated`, and the rest are paged from `/api/announcements/{id}/audience`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AudienceView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// How many values the whole audience names, when this shows only the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// Renders stored epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_milliseconds() {
        let ms = parse_time("2026-11-21T10:00:00.123+01:00").expect("valid time");
        assert_eq!(rfc3339(ms), "2026-11-21T09:00:00.123Z");
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn audience_includes_by_user_and_group() {
        let groups = vec!["ops".to_string()];
        assert!(Audience::All.includes("u1", &[]));
        assert!(Audience::Users(vec!["u1".into()]).includes("u1", &[]));
        assert!(!Audience::Users(vec!["u2".into()]).includes("u1", &groups));
        assert!(Audience::Groups(vec!["ops".into()]).includes("u1", &groups));
        assert!(!Audience::Groups(vec!["dev".into()]).includes("u1", &groups));
    }

    #[test]
    fn summary_keeps_small_audiences_whole_and_cuts_large_ones() {
        let small = Audience::Users(vec!["a".into(), "b".into()]);
        assert_eq!(AudienceSummary::of(&small).to_json(), small.to_json());
        assert_eq!(
            AudienceSummary::of(&Audience::All).to_json(),
            serde_json::json!({"all": true})
        );
        let names: Vec<String> = (0..25).map(|i| format!("g{i:02}")).collect();
        let json = AudienceSummary::of(&Audience::Groups(names.clone())).to_json();
        assert_eq!(
            json,
            serde_json::json!({"groups": names[..20], "count": 25, "truncated": true})
        );
    }
}
