//! HTTP routes: the WebSocket endpoint (and its legacy URL forms), the admin
//! and user REST APIs, health, and the embedded demo pages.

pub mod admin;
pub mod admin_views;
pub mod admission;
pub mod auth;
pub mod cors;
pub mod frame_guard;
pub mod health;
pub mod me;
pub mod middleware;
pub mod openapi;
pub mod path;
pub mod recipients;
pub mod sse;
pub mod static_files;
pub mod webhooks;
pub mod ws;

use crate::error::AppError;
use actix_web::{error::JsonPayloadError, web, HttpRequest};

/// Registers every route on an app; `allowed_origins` may call the user API
/// and the event stream from other origins (CORS).
pub fn configure(cfg: &mut web::ServiceConfig, allowed_origins: &[String]) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .configure(ws::configure)
        .service(
            web::scope("/sse")
                .wrap(cors::user_api(allowed_origins))
                // Outside the CORS middleware, which answers preflights itself.
                .wrap(actix_web::middleware::from_fn(cors::preflight_no_content))
                .configure(sse::configure),
        )
        .service(
            web::scope("/api/me")
                .wrap(cors::user_api(allowed_origins))
                // Outside the CORS middleware, which answers preflights itself.
                .wrap(actix_web::middleware::from_fn(cors::preflight_no_content))
                .configure(me::configure),
        )
        // Before the `/api` scope, which would otherwise answer it 404.
        .route("/api/openapi.json", web::get().to(openapi::document))
        .service(
            web::scope("/api")
                .configure(admin::configure)
                .configure(recipients::configure)
                .configure(webhooks::configure),
        )
        .configure(static_files::configure);
}

/// Malformed or oversized JSON bodies answer in the API's error format.
pub fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let app = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            AppError::PayloadTooLarge("the request body is too large".into())
        }
        JsonPayloadError::ContentType => AppError::bad_request(
            "unsupported_content_type",
            "send JSON with Content-Type: application/json",
            None,
        ),
        JsonPayloadError::Deserialize(e) => {
            AppError::bad_request("invalid_json", format!("the body is not valid: {e}"), None)
        }
        other => AppError::bad_request("invalid_body", other.to_string(), None),
    };
    app.into()
}

/// Malformed query strings answer in the API's error format.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    AppError::bad_request("invalid_query", err.to_string(), None).into()
}
