//! The admin's view of outbound webhooks: deliveries by status, page by
//! page, and a manual retry of one.

use super::auth::AdminAuth;
use crate::db::deliveries::{Delivery, RetryOutcome};
use crate::db::{self};
use crate::domain::webhook::DeliveryStatus;
use crate::domain::{rfc3339, AnnouncementId};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/deliveries", web::get().to(list))
        .route("/webhooks/deliveries/{id}/retry", web::post().to(retry));
}

/// One event's delivery to one endpoint (the endpoint without any password
/// it carries); times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    id: i64,
    /// The `webhook-id` header, the same on every attempt.
    event_id: String,
    /// `announcement.published`, `announcement.retracted`,
    /// `announcement.expired` or `receipts`.
    #[serde(rename = "type")]
    event_type: String,
    announcement_id: AnnouncementId,
    /// The event's place among its announcement's events.
    seq: i64,
    endpoint: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: i64,
    created_at: String,
    /// Set while pending.
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    /// The receiver's last HTTP status.
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<String>,
}

fn view(d: &Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id,
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        announcement_id: d.announcement(),
        seq: d.seq,
        endpoint: db::redacted(&d.endpoint),
        status: d.status.clone(),
        attempts: d.attempts,
        created_at: rfc3339(d.created_at),
        next_attempt_at: (d.status == DeliveryStatus::Pending.as_str())
            .then(|| rfc3339(d.next_attempt_at)),
        last_attempt_at: d.last_attempt_at.map(rfc3339),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        delivered_at: d.delivered_at.map(rfc3339),
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryView>,
    /// `before` for the next page; null on the last one.
    next_before: Option<i64>,
}

/// A delivery made due again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    id: i64,
    /// Always `pending`.
    status: &'static str,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `pending`, `failed` or `delivered`; all when absent.
    status: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<i64>,
    /// The previous page's `next_before` (a delivery id).
    before: Option<i64>,
}

/// Webhook deliveries, newest first, page by page.
#[utoipa::path(get, path = "/api/webhooks/deliveries", tag = "admin",
    security(("admin_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = DeliveryPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
    ))]
async fn list(
    _: AdminAuth,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                "status must be pending, failed or delivered",
                Some("status"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let before = query.before;
    let items = db::run(&state.pool, move |conn| {
        db::deliveries::list(conn, status, before, limit)
    })
    .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|d| d.id))
        .flatten();
    let items = items.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(DeliveryPage { items, next_before }))
}

/// Makes a failed (or pending) delivery due now, with the same event id and
/// body; 409 for one already delivered.
#[utoipa::path(post, path = "/api/webhooks/deliveries/{id}/retry", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Due now", body = Retried),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "Already delivered", body = ErrorBody),
    ))]
async fn retry(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let raw = path.into_inner();
    let id: i64 = raw
        .parse()
        .map_err(|_| AppError::NotFound(format!("delivery {raw}")))?;
    let outcome = db::run(&state.pool, move |conn| {
        db::deliveries::retry(conn, id, db::now_ms())
    })
    .await?;
    match outcome {
        RetryOutcome::Scheduled => {
            state.outbox.ring();
            tracing::info!(delivery_id = id, "webhook delivery retried by the admin");
            Ok(HttpResponse::Accepted().json(Retried {
                id,
                status: "pending",
            }))
        }
        RetryOutcome::AlreadyDelivered => Err(AppError::Conflict {
            code: "already_delivered",
            message: format!("delivery {id} was accepted by its receiver already"),
        }),
        RetryOutcome::NotFound => Err(AppError::NotFound(format!("delivery {id}"))),
    }
}
