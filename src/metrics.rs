//! Prometheus metrics: sessions, users online, connects and disconnects by
//! close code, frames in and out, deliveries, publish lag, scheduler ticks
//! and errors, webhook deliveries, database pool use, HTTP requests by route template, the
//! build. Rendered by `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    registry: Registry,
    pub sessions: IntGauge,
    pub users_online: IntGauge,
    pub connects: IntCounter,
    pub rejected_connects: IntCounterVec,
    pub disconnects: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub frames_in: IntCounter,
    pub frames_out: IntCounter,
    pub deliveries: IntCounter,
    pub published: IntCounter,
    pub publish_lag: Histogram,
    pub scheduler_ticks: IntCounter,
    pub scheduler_errors: IntCounter,
    pub receipts_written: IntCounter,
    pub slow_consumers: IntCounter,
    pub webhooks_sent: IntCounter,
    pub webhook_attempt_errors: IntCounter,
    pub webhooks_failed: IntCounter,
    pub webhooks_pending: IntGauge,
    pub webhooks_oldest_pending: IntGauge,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
    /// `method`, `route` (the matched template), `status`.
    pub http_requests: IntCounterVec,
    /// `method`, `route`.
    pub http_duration: HistogramVec,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    counter_vec_by(registry, name, help, &[label])
}

fn counter_vec_by(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let publish_lag = Histogram::with_opts(
            HistogramOpts::new(
                "herald_publish_lag_seconds",
                "Time from an announcement's publish_at to its hand-off to the registry",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(publish_lag.clone()))
            .expect("unique metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "herald_http_request_duration_seconds",
                "Time from a request's arrival to its response head, by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new("herald_build_info", "Always 1; the version in a label"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        Metrics {
            sessions: gauge(&registry, "herald_sessions", "Open WebSocket sessions"),
            users_online: gauge(
                &registry,
                "herald_users_online",
                "Users with at least one open session",
            ),
            connects: counter(&registry, "herald_connects_total", "Sessions opened"),
            rejected_connects: counter_vec(
                &registry,
                "herald_rejected_connects_total",
                "Connections refused, by reason",
                "reason",
            ),
            disconnects: counter_vec(
                &registry,
                "herald_disconnects_total",
                "Sessions closed, by close code (none: the peer vanished)",
                "code",
            ),
            jwks_fetches: counter_vec(
                &registry,
                "herald_jwks_fetches_total",
                "Fetches of the identity provider's JWKS, by result (ok, error)",
                "result",
            ),
            frames_in: counter(
                &registry,
                "herald_frames_in_total",
                "Frames received from clients",
            ),
            frames_out: counter(
                &registry,
                "herald_frames_out_total",
                "Text frames sent to clients",
            ),
            deliveries: counter(
                &registry,
                "herald_deliveries_total",
                "Announcement frames sent to sessions (live and replayed)",
            ),
            published: counter(
                &registry,
                "herald_published_total",
                "Announcements published by this node",
            ),
            publish_lag,
            scheduler_ticks: counter(&registry, "herald_scheduler_ticks_total", "Scheduler ticks"),
            scheduler_errors: counter(
                &registry,
                "herald_scheduler_errors_total",
                "Scheduler ticks that failed",
            ),
            receipts_written: counter(
                &registry,
                "herald_receipts_written_total",
                "Receipts written to the database",
            ),
            slow_consumers: counter(
                &registry,
                "herald_slow_consumers_total",
                "Sessions dropped because their outgoing queue was full",
            ),
            webhooks_sent: counter(
                &registry,
                "herald_webhooks_sent_total",
                "Webhook deliveries the receiver accepted (2xx), sent by this node",
            ),
            webhook_attempt_errors: counter(
                &registry,
                "herald_webhook_attempt_errors_total",
                "Webhook attempts that got no 2xx (retried later or failed), by this node",
            ),
            webhooks_failed: counter(
                &registry,
                "herald_webhooks_failed_total",
                "Webhook deliveries given up after a day of retries, by this node",
            ),
            webhooks_pending: gauge(
                &registry,
                "herald_webhooks_pending",
                "Webhook deliveries not yet accepted, across the cluster (refreshed every 5 s)",
            ),
            webhooks_oldest_pending: gauge(
                &registry,
                "herald_webhooks_oldest_pending_seconds",
                "Age of the oldest pending webhook delivery (0: none)",
            ),
            db_pool_size: gauge(
                &registry,
                "herald_db_pool_connections",
                "Database connections open",
            ),
            db_pool_idle: gauge(
                &registry,
                "herald_db_pool_idle_connections",
                "Database connections idle",
            ),
            http_requests: counter_vec_by(
                &registry,
                "herald_http_requests_total",
                "HTTP responses, by method, route template and status",
                &["method", "route", "status"],
            ),
            http_duration,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The `code` label of `herald_disconnects_total`. The close code may come
/// from the client, and every distinct label value is a new time series, so
/// only the registered standard codes and herald's own become labels; any
/// other code is `other`, no code at all (the peer vanished) is `none`.
pub fn close_code_label(code: Option<u16>) -> &'static str {
    let Some(code) = code else {
        return "none";
    };
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1010 => "1010",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        1014 => "1014",
        1015 => "1015",
        4000 => "4000",
        4001 => "4001",
        4003 => "4003",
        4008 => "4008",
        4029 => "4029",
        _ => "other",
    }
}

/// The `method` label of the HTTP metrics. A client may send any token as
/// a method, and each would be a new time series: the standard methods are
/// labels, anything else is `other`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_fixed_set() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        for odd in ["get", "PROPFIND", "X-ANYTHING", ""] {
            assert_eq!(method_label(odd), "other", "{odd}");
        }
    }

    #[test]
    fn close_code_labels_are_a_fixed_set() {
        assert_eq!(close_code_label(None), "none");
        assert_eq!(close_code_label(Some(1000)), "1000");
        assert_eq!(close_code_label(Some(1001)), "1001");
        assert_eq!(close_code_label(Some(4029)), "4029");
        for code in [0, 999, 1004, 1016, 2999, 3000, 4002, 4321, 4999, u16::MAX] {
            assert_eq!(close_code_label(Some(code)), "other", "{code}");
        }
        let labels: std::collections::HashSet<_> =
            (0..=u16::MAX).map(|c| close_code_label(Some(c))).collect();
        assert_eq!(labels.len(), 21, "15 standard, 5 of herald's, other");
    }
}
