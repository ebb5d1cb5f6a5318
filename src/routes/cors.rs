//! Cross-origin access for what a user's browser calls from the app's own
//! origin: the user API (`/api/me/*`) and the event stream (`/sse`). Only
//! origins in `--allowed-origins` get CORS headers; the admin API never
//! does. Tokens are bearer tokens, so no credentials mode is needed.

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use std::sync::Arc;

/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECS: usize = 3600;

/// CORS for the user API and the event stream. A request from another
/// origin goes through without CORS headers (the browser then refuses to
/// hand the answer to the page); it is not an error of the server's.
pub fn user_api(allowed: &[String]) -> Cors {
    let allowed: Arc<[String]> = allowed.into();
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| allowed.iter().any(|a| a == o))
        })
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(MAX_AGE_SECS)
        .block_on_origin_mismatch(false)
}

/// A preflight that was answered is `204 No Content` (actix-cors says 200).
pub async fn preflight_no_content(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let preflight = req.method() == Method::OPTIONS;
    let mut res = next.call(req).await?;
    if preflight
        && res.status() == StatusCode::OK
        && res
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        *res.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(res)
}
