//! A test identity provider: key pairs generated when the tests run (with
//! `openssl genpkey`, once per test binary, in a temporary directory), their
//! public keys as PEM files and JWKs, tokens signed with them, and a JWKS
//! endpoint on loopback whose answer the test controls.

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "herald";

/// The kinds of key the tests sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rsa,
    /// A second RSA key: the one a provider rotates to.
    RsaNext,
    Ec256,
    Ec384,
    Ed25519,
}

const KINDS: [Kind; 5] = [
    Kind::Rsa,
    Kind::RsaNext,
    Kind::Ec256,
    Kind::Ec384,
    Kind::Ed25519,
];

/// One generated key pair.
pub struct TestKey {
    pub kind: Kind,
    private_pem: Vec<u8>,
    /// The public key as a PEM file, for `--jwt-public-key`.
    pub public_pem: PathBuf,
    /// The public key's JWK parameters (no `kid`).
    jwk: Value,
}

struct Keys {
    _dir: tempfile::TempDir,
    keys: Vec<TestKey>,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (the identity tests generate their keys with it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn generate(dir: &Path, kind: Kind) -> TestKey {
    let name = format!("{kind:?}").to_lowercase();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let path = |p: &Path| p.to_str().expect("utf-8 temp path").to_string();
    let (private_s, public_s) = (path(&private), path(&public));
    let algorithm: &[&str] = match kind {
        Kind::Rsa | Kind::RsaNext => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Kind::Ec256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Kind::Ec384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        Kind::Ed25519 => &["-algorithm", "ED25519"],
    };
    // PKCS#8, which is what jsonwebtoken's `from_ec_pem`/`from_ed_pem` read.
    let mut args = vec!["genpkey"];
    args.extend_from_slice(algorithm);
    args.extend_from_slice(&["-out", &private_s]);
    openssl(&args);
    openssl(&["pkey", "-in", &private_s, "-pubout", "-out", &public_s]);
    // The SubjectPublicKeyInfo ends with the key itself: the uncompressed EC
    // point (0x04 | x | y) or the 32 Ed25519 bytes.
    let der = openssl(&["pkey", "-pubin", "-in", &public_s, "-outform", "DER"]);
    let tail = |n: usize| &der[der.len() - n..];
    let jwk = match kind {
        Kind::Rsa | Kind::RsaNext => {
            let text = String::from_utf8(openssl(&[
                "rsa", "-pubin", "-in", &public_s, "-noout", "-modulus", "-text",
            ]))
            .expect("utf-8");
            assert!(text.contains("Exponent: 65537"), "{text}");
            let hex = text
                .lines()
                .find_map(|l| l.strip_prefix("Modulus="))
                .expect("modulus");
            let n: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            json!({"kty": "RSA", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB"})
        }
        Kind::Ec256 | Kind::Ec384 => {
            let (crv, size) = if kind == Kind::Ec256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            let point = tail(1 + 2 * size);
            assert_eq!(point[0], 4, "an uncompressed point");
            json!({"kty": "EC", "use": "sig", "crv": crv,
                   "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])})
        }
        Kind::Ed25519 => json!({"kty": "OKP", "use": "sig", "crv": "Ed25519", "x": b64(tail(32))}),
    };
    TestKey {
        kind,
        private_pem: std::fs::read(&private).expect("private key"),
        public_pem: public,
        jwk,
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = KINDS.iter().map(|&k| generate(dir.path(), k)).collect();
        Keys { _dir: dir, keys }
    })
}

pub fn key(kind: Kind) -> &'static TestKey {
    keys()
        .keys
        .iter()
        .find(|k| k.kind == kind)
        .expect("generated")
}

impl TestKey {
    /// The public PEM file's path, for `--jwt-public-key`.
    pub fn public_path(&self) -> String {
        self.public_pem.to_string_lossy().into_owned()
    }

    pub fn public_pem_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.public_pem).expect("public key")
    }

    /// The public key as a JWK under `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    fn encoding(&self) -> EncodingKey {
        match self.kind {
            Kind::Rsa | Kind::RsaNext => EncodingKey::from_rsa_pem(&self.private_pem),
            Kind::Ec256 | Kind::Ec384 => EncodingKey::from_ec_pem(&self.private_pem),
            Kind::Ed25519 => EncodingKey::from_ed_pem(&self.private_pem),
        }
        .expect("encoding key")
    }

    /// `claims` signed with this key as `alg`, under `kid`.
    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, &self.encoding()).expect("sign")
    }
}

/// `claims` signed with the key that goes with `alg` (RSA for RS/PS, P-256
/// for ES256, P-384 for ES384, Ed25519 for EdDSA).
pub fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let kind = match alg {
        Algorithm::RS256 | Algorithm::PS256 => Kind::Rsa,
        Algorithm::ES256 => Kind::Ec256,
        Algorithm::ES384 => Kind::Ec384,
        Algorithm::EdDSA => Kind::Ed25519,
        _ => panic!("no test key for {alg:?}"),
    };
    key(kind).sign(alg, kid, claims)
}

/// A JWKS document of these keys, each under its kid.
pub fn jwks(keys: &[(Kind, &str)]) -> String {
    let keys: Vec<Value> = keys.iter().map(|(k, kid)| key(*k).jwk(kid)).collect();
    json!({ "keys": keys }).to_string()
}

/// The RSA key as `rsa-1` and the P-256 key as `ec-1`.
pub fn standard_jwks() -> String {
    jwks(&[(Kind::Rsa, "rsa-1"), (Kind::Ec256, "ec-1")])
}

pub fn now() -> u64 {
    herald::auth::now_secs()
}

/// Claims a provider would issue for `user`, valid for ten minutes.
pub fn claims(user: &str) -> Value {
    json!({"sub": user, "iss": ISSUER, "aud": [AUDIENCE, "other"], "exp": now() + 600,
           "iat": now(), "groups": ["staff"]})
}

/// A JWKS endpoint the test controls: what it answers, and how often it
/// was asked.
pub struct JwksServer {
    pub url: String,
    pub body: Arc<Mutex<(u16, String)>>,
    pub hits: Arc<AtomicUsize>,
}

impl JwksServer {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn answer(&self, status: u16, body: String) {
        *self.body.lock().expect("lock") = (status, body);
    }
}

/// Serves the standard JWKS until told otherwise.
pub async fn jwks_server() -> JwksServer {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let body = Arc::new(Mutex::new((200, standard_jwks())));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    let server = HttpServer::new(move || {
        let (b, h) = (b.clone(), h.clone());
        App::new().route(
            "/jwks",
            web::get().to(move || {
                let (b, h) = (b.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, text) = b.lock().expect("lock").clone();
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).expect("status"),
                    )
                    .content_type("application/json")
                    .body(text)
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    JwksServer {
        url: format!("http://127.0.0.1:{port}/jwks"),
        body,
        hits,
    }
}
