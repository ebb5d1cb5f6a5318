//! Who may open a stream (a WebSocket or an event stream) before it starts:
//! the `Origin` rules and the connection rate per client address. Both
//! transports ask here, so the rules cannot drift apart.

use crate::error::AppError;
use crate::metrics::METRICS;
use crate::state::AppState;
use actix_web::HttpRequest;

/// What is refused before a stream starts: a foreign `Origin` (always with
/// an allow-list; with a token the browser attached by itself, the cookie,
/// unless it is herald's own origin), and an address past its connection
/// rate.
pub fn admit(req: &HttpRequest, ambient: bool, state: &AppState) -> Result<(), AppError> {
    let settings = &state.settings;
    if !origin_allowed(req, &settings.allowed_origins)
        || (ambient && !cookie_origin_allowed(req, &settings.allowed_origins))
    {
        return Err(refuse_origin(req));
    }
    if let Some(peer) = req.peer_addr() {
        let client = crate::proxy::client_ip(peer.ip(), req.headers(), &settings.trusted_proxies);
        if !state.connect_limiter.allow(client) {
            METRICS.rejected_connects.with_label_values(&["rate"]).inc();
            return Err(AppError::TooManyRequests(
                "too many new connections from your address; retry in a second".into(),
            ));
        }
    }
    Ok(())
}

fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match req.headers().get(actix_web::http::header::ORIGIN) {
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o)),
        // Non-browser clients send no Origin; cross-site hijacking needs one.
        None => true,
    }
}

/// A cookie goes with every request the browser makes to herald, whichever
/// page makes it; only herald's own pages and the allow-list may use it.
fn cookie_origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    allowed.iter().any(|a| a == origin) || is_own_origin(req, origin)
}

/// True when `origin` is this server as the client addressed it (`Host`).
fn is_own_origin(req: &HttpRequest, origin: &str) -> bool {
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let Some(host) = host else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

fn refuse_origin(req: &HttpRequest) -> AppError {
    let origin = req.headers().get(actix_web::http::header::ORIGIN);
    tracing::debug!(?origin, "websocket refused: origin not allowed");
    METRICS
        .rejected_connects
        .with_label_values(&["origin"])
        .inc();
    AppError::Forbidden("this Origin may not open a stream here".into())
}
