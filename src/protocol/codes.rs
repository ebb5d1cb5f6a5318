//! The codes clients act on: WebSocket close codes and the `code` of
//! `error` frames. One home, so that a code is spelled the same everywhere
//! and the README's table can be checked against one list.

/// WebSocket close codes (RFC 6455 and herald's 4000 range).
pub mod close {
    pub const NORMAL: u16 = 1000;
    /// Server shutting down: reconnect after the jittered delay in the reason.
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455 §7.1.5: the peer's close frame carried no code.
    pub const NO_STATUS: u16 = 1005;
    /// The connection ended without a close frame.
    pub const ABNORMAL: u16 = 1006;
    pub const TOO_BIG: u16 = 1009;
    /// Try again later: the server could not register the session or load
    /// its announcements (storage unavailable); reconnect after a delay.
    pub const TRY_AGAIN: u16 = 1013;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// Bad, missing or expired token: do not retry with the same token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// A valid token of another user.
    pub const FORBIDDEN: u16 = 4003;
    pub const BAD_INPUT: u16 = 4008;
    /// Too many sessions, or too slow a reader: reconnect later.
    pub const TOO_MANY: u16 = 4029;
}

/// The `code` of an `error` frame.
pub mod error {
    pub const BAD_JSON: &str = "bad_json";
    pub const BAD_FRAME: &str = "bad_frame";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const TOO_MANY_SESSIONS: &str = "too_many_sessions";
    pub const TOO_SLOW: &str = "too_slow";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const BAD_TOKEN: &str = "bad_token";
    pub const MISSING_TOKEN: &str = "missing_token";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const STORAGE_UNAVAILABLE: &str = "storage_unavailable";
}
