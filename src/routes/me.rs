//! The user REST API: my inbox, unread count, mark read. The user is the
//! `sub` of the bearer JWT; nobody reads another user's inbox.

use super::auth::UserAuth;
use crate::actors::messages::{ReadSync, Record};
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
    cfg.route("/inbox", web::get().to(inbox))
        .route("/inbox/read-all", web::post().to(read_all))
        .route("/inbox/{id}/read", web::post().to(read_one))
        .route("/unread-count", web::get().to(unread_count))
        .route("/receipts", web::post().to(receipts));
}

#[derive(Debug, Deserialize)]
struct InboxQuery {
    unread: Option<bool>,
    limit: Option<i64>,
    before: Option<i64>,
}

async fn inbox(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    query: web::Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let unread_only = query.unread.unwrap_or(false);
    let before = query.before.map(Cursor);
    let items = db::run(&state.pool, move |conn| {
        db::receipts::inbox(
            conn,
            &claims.sub,
            &claims.groups,
            unread_only,
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
            let mut v = serde_json::to_value(AnnouncementView::from(&item.announcement))
                .unwrap_or_default();
            v["read"] = json!(item.read);
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
        db::receipts::unread_count(conn, &claims.sub, &claims.groups, db::now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "unread": unread })))
}

/// Writes read receipts now (not batched: the caller waits for the answer)
/// and tells the user's open tabs, on every node.
async fn mark_read(
    state: &AppState,
    user_id: String,
    groups: Vec<String>,
    ids: Vec<AnnouncementId>,
) -> Result<usize, AppError> {
    let groups: Arc<[String]> = groups.into();
    let events: Vec<ReceiptEvent> = ids
        .iter()
        .map(|&announcement_id| ReceiptEvent {
            announcement_id,
            user_id: user_id.clone(),
            groups: groups.clone(),
            kind: ReceiptKind::Read,
        })
        .collect();
    let outbox = state.outbox.clone();
    let outcome = db::run(&state.pool, move |conn| {
        db::receipts::record(conn, &events, db::now_ms(), &outbox)
    })
    .await?;
    let ids: Vec<AnnouncementId> = outcome.read.iter().map(|(id, _)| *id).collect();
    if !ids.is_empty() {
        state.fanout.read(ReadSync {
            user_id,
            ids,
            except: None,
        });
    }
    Ok(outcome.accepted)
}

async fn read_one(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path
        .parse()
        .map(AnnouncementId)
        .map_err(|_| AppError::NotFound(format!("announcement {path}")))?;
    let accepted = mark_read(&state, claims.sub, claims.groups, vec![id]).await?;
    if accepted == 0 {
        return Err(AppError::NotFound(format!(
            "announcement {id} in your inbox"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "id": id, "read": true })))
}

async fn read_all(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let (user, groups) = (claims.sub.clone(), claims.groups.clone());
    let ids = db::run(&state.pool, move |conn| {
        db::receipts::unread_ids(conn, &user, &groups, db::now_ms())
    })
    .await?;
    let marked = if ids.is_empty() {
        0
    } else {
        mark_read(&state, claims.sub, claims.groups, ids).await?
    };
    Ok(HttpResponse::Ok().json(json!({ "marked": marked })))
}

#[derive(Debug, Deserialize)]
struct ReceiptsInput {
    #[serde(default)]
    delivered: Vec<AnnouncementId>,
    #[serde(default)]
    read: Vec<AnnouncementId>,
}

/// Receipts without a socket (an event-stream client): the same batching
/// writer and rules as `ack` and `read` frames; reads reach every tab.
async fn receipts(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    body: web::Json<ReceiptsInput>,
) -> Result<HttpResponse, AppError> {
    let max = crate::protocol::MAX_IDS_PER_FRAME;
    for (field, ids) in [("delivered", &body.delivered), ("read", &body.read)] {
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
