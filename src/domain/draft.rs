//! Turning an admin's JSON into a valid announcement, with one error per bad
//! field so the admin console can point at it.

use super::{parse_time, Audience, Level};
use serde::Deserialize;
use utoipa::ToSchema;

/// Bounds on what an admin may submit (configurable, see `config.rs`).
#[derive(Debug, Clone, Copy)]
pub struct DraftLimits {
    pub max_title_chars: usize,
    pub max_content_chars: usize,
    pub max_recipients: usize,
}

impl Default for DraftLimits {
    fn default() -> Self {
        DraftLimits {
            max_title_chars: 200,
            max_content_chars: 20_000,
            max_recipients: 10_000,
        }
    }
}

/// One refused field of a request, in the error's `details`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Why text with NUL is refused: PostgreSQL cannot store it (the request
/// failed with 500) while SQLite stored it, so the same input behaved
/// differently per backend; no field has a use for it.
const NO_NUL: &str = "must not contain NUL characters";

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// The audience as it arrives, before we know it names exactly one kind:
/// `{"all": true}`, `{"users": [..]}` or `{"groups": [..]}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceInput {
    pub all: Option<bool>,
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

/// `POST /api/announcements` body. Each field is checked and every refused
/// one reported (422 with `details`); `title`, `content` and `audience` are
/// required.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateInput {
    pub title: Option<String>,
    pub content: Option<String>,
    /// `info` (default), `warning` or `critical`.
    pub level: Option<String>,
    /// An http(s) URL or a path on this site.
    pub link: Option<String>,
    pub audience: Option<AudienceInput>,
    /// RFC 3339; absent or in the past means now.
    pub publish_at: Option<String>,
    /// RFC 3339, after `publish_at`.
    pub expires_at: Option<String>,
    pub requires_confirmation: Option<bool>,
}

/// `PATCH /api/announcements/{id}` body: every field optional; `link` and
/// `expires_at` may be set to null to clear them.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PatchInput {
    pub title: Option<String>,
    pub content: Option<String>,
    /// `info`, `warning` or `critical`.
    pub level: Option<String>,
    /// null clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub link: Option<Option<String>>,
    pub audience: Option<AudienceInput>,
    /// RFC 3339.
    pub publish_at: Option<String>,
    /// RFC 3339; null clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<String>>,
    /// `null` is refused: leaving the flag as it is means leaving it out.
    #[serde(default, deserialize_with = "double_option")]
    pub requires_confirmation: Option<Option<bool>>,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A validated new announcement, times in epoch milliseconds.
#[derive(Debug, Clone)]
pub struct AnnouncementDraft {
    pub title: String,
    pub content: String,
    pub level: Level,
    pub link: Option<String>,
    pub audience: Audience,
    pub publish_at: i64,
    pub expires_at: Option<i64>,
    pub requires_confirmation: bool,
}

/// A validated change to a scheduled announcement.
#[derive(Debug, Clone, Default)]
pub struct AnnouncementPatch {
    pub title: Option<String>,
    pub content: Option<String>,
    pub level: Option<Level>,
    pub link: Option<Option<String>>,
    pub audience: Option<Audience>,
    pub publish_at: Option<i64>,
    pub expires_at: Option<Option<i64>>,
    pub requires_confirmation: Option<bool>,
}

/// An http(s) URL, or a path on this site. Browsers drop tabs and newlines
/// anywhere in a URL and read `\` as `/`, so `/\evil.example` or
/// `/<tab>/evil.example` is the protocol-relative `//evil.example`: another
/// site behind what looks like a path. Such characters are refused anywhere
/// in the link, as are other whitespace and control characters, which a
/// well-formed URL carries percent-encoded.
fn link_is_allowed(link: &str) -> bool {
    let tricky = |c: char| c == '\\' || c.is_whitespace() || c.is_control();
    if link.chars().any(tricky) {
        return false;
    }
    link.starts_with("https://")
        || link.starts_with("http://")
        || (link.starts_with('/') && !link.starts_with("//"))
}

struct Checker<'a> {
    limits: &'a DraftLimits,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            self.errors
                .push(FieldError::new(field, "must not be empty"));
        } else if trimmed.chars().count() > max {
            self.errors.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        } else if trimmed.contains('\0') {
            self.errors.push(FieldError::new(field, NO_NUL));
        }
        trimmed.to_string()
    }

    fn level(&mut self, value: &str) -> Level {
        Level::parse(value).unwrap_or_else(|| {
            self.errors.push(FieldError::new(
                "level",
                "must be one of info, warning, critical",
            ));
            Level::Info
        })
    }

    fn link(&mut self, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if value.contains('\0') {
            self.errors.push(FieldError::new("link", NO_NUL));
        } else if !link_is_allowed(value) || value.len() > 2_000 {
            self.errors.push(FieldError::new(
                "link",
                "must be an http(s) URL or a path starting with / (no \\, spaces or control characters)",
            ));
        }
        Some(value.to_string())
    }

    fn time(&mut self, field: &str, value: &str) -> Option<i64> {
        let parsed = parse_time(value);
        if parsed.is_none() {
            self.errors.push(FieldError::new(
                field,
                "must be an RFC 3339 time such as 2026-11-21T09:00:00Z",
            ));
        }
        parsed
    }

    fn audience(&mut self, input: &AudienceInput) -> Audience {
        let given = [
            input.all.is_some(),
            input.users.is_some(),
            input.groups.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.errors.push(FieldError::new(
                "audience",
                "must be exactly one of {\"all\":true}, {\"users\":[...]}, {\"groups\":[...]}",
            ));
            return Audience::All;
        }
        if let Some(all) = input.all {
            if !all {
                self.errors
                    .push(FieldError::new("audience.all", "must be true when given"));
            }
            return Audience::All;
        }
        let (field, values, is_users) = match (&input.users, &input.groups) {
            (Some(users), _) => ("audience.users", users, true),
            (_, Some(groups)) => ("audience.groups", groups, false),
            _ => return Audience::All,
        };
        let mut clean: Vec<String> = values.iter().map(|v| v.trim().to_string()).collect();
        clean.sort();
        clean.dedup();
        if clean.is_empty() {
            self.errors
                .push(FieldError::new(field, "must name at least one"));
        } else if clean.len() > self.limits.max_recipients {
            self.errors.push(FieldError::new(
                field,
                format!("must name at most {} entries", self.limits.max_recipients),
            ));
        } else if clean.iter().any(|v| v.is_empty() || v.len() > 200) {
            self.errors.push(FieldError::new(
                field,
                "entries must be 1 to 200 bytes long",
            ));
        } else if clean.iter().any(|v| v.contains('\0')) {
            self.errors.push(FieldError::new(
                field,
                "entries must not contain NUL characters",
            ));
        }
        if is_users {
            Audience::Users(clean)
        } else {
            Audience::Groups(clean)
        }
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

impl AnnouncementDraft {
    /// Validates a create request. `now` is the current time in epoch ms; a
    /// missing or past `publish_at` means now.
    pub fn validate(
        input: &CreateInput,
        limits: &DraftLimits,
        now: i64,
    ) -> Result<AnnouncementDraft, Vec<FieldError>> {
        let mut c = Checker {
            limits,
            errors: Vec::new(),
        };
        let title = match &input.title {
            Some(t) => c.text("title", t, limits.max_title_chars),
            None => {
                c.errors.push(FieldError::new("title", "is required"));
                String::new()
            }
        };
        let content = match &input.content {
            Some(t) => c.text("content", t, limits.max_content_chars),
            None => {
                c.errors.push(FieldError::new("content", "is required"));
                String::new()
            }
        };
        let level = input.level.as_deref().map_or(Level::Info, |l| c.level(l));
        let link = input.link.as_deref().and_then(|l| c.link(l));
        let audience = match &input.audience {
            Some(a) => c.audience(a),
            None => {
                c.errors.push(FieldError::new("audience", "is required"));
                Audience::All
            }
        };
        let publish_at = input
            .publish_at
            .as_deref()
            .and_then(|t| c.time("publish_at", t))
            .map_or(now, |t| t.max(now));
        let expires_at = input
            .expires_at
            .as_deref()
            .and_then(|t| c.time("expires_at", t));
        if expires_unseen(publish_at, expires_at) {
            c.errors.push(expiry_error());
        }
        c.finish(AnnouncementDraft {
            title,
            content,
            level,
            link,
            audience,
            publish_at,
            expires_at,
            requires_confirmation: input.requires_confirmation.unwrap_or(false),
        })
    }
}

/// True when an announcement would expire at or before it publishes: the
/// scheduler would publish it already expired, and it would reach no one.
pub fn expires_unseen(publish_at: i64, expires_at: Option<i64>) -> bool {
    expires_at.is_some_and(|exp| exp <= publish_at)
}

fn expiry_error() -> FieldError {
    FieldError::new("expires_at", "must be after publish_at")
}

impl AnnouncementPatch {
    /// Checks the times the announcement would have once patched: the
    /// patch's where it sets them, the stored `publish_at` and `expires_at`
    /// where it does not. Each time in a patch can be fine alone and wrong
    /// beside the stored other one, so this runs on the stored row, inside
    /// the transaction that writes the patch.
    pub fn check_times(&self, publish_at: i64, expires_at: Option<i64>) -> Result<(), FieldError> {
        let publish_at = self.publish_at.unwrap_or(publish_at);
        let expires_at = self.expires_at.unwrap_or(expires_at);
        if expires_unseen(publish_at, expires_at) {
            Err(self.times_error())
        } else {
            Ok(())
        }
    }

    /// What to answer when the patched times leave no moment to be seen:
    /// blame the publish time when the patch moved only that, else the
    /// expiry (also when the patch touched neither and the stored times
    /// are already wrong).
    pub fn times_error(&self) -> FieldError {
        if self.publish_at.is_some() && self.expires_at.is_none() {
            FieldError::new("publish_at", "must be before expires_at")
        } else {
            expiry_error()
        }
    }

    /// Validates a patch on its own; its times are checked against the
    /// stored ones by `check_times`.
    pub fn validate(
        input: &PatchInput,
        limits: &DraftLimits,
        now: i64,
    ) -> Result<AnnouncementPatch, Vec<FieldError>> {
        let mut c = Checker {
            limits,
            errors: Vec::new(),
        };
        let patch = AnnouncementPatch {
            title: input
                .title
                .as_deref()
                .map(|t| c.text("title", t, limits.max_title_chars)),
            content: input
                .content
                .as_deref()
                .map(|t| c.text("content", t, limits.max_content_chars)),
            level: input.level.as_deref().map(|l| c.level(l)),
            link: input
                .link
                .as_ref()
                .map(|l| l.as_deref().and_then(|l| c.link(l))),
            audience: input.audience.as_ref().map(|a| c.audience(a)),
            publish_at: input
                .publish_at
                .as_deref()
                .and_then(|t| c.time("publish_at", t))
                .map(|t| t.max(now)),
            expires_at: input
                .expires_at
                .as_ref()
                .map(|e| e.as_deref().and_then(|t| c.time("expires_at", t))),
            requires_confirmation: match input.requires_confirmation {
                Some(None) => {
                    c.errors.push(FieldError::new(
                        "requires_confirmation",
                        "must be true or false",
                    ));
                    None
                }
                given => given.flatten(),
            },
        };
        c.finish(patch)
    }
}

/// Checks what `POST /api/tokens` puts in a token: the user id (trimmed,
/// 1 to 200 bytes) and the groups; both end up in the database when the
/// user connects, so neither may contain NUL. Returns the trimmed user id.
pub fn token_subject(user_id: &str, groups: &[String]) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let user_id = user_id.trim();
    if user_id.is_empty() || user_id.len() > 200 {
        errors.push(FieldError::new("user_id", "must be 1 to 200 bytes long"));
    } else if user_id.contains('\0') {
        errors.push(FieldError::new("user_id", NO_NUL));
    }
    if groups.iter().any(|g| g.contains('\0')) {
        errors.push(FieldError::new("groups", NO_NUL));
    }
    if errors.is_empty() {
        Ok(user_id.to_string())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
