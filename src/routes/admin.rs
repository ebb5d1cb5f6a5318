//! The admin REST API: announcements (create, list, get, patch, cancel or
//! retract, their audience page by page), presence, and user tokens for host
//! apps and the demo.

use super::admin_views::{
    view, AdminAnnouncement, AnnouncementPage, AudiencePage, MintedToken, Presence,
    UserPresenceView,
};
use super::auth::AdminAuth;
use super::path::announcement_id as parse_id;
use crate::actors::messages::{GetPresence, GetUserSessions, Wake};
use crate::db::announcements::{ChangeOutcome, WithdrawOutcome};
use crate::db::recipients::ReceiptCounts;
use crate::db::{self};
use crate::domain::draft::{CreateInput, PatchInput};
use crate::domain::{
    rfc3339, AnnouncementDraft, AnnouncementId, AnnouncementPatch, AudienceSummary,
    FullAnnouncement, Status,
};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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

/// The view of an announcement just written, before any receipts.
fn fresh_view(full: &FullAnnouncement) -> AdminAnnouncement {
    view(
        &full.announcement,
        &AudienceSummary::of(&full.audience),
        ReceiptCounts::default(),
    )
}

/// Creates an announcement, published at `publish_at` (now when absent or past).
#[utoipa::path(post, path = "/api/announcements", tag = "admin",
    security(("admin_token" = [])),
    request_body = CreateInput,
    responses(
        (status = 201, description = "Created", body = AdminAnnouncement,
            headers(("Location" = String, description = "/api/announcements/{id}"))),
        (status = 422, description = "A field is refused", body = ErrorBody),
    ))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `scheduled`, `published`, `cancelled` or `retracted`.
    status: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<i64>,
    /// The previous page's `next_before`.
    before: Option<i64>,
}

/// Lists announcements, newest first, page by page.
#[utoipa::path(get, path = "/api/announcements", tag = "admin",
    security(("admin_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = AnnouncementPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
    ))]
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
    let items = items
        .iter()
        .map(|s| {
            let counts = counts.get(&s.announcement.id).copied().unwrap_or_default();
            view(&s.announcement, &s.audience, counts)
        })
        .collect();
    Ok(HttpResponse::Ok().json(AnnouncementPage { items, next_before }))
}

/// One announcement with its delivery and read counts.
#[utoipa::path(get, path = "/api/announcements/{id}", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "The announcement", body = AdminAnnouncement),
        (status = 404, description = "No such announcement", body = ErrorBody),
    ))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AudienceQuery {
    /// 1 to 1000, default 500.
    limit: Option<i64>,
    /// The previous page's `next_after`.
    after: Option<String>,
}

/// Values per audience page unless `limit` says otherwise, and at most.
const AUDIENCE_PAGE: i64 = 500;
const MAX_AUDIENCE_PAGE: i64 = 1_000;

/// The whole audience, page by page in order: `next_after` is the `after`
/// of the next page, null on the last one.
#[utoipa::path(get, path = "/api/announcements/{id}/audience", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The announcement's id"), AudienceQuery),
    responses(
        (status = 200, description = "A page", body = AudiencePage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 404, description = "No such announcement", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(AudiencePage {
        id,
        kind,
        values,
        next_after,
    }))
}

/// Changes a scheduled announcement (only the fields sent).
#[utoipa::path(patch, path = "/api/announcements/{id}", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    request_body = PatchInput,
    responses(
        (status = 200, description = "Changed", body = AdminAnnouncement),
        (status = 404, description = "No such announcement", body = ErrorBody),
        (status = 409, description = "Not scheduled any more (`not_scheduled`)", body = ErrorBody),
        (status = 422, description = "A field is refused", body = ErrorBody),
    ))]
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

/// Cancels a scheduled announcement or retracts a published one (taken
/// back from every inbox and open tab); repeating it changes nothing.
#[utoipa::path(delete, path = "/api/announcements/{id}", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The announcement's id")),
    responses(
        (status = 200, description = "Cancelled or retracted", body = AdminAnnouncement),
        (status = 404, description = "No such announcement", body = ErrorBody),
    ))]
async fn withdraw(
    _: AdminAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path)?;
    let now = db::now_ms();
    let outbox = state.outbox.clone();
    let outcome = db::run(&state.pool, move |conn| {
        db::announcements::withdraw(conn, id, now, &outbox)
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

/// Users connected to this node and their session counts.
#[utoipa::path(get, path = "/api/presence", tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, description = "This node's presence", body = Presence)))]
async fn presence(_: AdminAuth, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let snapshot = state
        .registry
        .send(GetPresence)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    // Presence is per node: sessions live in each node's registry, and a
    // cluster-wide count would need every node to write every connect.
    Ok(HttpResponse::Ok().json(Presence {
        scope: "node",
        node: state.cluster.as_ref().map(|c| c.node().to_string()),
        snapshot,
    }))
}

/// Whether a user has sessions on this node.
#[utoipa::path(get, path = "/api/presence/{user_id}", tag = "admin",
    security(("admin_token" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user's sessions here", body = UserPresenceView)))]
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
    Ok(HttpResponse::Ok().json(UserPresenceView {
        scope: "node",
        node: state.cluster.as_ref().map(|c| c.node().to_string()),
        user_id,
        online: sessions > 0,
        sessions,
    }))
}

/// `POST /api/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenRequest {
    user_id: String,
    #[serde(default)]
    groups: Vec<String>,
    /// Lifetime; default `--token-ttl`, at most 366 days.
    ttl_seconds: Option<u64>,
}

/// Mints a user token for a host app's backend or the demo.
#[utoipa::path(post, path = "/api/tokens", tag = "admin",
    security(("admin_token" = [])),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Minted", body = MintedToken),
        (status = 422, description = "A field is refused", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Created().json(MintedToken {
        token,
        user_id: claims.sub,
        groups: claims.groups,
        expires_at: rfc3339(claims.exp as i64 * 1000),
    }))
}
