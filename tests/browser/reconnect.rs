//! herald.js in the user page when things go wrong: the server is killed (or
//! stopped with SIGTERM) and restarted, the page is reloaded or left and
//! reopened, the token expires or belongs to someone else.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Counts every WebSocket the page opens. Installed on the signed-out page,
/// before signing in through the fragment, so herald.js uses it.
const RECORD_DIALS: &str = "
    window.__dials = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url, protocols) { super(url, protocols); __dials.push({url: String(url), at: Date.now()}); }
    };
    return true;";

async fn sign_in(tab: &Tab<'_>, user: &str, token: &str) {
    tab.js(&format!(
        "location.hash = {}; return true;",
        js_str(&format!("#user={user}&token={token}"))
    ))
    .await;
}

fn toast_shown(id: i64) -> String {
    format!("heraldApp.toastsShown.includes({id})")
}

fn id_of(a: &Value) -> i64 {
    a["id"].as_i64().expect("id")
}

#[tokio::test]
async fn user_page_survives_a_server_kill_and_a_reload_without_repeating_toasts() {
    let Some(env) = browser_env() else { return };
    let mut herald = Herald::start();
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    tab.js(RECORD_DIALS).await;
    sign_in(&tab, "alice", &token("alice", 3600)).await;
    tab.wait_for("open", "heraldApp.client?.state === 'open'")
        .await;
    tab.js(
        "window.__states = []; heraldApp.client.on('state', (s) => __states.push(s)); return true;",
    )
    .await;

    let before = id_of(&herald.announce_all("Before the crash").await);
    tab.wait_for("the first toast", &toast_shown(before)).await;
    let cursor = tab.js("return heraldApp.client.lastCursor").await;
    let cursor = cursor
        .as_i64()
        .expect("a cursor after the first announcement");

    // Due while herald is down: published when it comes back, delivered once.
    let due = now_ms() + 2_000;
    let while_down = id_of(
        &herald
            .announce(
                json!({"title": "Due while down", "content": "Published late, shown once.",
                "audience": {"all": true}, "publish_at": herald::domain::rfc3339(due)}),
            )
            .await,
    );
    let dials_before_kill = tab.js("return __dials.length").await.as_u64().expect("n");
    herald.kill();
    tab.wait_for("reconnecting", "heraldApp.client.state === 'reconnecting'")
        .await;
    tab.wait_for(
        "a few failed reconnects",
        &format!("__dials.length >= {} + 3", dials_before_kill),
    )
    .await;
    // The restart must come after the publish time has passed.
    let left = (due + 300 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(left)).await;
    herald.restart();

    tab.wait_for("the one due while down", &toast_shown(while_down))
        .await;
    tab.wait_for("open again", "heraldApp.client.state === 'open'")
        .await;
    let after = id_of(&herald.announce_all("After the restart").await);
    tab.wait_for("the live one after the restart", &toast_shown(after))
        .await;
    assert_eq!(
        tab.js("return heraldApp.toastsShown").await,
        json!([before, while_down, after]),
        "each toast exactly once"
    );
    let dials = tab
        .js(&format!("return __dials.slice({dials_before_kill})"))
        .await;
    let dials = dials.as_array().expect("dials");
    let times: Vec<i64> = dials.iter().filter_map(|d| d["at"].as_i64()).collect();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "reconnect attempts while down: {}, gaps (ms): {gaps:?}",
        dials.len()
    );
    assert!(
        dials.len() <= 15,
        "backoff, not a tight loop: {} attempts",
        dials.len()
    );
    let resumed = dials.last().expect("a dial")["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(
        resumed.contains(&format!("since={cursor}")),
        "resumed by cursor: {resumed}"
    );
    let states = tab.js("return __states").await;
    assert_eq!(states[0], "reconnecting", "{states}");
    assert_eq!(
        states.as_array().and_then(|s| s.last()),
        Some(&json!("open"))
    );

    // SIGTERM: herald closes the page's socket with 1001, and herald.js
    // waits at least a second before coming back.
    tab.js("window.__closes = []; heraldApp.client.on('close', (e) => __closes.push({code: e.code, at: Date.now()})); return true;")
        .await;
    let dials_before_term = tab.js("return __dials.length").await.as_u64().expect("n");
    herald.terminate();
    let close = tab
        .wait_for("the 1001 close", "__closes.find((c) => c.code === 1001)")
        .await;
    herald.restart();
    tab.wait_for(
        "open after the graceful restart",
        "heraldApp.client.state === 'open'",
    )
    .await;
    let redial = tab
        .js(&format!("return __dials[{dials_before_term}].at"))
        .await;
    let waited = redial.as_i64().expect("a dial") - close["at"].as_i64().expect("at");
    assert!(waited >= 1_000, "reconnected {waited} ms after 1001");

    // A reload signs in again (this tab's session) and shows no old toast.
    tab.reload().await;
    tab.wait_for(
        "open after the reload",
        "heraldApp.client?.state === 'open'",
    )
    .await;
    tab.wait_for(
        "the inbox",
        "document.querySelectorAll('#inbox li').length === 3",
    )
    .await;
    let reloaded = id_of(&herald.announce_all("After the reload").await);
    tab.wait_for("the live one after the reload", &toast_shown(reloaded))
        .await;
    assert_eq!(
        tab.js("return heraldApp.toastsShown").await,
        json!([reloaded])
    );

    // Leave the page, publish, come back: the cursor in localStorage brings
    // exactly the one published meanwhile.
    tab.goto("about:blank").await;
    let meanwhile = id_of(&herald.announce_all("While the page was closed").await);
    tab.goto(&format!("{}/", herald.base())).await;
    tab.wait_for("the one published meanwhile", &toast_shown(meanwhile))
        .await;
    let marker = id_of(&herald.announce_all("Marker").await);
    tab.wait_for("the marker", &toast_shown(marker)).await;
    assert_eq!(
        tab.js("return heraldApp.toastsShown").await,
        json!([meanwhile, marker])
    );
    assert_eq!(
        tab.js("return document.querySelectorAll('#toasts .toast').length")
            .await,
        2
    );
    browser.quit().await;
}

#[tokio::test]
async fn auth_failures_stop_reconnecting() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let home = format!("{}/", herald.base());

    // Connected, then the token expires: the server closes with 4001.
    let expiring = browser.tab().await;
    expiring.goto(&home).await;
    expiring.js(RECORD_DIALS).await;
    sign_in(&expiring, "alice", &token("alice", 3)).await;
    expiring
        .wait_for("open", "heraldApp.client?.state === 'open'")
        .await;

    // Alice's page with Bob's token: 4003.
    let wrong_user = browser.tab().await;
    wrong_user.goto(&home).await;
    wrong_user.js(RECORD_DIALS).await;
    sign_in(&wrong_user, "alice", &token("bob", 3600)).await;

    // A forged token: 4001 at once.
    let forged = browser.tab().await;
    forged.goto(&home).await;
    forged.js(RECORD_DIALS).await;
    let other = herald::auth::TokenKeys::new("some-other-secret-0123456789")
        .mint("alice", &[], 3600)
        .expect("mint")
        .0;
    sign_in(&forged, "alice", &other).await;

    for (tab, state) in [
        (&wrong_user, "forbidden"),
        (&forged, "unauthorized"),
        (&expiring, "unauthorized"),
    ] {
        tab.wait_for(state, &format!("heraldApp.client.state === '{state}'"))
            .await;
        // Back at the sign-in form, saying why, with the user id kept.
        tab.wait_for(
            "the sign-in form",
            "!document.querySelector('#signin').hidden && !document.querySelector('#signin-error').hidden",
        )
        .await;
        assert_eq!(
            tab.js("return document.querySelector('#user-id').value")
                .await,
            "alice"
        );
        assert_eq!(tab.text("#state").await, state);
    }
    // Nothing to await: this checks that nothing happens. herald.js's first
    // retry would come within 500 ms; four times that is ample.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for (tab, state) in [
        (&wrong_user, "forbidden"),
        (&forged, "unauthorized"),
        (&expiring, "unauthorized"),
    ] {
        assert_eq!(tab.js("return __dials.length").await, 1, "no reconnect");
        assert_eq!(tab.js("return heraldApp.client.state").await, state);
    }
    browser.quit().await;
}
