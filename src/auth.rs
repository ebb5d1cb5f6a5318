//! Tokens: user JWTs (HS256, `sub` = user id, `exp` required, optional
//! `groups`) and the admin bearer token, compared in constant time.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token was presented")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token belongs to another user")]
    WrongUser,
}

/// Signs and checks user tokens with the server's secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
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

    /// Checks signature, algorithm (HS256 only) and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
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
