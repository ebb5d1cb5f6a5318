//! Cross-origin access: the user API and the event stream answer origins in
//! `--allowed-origins` (preflight 204, the origin echoed, `Vary: Origin`);
//! other origins get no CORS headers; the admin API never does.

use crate::helpers::*;

const APP: &str = "https://app.example";

async fn app() -> TestApp {
    spawn_app_with(|s| s.allowed_origins = vec![APP.into()]).await
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .expect("request")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

both_backends!(the_user_api_answers_an_allowed_origin);
async fn the_user_api_answers_an_allowed_origin() {
    let app = app().await;
    let res = preflight(&app, "/api/me/inbox", APP, "GET").await;
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    let methods = header(&res, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = header(&res, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for wanted in ["authorization", "content-type", "last-event-id"] {
        assert!(headers.contains(wanted), "{headers}");
    }
    assert!(header(&res, "access-control-max-age").is_some());

    let res = app
        .http
        .get(format!("{}/api/me/unread-count", app.address))
        .bearer_auth(app.token("alice"))
        .header("Origin", APP)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert!(header(&res, "vary")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("origin"));
}

both_backends!(other_origins_and_the_admin_api_get_no_cors_headers);
async fn other_origins_and_the_admin_api_get_no_cors_headers() {
    let app = app().await;
    let res = preflight(&app, "/api/me/inbox", "https://evil.example", "GET").await;
    assert_no_cors(&res);
    let res = app
        .http
        .get(format!("{}/api/me/unread-count", app.address))
        .bearer_auth(app.token("alice"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        200,
        "served, but the browser keeps it from the page"
    );
    assert_no_cors(&res);

    let res = preflight(&app, "/api/announcements", APP, "POST").await;
    assert_no_cors(&res);
    let res = app
        .http
        .get(format!("{}/api/announcements", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Origin", APP)
        .send()
        .await
        .expect("request");
    assert_no_cors(&res);
}

/// No CORS header at all: the browser keeps the answer from the page.
fn assert_no_cors(res: &reqwest::Response) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
    ] {
        assert_eq!(header(res, name), None, "{name}");
    }
}

both_backends!(the_event_stream_answers_an_allowed_origin);
async fn the_event_stream_answers_an_allowed_origin() {
    let app = app().await;
    let res = preflight(&app, "/sse?id=alice", APP, "GET").await;
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    let res = app
        .http
        .get(format!("{}/sse?id=alice", app.address))
        .bearer_auth(app.token("alice"))
        .header("Origin", APP)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
}
