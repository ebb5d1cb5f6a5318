//! herald.js with a token function, as a real app uses it: the client
//! fetches a fresh token before the current one expires and hands it to the
//! open session, and after `token_expired` it fetches once more and comes
//! back instead of stopping; a token function that starts failing ends in
//! `unauthorized` after one final attempt.

use crate::harness::*;
use std::time::Duration;

/// Starts a HeraldClient in the page whose token function hands out
/// `tokens` in turn (the last one for ever after), counting WebSocket dials
/// and recording states and announcements.
fn start_client(tokens: &[String]) -> String {
    let list = tokens
        .iter()
        .map(|t| js_str(t))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "window.__tokens = [{list}];
         window.__dials = 0; window.__states = []; window.__got = [];
         const Native = window.WebSocket;
         window.WebSocket = class extends Native {{
           constructor(url, protocols) {{ super(url, protocols); __dials += 1; }}
         }};
         import('/herald.js').then((m) => {{
           const c = new m.HeraldClient({{
             userId: 'alice',
             storage: null,
             token: async () => (__tokens.length > 1 ? __tokens.shift() : __tokens[0]),
           }});
           c.on('state', (s) => __states.push(s));
           c.on('announcement', (a) => __got.push(a.id));
           window.__client = c;
           c.connect();
         }});
         return true;"
    )
}

#[tokio::test]
async fn a_token_function_refreshes_the_open_session_before_expiry() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    tab.js(&start_client(&[token("alice", 6), token("alice", 3600)]))
        .await;
    tab.wait_for("open", "window.__client?.state === 'open'")
        .await;
    // Past the first token's expiry: the session must have been refreshed,
    // not closed and redialled.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let id = herald.announce_all("After the first token expired").await["id"]
        .as_i64()
        .expect("id");
    tab.wait_for("the announcement", &format!("__got.includes({id})"))
        .await;
    assert_eq!(tab.js("return __dials").await, 1, "one socket all along");
    assert_eq!(
        tab.js("return __states").await,
        serde_json::json!(["connecting", "open"])
    );
    browser.quit().await;
}

#[tokio::test]
async fn after_token_expired_a_token_function_is_asked_once_more() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    // The refresh gets the same short token again (an app that has nothing
    // fresher yet); at expiry the server closes 4001 and the client asks once
    // more.
    let short = token("alice", 4);
    tab.js(&start_client(&[short.clone(), short, token("alice", 3600)]))
        .await;
    tab.wait_for("open", "window.__client?.state === 'open'")
        .await;
    tab.wait_for(
        "a second socket after the expiry",
        "__dials === 2 && __client.state === 'open'",
    )
    .await;
    let states = tab.js("return __states").await;
    assert!(
        !states.to_string().contains("unauthorized"),
        "never gave up: {states}"
    );
    let id = herald.announce_all("On the new token").await["id"]
        .as_i64()
        .expect("id");
    tab.wait_for("the announcement", &format!("__got.includes({id})"))
        .await;
    browser.quit().await;
}

/// Starts a HeraldClient whose token function is an app's: it asks the
/// app's backend (here the admin API, as a host app's backend would) for a
/// fresh 8-second token on every call — until `__failing` is set, from when
/// it throws, recording the client's state at each call it failed.
/// `__calls` counts the calls, `__dials` the WebSocket dials.
fn start_minting_client() -> String {
    format!(
        "window.__calls = 0; window.__failing = false; window.__failed = [];
         window.__dials = 0; window.__states = []; window.__got = [];
         const Native = window.WebSocket;
         window.WebSocket = class extends Native {{
           constructor(url, protocols) {{ super(url, protocols); __dials += 1; }}
         }};
         const mint = async () => {{
           const res = await fetch('/api/tokens', {{
             method: 'POST',
             headers: {{ 'Content-Type': 'application/json', Authorization: 'Bearer ' + {admin} }},
             body: JSON.stringify({{ user_id: 'alice', ttl_seconds: 8 }}),
           }});
           if (!res.ok) throw new Error('token endpoint answered ' + res.status);
           return (await res.json()).token;
         }};
         import('/herald.js').then((m) => {{
           const c = new m.HeraldClient({{
             userId: 'alice',
             storage: null,
             token: async () => {{
               __calls += 1;
               if (__failing) {{
                 __failed.push(__client.state);
                 throw new Error('the identity provider is down');
               }}
               return mint();
             }},
           }});
           c.on('state', (s) => __states.push(s));
           c.on('announcement', (a) => __got.push(a.id));
           window.__client = c;
           c.connect();
         }});
         return true;",
        admin = js_str(ADMIN_TOKEN)
    )
}

#[tokio::test]
async fn eight_second_tokens_keep_one_socket_open_for_twenty_seconds() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    tab.js(&start_minting_client()).await;
    tab.wait_for("open", "window.__client?.state === 'open'")
        .await;
    // Two and a half token lifetimes: each token is replaced over the open
    // socket (a `refresh` frame) before it runs out.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let calls = tab.js("return __calls").await.as_i64().expect("calls");
    assert!(
        calls >= 4,
        "a fresh token at least every 6 s of 8 (the first and 3 refreshes), got {calls}"
    );
    assert_eq!(tab.js("return __dials").await, 1, "one socket all along");
    assert_eq!(
        tab.js("return __states").await,
        serde_json::json!(["connecting", "open"]),
        "never reconnected"
    );
    let id = herald
        .announce_all("Twenty seconds on 8-second tokens")
        .await["id"]
        .as_i64()
        .expect("id");
    tab.wait_for("the announcement", &format!("__got.includes({id})"))
        .await;
    assert_eq!(tab.js("return __dials").await, 1, "still the first socket");
    browser.quit().await;
}

#[tokio::test]
async fn a_token_function_that_starts_failing_ends_unauthorized_after_one_final_attempt() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let tab = browser.tab().await;
    tab.goto(&format!("{}/", herald.base())).await;
    tab.js(&start_minting_client()).await;
    tab.wait_for("open", "window.__client?.state === 'open'")
        .await;
    tab.js("__failing = true; return true").await;
    // The refresh before expiry fails; at expiry the server closes 4001 and
    // the client asks once more, fails, and stops.
    tab.wait_for("unauthorized", "__client.state === 'unauthorized'")
        .await;
    // Long enough for a loop to show: the quickest retry would come within
    // a second (the first backoff), a refresh within 8.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        tab.js("return __failed").await,
        serde_json::json!(["open", "reconnecting"]),
        "one failed refresh while open, then one final attempt after the 4001"
    );
    assert_eq!(tab.js("return __dials").await, 1, "no dial without a token");
    assert_eq!(
        tab.js("return __states").await,
        serde_json::json!(["connecting", "open", "reconnecting", "unauthorized"])
    );
    browser.quit().await;
}
