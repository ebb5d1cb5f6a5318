//! Tokens from the app's own identity provider (Keycloak, Auth0, Cognito…):
//! asymmetric JWTs checked with a PEM public key or the provider's JWKS.
//!
//! The algorithm follows the key, never the token: an RSA key accepts
//! RS256/384/512 and PS256/384/512, an EC key the one of its curve (ES256
//! for P-256, ES384 for P-384), an Ed25519 key EdDSA. A symmetric JWK is
//! ignored (HS256 is only ever checked with herald's own secret, in
//! `auth.rs`), so a token "signed" with the public key as an HMAC secret
//! finds no key that accepts it. Issuer and audience are required and
//! checked when configured, `nbf` is honoured, and 30 s of clock skew
//! between the provider and herald is allowed. The user id and the groups
//! are read from configurable claims (dot paths reach nested ones).

mod jwks;

pub use jwks::{refresh, Jwks, REFETCH_EVERY, REFETCH_UNKNOWN_KID};

use crate::claims::{Claims, TokenError};
use crate::config::Settings;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;
use std::sync::Arc;

/// Clock skew allowed between the identity provider and herald.
const LEEWAY_SECS: u64 = 30;

/// A verification key and the algorithms its type allows.
#[derive(Clone)]
pub struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Where the claims herald needs are in the provider's tokens, and what the
/// tokens must say about issuer and audience.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_claim: String,
    pub groups_claim: String,
}

/// The provider's keys: a PEM public key, a JWKS, or both.
pub struct IdentityKeys {
    pem: Option<Key>,
    jwks: Option<Jwks>,
    rules: ClaimRules,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("JWKS {url}: {reason}")]
    Jwks { url: String, reason: String },
}

impl IdentityKeys {
    pub fn new(pem: Option<Key>, jwks: Option<Jwks>, rules: ClaimRules) -> IdentityKeys {
        IdentityKeys { pem, jwks, rules }
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// The key for this header, if herald knows it now.
    fn key_for(&self, header: &Header) -> Option<Key> {
        match (&header.kid, &self.jwks) {
            (Some(kid), Some(jwks)) => jwks.get(kid),
            _ => self.pem.clone(),
        }
    }

    /// Checks an asymmetric token with the keys known now.
    pub fn verify(&self, token: &str, header: &Header) -> Result<Claims, TokenError> {
        let key = self
            .key_for(header)
            .ok_or_else(|| TokenError::Invalid("the token's key (kid) is not known".into()))?;
        if !key.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid(format!(
                "{:?} does not match the key's type",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them:
        // a configured one must also be present.
        let mut required = vec!["exp"];
        match &self.rules.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.rules.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data =
            decode::<Value>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?;
        self.claims(&data.claims)
    }

    fn claims(&self, claims: &Value) -> Result<Claims, TokenError> {
        let sub = claim_at(claims, &self.rules.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                TokenError::Invalid(format!("no user id in claim {}", self.rules.user_claim))
            })?;
        let groups = match claim_at(claims, &self.rules.groups_claim) {
            Some(Value::String(g)) => vec![g.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Claims {
            sub: sub.to_string(),
            exp: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            iat: claims.get("iat").and_then(Value::as_u64),
            groups,
        })
    }
}

/// A claim by dot path: `realm_access.roles`.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// Reads a PEM public key: RSA, EC (P-256/P-384) or Ed25519.
pub fn pem_key(path: &str) -> Result<Key, KeyError> {
    let pem = std::fs::read(path).map_err(|e| KeyError::Pem {
        path: path.into(),
        reason: e.to_string(),
    })?;
    use Algorithm::*;
    if let Ok(decoding) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(Key {
            decoding,
            algorithms: vec![RS256, RS384, RS512, PS256, PS384, PS512],
        });
    }
    if let Ok(decoding) = DecodingKey::from_ec_pem(&pem) {
        let algorithm = ec_pem_algorithm(&pem).ok_or_else(|| KeyError::Pem {
            path: path.into(),
            reason: "an EC key on a curve other than P-256 or P-384".into(),
        })?;
        return Ok(Key {
            decoding,
            algorithms: vec![algorithm],
        });
    }
    if let Ok(decoding) = DecodingKey::from_ed_pem(&pem) {
        return Ok(Key {
            decoding,
            algorithms: vec![EdDSA],
        });
    }
    Err(KeyError::Pem {
        path: path.into(),
        reason: "not an RSA, EC or Ed25519 public key in PEM".into(),
    })
}

/// The algorithm of an EC public key in PEM, from the curve named in it:
/// ES256 for P-256, ES384 for P-384.
fn ec_pem_algorithm(pem: &[u8]) -> Option<Algorithm> {
    use base64::Engine;
    // The named-curve object identifiers, DER encoded.
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let names = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    match (names(P256), names(P384)) {
        (true, false) => Some(Algorithm::ES256),
        (false, true) => Some(Algorithm::ES384),
        _ => None,
    }
}

/// The identity provider from the settings, `None` when none is set. Its
/// JWKS is fetched now and every 10 minutes (a failed fetch is logged and
/// retried, never fatal: the provider may be down for a moment); a bad PEM
/// file is an error.
pub async fn from_settings(settings: &Settings) -> Result<Option<Arc<IdentityKeys>>, KeyError> {
    if settings.jwt_public_key.is_none() && settings.jwks_url.is_none() {
        return Ok(None);
    }
    let pem = settings
        .jwt_public_key
        .as_deref()
        .map(pem_key)
        .transpose()?;
    let jwks = settings.jwks_url.as_deref().map(Jwks::new);
    let rules = ClaimRules {
        issuer: settings.jwt_issuer.clone(),
        audience: settings.jwt_audience.clone(),
        user_claim: settings.jwt_user_claim.clone(),
        groups_claim: settings.jwt_groups_claim.clone(),
    };
    let identity = Arc::new(IdentityKeys::new(pem, jwks, rules));
    if let Some(jwks) = identity.jwks() {
        let _ = refresh(jwks).await;
        refetch_every(&identity, REFETCH_EVERY);
    }
    Ok(Some(identity))
}

/// Fetches the key set again every `period` (the first time one period
/// from now) for as long as `identity` is in use.
fn refetch_every(identity: &Arc<IdentityKeys>, period: std::time::Duration) {
    let held = Arc::downgrade(identity);
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(period);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(identity) = held.upgrade() else {
                return;
            };
            if let Some(jwks) = identity.jwks() {
                let _ = refresh(jwks).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_dot_path_and_a_single_group_string() {
        let claims = json!({"sub": "u1", "realm_access": {"roles": ["a", "b"]}, "team": "ops"});
        assert_eq!(
            claim_at(&claims, "realm_access.roles"),
            Some(&json!(["a", "b"]))
        );
        let keys = IdentityKeys::new(
            None,
            None,
            ClaimRules {
                issuer: None,
                audience: None,
                user_claim: "sub".into(),
                groups_claim: "team".into(),
            },
        );
        assert_eq!(keys.claims(&claims).expect("claims").groups, ["ops"]);
    }

    /// A key-set server on loopback that counts its requests.
    fn counting_jwks_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = r#"{"keys":[]}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, hits)
    }

    #[actix_web::test]
    async fn the_key_set_is_fetched_again_every_period_while_in_use() {
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};
        let (url, hits) = counting_jwks_server();
        let rules = ClaimRules {
            issuer: None,
            audience: None,
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
        };
        let identity = Arc::new(IdentityKeys::new(None, Some(Jwks::new(&url)), rules));
        refetch_every(&identity, Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(10);
        while hits.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "fetched {} times",
                hits.load(Ordering::SeqCst)
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        drop(identity);
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        let after_drop = hits.load(Ordering::SeqCst);
        actix_web::rt::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            after_drop,
            "no fetches once nothing uses the keys"
        );
    }
}
