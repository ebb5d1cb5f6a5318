//! The identity provider's JWKS: fetched, cached by `kid`, refetched when
//! asked (an unknown `kid`, at most every 30 s; every 10 minutes in any
//! case). A failed fetch, or one without a usable key, keeps the last good
//! keys and is logged and counted.

use super::{Key, KeyError};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// An unknown `kid` refetches the JWKS at most this often.
pub const REFETCH_UNKNOWN_KID: Duration = Duration::from_secs(30);
/// The JWKS is refetched this often in any case.
pub const REFETCH_EVERY: Duration = Duration::from_secs(600);

/// A JWKS document, fetched and cached, refetched when asked.
pub struct Jwks {
    url: String,
    keys: RwLock<HashMap<String, Key>>,
    fetched_at: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(url: &str) -> Jwks {
        Jwks {
            url: url.to_string(),
            keys: RwLock::new(HashMap::new()),
            fetched_at: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn get(&self, kid: &str) -> Option<Key> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.get(kid).is_some()
    }

    /// True (and noted) when a refetch for an unknown kid may go now.
    pub fn may_refetch(&self) -> bool {
        let Ok(mut at) = self.fetched_at.lock() else {
            return false;
        };
        match *at {
            Some(t) if t.elapsed() < REFETCH_UNKNOWN_KID => false,
            _ => {
                *at = Some(Instant::now());
                true
            }
        }
    }

    /// Makes the last fetch look `by` older: the tests use it instead of
    /// waiting out the 30 s between refetches for an unknown kid.
    #[doc(hidden)]
    pub fn age_last_fetch(&self, by: Duration) {
        if let Ok(mut at) = self.fetched_at.lock() {
            *at = at.and_then(|t| t.checked_sub(by));
        }
    }

    /// Replaces the keys with the document's. A failure, or a document
    /// without a usable key, keeps the last good keys; the caller logs and
    /// counts it.
    pub fn install(&self, body: &str) -> Result<usize, KeyError> {
        let set: JwkSet = serde_json::from_str(body).map_err(|e| KeyError::Jwks {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(algorithms)) =
                (&jwk.common.key_id, algorithms_for(&jwk.algorithm))
            else {
                continue;
            };
            if let Ok(decoding) = DecodingKey::from_jwk(jwk) {
                keys.insert(
                    kid.clone(),
                    Key {
                        decoding,
                        algorithms,
                    },
                );
            }
        }
        let count = keys.len();
        if count == 0 {
            // A provider answering with an empty or unusable set is broken
            // for the moment: dropping the keys would lock every user out.
            return Err(KeyError::Jwks {
                url: self.url.clone(),
                reason: "no usable keys (RSA, EC P-256/P-384 or Ed25519 with a kid)".into(),
            });
        }
        if let Ok(mut held) = self.keys.write() {
            *held = keys;
        }
        if let Ok(mut at) = self.fetched_at.lock() {
            *at = Some(Instant::now());
        }
        Ok(count)
    }
}

/// Fetches the JWKS and installs its keys; a failure keeps the last good
/// keys, and is logged and counted.
pub async fn refresh(jwks: &Jwks) -> Result<usize, KeyError> {
    let fetched = fetch(jwks.url()).await.and_then(|body| jwks.install(&body));
    let result = if fetched.is_ok() { "ok" } else { "error" };
    crate::metrics::METRICS
        .jwks_fetches
        .with_label_values(&[result])
        .inc();
    match &fetched {
        Ok(keys) => tracing::info!(url = %jwks.url(), keys, "identity provider keys fetched"),
        Err(e) => {
            tracing::warn!(error = %e, "identity provider keys could not be fetched; keeping the last good ones")
        }
    }
    fetched
}

async fn fetch(url: &str) -> Result<String, KeyError> {
    let failed = |reason: String| KeyError::Jwks {
        url: url.to_string(),
        reason,
    };
    let response = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    response.text().await.map_err(|e| failed(e.to_string()))
}

/// The algorithms a JWK's key type allows; none for symmetric keys.
fn algorithms_for(params: &AlgorithmParameters) -> Option<Vec<Algorithm>> {
    use Algorithm::*;
    match params {
        AlgorithmParameters::RSA(_) => Some(vec![RS256, RS384, RS512, PS256, PS384, PS512]),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(vec![ES256]),
            EllipticCurve::P384 => Some(vec![ES384]),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(vec![EdDSA]),
        AlgorithmParameters::OctetKey(_) => None,
    }
}
