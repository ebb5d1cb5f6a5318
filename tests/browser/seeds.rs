//! The five articles' hand-written clients (four have code) run unchanged
//! against herald apart from their base URL: each connects, heartbeats in its
//! own way and receives an announcement in the shape it reads.
//!
//! Each page (in `seeds/`) reproduces what the article's code does; the test
//! writes it into a page on herald's origin, after `instrument.js`, which
//! records sockets, frames, console lines and popups.

use crate::harness::*;
use serde_json::{json, Value};

const INSTRUMENT: &str = include_str!("seeds/instrument.js");
const SEED_000: &str = include_str!("seeds/seed-000.html");
const SEED_002: &str = include_str!("seeds/seed-002.html");
const SEED_003: &str = include_str!("seeds/seed-003.html");
const SEED_004: &str = include_str!("seeds/seed-004.html");

/// What the host app around a seed client provides before it runs.
struct Host<'a> {
    /// `window.SEED`: the base URL and whatever the article's app config held.
    config: Value,
    /// A `herald_token` cookie and the path it is scoped to.
    cookie: Option<(&'a str, &'a str)>,
    /// localStorage entries the app's login left behind.
    storage: &'a [(&'a str, &'a str)],
}

/// Opens a page on herald's origin and writes the seed page into it.
async fn open_seed(tab: &Tab<'_>, base: &str, name: &str, host: Host<'_>, page: &str) {
    // Any path herald does not serve gives a page of its origin to write into.
    tab.goto(&format!("{base}/seed-{name}")).await;
    if let Some((token, path)) = host.cookie {
        tab.js(&format!(
            "document.cookie = {}; return true;",
            js_str(&format!("herald_token={token}; path={path}; SameSite=Lax"))
        ))
        .await;
    }
    for (key, value) in host.storage {
        tab.js(&format!(
            "localStorage.setItem({}, {}); return true;",
            js_str(key),
            js_str(value)
        ))
        .await;
    }
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>seed {name}</title>\
         <script>window.SEED = {};</script><script>{INSTRUMENT}</script>{page}",
        host.config
    );
    tab.js(&format!(
        "document.open(); document.write({}); document.close(); return true;",
        js_str(&html)
    ))
    .await;
}

/// The page's sockets as recorded by instrument.js.
async fn sockets(tab: &Tab<'_>) -> Vec<Value> {
    let v = tab
        .js("return JSON.parse(JSON.stringify(__seed.sockets))")
        .await;
    v.as_array().cloned().unwrap_or_default()
}

fn frames(socket: &Value) -> Vec<Value> {
    socket["received"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().and_then(|s| serde_json::from_str(s).ok()))
        .collect()
}

/// A JavaScript expression: the first socket received a frame satisfying `test` (on `f`).
fn received(test: &str) -> String {
    format!("__seed.sockets[0]?.received.some((raw) => {{ const f = JSON.parse(raw); return {test}; }})")
}

#[tokio::test]
async fn seed_clients_connect_heartbeat_and_receive_unchanged() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let base = herald.base();
    let ws_base = format!("ws://127.0.0.1:{}", herald.port);

    // 000: SocketService, wsUrl + userId + ':' + Date.now(); token in a cookie.
    let seed000 = browser.tab().await;
    let token7 = token("7", 3600);
    let host = Host {
        config: json!({"wsUrl": format!("{ws_base}/ws/"), "userId": "7"}),
        cookie: Some((&token7, "/ws/")),
        storage: &[],
    };
    open_seed(&seed000, &base, "000", host, SEED_000).await;

    // 002: new WebSocket('ws://…?id=1', [token]) with headerBeat every 3 s.
    let seed002 = browser.tab().await;
    let token1 = token("1", 3600);
    let host = Host {
        config: json!({"wsUrl": format!("{ws_base}/ws"), "token": token1}),
        cookie: None,
        storage: &[],
    };
    open_seed(&seed002, &base, "002", host, SEED_002).await;

    // 003: ws://<VITE_BaseUrl>/websocket/<id>, {sendType:"HEALTH"}; token in a cookie.
    let seed003 = browser.tab().await;
    let token9 = token("9", 3600);
    let host = Host {
        config: json!({"baseUrl": base, "userId": "9"}),
        cookie: Some((&token9, "/websocket/")),
        storage: &[],
    };
    open_seed(&seed003, &base, "003", host, SEED_003).await;

    // 004: ?project=jd-shop&uid=<id>, 'heartCheck', resets on code 2; token in the query.
    let seed004 = browser.tab().await;
    let token42 = token("42", 3600);
    let host = Host {
        config: json!({"wsUrl": format!("{ws_base}/ws?token={token42}&"), "heartbeatMs": 1000}),
        cookie: None,
        storage: &[("userInfo", r#"{"id":42}"#)],
    };
    open_seed(&seed004, &base, "004", host, SEED_004).await;

    // Connected, each in its own way.
    seed000
        .wait_for(
            "seed 000 connected, with its onmessage attached after its 1 s poll",
            "__seed.logs.some((l) => l.startsWith('Socket连接服务端成功')) && __seed.sockets[0].ws.onmessage",
        )
        .await;
    let s = &sockets(&seed000).await[0];
    let url = s["url"].as_str().expect("url");
    let stamp = url
        .strip_prefix(&format!("{ws_base}/ws/7:"))
        .unwrap_or_else(|| panic!("seed 000 URL form: {url}"));
    assert!(stamp.chars().all(|c| c.is_ascii_digit()), "{url}");

    seed002
        .wait_for("seed 002 connected", "__seed.logs.includes('连接上了')")
        .await;
    let s = &sockets(&seed002).await[0];
    assert_eq!(s["offered"], json!([token1]));
    assert_eq!(s["protocol"], token1, "the offered token is echoed");
    seed002
        .wait_for(
            "seed 002's headerBeat answered",
            &received("f.type === 'pong'"),
        )
        .await;
    let s = &sockets(&seed002).await[0];
    assert_eq!(s["sent"][0], r#"{"type":"headerBeat","msg":"test"}"#);
    assert_eq!(frames(s)[0]["type"], "welcome", "/ws?id= is protocol v1");

    seed003
        .wait_for(
            "seed 003's HEALTH answered with code 2",
            &received("f.type === 'pong' && f.code === 2"),
        )
        .await;
    let s = &sockets(&seed003).await[0];
    assert_eq!(s["url"], format!("{ws_base}/websocket/9"));
    assert_eq!(s["sent"][0], r#"{"sendType":"HEALTH"}"#);
    assert!(seed003
        .js("return __seed.logs.some((l) => l.startsWith('获取到的信息') && l.includes('\"code\":2'))")
        .await
        .as_bool()
        .unwrap_or(false));

    seed004
        .wait_for(
            "three heartChecks from seed 004",
            "__seed.sockets[0]?.sent.filter((s) => s === 'heartCheck').length >= 3",
        )
        .await;
    let all = sockets(&seed004).await;
    assert_eq!(
        all.len(),
        1,
        "code 2 kept seed 004 from closing and reconnecting"
    );
    let s = &all[0];
    assert!(s["url"]
        .as_str()
        .is_some_and(|u| u.ends_with("&project=jd-shop&uid=42")));
    let pongs: Vec<Value> = frames(s)
        .into_iter()
        .filter(|f| f["type"] == "pong")
        .collect();
    assert!(
        pongs.len() >= 2 && pongs.iter().all(|p| p["code"] == 2),
        "{pongs:?}"
    );

    // The legacy forms get no welcome: seed 000 pops up on any frame.
    for tab in [&seed000, &seed003, &seed004] {
        let s = &sockets(tab).await[0];
        assert!(
            frames(s).iter().all(|f| f["type"] != "welcome"),
            "no welcome on {}",
            s["url"]
        );
    }

    // One announcement for everyone reaches all four, in the shape each reads.
    let title = "系统维护通知";
    let content = "今晚 22:00-23:00 系统维护,请提前保存工作。";
    herald
        .announce(json!({"title": title, "content": content, "level": "warning", "audience": {"all": true}}))
        .await;

    let notice = seed000
        .wait_for(
            "seed 000's popup",
            "!document.getElementById('notice').hidden && document.getElementById('notice').textContent",
        )
        .await;
    assert_eq!(notice, format!("{title}: {content}"));
    let s = &sockets(&seed000).await[0];
    assert_eq!(frames(s)[0]["type"], "announcement", "its first frame");

    seed002
        .wait_for(
            "seed 002 logs the announcement",
            &format!(
                "__seed.logs.some((l) => l.includes('\"announcement\"') && l.includes({}))",
                js_str(title)
            ),
        )
        .await;

    seed003
        .wait_for(
            "seed 003 logs the announcement",
            &format!(
                "__seed.logs.some((l) => l.startsWith('获取到的信息') && l.includes({}))",
                js_str(title)
            ),
        )
        .await;
    let s = &sockets(&seed003).await[0];
    let announcement = frames(s)
        .into_iter()
        .find(|f| f["type"] == "announcement")
        .expect("announcement frame");
    assert_eq!(
        announcement["title"], title,
        "legacy frames repeat the fields at the top"
    );
    assert_eq!(announcement["data"]["title"], title);

    let notices = seed004
        .wait_for(
            "seed 004's $notify",
            "__seed.notices.length && __seed.notices",
        )
        .await;
    assert_eq!(
        notices[0]["title"], title,
        "seed 004 reads data.title off the frame"
    );
    assert_eq!(notices[0]["message"], content);
    let desktop = seed004.js("return __seed.desktop").await;
    assert_eq!(desktop, json!([{"title": title, "body": content}]));

    // Nobody had to reconnect.
    for tab in [&seed000, &seed002, &seed003, &seed004] {
        let all = sockets(tab).await;
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0]["closed"].is_null(), "{all:?}");
    }
    browser.quit().await;
}
