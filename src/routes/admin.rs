//! The admin REST API: announcements (create, list, get, patch, cancel or
//! retract, their audience page by page), presence, and user tokens for host
//! apps and the demo.

use super::auth::AdminAuth;
use crate::actors::messages::{GetPresence, GetUserSessions, Wake};
use crate::db::announcements::{ChangeOutcome, WithdrawOutcome};
use crate::db::recipients::ReceiptCounts;
use crate::db::{self};
use crate::domain::draft::{CreateInput, PatchInput};
use crate::domain::{
    rfc3339, Announcement, AnnouncementDraft, AnnouncementId, AnnouncementPatch, AudienceSummary,
    FullAnnouncement, Status,
};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/announcements")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/announcements/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(patch))
            .route(web::delete().to(withdraw)),
    )
    .route("/announcements/{id}/audience", web::get().to(audience))
    .route("/presence", web::get().to(presence))
    .route("/presence/{user_id}", web::get().to(user_presence))
    .route("/tokens", web::post().to(mint_token));
}

/// The admin's view of an announcement with its receipt counts. The
/// audience is a summary: the full list is paged from `/audience`, who has
/// (not) confirmed from `/recipients`.
pub fn view(a: &Announcement, audience: &AudienceSummary, counts: ReceiptCounts) -> Value {
    json!({
        "id": a.id,
        "title": a.title,
        "content": a.content,
        "level": a.level.as_str(),
        "link": a.link,
        "audience": audience.to_json(),
        "status": a.status.as_str(),
        "publish_at": rfc3339(a.publish_at),
        "expires_at": a.expires_at.map(rfc3339),
        "created_at": rfc3339(a.created_at),
        "updated_at": rfc3339(a.updated_at),
        "published_at": a.published_at.map(rfc3339),
        "retracted_at": a.retracted_at.map(rfc3339),
        "cursor": a.cursor,
        "requires_confirmation": a.requires_confirmation,
        "stats": {
            "targeted": a.targeted,
            "online_at_publish": a.online_at_publish,
            "delivered": counts.delivered,
            "read": counts.read,
            "confirmed": counts.confirmed,
        },
    })
}

/// The view of an announcement just written, before any receipts.
fn fresh_view(full: &FullAnnouncement) -> Value {
    view(
        &full.announcement,
        &AudienceSummary::of(&full.audience),
        ReceiptCounts::default(),
    )
}

fn parse_id(raw: &str) -> Result<AnnouncementId, AppError> {
    raw.parse()
        .map(AnnouncementId)
        .map_err(|_| AppError::NotFound(format!("announcement {raw}")))
}

async fn create(
    _: AdminAuth,
    state: web::Data<AppState>,
    body: web::Json<CreateInput>,
) -> Result<HttpResponse, AppError> {
    let now = db::now_ms();
    let draft = AnnouncementDraft::validate(&body, &state.settings.draft_limits(), now)
        .map_err(AppError::Validation)?;
    let full = db::run(&state.pool, move |conn| {
        db::announcements::insert(conn, &draft, now)
    })
    .await?;
    let a = &full.announcement;
    tracing::info!(announcement_id = a.id.0, audience = full.audience.kind().as_str(), publish_at = %rfc3339(a.publish_at), "announcement created");
    state.scheduler.do_send(Wake {
        publish_at: a.publish_at,
    });
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/announcements/{}", a.id)))
        .json(fresh_view(&full)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

async fn list(
    _: AdminAuth,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                "status must be scheduled, published, cancelled or retracted",
                Some("status"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let before = query.before.map(AnnouncementId);
    let (items, counts) = db::run(&state.pool, move |conn| {
        let items = db::announcements::list(conn, status, before, limit)?;
        let ids: Vec<AnnouncementId> = items.iter().map(|s| s.announcement.id).collect();
        let counts = db::recipients::counts_many(conn, &ids)?;
        Ok((items, counts))
    })
    .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|s| s.announcement.id))
        .flatten();
    let items: Vec<Value> = items
        .iter()
        .map(|s| {
            let counts = counts.get(&s.announcement.id).copied().unwrap_or_default();
            view(&s.announcement, &s.audience, counts)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_before": next_before })))
}

async fn get(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let found = db::run(
        &state.pool,
        move |conn| match db::announcements::get_summarized(conn, id)? {
            Some(found) => Ok(Some((db::recipients::counts(conn, id)?, found))),
            None => Ok(None),
        },
    )
    .await?;
    let (counts, found) = found.ok_or_else(|| AppError::NotFound(format!("announcement {id}")))?;
    Ok(HttpResponse::Ok().json(view(&found.announcement, &found.audience, counts)))
}

#[derive(Debug, Deserialize)]
struct AudienceQuery {
    limit: Option<i64>,
    after: Option<String>,
}

/// Values per audience page unless `limit` says otherwise, and at most.
const AUDIENCE_PAGE: i64 = 500;
const MAX_AUDIENCE_PAGE: i64 = 1_000;

/// The whole audience, page by page in order: `next_after` is the `after`
/// of the next page, null on the last one.
async fn audience(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AudienceQuery>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let limit = query
        .limit
        .unwrap_or(AUDIENCE_PAGE)
        .clamp(1, MAX_AUDIENCE_PAGE);
    let after = query.into_inner().after;
    if after.as_deref().is_some_and(|a| a.contains('\0')) {
        // No stored value holds NUL, and PostgreSQL refuses it as a parameter.
        return Err(AppError::bad_request(
            "invalid_query",
            "after must not contain NUL characters",
            Some("after"),
        ));
    }
    let page = db::run(&state.pool, move |conn| {
        db::audiences::page(conn, id, after.as_deref(), limit)
    })
    .await?;
    let (kind, values) = page.ok_or_else(|| AppError::NotFound(format!("announcement {id}")))?;
    let next_after = (values.len() as i64 == limit)
        .then(|| values.last().cloned())
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "kind": kind.as_str(),
        "values": values,
        "next_after": next_after,
    })))
}

async fn patch(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<PatchInput>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let now = db::now_ms();
    let change = AnnouncementPatch::validate(&body, &state.settings.draft_limits(), now)
        .map_err(AppError::Validation)?;
    let outcome = db::run(&state.pool, move |conn| {
        db::announcements::update_scheduled(conn, id, &change, now)
    })
    .await?;
    match outcome {
        ChangeOutcome::Changed(full) => {
            state.scheduler.do_send(Wake {
                publish_at: full.announcement.publish_at,
            });
            Ok(HttpResponse::Ok().json(fresh_view(&full)))
        }
        ChangeOutcome::NotFound => Err(AppError::NotFound(format!("announcement {id}"))),
        ChangeOutcome::Invalid(error) => Err(AppError::Validation(vec![error])),
        ChangeOutcome::NotScheduled(status) => Err(AppError::Conflict {
            code: "not_scheduled",
            message: format!(
                "announcement {id} is {}; only scheduled announcements can be changed",
                status.as_str()
            ),
        }),
    }
}

async fn withdraw(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let now = db::now_ms();
    let outcome = db::run(&state.pool, move |conn| {
        db::announcements::withdraw(conn, id, now)
    })
    .await?;
    let full = match outcome {
        WithdrawOutcome::NotFound => return Err(AppError::NotFound(format!("announcement {id}"))),
        WithdrawOutcome::Cancelled(full) => {
            tracing::info!(announcement_id = id.0, "announcement cancelled");
            full
        }
        WithdrawOutcome::Retracted(full) => {
            tracing::info!(announcement_id = id.0, "announcement retracted");
            state.fanout.retracted(id, full.audience.clone());
            full
        }
        WithdrawOutcome::Unchanged(full) => full,
    };
    Ok(HttpResponse::Ok().json(fresh_view(&full)))
}

async fn presence(_: AdminAuth, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let snapshot = state
        .registry
        .send(GetPresence)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    // Presence is per node: sessions live in each node's registry, and a
    // cluster-wide count would need every node to write every connect.
    Ok(HttpResponse::Ok().json(json!({
        "scope": "node",
        "node": state.cluster.as_ref().map(|c| c.node()),
        "users": snapshot.users,
        "total_users": snapshot.total_users,
        "total_sessions": snapshot.total_sessions,
    })))
}

async fn user_presence(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user_id = path.into_inner();
    let sessions = state
        .registry
        .send(GetUserSessions(user_id.clone()))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({
        "scope": "node",
        "node": state.cluster.as_ref().map(|c| c.node()),
        "user_id": user_id,
        "online": sessions > 0,
        "sessions": sessions,
    })))
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    user_id: String,
    #[serde(default)]
    groups: Vec<String>,
    ttl_seconds: Option<u64>,
}

async fn mint_token(
    _: AdminAuth,
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, AppError> {
    let user_id = crate::domain::draft::token_subject(&body.user_id, &body.groups)
        .map_err(AppError::Validation)?;
    let ttl = body
        .ttl_seconds
        .unwrap_or(state.settings.token_ttl)
        .clamp(1, 366 * 24 * 3600);
    let (token, claims) = state
        .keys
        .mint(&user_id, &body.groups, ttl)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Created().json(json!({
        "token": token,
        "user_id": claims.sub,
        "groups": claims.groups,
        "expires_at": rfc3339(claims.exp as i64 * 1000),
    })))
}
