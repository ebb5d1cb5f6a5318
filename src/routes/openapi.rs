//! The API document, `GET /api/openapi.json`: OpenAPI 3.1, generated from
//! the `#[utoipa::path]` annotation beside each REST handler and from the
//! types the handlers take and answer (`ToSchema`, `IntoParams`), plus the
//! error shape and the two security schemes. Served without a token.
//!
//! The REST surface is the admin API (`/api/announcements…`, `/api/presence…`,
//! `/api/tokens`), the user API (`/api/me/…`), `/healthz`, `/readyz`,
//! `/metrics` and this document. The WebSocket (`/ws`…), the event stream
//! (`/sse`), the demo pages and `herald.js` are not REST and stay out.
//!
//! A NEW REST ROUTE NEEDS TWO THINGS, or `tests/api/openapi.rs` fails:
//! 1. `#[utoipa::path(<method>, path = "<full path>", tag = .., security(..),
//!    params(..), request_body = .., responses(..))]` right above its
//!    handler, the path exactly as registered (scope prefix included, the
//!    same `{name}` for each path segment), and `ToSchema` / `IntoParams` on
//!    the types it takes and answers (not copies of them);
//! 2. its handler in `paths(...)` below.
//!
//! Every operation with a `security` requirement also gets the answers any
//! such request can get (401, 500, 503; 400 and 413 with a body), added
//! here by `CommonAnswers`, so annotations list only their own.

use super::{admin, health, me, recipients, webhooks};
use crate::error::ErrorBody;
use actix_web::HttpResponse;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Scheduled announcements pushed to users in real time and kept in their inboxes. \
            Errors answer `{\"error\": {\"code\", \"message\", \"field\"?, \"details\"?}}` (`ErrorBody`). \
            Live delivery is over the WebSocket `/ws` or the event stream `/sse` (see the README)."
    ),
    paths(
        admin::create,
        admin::list,
        admin::get,
        admin::patch,
        admin::withdraw,
        admin::audience,
        recipients::list,
        webhooks::list,
        webhooks::retry,
        admin::presence,
        admin::user_presence,
        admin::mint_token,
        me::list,
        me::unread_count,
        me::inbox::read_one,
        me::inbox::read_all,
        me::inbox::confirm_one,
        me::inbox::archive,
        me::inbox::unarchive,
        me::receipts,
        health::healthz,
        health::readyz,
        health::metrics,
        document,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes, &CommonAnswers),
    tags(
        (name = "admin", description = "The admin API: `Authorization: Bearer <admin token>`. Never answers other origins (no CORS)."),
        (name = "user", description = "The user API: `Authorization: Bearer <user JWT>` (herald-minted HS256, or the identity provider's); the user is the token's subject. Answers the origins in `--allowed-origins` (CORS)."),
        (name = "operations", description = "Health, readiness, metrics and this document: no token."),
    )
)]
pub struct ApiDoc;

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        content_type = "application/json")))]
pub async fn document() -> HttpResponse {
    static DOCUMENT: LazyLock<String> =
        LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// The two bearer schemes the annotations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
        };
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                bearer("The admin token (`--admin-token`, or the one herald generated and printed on standard output at first start).")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                bearer("A user's JWT: minted by `POST /api/tokens` (HS256), or signed by the identity provider (`--jwt-public-key`, `--jwks-url`).")
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers every token-guarded operation can give besides its own.
struct CommonAnswers;

impl CommonAnswers {
    fn add(operation: &mut Operation) {
        if operation.security.as_ref().is_none_or(Vec::is_empty) {
            return;
        }
        let mut answers = vec![
            ("401", "The token is missing or not valid"),
            ("500", "Internal error"),
            ("503", "The database is unavailable; try again shortly"),
        ];
        if operation.request_body.is_some() {
            answers.push(("400", "The body is not JSON or not the expected shape"));
            answers.push(("413", "The body is larger than `--max-body-bytes`"));
        }
        for (status, description) in answers {
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| error_answer(description).into());
        }
    }
}

fn error_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

impl Modify for CommonAnswers {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            operations.into_iter().flatten().for_each(Self::add);
        }
    }
}
