//! The webhook settings checked together: endpoints that are http(s) URLs,
//! each once, a secret whenever there is an endpoint, sane times.

use crate::webhooks::sign::WebhookSecret;

/// The webhook settings, as the settings hold them.
pub(super) struct Webhooks<'a> {
    pub urls: &'a [String],
    pub secret: Option<&'a str>,
    pub retry_base_ms: u64,
    pub timeout_ms: u64,
}

pub(super) fn check(s: Webhooks<'_>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for url in s.urls {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            format!(
                "--webhook-url {}: not a URL ({e})",
                crate::db::redacted(url)
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "--webhook-url {}: must be an http:// or https:// URL with a host",
                crate::db::redacted(url)
            ));
        }
        if !seen.insert(parsed.as_str().to_string()) {
            return Err(format!(
                "--webhook-url {} is listed twice",
                crate::db::redacted(url)
            ));
        }
    }
    match s.secret {
        Some(secret) => {
            WebhookSecret::parse(secret).map_err(|e| format!("HERALD_WEBHOOK_SECRET: {e}"))?;
        }
        None if !s.urls.is_empty() => {
            return Err(
                "--webhook-url needs --webhook-secret (HERALD_WEBHOOK_SECRET), `whsec_<base64>`"
                    .into(),
            )
        }
        None => {}
    }
    if !(1..=3_600_000).contains(&s.retry_base_ms) {
        return Err("--webhook-retry-base-ms must be between 1 and 3600000".into());
    }
    if !(1..=300_000).contains(&s.timeout_ms) {
        return Err("--webhook-timeout-ms must be between 1 and 300000".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=";

    fn with(urls: &[&str], secret: Option<&str>) -> Result<(), String> {
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        check(Webhooks {
            urls: &urls,
            secret,
            retry_base_ms: 1_000,
            timeout_ms: 10_000,
        })
    }

    #[test]
    fn endpoints_need_a_secret_and_must_be_http_urls() {
        assert!(with(&[], None).is_ok());
        assert!(with(&["https://hooks.example/herald"], Some(SECRET)).is_ok());
        let no_secret = with(&["https://hooks.example/herald"], None).expect_err("refused");
        assert!(no_secret.contains("--webhook-secret"), "{no_secret}");
        assert!(with(&["ftp://hooks.example/"], Some(SECRET)).is_err());
        assert!(with(&["not a url"], Some(SECRET)).is_err());
        let twice = with(&["http://a.example/", "http://a.example/"], Some(SECRET));
        assert!(twice.expect_err("refused").contains("twice"));
    }

    #[test]
    fn a_bad_secret_is_refused_without_being_repeated() {
        let err = with(&["https://h.example/"], Some("whsec_tooshort")).expect_err("refused");
        assert!(!err.contains("tooshort"), "{err}");
        let password = with(&["https://u:hunter2@h.example/"], Some("nope!")).expect_err("bad");
        assert!(!password.contains("hunter2"), "{password}");
    }
}
