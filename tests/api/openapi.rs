//! The API document: `GET /api/openapi.json` answers without a token with
//! an OpenAPI 3.1 document that a 3.1 parser (`oas3`) reads, whose every
//! reference resolves, with the error shape and both bearer schemes; and it
//! names exactly the REST routes herald registers — no registered REST
//! route missing, no documented route that does not exist.
//!
//! actix-web has no public list of its routes. The registered ones are read
//! from the app itself: its resource map (public, but only printable: its
//! `Debug` form gives every resource's pattern, nested in its scopes), then
//! every method probed on every pattern. The app is `herald::routes::configure`
//! — the same function the server builds its app from — with one addition
//! that changes no route: an answer no route gives (418) for requests no
//! route takes, so "no route" tells apart from a route answering 404.

use crate::helpers::*;
use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode};
use actix_web::{test, web, App, HttpResponse};
use serde_json::Value;
use std::collections::BTreeSet;

/// Registered, and not REST: the WebSocket and its legacy URL forms, the
/// event stream, the demo pages and `herald.js` (the README documents them).
const NOT_REST: &[&str] = &[
    "/ws",
    "/ws/{tail}",
    "/websocket/{id}",
    "/sse",
    "/",
    "/{file}",
];

/// Every method a route could be registered for.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];

const UNMATCHED: StatusCode = StatusCode::IM_A_TEAPOT;

type Route = (String, String);

async fn document_from_server() -> Value {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/api/openapi.json", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200, "served without a token");
    let kind = res.headers()["content-type"].to_str().unwrap_or_default();
    assert!(kind.starts_with("application/json"), "{kind}");
    res.json().await.expect("JSON")
}

#[actix_web::test]
async fn the_document_is_valid_openapi_3_1() {
    let json = document_from_server().await;
    let spec = oas3::from_json(json.to_string()).expect("oas3 parses the document");
    let version = spec
        .validate_version()
        .expect("an OpenAPI version oas3 supports");
    assert_eq!((version.major, version.minor), (3, 1), "{}", spec.openapi);
    // Every reference resolves: bodies, answers and their schemas, parameters.
    let mut operations = 0;
    for (path, method, op) in spec.operations() {
        operations += 1;
        let at = format!("{method} {path}");
        op.parameters(&spec).unwrap_or_else(|e| panic!("{at}: {e}"));
        if let Some(body) = op
            .request_body(&spec)
            .unwrap_or_else(|e| panic!("{at}: {e}"))
        {
            for media in body.content.values() {
                media.schema(&spec).unwrap_or_else(|e| panic!("{at}: {e}"));
            }
        }
        let answers = op.responses(&spec);
        assert!(!answers.is_empty(), "{at} answers nothing");
        for answer in answers.values() {
            for media in answer.content.values() {
                media.schema(&spec).unwrap_or_else(|e| panic!("{at}: {e}"));
            }
        }
        // The scheme follows the API: the user's token on /api/me, the
        // admin's on the rest of /api, none elsewhere.
        let schemes: Vec<&str> = op
            .security
            .iter()
            .flat_map(|s| s.0.keys().map(String::as_str))
            .collect();
        let expected: &[&str] = if path.starts_with("/api/me/") {
            &["user_jwt"]
        } else if path.starts_with("/api/") && path != "/api/openapi.json" {
            &["admin_token"]
        } else {
            &[]
        };
        assert_eq!(schemes, expected, "{at}");
        if !expected.is_empty() {
            let unauthorized = &json["paths"][&path][method.as_str().to_lowercase()]["responses"]
                ["401"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(unauthorized, "#/components/schemas/ErrorBody", "{at}");
        }
    }
    assert!(operations >= 18, "{operations} operations");
    // References anywhere, nested ones too, name a schema that is there.
    let mut refs = Vec::new();
    collect_refs(&json, &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            json["components"]["schemas"].get(name).is_some(),
            "{r} is not there"
        );
    }
    let schemes = &json["components"]["securitySchemes"];
    assert_eq!(schemes["admin_token"]["type"], "http");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(schemes["user_jwt"]["type"], "http");
    assert_eq!(schemes["user_jwt"]["scheme"], "bearer");
    assert_eq!(schemes["user_jwt"]["bearerFormat"], "JWT");
    let error = &json["components"]["schemas"]["ErrorDetail"]["properties"];
    for field in ["code", "message", "field", "details"] {
        assert!(
            error.get(field).is_some(),
            "error shape lacks {field}: {error}"
        );
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// herald's routes, as the server registers them, on an in-process app;
/// with `extra`, also `POST /api/extra`, a route the document does not name.
async fn routes_app(
    extra: bool,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = ServiceResponse,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .default_service(web::to(|| async { HttpResponse::new(UNMATCHED) }))
            .configure(|cfg| {
                if extra {
                    cfg.route(
                        "/api/extra",
                        web::post().to(|| async { HttpResponse::Ok().finish() }),
                    );
                }
                herald::routes::configure(cfg, &[])
            }),
    )
    .await
}

/// The patterns of every resource in a resource map's pretty `Debug` form:
/// each `ResourceMap` whose `nodes` is `None` is a resource, its pattern the
/// patterns of the maps around it, then its own. `named:` repeats named
/// resources outside their scopes and is skipped.
fn resource_patterns(debug: &str) -> Vec<String> {
    let mut maps: Vec<(usize, Option<String>)> = Vec::new();
    let mut skipping: Option<usize> = None;
    let mut pattern_next = false;
    let mut found = Vec::new();
    for line in debug.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if let Some(at) = skipping {
            if indent == at && text.starts_with('}') {
                skipping = None;
            }
        } else if text == "named: {" {
            skipping = Some(indent);
        } else if text.ends_with("ResourceMap {") {
            maps.push((indent, None));
        } else if text.starts_with("patterns: List(") {
            panic!("a resource with several patterns: teach this test to read them");
        } else if text == "patterns: Single(" {
            pattern_next = true;
        } else if pattern_next {
            pattern_next = false;
            let pattern = text.trim_end_matches(',').trim_matches('"').to_string();
            if let Some((_, own @ None)) = maps.last_mut() {
                *own = Some(pattern);
            }
        } else if text == "nodes: None," {
            found.push(maps.iter().filter_map(|(_, p)| p.clone()).collect());
        } else if maps.last().is_some_and(|(at, _)| *at == indent) && text.starts_with('}') {
            maps.pop();
        }
    }
    found
}

/// A concrete path for a pattern: `1` for each `{name}`.
fn sample(pattern: &str) -> String {
    let mut path = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        path.push_str(&rest[..open]);
        path.push('1');
        rest = &rest[close..];
    }
    path + rest
}

/// Whether a route takes `method` on `pattern`: anything but "no route"
/// (418) and "no such method here" (405) is a route's answer, whatever its
/// status (no token, no app state: 401 or 500 are answers too).
async fn answers(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = ServiceResponse,
        Error = actix_web::Error,
    >,
    method: &str,
    pattern: &str,
) -> bool {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let req = test::TestRequest::default()
        .method(method.clone())
        .uri(&sample(pattern))
        .to_request();
    let res = test::call_service(app, req).await;
    let status = res.status();
    if status == UNMATCHED || status == StatusCode::METHOD_NOT_ALLOWED {
        return false;
    }
    let matched = res.request().match_pattern();
    assert_eq!(
        matched.as_deref(),
        Some(pattern),
        "{method} {} was answered ({status}) by another route",
        sample(pattern)
    );
    true
}

fn documented(doc: &Value) -> BTreeSet<Route> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            METHODS
                .iter()
                .filter(|m| item.contains_key(&m.to_lowercase()))
                .map(|m| (m.to_string(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The REST routes `app` registers, as (method, pattern), and the document
/// it serves.
async fn registered_and_document(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = ServiceResponse,
        Error = actix_web::Error,
    >,
) -> (BTreeSet<Route>, Value) {
    let res = test::call_service(
        app,
        test::TestRequest::get()
            .uri("/api/openapi.json")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patterns = resource_patterns(&format!("{:#?}", res.request().resource_map()));
    let doc: Value = serde_json::from_slice(&test::read_body(res).await).expect("JSON");
    // The reading of the map is checked against routes known to exist, so
    // that a change in actix's debug form fails here instead of finding
    // nothing to compare.
    for known in NOT_REST
        .iter()
        .chain(&["/api/me/receipts", "/api/announcements/{id}"])
    {
        assert!(
            patterns.iter().any(|p| p == known),
            "{known} not read from {patterns:?}"
        );
    }
    let mut registered = BTreeSet::new();
    for pattern in patterns.iter().filter(|p| !NOT_REST.contains(&p.as_str())) {
        for method in METHODS {
            if answers(app, method, pattern).await {
                registered.insert((method.to_string(), pattern.clone()));
            }
        }
    }
    assert!(registered.contains(&("POST".into(), "/api/me/receipts".into())));
    (registered, doc)
}

/// (registered but not in the document, in the document but not registered)
fn differences(registered: &BTreeSet<Route>, doc: &Value) -> (Vec<Route>, Vec<Route>) {
    let documented = documented(doc);
    (
        registered.difference(&documented).cloned().collect(),
        documented.difference(registered).cloned().collect(),
    )
}

#[actix_web::test]
async fn the_document_names_exactly_the_registered_rest_routes() {
    let app = routes_app(false).await;
    let (registered, doc) = registered_and_document(&app).await;
    let (undocumented, missing) = differences(&registered, &doc);
    assert!(
        undocumented.is_empty(),
        "registered REST routes missing from the document (annotate them and list them in \
         src/routes/openapi.rs): {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "the document names routes herald does not register: {missing:?}"
    );
    // And each documented route, asked directly, is answered by the route of
    // that very pattern (not a look-alike such as `/{file}`).
    for (method, path) in documented(&doc) {
        assert!(
            answers(&app, &method, &path).await,
            "{method} {path} is not answered"
        );
    }
}

/// The comparison above fails both ways: a route registered and not
/// documented (a real extra route, and one taken out of the document), and
/// documented routes that do not exist (a path, and a method on a real path).
#[actix_web::test]
async fn the_comparison_catches_a_difference_either_way() {
    let app = routes_app(true).await;
    let (registered, mut doc) = registered_and_document(&app).await;
    let receipts = doc["paths"]["/api/me/receipts"]
        .as_object_mut()
        .expect("documented");
    receipts.remove("post");
    let operation = serde_json::json!({"responses": {"200": {"description": "ok"}}});
    doc["paths"]["/api/me/nothing"] = serde_json::json!({ "get": operation.clone() });
    doc["paths"]["/api/announcements/{id}"]["put"] = operation;
    let (undocumented, missing) = differences(&registered, &doc);
    let route = |m: &str, p: &str| (m.to_string(), p.to_string());
    assert_eq!(
        undocumented,
        vec![
            route("POST", "/api/extra"),
            route("POST", "/api/me/receipts")
        ]
    );
    assert_eq!(
        missing,
        vec![
            route("GET", "/api/me/nothing"),
            route("PUT", "/api/announcements/{id}")
        ]
    );
}
