//! Tokens from the app's own identity provider: a PEM public key or a JWKS,
//! the algorithm tied to the key, issuer and audience, `nbf`, claims by dot
//! path — on the WebSocket, the event stream and `/api/me/*` alike.

use crate::helpers::*;
use crate::idp::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub async fn with_public_key(kind: Kind) -> TestApp {
    let path = key(kind).public_path();
    spawn_app_with(move |s| {
        s.jwt_public_key = Some(path);
        s.jwt_issuer = Some(ISSUER.into());
        s.jwt_audience = Some(AUDIENCE.into());
    })
    .await
}

pub async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.user_get(token, "/api/me/unread-count")
        .await
        .status()
        .as_u16()
}

pub async fn ws_welcomed(app: &TestApp, user: &str, token: &str) -> bool {
    let url = app.ws_url(&format!("/ws?id={user}"));
    let Ok((mut ws, _)) = Ws::open(&url, &["herald.v1", token]).await else {
        return false;
    };
    ws.next_json().await["type"] == "welcome"
}

both_backends!(provider_tokens_work_everywhere_beside_heralds_own);
async fn provider_tokens_work_everywhere_beside_heralds_own() {
    let app = with_public_key(Kind::Rsa).await;
    let token = sign(Algorithm::RS256, None, &claims("alice"));
    assert_eq!(me_status(&app, &token).await, 200);
    assert!(ws_welcomed(&app, "alice", &token).await);
    let sse = app
        .http
        .get(format!("{}/sse?id=alice", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(sse.status().as_u16(), 200);
    // PS256 is an RSA algorithm too; herald's own tokens keep working.
    let pss = sign(Algorithm::PS256, None, &claims("alice"));
    assert_eq!(me_status(&app, &pss).await, 200);
    assert_eq!(me_status(&app, &app.token("bob")).await, 200);
    // The groups come from the provider's token.
    let url = app.ws_url("/ws?id=alice");
    let (mut staff, _) = Ws::open(&url, &["herald.v1", &token]).await.expect("open");
    staff.next_json().await;
    app.group_announcement_reaches(&mut staff, "staff").await;
}

both_backends!(forged_and_mismatched_provider_tokens_are_refused);
async fn forged_and_mismatched_provider_tokens_are_refused() {
    use base64::Engine;
    let app = with_public_key(Kind::Rsa).await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("alice"))
    );
    // HS256 "signed" with the public key as the secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(&key(Kind::Rsa).public_pem_bytes()),
    )
    .expect("sign");
    let mut wrong_iss = claims("alice");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 120);
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 120);
    // --jwt-issuer and --jwt-audience are set: a token must carry them.
    let mut no_iss = claims("alice");
    no_iss.as_object_mut().map(|c| c.remove("iss"));
    let mut no_aud = claims("alice");
    no_aud.as_object_mut().map(|c| c.remove("aud"));
    let cases = [
        ("alg none", none),
        ("HS256 with the public key as secret", confused),
        (
            "ES256 against an RSA key",
            sign(Algorithm::ES256, None, &claims("alice")),
        ),
        (
            "EdDSA against an RSA key",
            sign(Algorithm::EdDSA, None, &claims("alice")),
        ),
        ("wrong iss", sign(Algorithm::RS256, None, &wrong_iss)),
        ("wrong aud", sign(Algorithm::RS256, None, &wrong_aud)),
        ("expired", sign(Algorithm::RS256, None, &expired)),
        ("nbf in the future", sign(Algorithm::RS256, None, &early)),
        ("no iss", sign(Algorithm::RS256, None, &no_iss)),
        ("no aud", sign(Algorithm::RS256, None, &no_aud)),
    ];
    for (what, token) in cases {
        assert_eq!(me_status(&app, &token).await, 401, "{what}");
        assert!(!ws_welcomed(&app, "alice", &token).await, "{what}");
    }
}

both_backends!(claims_by_dot_path_name_the_user_and_groups);
async fn claims_by_dot_path_name_the_user_and_groups() {
    let path = key(Kind::Ed25519).public_path();
    let app = spawn_app_with(move |s| {
        s.jwt_public_key = Some(path);
        s.jwt_user_claim = "preferred_username".into();
        s.jwt_groups_claim = "realm_access.roles".into();
    })
    .await;
    let token = sign(
        Algorithm::EdDSA,
        None,
        &json!({"sub": "0f3a-uuid", "preferred_username": "carol", "exp": now() + 600,
                "realm_access": {"roles": ["ops"]}}),
    );
    assert!(ws_welcomed(&app, "carol", &token).await);
    let url = app.ws_url("/ws?id=carol");
    let (mut ws, _) = Ws::open(&url, &["herald.v1", &token]).await.expect("open");
    ws.next_json().await;
    app.group_announcement_reaches(&mut ws, "ops").await;
}

both_backends!(jwks_keys_by_kid_refetched_for_an_unknown_kid_at_most_every_30_s);
async fn jwks_keys_by_kid_refetched_for_an_unknown_kid_at_most_every_30_s() {
    let jwks = jwks_server().await;
    let url = jwks.url.clone();
    let app = spawn_app_with(move |s| s.jwks_url = Some(url)).await;
    assert_eq!(jwks.hits(), 1, "fetched at start");
    let rsa = sign(Algorithm::RS256, Some("rsa-1"), &claims("alice"));
    let ec = sign(Algorithm::ES256, Some("ec-1"), &claims("alice"));
    assert_eq!(me_status(&app, &rsa).await, 200);
    assert_eq!(me_status(&app, &ec).await, 200);
    // RS256 under the EC key's id: the key's type decides.
    let swapped = sign(Algorithm::RS256, Some("ec-1"), &claims("alice"));
    assert_eq!(me_status(&app, &swapped).await, 401);
    assert_eq!(jwks.hits(), 1, "known kids need no fetch");

    // Unknown kids: refused; the JWKS is refetched at most every 30 s.
    let unknown = sign(Algorithm::RS256, Some("rotated-2"), &claims("alice"));
    assert_eq!(me_status(&app, &unknown).await, 401);
    assert!(!ws_welcomed(&app, "alice", &unknown).await);
    assert_eq!(jwks.hits(), 1, "within 30 s of the last fetch");

    // A failed fetch keeps the last good keys, and is counted.
    jwks.answer(500, "down".into());
    if let Some(keys) = app.state.keys.identity().and_then(|i| i.jwks()) {
        let _ = herald::identity::refresh(keys).await;
    }
    assert_eq!(me_status(&app, &rsa).await, 200, "last good keys kept");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains(r#"herald_jwks_fetches_total{result="error"}"#),
        "{metrics}"
    );
}

both_backends!(a_provider_that_is_down_at_start_is_asked_again_for_an_unknown_kid);
async fn a_provider_that_is_down_at_start_is_asked_again_for_an_unknown_kid() {
    let jwks = jwks_server().await;
    jwks.answer(503, "starting".into());
    let url = jwks.url.clone();
    let app = spawn_app_with(move |s| s.jwks_url = Some(url)).await;
    jwks.answer(200, standard_jwks());
    let rsa = sign(Algorithm::RS256, Some("rsa-1"), &claims("alice"));
    assert_eq!(
        me_status(&app, &rsa).await,
        200,
        "refetched for the unknown kid"
    );
    assert_eq!(jwks.hits(), 2);
}
