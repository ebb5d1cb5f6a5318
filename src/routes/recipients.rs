//! `GET /api/announcements/{id}/recipients?state=&limit=&after=` (admin):
//! who delivered, read or confirmed an announcement, or who is still
//! pending, page by page in user id order.

use super::auth::AdminAuth;
use super::path::announcement_id as parse_id;
use crate::db::recipients::{Recipient, RecipientState};
use crate::db::{self};
use crate::domain::{rfc3339, AnnouncementId};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Recipients per page unless `limit` says otherwise, and at most.
const PAGE: i64 = 500;
const MAX_PAGE: i64 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientsQuery {
    /// `delivered`, `read`, `confirmed` or `pending` (the default): targeted
    /// and not confirmed (not read, when no confirmation is asked).
    state: Option<String>,
    /// 1 to 1000, default 500.
    limit: Option<i64>,
    /// The previous page's `next_after` (a user id).
    after: Option<String>,
}

/// One recipient and the times of what they did (RFC 3339 UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientItem {
    user_id: String,
    delivered_at: Option<String>,
    read_at: Option<String>,
    confirmed_at: Option<String>,
}

/// A page of recipients in user id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientsPage {
    id: AnnouncementId,
    state: &'static str,
    items: Vec<RecipientItem>,
    /// `after` for the next page; null on the last one.
    next_after: Option<String>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/announcements/{id}/recipients", web::get().to(list));
}

fn invalid(message: &str, field: &str) -> AppError {
    AppError::bad_request("invalid_query", message, Some(field))
}

fn item(r: &Recipient) -> RecipientItem {
    RecipientItem {
        user_id: r.user_id.clone(),
        delivered_at: r.delivered_at.map(rfc3339),
        read_at: r.read_at.map(rfc3339),
        confirmed_at: r.confirmed_at.map(rfc3339),
    }
}

/// Who received, read or confirmed an announcement, or who is still
/// pending, page by page; `pending` covers explicit users and the known
/// users of `all` and groups.
#[utoipa::path(get, path = "/api/announcements/{id}/recipients", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The announcement's id"), RecipientsQuery),
    responses(
        (status = 200, description = "A page", body = RecipientsPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 404, description = "No such announcement", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(RecipientsPage {
        id,
        state: wanted.as_str(),
        items: users.iter().map(item).collect(),
        next_after,
    }))
}
