//! The user REST API: my inbox (or my archive), unread count, batched
//! receipts; what one does to one announcement (read, confirm, archive) is
//! in `inbox`. The user is the `sub` of the bearer JWT; nobody reads
//! another user's inbox.

pub(crate) mod inbox;

use super::auth::UserAuth;
use crate::actors::messages::Record;
use crate::db::inbox::InboxFilter;
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
    cfg.route("/inbox", web::get().to(list))
        .route("/inbox/read-all", web::post().to(inbox::read_all))
        .route("/inbox/{id}/read", web::post().to(inbox::read_one))
        .route("/inbox/{id}/confirm", web::post().to(inbox::confirm_one))
        .route("/inbox/{id}/archive", web::post().to(inbox::archive))
        .route("/inbox/{id}/unarchive", web::post().to(inbox::unarchive))
        .route("/unread-count", web::get().to(unread_count))
        .route("/receipts", web::post().to(receipts));
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InboxQuery {
    /// Only the unread ones.
    unread: Option<bool>,
    /// The archived ones instead of the inbox.
    archived: Option<bool>,
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
    archived: bool,
}

/// A page of my inbox, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<InboxItem>,
    /// `before` for the next page; null on the last one.
    next_before: Option<Cursor>,
}

/// My inbox (or, with `archived=true`, my archive): what was published for
/// me and has not expired, newest first.
#[utoipa::path(get, path = "/api/me/inbox", tag = "user",
    security(("user_jwt" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "A page", body = InboxPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
    ))]
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
    let items = items
        .iter()
        .map(|item| InboxItem {
            announcement: AnnouncementView::from(&item.announcement).confirmed(item.confirmed),
            read: item.read,
            archived: item.archived,
        })
        .collect();
    Ok(HttpResponse::Ok().json(InboxPage { items, next_before }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    unread: i64,
}

/// How many announcements in my inbox I have not read (archived ones do not
/// count).
#[utoipa::path(get, path = "/api/me/unread-count", tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The count", body = UnreadCount)))]
async fn unread_count(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let unread = db::run(&state.pool, move |conn| {
        db::inbox::unread_count(conn, &claims.sub, &claims.groups, db::now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(UnreadCount { unread }))
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
    /// Announcements the user confirmed (implies read).
    #[serde(default)]
    confirmed: Vec<AnnouncementId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// Receipts queued for writing.
    queued: usize,
}

/// Receipts without a socket (an event-stream client): the same batching
/// writer and rules as `ack`, `read` and `confirm` frames; reads and
/// confirmations reach every tab.
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
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
