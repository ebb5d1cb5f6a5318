//! What wraps every request: `observe` gives it an id (echoed in
//! `X-Request-Id`), a tracing span that puts the id on each of the
//! request's log lines, one log line at the end, and the HTTP metrics by
//! route template; `keep_streams_uncompressed` keeps event streams out of
//! the compression middleware.

use crate::metrics::{method_label, METRICS};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The longest client request id herald keeps.
const MAX_REQUEST_ID: usize = 128;

/// The client's `X-Request-Id` when it is a plain token (a UUID, a trace
/// id: letters, digits and `-_.:+/=@`, at most 128 bytes), else a fresh
/// one. The id is written into log lines and a response header, so an id
/// that could break either is replaced rather than escaped.
pub fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
        })
        .map_or_else(
            || format!("{:032x}", rand::random::<u128>()),
            str::to_string,
        )
}

/// Runs the request inside its span, then logs it, counts it and returns
/// its id in `X-Request-Id`. Server errors are logged at warn, the rest at
/// debug (as before this span existed); the path is client-controlled and
/// logged escaped (`?`), the id is safe by construction (`request_id`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(&req);
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, %method, path = ?req.path());
    let started = Instant::now();
    let outcome = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let mut res = match outcome {
        Ok(res) => res,
        // No service inside herald fails this way (handler and extractor
        // errors are responses by now); were one to, actix turns the error
        // into its response further out, where no header can be added.
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            record(method.as_str(), UNMATCHED, status, elapsed);
            span.in_scope(|| log(status, UNMATCHED, elapsed));
            return Err(e);
        }
    };
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let status = res.status().as_u16();
    record(method.as_str(), route, status, elapsed);
    span.in_scope(|| log(status, route, elapsed));
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

fn record(method: &str, route: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    METRICS
        .http_requests
        .with_label_values(&[method, route, &status.to_string()])
        .inc();
    METRICS
        .http_duration
        .with_label_values(&[method, route])
        .observe(elapsed.as_secs_f64());
}

fn log(status: u16, route: &str, elapsed: Duration) {
    let ms = elapsed.as_millis() as u64;
    if status >= 500 {
        tracing::warn!(status, route, ms, "request failed");
    } else {
        tracing::debug!(status, route, ms, "request");
    }
}

/// Marks `text/event-stream` responses `Content-Encoding: identity`, which
/// actix's `Compress` leaves alone: a compressor holds events back until
/// its buffer fills, and a stream's events must leave as they happen. (The
/// WebSocket upgrade needs no mark: `Compress` never encodes a 101.)
pub async fn keep_streams_uncompressed(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if is_stream && !res.headers().contains_key(header::CONTENT_ENCODING) {
        res.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::{from_fn, Compress};
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::{web, App, HttpResponse};

    fn with_id(id: &str) -> ServiceRequest {
        TestRequest::default()
            .insert_header((REQUEST_ID, id))
            .to_srv_request()
    }

    #[test]
    fn a_plain_client_id_is_kept_and_anything_else_replaced() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(request_id(&with_id(uuid)), uuid);
        assert_eq!(request_id(&with_id("trace:abc+/=@_.")), "trace:abc+/=@_.");
        for bad in ["", "two words", "quote\"d", "a\tb", &"x".repeat(129)] {
            let id = request_id(&with_id(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{id}");
        }
        let fresh = request_id(&TestRequest::default().to_srv_request());
        assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    }

    #[actix_web::test]
    async fn event_streams_are_never_compressed() {
        let app = init_service(
            App::new()
                .wrap(from_fn(keep_streams_uncompressed))
                .wrap(Compress::default())
                .route(
                    "/events",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("text/event-stream")
                            .body("data: x\n\n".repeat(500))
                    }),
                )
                .route(
                    "/json",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body("[1]".repeat(500))
                    }),
                ),
        )
        .await;
        let get = |path: &str| {
            TestRequest::get()
                .uri(path)
                .insert_header((header::ACCEPT_ENCODING, "gzip, br"))
                .to_request()
        };
        let events = call_service(&app, get("/events")).await;
        assert_eq!(
            events
                .headers()
                .get(header::CONTENT_ENCODING)
                .expect("marked"),
            "identity"
        );
        let body = read_body(events).await;
        assert!(body.starts_with(b"data: x"));
        let json = call_service(&app, get("/json")).await;
        assert_eq!(
            json.headers()
                .get(header::CONTENT_ENCODING)
                .expect("compressed"),
            "br"
        );
    }
}
