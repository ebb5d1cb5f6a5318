//! Outbound webhooks: events about announcements leave herald from the
//! outbox (`db::outbox`), signed as the Standard Webhooks specification
//! says (`sign`), posted by one sender per node that claims each delivery
//! so that exactly one node sends it (`sender`).

pub mod sender;
pub mod sign;

use crate::config::Settings;
use crate::db::outbox::Outbox;
use crate::db::{self, DbPool};
use sender::Sender;
use sign::WebhookSecret;
use std::time::Duration;

/// The outbox for the configured endpoints, with this node's sender
/// started; without endpoints a disabled outbox (facts write nothing) and
/// no sender. Call inside the actix system.
pub fn start(pool: &DbPool, settings: &Settings) -> Result<Outbox, String> {
    if settings.webhook_urls.is_empty() {
        return Ok(Outbox::disabled());
    }
    let secret = settings
        .webhook_secret
        .as_deref()
        .ok_or("--webhook-url needs --webhook-secret")
        .and_then(|s| WebhookSecret::parse(s).map_err(|_| "invalid --webhook-secret"))?;
    let outbox = Outbox::new(settings.webhook_urls.clone());
    Sender::new(
        pool.clone(),
        outbox.clone(),
        secret,
        settings.webhook_retry_base_ms,
        Duration::from_millis(settings.webhook_timeout_ms),
    )?
    .start();
    let endpoints: Vec<String> = outbox.endpoints().iter().map(|u| db::redacted(u)).collect();
    tracing::info!(?endpoints, "webhooks on");
    Ok(outbox)
}
