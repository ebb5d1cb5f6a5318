//! The admin's view of outbound webhooks: deliveries by status, page by
//! page, and a manual retry of one.

use super::auth::AdminAuth;
use crate::db::deliveries::{Delivery, RetryOutcome};
use crate::db::{self};
use crate::domain::rfc3339;
use crate::domain::webhook::DeliveryStatus;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/deliveries", web::get().to(list))
        .route("/webhooks/deliveries/{id}/retry", web::post().to(retry));
}

/// One delivery; the endpoint without any password it carries.
fn view(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "type": d.event_type,
        "announcement_id": d.announcement(),
        "seq": d.seq,
        "endpoint": db::redacted(&d.endpoint),
        "status": d.status,
        "attempts": d.attempts,
        "created_at": rfc3339(d.created_at),
        "next_attempt_at": (d.status == DeliveryStatus::Pending.as_str())
            .then(|| rfc3339(d.next_attempt_at)),
        "last_attempt_at": d.last_attempt_at.map(rfc3339),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "delivered_at": d.delivered_at.map(rfc3339),
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

/// Newest first; `next_before` is the `before` of the next page, null on
/// the last one.
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
    let items: Vec<Value> = items.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_before": next_before })))
}

/// Makes a failed (or pending) delivery due now, with the same event id and
/// body; 409 for one already delivered.
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
            Ok(HttpResponse::Accepted().json(json!({ "id": id, "status": "pending" })))
        }
        RetryOutcome::AlreadyDelivered => Err(AppError::Conflict {
            code: "already_delivered",
            message: format!("delivery {id} was accepted by its receiver already"),
        }),
        RetryOutcome::NotFound => Err(AppError::NotFound(format!("delivery {id}"))),
    }
}
