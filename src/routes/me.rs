//! The user REST API: my inbox, unread count, mark read. The user is the
//! `sub` of the bearer JWT; nobody reads another user's inbox.

use super::auth::UserAuth;
use crate::actors::messages::{ReadSync, Record};
use crate::db::receipts::{ReceiptEvent, ReceiptKind};
use crate::db::{self};
use crate::domain::{AnnouncementId, Cursor};
use crate::error::{AppError, ErrorBody};
use crate::protocol::AnnouncementView;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The user API's routes, under `/api/me`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/inbox", web::get().to(inbox))
        .route("/inbox/read-all", web::post().to(read_all))
        .route("/inbox/{id}/read", web::post().to(read_one))
        .route("/unread-count", web::get().to(unread_count))
        .route("/receipts", web::post().to(receipts));
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InboxQuery {
    /// Only the unread ones.
    unread: Option<bool>,
    /// 1 to 500, default 50.
    limit: Option<i64>,
    /// The previous page's `next_before` (a cursor).
    before: Option<i64>,
}

/// An announcement in my inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    #[serde(flatten)]
    announcement: AnnouncementView,
    read: bool,
}

/// A page of my inbox, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<InboxItem>,
    /// `before` for the next page; null on the last one.
    next_before: Option<Cursor>,
}

/// My inbox: what was published for me and has not expired, newest first.
#[utoipa::path(get, path = "/api/me/inbox", tag = "user",
    security(("user_jwt" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "A page", body = InboxPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
    ))]
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
    let items = items
        .iter()
        .map(|item| InboxItem {
            announcement: AnnouncementView::from(&item.announcement),
            read: item.read,
        })
        .collect();
    Ok(HttpResponse::Ok().json(InboxPage { items, next_before }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    unread: i64,
}

/// How many announcements in my inbox I have not read.
#[utoipa::path(get, path = "/api/me/unread-count", tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The count", body = UnreadCount)))]
async fn unread_count(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let unread = db::run(&state.pool, move |conn| {
        db::receipts::unread_count(conn, &claims.sub, &claims.groups, db::now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(UnreadCount { unread }))
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
    let outcome = db::run(&state.pool, move |conn| {
        db::receipts::record(conn, &events, db::now_ms())
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

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    id: AnnouncementId,
    /// Always true.
    read: bool,
}

/// Marks one announcement read, here and in my other tabs.
#[utoipa::path(post, path = "/api/me/inbox/{id}/read", tag = "user",
    security(("user_jwt" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "Read", body = MarkedRead),
        (status = 404, description = "Not in my inbox", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(MarkedRead { id, read: true }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedAll {
    /// How many were unread.
    marked: usize,
}

/// Marks everything in my inbox read.
#[utoipa::path(post, path = "/api/me/inbox/read-all", tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "Read", body = MarkedAll)))]
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
    Ok(HttpResponse::Ok().json(MarkedAll { marked }))
}

/// `POST /api/me/receipts` body: at most 1000 ids in each list.
#[derive(Debug, Deserialize, ToSchema)]
struct ReceiptsInput {
    /// Announcements this client received.
    #[serde(default)]
    delivered: Vec<AnnouncementId>,
    /// Announcements the user read.
    #[serde(default)]
    read: Vec<AnnouncementId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// Receipts queued for writing.
    queued: usize,
}

/// Receipts without a socket (an event-stream client): the same batching
/// writer and rules as `ack` and `read` frames; reads reach every tab.
#[utoipa::path(post, path = "/api/me/receipts", tag = "user",
    security(("user_jwt" = [])),
    request_body = ReceiptsInput,
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 422, description = "Too many ids", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
