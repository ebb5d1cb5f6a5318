//! The demo pages and `herald.js`, embedded in the binary so herald serves
//! them from any working directory. Each carries an ETag; HTML and scripts
//! are revalidated on every load so an upgrade is never half-applied. Each
//! also carries a Content-Security-Policy and X-Frame-Options, so the pages
//! (which hold the admin token) run only herald's own code and cannot be
//! framed by another site.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/", $path)),
        }
    };
}

/// The pages load only their own scripts and styles (no inline code) and
/// talk to herald over fetch and WebSocket. `'self'` covers same-origin
/// WebSocket only in CSP level 3 browsers, hence `ws:`/`wss:`. Form
/// submission and `<base>` are not covered by `default-src`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("admin.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("admin.js", "text/javascript; charset=utf-8"),
    asset!("admin-recipients.js", "text/javascript; charset=utf-8"),
    asset!("herald.js", "text/javascript; charset=utf-8"),
    asset!("herald.css", "text/css; charset=utf-8"),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/{file}", web::get().to(file));
}

/// A validator from the content: FNV-1a is enough to tell versions apart.
/// Weak (`W/`), because the same content goes out gzip- or
/// brotli-compressed or not, and a strong tag would claim the bytes match.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("W/\"{hash:016x}\"")
}

/// `If-None-Match` compares weakly (RFC 9110, 13.1.2): `W/` aside, the
/// tags must be equal; so a tag from before herald's tags were weak
/// still matches.
fn matches(candidate: &str, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    opaque(candidate) == opaque(tag)
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let tag = etag(asset.body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| matches(t, &tag)));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &ASSETS[0])
}

async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.path == name.as_str()) {
        Some(asset) => serve(&req, asset),
        None => actix_web::ResponseError::error_response(&crate::error::AppError::NotFound(
            format!("/{name}"),
        )),
    }
}
