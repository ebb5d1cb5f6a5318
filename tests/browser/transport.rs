//! herald.js over Server-Sent Events: a page whose WebSocket never opens (a
//! proxy that refuses the upgrade) moves to the event stream by itself and
//! works as before — announcements once, acks and reads by REST.

use crate::harness::*;
use serde_json::Value;

fn id_of(a: &Value) -> i64 {
    a["id"].as_i64().expect("id")
}

#[tokio::test]
async fn a_page_whose_websocket_never_opens_falls_back_to_the_event_stream() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let before = id_of(&herald.announce_all("Before the page").await);
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    // Nothing listens on port 9: every WebSocket fails before it opens.
    let hash = format!(
        "#user=alice&token={}&ws=ws://127.0.0.1:9/ws",
        token("alice", 3600)
    );
    tab.js(&format!("location.hash = {}; return true;", js_str(&hash)))
        .await;
    tab.wait_for(
        "open over the event stream",
        "heraldApp.client?.state === 'open' && heraldApp.client.transport === 'sse'",
    )
    .await;
    assert_eq!(tab.text("#transport").await, "event stream");

    let live = id_of(&herald.announce_all("Over the event stream").await);
    tab.wait_for(
        "the live toast",
        &format!("heraldApp.toastsShown.includes({live})"),
    )
    .await;
    let shown = tab.js("return heraldApp.toastsShown").await;
    assert_eq!(
        shown
            .as_array()
            .map(|a| a.iter().filter(|v| **v == live).count()),
        Some(1),
        "shown once: {shown}"
    );
    tab.js(&format!("heraldApp.client.read([{live}]); return true;"))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let view = herald
            .admin_get(&format!("/api/announcements/{live}"))
            .await;
        if view["stats"]["delivered"] == 1 && view["stats"]["read"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "receipts by REST: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The page's inbox holds the announcement published before it opened.
    tab.wait_for(
        "the older announcement in the inbox",
        &format!("document.querySelector(\"#inbox [data-id='{before}']\") !== null"),
    )
    .await;
    browser.quit().await;
}
