//! The WebSocket endpoint: token from `Sec-WebSocket-Protocol`, `?token=` or
//! a cookie; the seeds' URL forms (`/ws/<id>`, `/ws/<id>:<anything>`,
//! `/websocket/<id>`, `?uid=`); the subprotocol echo browsers require; and
//! the `Origin` checks that keep other sites from using the token cookie.

use super::admission::admit;
use super::frame_guard::FrameGuard;
use crate::actors::session::{Rejected, Session, SessionParams};
use crate::auth::{Claims, TokenError};
use crate::domain::Cursor;
use crate::metrics::METRICS;
use crate::protocol::codes::{close, error};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub const SUBPROTOCOL: &str = "herald.v1";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(connect))
        .route("/ws/{tail}", web::get().to(connect_legacy))
        .route("/websocket/{id}", web::get().to(connect_legacy));
}

#[derive(Debug, Default, Deserialize)]
pub struct WsQuery {
    id: Option<String>,
    uid: Option<String>,
    token: Option<String>,
    since: Option<String>,
    heartbeat: Option<String>,
}

/// The values a client offered in `Sec-WebSocket-Protocol`.
fn offered_protocols(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Where the token came from decides what the handshake must echo.
struct Credentials {
    token: Option<String>,
    /// The subprotocol to answer with: `herald.v1` when offered, else the
    /// offered token itself (seed 002 offers only `[token]`).
    echo: Option<String>,
    /// The browser attached the token by itself (the cookie), so any page
    /// the user visits can present it: the origin must be checked.
    ambient: bool,
}

fn credentials(req: &HttpRequest, query: &WsQuery, cookie_name: &str) -> Credentials {
    let offered = offered_protocols(req);
    let has_v1 = offered.iter().any(|p| p == SUBPROTOCOL);
    let from_protocol = offered.iter().find(|p| *p != SUBPROTOCOL).cloned();
    let echo = if has_v1 {
        Some(SUBPROTOCOL.to_string())
    } else {
        from_protocol.clone()
    };
    let explicit = from_protocol.or_else(|| query.token.clone());
    let ambient = explicit.is_none();
    let token = explicit.or_else(|| req.cookie(cookie_name).map(|c| c.value().to_string()));
    Credentials {
        ambient: ambient && token.is_some(),
        token,
        echo,
    }
}

async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let legacy = query.id.is_none() && query.uid.is_some();
    let user_id = query.id.clone().or_else(|| query.uid.clone());
    start(req, stream, query.into_inner(), user_id, legacy, state).await
}

async fn connect_legacy(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    // Seed 000 appends ":<timestamp>" to make each URL unique.
    let user_id = path.split(':').next().unwrap_or_default().to_string();
    start(req, stream, query.into_inner(), Some(user_id), true, state).await
}

async fn start(
    req: HttpRequest,
    stream: web::Payload,
    query: WsQuery,
    user_id: Option<String>,
    legacy: bool,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let settings = &state.settings;
    let creds = credentials(&req, &query, &settings.token_cookie);
    admit(&req, creds.ambient, &state)?;
    if let Some(token) = &creds.token {
        state.keys.ensure_key(token).await;
    }
    let echo: Vec<&str> = creds.echo.as_deref().into_iter().collect();
    let verdict = verify(&state, creds.token.as_deref(), user_id.as_deref());
    // Every socket reads through the guard, a rejected one too: no client
    // can make herald buffer more than a frame's worth.
    let oversized = Arc::new(AtomicBool::new(false));
    let stream = FrameGuard::new(stream, settings.max_frame_bytes, oversized.clone());
    let claims = match verdict {
        Ok(claims) => claims,
        Err(rejected) => {
            return ws::WsResponseBuilder::new(rejected, &req, stream)
                .protocols(&echo)
                .frame_size(settings.max_frame_bytes)
                .start()
        }
    };
    let requested = query.heartbeat.as_deref().and_then(|h| h.parse().ok());
    let interval = settings.heartbeat_for(requested);
    let params = SessionParams {
        user_id: claims.sub,
        groups: claims.groups,
        token_exp: claims.exp,
        legacy,
        since: query
            .since
            .as_deref()
            .and_then(|s| s.parse().ok())
            .map(Cursor),
        interval,
        timeout: settings.timeout_for(interval),
        frames_per_second: settings.max_frames_per_second,
        max_frame_bytes: settings.max_frame_bytes,
        oversized,
    };
    ws::WsResponseBuilder::new(Session::new(params, state.session_deps()), &req, stream)
        .protocols(&echo)
        .frame_size(settings.max_frame_bytes)
        .start()
}

/// The token's claims, or the socket that tells the client why not (the
/// upgrade is accepted so that a browser can read the close code).
fn verify(
    state: &AppState,
    token: Option<&str>,
    user_id: Option<&str>,
) -> Result<Claims, Rejected> {
    let rejected = |code: u16, error_code: &'static str, message: String| {
        tracing::debug!(code, error_code, ?message, "websocket rejected");
        METRICS
            .rejected_connects
            .with_label_values(&[error_code])
            .inc();
        Rejected {
            code,
            error_code,
            message,
        }
    };
    let Some(token) = token else {
        return Err(rejected(
            close::UNAUTHORIZED,
            error::MISSING_TOKEN,
            "send a token in Sec-WebSocket-Protocol, ?token= or the cookie".into(),
        ));
    };
    match user_id.filter(|id| !id.is_empty()) {
        Some(id) => state.keys.verify_for(token, id),
        None => state.keys.verify(token),
    }
    .map_err(|e| match e {
        TokenError::WrongUser => rejected(
            close::FORBIDDEN,
            error::FORBIDDEN,
            "the token belongs to another user".into(),
        ),
        TokenError::Expired => rejected(
            close::UNAUTHORIZED,
            error::TOKEN_EXPIRED,
            "the token has expired".into(),
        ),
        e => rejected(close::UNAUTHORIZED, error::UNAUTHORIZED, e.to_string()),
    })
}
