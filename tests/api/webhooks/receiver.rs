//! A webhook receiver on loopback for the tests: an actix server that
//! records every request (headers and body) and answers as told: a fixed
//! status, the first N requests refused, or no answer while held.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// 32 bytes, base64, with the Standard Webhooks prefix.
pub const SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5YWI=";

/// One request as it arrived, and what it was answered.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub answered: u16,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }

    /// The announcement the event is about.
    pub fn announcement(&self) -> i64 {
        let data = &self.json()["data"];
        data["id"]
            .as_i64()
            .or_else(|| data["announcement_id"].as_i64())
            .expect("an announcement id")
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Default)]
struct Plan {
    hits: Mutex<Vec<Hit>>,
    arrived: Notify,
    /// Requests still to refuse with 500 before answering `status`.
    refuse_first: AtomicUsize,
    status: AtomicU16,
    held: AtomicBool,
    /// Milliseconds every request waits before it is answered.
    delay_ms: AtomicU64,
    /// Requests still to hold for `first_delay_ms` before answering.
    delay_first: AtomicUsize,
    first_delay_ms: AtomicU64,
}

pub struct Receiver {
    pub url: String,
    plan: Arc<Plan>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// Listens on a free loopback port, answering 204.
    pub fn start() -> Receiver {
        let plan = Arc::new(Plan::default());
        plan.status.store(204, Ordering::SeqCst);
        let shared = plan.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/herald"),
            plan,
            handle,
        }
    }

    pub fn refuse_first(&self, n: usize) {
        self.plan.refuse_first.store(n, Ordering::SeqCst);
    }

    pub fn answer(&self, status: u16) {
        self.plan.status.store(status, Ordering::SeqCst);
    }

    /// While held, requests get no answer (the sender times out).
    pub fn hold(&self, held: bool) {
        self.plan.held.store(held, Ordering::SeqCst);
    }

    /// Every request is answered `delay` after it arrived (a slow receiver).
    pub fn delay(&self, delay: Duration) {
        self.plan
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The first `n` requests are answered (normally) only after `delay`.
    pub fn delay_first(&self, n: usize, delay: Duration) {
        self.plan
            .first_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.plan.delay_first.store(n, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.plan.hits.lock().expect("lock").clone()
    }

    /// The hits once `done` holds for them, failing after `within`.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.plan.arrived.notified();
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "not there after {within:?}; got {hits:#?}");
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), arrived).await;
        }
    }

    /// The accepted hits once `n` events (distinct ids) were accepted.
    pub async fn accepted(&self, n: usize, within: Duration) -> Vec<Hit> {
        let hits = self
            .wait_until(within, |hits| {
                let ids: std::collections::HashSet<&str> = hits
                    .iter()
                    .filter(|h| h.accepted())
                    .map(|h| h.id.as_str())
                    .collect();
                ids.len() >= n
            })
            .await;
        hits.into_iter().filter(Hit::accepted).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, plan: web::Data<Plan>) -> HttpResponse {
    while plan.held.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delay = plan.delay_ms.load(Ordering::SeqCst);
    if plan
        .delay_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        delay = delay.max(plan.first_delay_ms.load(Ordering::SeqCst));
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let refused = plan
        .refuse_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if refused {
        500
    } else {
        plan.status.load(Ordering::SeqCst)
    };
    plan.hits.lock().expect("lock").push(Hit {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    plan.arrived.notify_waiters();
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).expect("status")).finish()
}

/// Checks a hit's signature as a receiver would, with the HMAC computed
/// here (not by herald's code): `v1,` + base64 HMAC-SHA256 keyed with the
/// secret's bytes over `id.timestamp.body`, and a timestamp within 5 min.
pub fn assert_signed(hit: &Hit) {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.{}", hit.id, hit.timestamp, hit.body).as_bytes());
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    assert_eq!(hit.signature, expected, "signature of {hit:?}");
    let sent: i64 = hit.timestamp.parse().expect("unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!((now - sent).abs() < 300, "timestamp {sent} vs now {now}");
    assert!(
        hit.id.starts_with("msg_") && hit.id.len() > 10,
        "{}",
        hit.id
    );
}
