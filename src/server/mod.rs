//! The HTTP server: herald's App (routes, middleware, limits) served over
//! HTTP/1 on one listener, with requests that ask for an upgrade handed to
//! [`upgrade`] so a WebSocket does not keep the HTTP/1 dispatcher's buffers
//! for its whole life.

mod upgrade;

pub use upgrade::ANSWER_WITHIN;

use crate::config::Settings;
use crate::routes;
use crate::state::AppState;
use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, ServiceRequest, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};
use std::net::TcpListener;
use std::time::Duration;

/// Serves herald's App on `listener`. The returned server runs once
/// awaited; herald's own signal handler stops it (sessions close first).
pub fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: &Settings,
) -> std::io::Result<Server> {
    let body_limit = settings.max_body_bytes;
    let allowed_origins = settings.allowed_origins.clone();
    // A peer that leaves sent data unacknowledged this long is gone (or
    // never reads): let the kernel abort the connection so a stalled client
    // cannot pin a session forever.
    let user_timeout = Duration::from_secs(settings.heartbeat_timeout.max(1));
    let mut builder = Server::build()
        // Our own signal handler closes sessions first, then stops the server.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace);
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    // Told to every HTTP/1 connection when the stop begins, so an idle
    // keep-alive connection (a proxy's, a client's) closes at once instead
    // of holding the exit until its keep-alive runs out (5 s). actix-web's
    // HttpServer wires the same signal.
    let stopping = builder.graceful_shutdown_signal();
    Ok(builder
        .listen("herald", listener, move || {
            // Each worker builds the App twice: one serves plain requests,
            // the other the upgrade requests the dispatcher hands over.
            let app = || {
                map_config(
                    app(state.clone(), body_limit, &allowed_origins).into_factory(),
                    |_| AppConfig::default(),
                )
            };
            let stopping = stopping.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                // Announcements are small frames that must leave at once.
                .tcp_nodelay(true)
                .on_connect_ext(move |tcp: &TcpStream, _| {
                    let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(user_timeout));
                })
                .upgrade(upgrade::service(app()))
                .finish(app())
                .tcp()
        })?
        .run())
}

/// herald's App: state, body and query limits, middleware, routes.
fn app(
    state: web::Data<AppState>,
    body_limit: usize,
    allowed_origins: &[String],
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(body_limit)
                .error_handler(routes::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(routes::query_error))
        // Innermost first: streams opt out of compression, then compression,
        // then the request id, span, log line and metrics around everything
        // (so they see the final status).
        .wrap(actix_web::middleware::from_fn(
            routes::middleware::keep_streams_uncompressed,
        ))
        .wrap(actix_web::middleware::Compress::default())
        .wrap(actix_web::middleware::from_fn(routes::middleware::observe))
        .configure(|cfg| routes::configure(cfg, allowed_origins))
}
