//! `GET /sse`: announcements as Server-Sent Events, for networks that refuse
//! WebSocket. The token comes in `Authorization`, `?token=` or the cookie;
//! `Last-Event-ID` (an EventSource sends it by itself when it reconnects)
//! overrides `?since=`. Everything that can be refused is refused before the
//! stream starts, as a JSON error, so an EventSource does not retry it.

use super::admission::admit;
use super::auth::bearer;
use crate::actors::session::effects::CoreParams;
use crate::actors::session::sse::{Backlog, SseParams, SseSession, CHANNEL_EVENTS};
use crate::actors::session::SessionDeps;
use crate::auth::{Claims, TokenError};
use crate::domain::Cursor;
use crate::error::AppError;
use crate::metrics::METRICS;
use crate::state::AppState;
use actix::Actor;
use actix_web::{web, HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse::Sse;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The event stream's route, under `/sse`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(stream));
}

#[derive(Debug, Default, Deserialize)]
pub struct SseQuery {
    id: Option<String>,
    token: Option<String>,
    since: Option<String>,
    heartbeat: Option<String>,
}

/// The token and whether the browser attached it by itself (the cookie).
fn token(req: &HttpRequest, query: &SseQuery, cookie_name: &str) -> Option<(String, bool)> {
    let explicit = bearer(req)
        .map(str::to_string)
        .or_else(|| query.token.clone());
    match explicit {
        Some(token) => Some((token, false)),
        None => req
            .cookie(cookie_name)
            .map(|c| (c.value().to_string(), true)),
    }
}

fn verify(state: &AppState, token: &str, user_id: Option<&str>) -> Result<Claims, AppError> {
    match user_id.filter(|id| !id.is_empty()) {
        Some(id) => state.keys.verify_for(token, id),
        None => state.keys.verify(token),
    }
    .map_err(|e| match e {
        TokenError::WrongUser => AppError::Forbidden("the token belongs to another user".into()),
        TokenError::Expired => AppError::Unauthorized("the token has expired".into()),
        other => AppError::Unauthorized(other.to_string()),
    })
}

/// Where the replay starts: `Last-Event-ID` when the browser sent one.
fn since(req: &HttpRequest, query: &SseQuery) -> Option<Cursor> {
    req.headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| query.since.as_deref().and_then(|s| s.parse().ok()))
        .map(Cursor)
}

async fn stream(
    req: HttpRequest,
    query: web::Query<SseQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let settings = &state.settings;
    let (token, ambient) = token(&req, &query, &settings.token_cookie).ok_or_else(|| {
        AppError::Unauthorized(
            "send a token as Authorization: Bearer, ?token= or the cookie".into(),
        )
    })?;
    admit(&req, ambient, &state)?;
    state.keys.ensure_key(&token).await;
    let claims = verify(&state, &token, query.id.as_deref()).inspect_err(|e| {
        let reason = if matches!(e, AppError::Forbidden(_)) {
            "forbidden"
        } else {
            "unauthorized"
        };
        METRICS.rejected_connects.with_label_values(&[reason]).inc();
    })?;
    let interval = settings.heartbeat_for(query.heartbeat.as_deref().and_then(|h| h.parse().ok()));
    let (events, received) = mpsc::channel(CHANNEL_EVENTS);
    let (admitted, answer) = oneshot::channel();
    let backlog = Arc::new(Backlog::default());
    let params = SseParams {
        core: core_params(&claims, since(&req, &query), interval, settings),
        interval,
        max_buffered: settings.max_queued_bytes,
        events,
        backlog: backlog.clone(),
        admitted,
    };
    let deps: Arc<SessionDeps> = state.session_deps();
    SseSession::new(params, deps).start();
    if !answer.await.unwrap_or(false) {
        METRICS
            .rejected_connects
            .with_label_values(&["too_many_sessions"])
            .inc();
        return Err(AppError::TooManyRequests(
            "this user has the most sessions allowed open".into(),
        ));
    }
    let body = futures_util::stream::unfold(received, move |mut received| {
        let backlog = backlog.clone();
        async move {
            let (event, len) = received.recv().await?;
            backlog.taken(len);
            Some((Ok::<_, Infallible>(event), received))
        }
    });
    Ok(Sse::from_stream(body)
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .respond_to(&req)
        .map_into_boxed_body())
}

fn core_params(
    claims: &Claims,
    since: Option<Cursor>,
    interval: std::time::Duration,
    settings: &crate::config::Settings,
) -> CoreParams {
    CoreParams {
        id: crate::actors::session::next_session_id(),
        user_id: claims.sub.as_str().into(),
        groups: claims.groups.clone().into(),
        token_exp: claims.exp,
        legacy: false,
        since,
        heartbeat_ms: interval.as_millis() as u64,
        frames_per_second: settings.max_frames_per_second,
        max_frame_bytes: settings.max_frame_bytes,
    }
}
