//! The user REST API: my inbox (or my archive), unread count, batched
//! receipts; what one does to one announcement (read, confirm, archive) is
//! in `inbox`. The user is the `sub` of the bearer JWT; nobody reads
//! another user's inbox.

mod inbox;

use super::auth::UserAuth;
use crate::actors::messages::Record;
use crate::db::inbox::InboxFilter;
use crate::db::receipts::{ReceiptEvent, ReceiptKind};
use crate::db::{self};
use crate::domain::{AnnouncementId, Cursor};
use crate::error::AppError;
use crate::protocol::AnnouncementView;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The user API's routes, under `/api/me`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/inbox", web::get().to(list))
        .route("/inbox/read-all", web::post().to(inbox::read_all))
        .route("/inbox/{id}/read", web::post().to(inbox::read_one))
        .route("/inbox/{id}/confirm", web::post().to(inbox::confirm_one))
        .route("/inbox/{id}/archive", web::post().to(inbox::archive))
        .route("/inbox/{id}/unarchive", web::post().to(inbox::unarchive))
        .route("/unread-count", web::get().to(unread_count))
        .route("/receipts", web::post().to(receipts));
}

#[derive(Debug, Deserialize)]
struct InboxQuery {
    unread: Option<bool>,
    archived: Option<bool>,
    limit: Option<i64>,
    before: Option<i64>,
}

/// The inbox, or with `archived=true` the archived announcements, newest
/// first.
async fn list(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    query: web::Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let filter = InboxFilter {
        unread_only: query.unread.unwrap_or(false),
        archived: query.archived.unwrap_or(false),
    };
    let before = query.before.map(Cursor);
    let items = db::run(&state.pool, move |conn| {
        db::inbox::inbox(
            conn,
            &claims.sub,
            &claims.groups,
            filter,
            before,
            limit,
            db::now_ms(),
        )
    })
    .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().and_then(|i| i.announcement.cursor))
        .flatten();
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|item| {
            let view = AnnouncementView::from(&item.announcement).confirmed(item.confirmed);
            let mut v = serde_json::to_value(view).unwrap_or_default();
            v["read"] = json!(item.read);
            v["archived"] = json!(item.archived);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_before": next_before })))
}

async fn unread_count(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let unread = db::run(&state.pool, move |conn| {
        db::inbox::unread_count(conn, &claims.sub, &claims.groups, db::now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "unread": unread })))
}

#[derive(Debug, Deserialize)]
struct ReceiptsInput {
    #[serde(default)]
    delivered: Vec<AnnouncementId>,
    #[serde(default)]
    read: Vec<AnnouncementId>,
    #[serde(default)]
    confirmed: Vec<AnnouncementId>,
}

/// Receipts without a socket (an event-stream client): the same batching
/// writer and rules as `ack`, `read` and `confirm` frames; reads and
/// confirmations reach every tab.
async fn receipts(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    body: web::Json<ReceiptsInput>,
) -> Result<HttpResponse, AppError> {
    let max = crate::protocol::MAX_IDS_PER_FRAME;
    for (field, ids) in [
        ("delivered", &body.delivered),
        ("read", &body.read),
        ("confirmed", &body.confirmed),
    ] {
        if ids.len() > max {
            return Err(AppError::Validation(vec![crate::domain::FieldError {
                field: field.into(),
                message: format!("at most {max} ids"),
            }]));
        }
    }
    let groups: Arc<[String]> = claims.groups.into();
    let receipt = |announcement_id: &AnnouncementId, kind| ReceiptEvent {
        announcement_id: *announcement_id,
        user_id: claims.sub.clone(),
        groups: groups.clone(),
        kind,
    };
    let events: Vec<ReceiptEvent> = body
        .delivered
        .iter()
        .map(|id| receipt(id, ReceiptKind::Delivered))
        .chain(body.read.iter().map(|id| receipt(id, ReceiptKind::Read)))
        .chain(
            body.confirmed
                .iter()
                .map(|id| receipt(id, ReceiptKind::Confirmed)),
        )
        .collect();
    let queued = events.len();
    if queued > 0 {
        state.receipts.do_send(Record {
            events,
            origin: None,
        });
    }
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}
