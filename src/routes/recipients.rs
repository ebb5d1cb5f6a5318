//! `GET /api/announcements/{id}/recipients?state=&limit=&after=` (admin):
//! who delivered, read or confirmed an announcement, or who is still
//! pending, page by page in user id order.

use super::auth::AdminAuth;
use crate::db::recipients::{Recipient, RecipientState};
use crate::db::{self};
use crate::domain::{rfc3339, AnnouncementId};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

/// Recipients per page unless `limit` says otherwise, and at most.
const PAGE: i64 = 500;
const MAX_PAGE: i64 = 1_000;

#[derive(Debug, Deserialize)]
struct RecipientsQuery {
    state: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/announcements/{id}/recipients", web::get().to(list));
}

fn parse_id(raw: &str) -> Result<AnnouncementId, AppError> {
    raw.parse()
        .map(AnnouncementId)
        .map_err(|_| AppError::NotFound(format!("announcement {raw}")))
}

fn invalid(message: &str, field: &str) -> AppError {
    AppError::bad_request("invalid_query", message, Some(field))
}

fn item(r: &Recipient) -> Value {
    json!({
        "user_id": r.user_id,
        "delivered_at": r.delivered_at.map(rfc3339),
        "read_at": r.read_at.map(rfc3339),
        "confirmed_at": r.confirmed_at.map(rfc3339),
    })
}

/// One page: `next_after` is the `after` of the next page, null on the
/// last one. `state` defaults to `pending`.
async fn list(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<RecipientsQuery>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let query = query.into_inner();
    let wanted = match query.state.as_deref() {
        None | Some("") => RecipientState::Pending,
        Some(s) => RecipientState::parse(s).ok_or_else(|| {
            invalid(
                "state must be delivered, read, confirmed or pending",
                "state",
            )
        })?,
    };
    let limit = query.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let after = query.after;
    if after.as_deref().is_some_and(|a| a.contains('\0')) {
        // No stored user id holds NUL, and PostgreSQL refuses it as a parameter.
        return Err(invalid("after must not contain NUL characters", "after"));
    }
    let page = db::run(&state.pool, move |conn| {
        db::recipients::page(conn, id, wanted, after.as_deref(), limit)
    })
    .await?;
    let users = page.ok_or_else(|| AppError::NotFound(format!("announcement {id}")))?;
    let next_after = (users.len() as i64 == limit)
        .then(|| users.last().map(|r| r.user_id.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "state": wanted.as_str(),
        "items": users.iter().map(item).collect::<Vec<_>>(),
        "next_after": next_after,
    })))
}
