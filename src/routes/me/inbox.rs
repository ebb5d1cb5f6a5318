//! What a user does to announcements in their inbox over REST: read one or
//! all, confirm one, archive or restore one. Each answers 404 for an id
//! outside the user's inbox (never existed, not for them, not current), and
//! each reaches the user's other tabs and streams on every node.

use crate::actors::messages::{ArchiveSync, ReadSync};
use crate::db::inbox::ArchiveOutcome;
use crate::db::receipts::{ReceiptEvent, ReceiptKind};
use crate::db::{self};
use crate::domain::AnnouncementId;
use crate::error::{AppError, ErrorBody};
use crate::routes::auth::UserAuth;
use crate::routes::path::announcement_id as parse_id;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

fn not_in_inbox(id: AnnouncementId) -> AppError {
    AppError::NotFound(format!("announcement {id} in your inbox"))
}

/// Writes read (or confirmed) receipts now, not batched: the caller waits
/// for the answer. Tells the user's open tabs, on every node. Answers how
/// many ids were accepted.
async fn mark(
    state: &AppState,
    user_id: String,
    groups: Vec<String>,
    ids: Vec<AnnouncementId>,
    kind: ReceiptKind,
) -> Result<usize, AppError> {
    let groups: Arc<[String]> = groups.into();
    let events: Vec<ReceiptEvent> = ids
        .iter()
        .map(|&announcement_id| ReceiptEvent {
            announcement_id,
            user_id: user_id.clone(),
            groups: groups.clone(),
            kind,
        })
        .collect();
    let outbox = state.outbox.clone();
    let outcome = db::run(&state.pool, move |conn| {
        db::receipts::record(conn, &events, db::now_ms(), &outbox)
    })
    .await?;
    let ids: Vec<AnnouncementId> = outcome.read.iter().map(|(id, _)| *id).collect();
    let confirmed: Vec<AnnouncementId> = outcome.confirmed.iter().map(|(id, _)| *id).collect();
    if !ids.is_empty() {
        state.fanout.read(ReadSync {
            user_id,
            ids,
            confirmed,
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
pub async fn read_one(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let accepted = mark(
        &state,
        claims.sub,
        claims.groups,
        vec![id],
        ReceiptKind::Read,
    )
    .await?;
    if accepted == 0 {
        return Err(not_in_inbox(id));
    }
    Ok(HttpResponse::Ok().json(MarkedRead { id, read: true }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Confirmed {
    id: AnnouncementId,
    /// Always true: confirming implies reading.
    read: bool,
    /// Always true.
    confirmed: bool,
}

/// "I have read and understood": confirms (and so reads) one announcement,
/// here and in my other tabs. Idempotent: the first confirmation's time
/// stays.
#[utoipa::path(post, path = "/api/me/inbox/{id}/confirm", tag = "user",
    security(("user_jwt" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "Confirmed", body = Confirmed),
        (status = 404, description = "Not in my inbox", body = ErrorBody),
    ))]
pub async fn confirm_one(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let kind = ReceiptKind::Confirmed;
    let accepted = mark(&state, claims.sub, claims.groups, vec![id], kind).await?;
    if accepted == 0 {
        return Err(not_in_inbox(id));
    }
    Ok(HttpResponse::Ok().json(Confirmed {
        id,
        read: true,
        confirmed: true,
    }))
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
pub async fn read_all(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let (user, groups) = (claims.sub.clone(), claims.groups.clone());
    let ids = db::run(&state.pool, move |conn| {
        db::inbox::unread_ids(conn, &user, &groups, db::now_ms())
    })
    .await?;
    let marked = if ids.is_empty() {
        0
    } else {
        mark(&state, claims.sub, claims.groups, ids, ReceiptKind::Read).await?
    };
    Ok(HttpResponse::Ok().json(MarkedAll { marked }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Archived {
    id: AnnouncementId,
    /// Whether it is archived now.
    archived: bool,
}

/// Hides one announcement from my inbox and unread count on every device
/// (idempotent); `GET /api/me/inbox?archived=true` lists it.
#[utoipa::path(post, path = "/api/me/inbox/{id}/archive", tag = "user",
    security(("user_jwt" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "Archived", body = Archived),
        (status = 404, description = "Not in my inbox", body = ErrorBody),
    ))]
pub async fn archive(
    auth: UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_archived(auth, state, path, true).await
}

/// Puts an archived announcement back in my inbox (idempotent).
#[utoipa::path(post, path = "/api/me/inbox/{id}/unarchive", tag = "user",
    security(("user_jwt" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "Back in the inbox", body = Archived),
        (status = 404, description = "Not in my inbox", body = ErrorBody),
    ))]
pub async fn unarchive(
    auth: UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_archived(auth, state, path, false).await
}

/// Archives or restores one announcement; the user's other tabs hear of
/// it only when something changed (a repeat is a quiet 200).
async fn set_archived(
    UserAuth(claims): UserAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    archived: bool,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let (user, groups) = (claims.sub.clone(), claims.groups);
    let outcome = db::run(&state.pool, move |conn| {
        db::inbox::set_archived(conn, &user, &groups, id, archived, db::now_ms())
    })
    .await?;
    match outcome {
        ArchiveOutcome::NotFound => return Err(not_in_inbox(id)),
        ArchiveOutcome::Unchanged => {}
        ArchiveOutcome::Changed => state.fanout.archive(ArchiveSync {
            user_id: claims.sub,
            ids: vec![id],
            archived,
            except: None,
        }),
    }
    Ok(HttpResponse::Ok().json(Archived { id, archived }))
}
