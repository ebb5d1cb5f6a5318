//! `/healthz` (the process answers), `/readyz` (the database answers, the
//! scheduler ticks without errors and, on PostgreSQL, the cluster listener is
//! connected: without it this node's sessions miss live announcements),
//! `/metrics` (Prometheus text).

use crate::db;
use crate::metrics::METRICS;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use diesel::prelude::*;
use serde_json::json;
use std::sync::atomic::Ordering;

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

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
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database_ok { "ok".to_string() } else { database.err().map(|e| e.to_string()).unwrap_or_default() },
        "scheduler": if scheduler_ok { "ok" } else { "stalled" },
    });
    if let Some(cluster) = &state.cluster {
        body["node"] = json!(cluster.node());
        body["listener"] = json!(if listener_ok { "ok" } else { "reconnecting" });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.state();
    METRICS.db_pool_size.set(i64::from(pool.connections));
    METRICS.db_pool_idle.set(i64::from(pool.idle_connections));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(METRICS.render())
}
