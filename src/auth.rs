//! Tokens: user JWTs (HS256, `sub` = user id, `exp` required, optional
//! `groups`) and the admin bearer token, compared in constant time.

pub use crate::claims::{Claims, TokenError};
use crate::identity::IdentityKeys;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Signs and checks user tokens with the server's secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The app's identity provider, when herald also takes its tokens.
    identity: Option<Arc<IdentityKeys>>,
}

impl TokenKeys {
    pub fn new(secret: &str) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            identity: None,
        }
    }

    /// Also accept tokens from the app's identity provider.
    pub fn with_identity(mut self, identity: Arc<IdentityKeys>) -> TokenKeys {
        self.identity = Some(identity);
        self
    }

    pub fn identity(&self) -> Option<&Arc<IdentityKeys>> {
        self.identity.as_ref()
    }

    /// Before verifying a token whose key id herald does not know, refetch
    /// the identity provider's JWKS (at most every 30 s): the provider may
    /// have rotated its keys. Verification itself stays synchronous.
    pub async fn ensure_key(&self, token: &str) {
        let Some(jwks) = self.identity.as_ref().and_then(|i| i.jwks()) else {
            return;
        };
        let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else {
            return;
        };
        if !jwks.knows(&kid) && jwks.may_refetch() {
            let _ = crate::identity::refresh(jwks).await;
        }
    }

    /// A token for `user_id` valid for `ttl_seconds` from now.
    pub fn mint(
        &self,
        user_id: &str,
        groups: &[String],
        ttl_seconds: u64,
    ) -> Result<(String, Claims), TokenError> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            exp: now + ttl_seconds,
            iat: Some(now),
            groups: groups.to_vec(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|token| (token, claims))
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Checks signature, algorithm and expiry: HS256 with herald's own
    /// secret, anything else with the identity provider's keys (when set).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return match &self.identity {
                Some(identity) => identity.verify(token, &header),
                None => Err(TokenError::Invalid(format!(
                    "{:?} is not accepted",
                    header.alg
                ))),
            };
        }
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    /// Checks the token and that it belongs to `user_id`.
    pub fn verify_for(&self, token: &str, user_id: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.sub != user_id {
            return Err(TokenError::WrongUser);
        }
        Ok(claims)
    }
}

/// Compares a presented admin token with the configured one without leaking,
/// through timing, how many leading bytes matched.
pub fn admin_token_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// A random URL-safe secret of `bytes` random bytes, hex encoded.
pub fn random_secret(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> TokenKeys {
        TokenKeys::new("test-secret")
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn minted_token_verifies_with_groups() {
        let (token, _) = keys().mint("alice", &["ops".into()], 60).expect("mint");
        let claims = keys().verify_for(&token, "alice").expect("valid");
        assert_eq!(claims.groups, vec!["ops".to_string()]);
    }

    #[test]
    fn token_of_another_user_is_wrong_user() {
        let (token, _) = keys().mint("alice", &[], 60).expect("mint");
        assert_eq!(keys().verify_for(&token, "bob"), Err(TokenError::WrongUser));
    }

    #[test]
    fn forged_signature_is_invalid() {
        let (token, _) = TokenKeys::new("other-secret")
            .mint("alice", &[], 60)
            .expect("mint");
        assert!(matches!(keys().verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn expired_token_is_expired() {
        let claims = Claims {
            sub: "alice".into(),
            exp: now_secs() - 10,
            iat: None,
            groups: vec![],
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .expect("encode");
        assert_eq!(keys().verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let claims = serde_json::json!({"sub":"alice","exp": now_secs() + 60});
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .expect("encode");
        assert!(matches!(keys().verify(&hs512), Err(TokenError::Invalid(_))));
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims.to_string())
        );
        assert!(matches!(keys().verify(&none), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn missing_exp_is_rejected() {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub":"alice"}),
            &EncodingKey::from_secret(b"test-secret"),
        )
        .expect("encode");
        assert!(matches!(keys().verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for junk in ["", "a", "a.b.c", "....", "\u{0}\u{1}", "eyJ.eyJ.sig"] {
            assert!(keys().verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn admin_token_compare() {
        assert!(admin_token_matches("abc", "abc"));
        assert!(!admin_token_matches("abd", "abc"));
        assert!(!admin_token_matches("ab", "abc"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_are_rejected_without_panic(token in proptest::prelude::any::<String>()) {
            proptest::prop_assert!(keys().verify(&token).is_err());
        }

        #[test]
        fn dotted_base64_garbage_is_rejected(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,60}") {
            let token = format!("{a}.{b}.{c}");
            proptest::prop_assert!(keys().verify(&token).is_err());
        }
    }
}
