//! The identity provider's keys over time: a JWKS rotation (on the REST API,
//! the handshake and a `refresh` frame), a JWKS without usable keys, EC keys
//! bound to their curve, and the 30 s of clock skew.

use crate::helpers::*;
use crate::identity::{me_status, with_public_key, ws_welcomed};
use crate::idp::*;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::Duration;

/// The app's view of the provider's JWKS.
fn jwks_of(app: &TestApp) -> &herald::identity::Jwks {
    app.state
        .keys
        .identity()
        .and_then(|i| i.jwks())
        .expect("a JWKS is configured")
}

/// Instead of waiting 30 s: the last fetch is made 30 s older, so that an
/// unknown kid may refetch again (as the periodic refetch is called directly
/// in `jwks_keys_by_kid_refetched_for_an_unknown_kid_at_most_every_30_s`).
fn thirty_seconds_pass(app: &TestApp) {
    jwks_of(app).age_last_fetch(Duration::from_secs(30));
}

both_backends!(a_refresh_frame_with_a_freshly_rotated_kid_is_accepted);
/// The `refresh` frame goes through the handshake's path: an unknown kid
/// refetches the JWKS before the token is checked.
async fn a_refresh_frame_with_a_freshly_rotated_kid_is_accepted() {
    let jwks = jwks_server().await;
    jwks.answer(200, self::jwks(&[(Kind::Rsa, "key-a")]));
    let url = jwks.url.clone();
    let app = spawn_app_with(move |s| s.jwks_url = Some(url)).await;
    let mut no_groups = claims("alice");
    no_groups["groups"] = json!([]);
    let a = key(Kind::Rsa).sign(Algorithm::RS256, Some("key-a"), &no_groups);
    let (mut ws, _) = Ws::open(&app.ws_url("/ws?id=alice"), &["herald.v1", &a])
        .await
        .expect("open");
    assert_eq!(ws.next_json().await["type"], "welcome");

    jwks.answer(200, self::jwks(&[(Kind::RsaNext, "key-b")]));
    thirty_seconds_pass(&app);
    let b = key(Kind::RsaNext).sign(Algorithm::RS256, Some("key-b"), &claims("alice"));
    ws.send_json(json!({"type": "refresh", "data": {"token": b}}))
        .await;
    ws.assert_no("error", Duration::from_millis(1500)).await;
    assert_eq!(jwks.hits(), 2, "refetched for the refresh frame's kid");
    // The refreshed token's groups apply.
    app.group_announcement_reaches(&mut ws, "staff").await;
}

both_backends!(a_rotated_jwks_is_fetched_once_for_the_new_kid_and_the_old_key_is_refused);
async fn a_rotated_jwks_is_fetched_once_for_the_new_kid_and_the_old_key_is_refused() {
    let jwks = jwks_server().await;
    jwks.answer(200, self::jwks(&[(Kind::Rsa, "key-a")]));
    let url = jwks.url.clone();
    let app = spawn_app_with(move |s| s.jwks_url = Some(url)).await;
    let a = key(Kind::Rsa).sign(Algorithm::RS256, Some("key-a"), &claims("alice"));
    let b = key(Kind::RsaNext).sign(Algorithm::RS256, Some("key-b"), &claims("alice"));
    assert_eq!(me_status(&app, &a).await, 200);
    eprintln!(
        "rotation: JWKS fetches at start, kid A served: {}",
        jwks.hits()
    );
    assert_eq!(jwks.hits(), 1);

    // The provider rotates to kid B (a new key); herald has not looked yet.
    jwks.answer(200, self::jwks(&[(Kind::RsaNext, "key-b")]));
    assert_eq!(me_status(&app, &a).await, 200, "A is still cached");
    eprintln!(
        "rotation: JWKS fetches after the swap to kid B, before any B token: {}",
        jwks.hits()
    );
    assert_eq!(jwks.hits(), 1);

    // A token under B: unknown kid, one refetch, accepted — here and on
    // the WebSocket handshake.
    thirty_seconds_pass(&app);
    assert_eq!(me_status(&app, &b).await, 200, "B after one refetch");
    eprintln!(
        "rotation: JWKS fetches after the first token under kid B: {}",
        jwks.hits()
    );
    assert_eq!(jwks.hits(), 2);
    assert!(ws_welcomed(&app, "alice", &b).await);

    // A is gone from the fetched set: refused, without another fetch
    // within 30 s.
    assert_eq!(
        me_status(&app, &a).await,
        401,
        "A after the swap was fetched"
    );
    assert!(!ws_welcomed(&app, "alice", &a).await);
    eprintln!(
        "rotation: JWKS fetches after tokens under kid A were refused: {}",
        jwks.hits()
    );
    assert_eq!(jwks.hits(), 2);
}

both_backends!(a_jwks_without_usable_keys_keeps_the_last_good_ones);
async fn a_jwks_without_usable_keys_keeps_the_last_good_ones() {
    let jwks = jwks_server().await;
    let url = jwks.url.clone();
    let app = spawn_app_with(move |s| s.jwks_url = Some(url)).await;
    let rsa = sign(Algorithm::RS256, Some("rsa-1"), &claims("alice"));
    assert_eq!(me_status(&app, &rsa).await, 200);
    let unusable = [
        json!({"keys": []}),
        // Only a symmetric key, which herald never takes from a JWKS.
        json!({"keys": [{"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}]}),
    ];
    let before = jwks_errors_counted(&app).await;
    for body in unusable {
        jwks.answer(200, body.to_string());
        let fetched = herald::identity::refresh(jwks_of(&app)).await;
        assert_eq!(me_status(&app, &rsa).await, 200, "{body}: keys kept");
        assert!(fetched.is_err(), "{body}: {fetched:?}");
    }
    let after = jwks_errors_counted(&app).await;
    // The counter is the process's: other tests may add to it meanwhile.
    assert!(after >= before + 2.0, "errors counted: {before} -> {after}");
}

/// `herald_jwks_fetches_total{result="error"}` now.
async fn jwks_errors_counted(app: &TestApp) -> f64 {
    sample(
        &metrics_text(app).await,
        r#"herald_jwks_fetches_total{result="error"} "#,
    )
}

/// `token` with its header's `alg` replaced (the signature left as it is).
fn relabelled(token: &str, alg: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, rest) = token.split_once('.').expect("a JWT");
    let mut header: Value =
        serde_json::from_slice(&b64.decode(header).expect("base64")).expect("json");
    header["alg"] = json!(alg);
    format!("{}.{rest}", b64.encode(header.to_string()))
}

async fn me_error(app: &TestApp, token: &str) -> (u16, String) {
    let response = app.user_get(token, "/api/me/unread-count").await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

both_backends!(ec_pem_keys_take_only_their_curves_algorithm);
async fn ec_pem_keys_take_only_their_curves_algorithm() {
    let p256 = with_public_key(Kind::Ec256).await;
    let es256 = sign(Algorithm::ES256, None, &claims("alice"));
    assert_eq!(me_status(&p256, &es256).await, 200);
    assert!(ws_welcomed(&p256, "alice", &es256).await);
    let (status, body) = me_error(&p256, &relabelled(&es256, "ES384")).await;
    assert_eq!(status, 401);
    assert!(body.contains("ES384 does not match the key"), "{body}");
    let es384 = sign(Algorithm::ES384, None, &claims("alice"));
    assert_eq!(me_status(&p256, &es384).await, 401, "another key");

    let p384 = with_public_key(Kind::Ec384).await;
    assert_eq!(me_status(&p384, &es384).await, 200);
    assert!(ws_welcomed(&p384, "alice", &es384).await);
    let (status, body) = me_error(&p384, &relabelled(&es384, "ES256")).await;
    assert_eq!(status, 401);
    assert!(body.contains("ES256 does not match the key"), "{body}");
}

both_backends!(provider_tokens_get_30_s_of_clock_skew_and_no_more);
async fn provider_tokens_get_30_s_of_clock_skew_and_no_more() {
    let app = with_public_key(Kind::Rsa).await;
    let with = |claim: &str, at: u64| {
        let mut c = claims("alice");
        c[claim] = json!(at);
        sign(Algorithm::RS256, None, &c)
    };
    let now = now();
    let cases = [
        ("exp 10 s ago", with("exp", now - 10), 200),
        ("exp 40 s ago", with("exp", now - 40), 401),
        ("nbf 10 s ahead", with("nbf", now + 10), 200),
        ("nbf 40 s ahead", with("nbf", now + 40), 401),
    ];
    for (what, token, status) in cases {
        assert_eq!(me_status(&app, &token).await, status, "{what}");
    }
}
