//! herald.js's inbox helpers from an app's own page on another origin: the
//! browser itself enforces CORS on every call (herald runs with
//! `--allowed-origins` naming the app), and a page on an origin herald does
//! not name cannot read the user API. `confirm(ids)` reaches the server.

use crate::harness::*;
use serde_json::{json, Value};

/// Starts a HeraldClient in the page (herald.js from the page's own origin)
/// against herald on `herald`'s port, as user `alice`.
fn start_client(herald: &Herald) -> String {
    format!(
        "window.__got = [];
         return import('/herald.js').then((m) => {{
           const c = new m.HeraldClient({{
             url: 'ws://127.0.0.1:{port}/ws',
             apiUrl: 'http://127.0.0.1:{port}/',
             userId: 'alice',
             storage: null,
             token: async () => {token},
           }});
           c.on('announcement', (a) => __got.push(a.id));
           window.__client = c;
           c.connect();
           return true;
         }});",
        port = herald.port,
        token = js_str(&token("alice", 3600)),
    )
}

/// Awaits `expr` (a promise) in the page: `{ok: value}` or `{err: message}`.
async fn call(tab: &Tab<'_>, expr: &str) -> Value {
    tab.js(&format!(
        "return ({expr}).then((v) => ({{ ok: v ?? null }}), (e) => ({{ err: String(e?.message ?? e) }}));"
    ))
    .await
}

async fn ok(tab: &Tab<'_>, expr: &str) -> Value {
    let result = call(tab, expr).await;
    assert!(result.get("err").is_none(), "{expr}: {result}");
    result["ok"].clone()
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

#[tokio::test]
async fn inbox_helpers_work_from_an_allowed_origin_and_confirm_reaches_the_server() {
    let Some(env) = browser_env() else { return };
    let app = AppOrigin::start();
    let herald = Herald::start_with(&["--allowed-origins", &app.origin()]);
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", app.origin())).await;
    tab.js(&start_client(&herald)).await;
    tab.wait_for("open", "window.__client?.state === 'open'")
        .await;

    let first = id(&herald.announce_all("First").await);
    let second = id(&herald.announce_all("Second").await);
    tab.wait_for(
        "both announcements",
        &format!("__got.includes({first}) && __got.includes({second})"),
    )
    .await;

    assert_eq!(ok(&tab, "__client.unreadCount()").await, 2);
    let inbox = ok(&tab, "__client.inbox()").await;
    let ids: Vec<i64> = inbox["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id)
        .collect();
    assert_eq!(ids, [second, first], "newest first: {inbox}");

    ok(&tab, &format!("__client.markRead([{first}])")).await;
    assert_eq!(ok(&tab, "__client.unreadCount()").await, 1);
    let unread = ok(&tab, "__client.inbox({ unread: true })").await;
    assert_eq!(
        unread["items"].as_array().map(Vec::len),
        Some(1),
        "{unread}"
    );
    assert_eq!(id(&unread["items"][0]), second);

    assert_eq!(
        ok(&tab, "__client.markAllRead()").await,
        json!({"marked": 1})
    );
    assert_eq!(ok(&tab, "__client.unreadCount()").await, 0);

    // confirm(ids) on the open socket: the server records it.
    let policy = id(&herald
        .announce(json!({"title": "Policy", "content": "Please confirm.",
                         "audience": {"all": true}, "requires_confirmation": true}))
        .await);
    tab.wait_for("the policy", &format!("__got.includes({policy})"))
        .await;
    tab.js(&format!("return __client.confirm([{policy}])"))
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = herald
            .admin_get(&format!("/api/announcements/{policy}"))
            .await["stats"]
            .clone();
        if stats["confirmed"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not confirmed: {stats}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let inbox = ok(&tab, "__client.inbox()").await;
    assert_eq!(inbox["items"][0]["id"], policy);
    assert_eq!(inbox["items"][0]["confirmed"], true, "{inbox}");
    browser.quit().await;
}

#[tokio::test]
async fn a_page_on_an_origin_herald_does_not_name_cannot_read_the_inbox() {
    let Some(env) = browser_env() else { return };
    let allowed = AppOrigin::start();
    let other = AppOrigin::start();
    let herald = Herald::start_with(&["--allowed-origins", &allowed.origin()]);
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", other.origin())).await;
    tab.js(&start_client(&herald)).await;
    // The browser refuses to hand the page herald's answer: no CORS grant.
    let refused = call(&tab, "__client.unreadCount()").await;
    assert!(
        refused["err"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{refused}"
    );
    browser.quit().await;
}
