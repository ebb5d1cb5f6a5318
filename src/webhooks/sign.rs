//! Standard Webhooks signatures: `webhook-signature: v1,<base64>` where the
//! base64 is HMAC-SHA256, keyed with the secret's bytes, of
//! `"<webhook-id>.<webhook-timestamp>.<body>"`. The secret is written
//! `whsec_<base64>` as the specification's libraries expect.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix Standard Webhooks secrets carry.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest secret bytes accepted (the specification suggests 24 to 64).
pub const MIN_SECRET_BYTES: usize = 24;

/// The signing key. Its `Debug` shows nothing of it, so that it cannot end
/// up in a log line by accident.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// `whsec_<base64>` (the prefix may be left out, as the libraries allow).
    /// The error never repeats the value.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| {
                "the webhook secret must be `whsec_` followed by base64 (e.g. \
                 `whsec_$(openssl rand -base64 32)`)"
                    .to_string()
            })?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the webhook secret must hold at least {MIN_SECRET_BYTES} bytes; it holds {}",
                bytes.len()
            ));
        }
        Ok(WebhookSecret(bytes))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification (and its
    /// libraries' tests): this secret, id, timestamp and body sign to this.
    #[test]
    fn signs_the_specification_example() {
        let secret =
            WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_base64_and_long_enough_and_are_never_shown() {
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        let short = WebhookSecret::parse("whsec_c2hvcnQ=").expect_err("too short");
        assert!(short.contains("at least 24 bytes"), "{short}");
        let raw = STANDARD.encode([7u8; 32]);
        let secret = WebhookSecret::parse(&raw).expect("the prefix is optional");
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        assert!(WebhookSecret::parse(&format!("{SECRET_PREFIX}{raw}")).is_ok());
    }
}
