//! `/healthz` (the process answers), `/readyz` (the database answers, the
//! scheduler ticks without errors and, on PostgreSQL, the cluster listener is
//! connected: without it this node's sessions miss live announcements),
//! `/metrics` (Prometheus text).

use crate::db;
use crate::metrics::METRICS;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use diesel::prelude::*;
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The process answers (liveness).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// `ok`, or why the database did not answer.
    database: String,
    /// `ok` or `stalled`.
    scheduler: &'static str,
    /// This node's name (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// `ok` or `reconnecting`: the cluster listener (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    listener: Option<&'static str>,
}

/// Ready for traffic: the database answers, the scheduler ticks and (on
/// PostgreSQL) the cluster listener is connected.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness),
    ))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = db::run(&state.pool, |conn| {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
            .get_result::<i32>(conn)
            .map_err(Into::into)
    })
    .await;
    let last_tick = state.scheduler_alive.load(Ordering::Relaxed);
    let stale_after = (state.settings.poll_interval().as_millis() as i64) * 5 + 10_000;
    let scheduler_ok =
        db::now_ms() - last_tick < stale_after && !state.scheduler_failing.load(Ordering::Relaxed);
    let listener_ok = state.cluster.as_ref().is_none_or(|c| c.is_listening());
    let database_ok = database.is_ok();
    let ready = database_ok && scheduler_ok && listener_ok;
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database: match database {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
        scheduler: if scheduler_ok { "ok" } else { "stalled" },
        node: state.cluster.as_ref().map(|c| c.node().to_string()),
        listener: state
            .cluster
            .as_ref()
            .map(|_| if listener_ok { "ok" } else { "reconnecting" }),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.state();
    METRICS.db_pool_size.set(i64::from(pool.connections));
    METRICS.db_pool_idle.set(i64::from(pool.idle_connections));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(METRICS.render())
}
