//! An announcement that asks for confirmation: its toast stays on the user
//! page (past the usual 10 s, and across a reload) until the user confirms,
//! the inbox marks it, and the admin console's pending list shrinks and
//! downloads as CSV.

use crate::harness::*;
use serde_json::json;

fn toast(id: i64) -> String {
    format!("#toasts .toast[data-id='{id}']")
}

fn pending_user(user: &str) -> String {
    format!("#recipients-list li[data-user-id='{user}']")
}

async fn exists(tab: &Tab<'_>, css: &str) -> bool {
    tab.js(&format!("return !!document.querySelector(\"{css}\")"))
        .await
        .as_bool()
        .unwrap_or(false)
}

/// Captures the next CSV the page hands to a download link.
const CAPTURE_CSV: &str = "
    window.__csv = null;
    const original = URL.createObjectURL.bind(URL);
    URL.createObjectURL = (blob) => { blob.text().then((t) => { window.__csv = t; }); return original(blob); };
    return true;";

#[tokio::test]
async fn a_confirmation_toast_stays_until_confirmed_and_the_pending_list_shrinks() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let base = herald.base();

    // Two users have a page open, so herald knows them for an "all" audience.
    let mut pages = Vec::new();
    for user in ["alice", "bob"] {
        let tab = browser.tab().await;
        tab.goto(&format!("{base}/#user={user}&token={}", token(user, 3600)))
            .await;
        tab.wait_for(
            "the connection",
            "document.querySelector('#state').textContent === 'open'",
        )
        .await;
        pages.push(tab);
    }
    let (alice, bob) = (&pages[0], &pages[1]);

    // The admin asks everyone to confirm a policy; a plain warning goes out beside it.
    let admin = browser.tab().await;
    admin
        .goto(&format!("{base}/admin.html#token={ADMIN_TOKEN}"))
        .await;
    admin
        .wait_for("the console", "!document.querySelector('#console').hidden")
        .await;
    admin.type_into("#title", "New security policy").await;
    admin
        .type_into("#content", "Please read and confirm the policy.")
        .await;
    admin.click("#level option[value=warning]").await;
    admin.click("#requires-confirmation").await;
    admin.click("#compose-submit").await;
    admin
        .wait_for(
            "the compose status",
            "!document.querySelector('#compose-status').hidden",
        )
        .await;
    let policy = admin
        .wait_for(
            "the policy row",
            "document.querySelector('#announcements tr[data-id]')?.dataset.id",
        )
        .await
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .expect("id");
    let stored = herald
        .admin_get(&format!("/api/announcements/{policy}"))
        .await;
    assert_eq!(stored["requires_confirmation"], true);
    let plain = herald
        .announce(
            json!({"title": "Coffee", "content": "In the kitchen.", "level": "warning",
            "audience": {"all": true}}),
        )
        .await["id"]
        .as_i64()
        .expect("id");

    for tab in [alice, bob] {
        tab.wait_for(
            "both toasts",
            &format!(
                "document.querySelector(\"{}\") && document.querySelector(\"{}\")",
                toast(policy),
                toast(plain)
            ),
        )
        .await;
        assert!(!exists(tab, &format!("{} .dismiss", toast(policy))).await);
    }

    // The console lists both users as pending.
    let pending = format!("#announcements tr[data-id='{policy}'] button.pending");
    admin
        .wait_for(
            "the pending button",
            &format!("document.querySelector(\"{pending}\")"),
        )
        .await;
    admin.click(&pending).await;
    admin
        .wait_for(
            "alice and bob pending",
            &format!(
                "document.querySelector(\"{}\") && document.querySelector(\"{}\")",
                pending_user("alice"),
                pending_user("bob")
            ),
        )
        .await;

    // The plain toast goes by itself; the policy's stays, and comes back after a reload.
    alice
        .wait_for(
            "the plain toast to go",
            &format!("!document.querySelector(\"{}\")", toast(plain)),
        )
        .await;
    assert!(
        exists(alice, &toast(policy)).await,
        "the policy toast stays"
    );
    alice.reload().await;
    alice
        .wait_for(
            "the policy toast after a reload",
            &format!("document.querySelector(\"{} .confirm\")", toast(policy)),
        )
        .await;

    // Alice confirms: her toast goes, the inbox says so, the console's list shrinks.
    alice.click(&format!("{} .confirm", toast(policy))).await;
    alice
        .wait_for(
            "the toast to go and the inbox to say confirmed",
            &format!(
                "!document.querySelector(\"{}\")
                 && document.querySelector(\"#inbox li[data-id='{policy}'] .confirmed\")",
                toast(policy)
            ),
        )
        .await;
    admin
        .wait_for(
            "only bob pending",
            &format!(
                "!document.querySelector(\"{}\") && document.querySelector(\"{}\")",
                pending_user("alice"),
                pending_user("bob")
            ),
        )
        .await;
    admin
        .wait_for(
            "one confirmed",
            &format!(
                "document.querySelector(\"#announcements tr[data-id='{policy}'] td.confirmed\").textContent === '1'"
            ),
        )
        .await;
    assert!(exists(bob, &toast(policy)).await, "bob has not confirmed");

    // The CSV holds every pending user.
    admin.js(CAPTURE_CSV).await;
    admin.click("#recipients-csv").await;
    let csv = admin.wait_for("the CSV", "window.__csv").await;
    let csv = csv.as_str().expect("text");
    assert!(
        csv.starts_with("user_id,delivered_at,read_at,confirmed_at"),
        "{csv}"
    );
    assert!(csv.contains("\"bob\""), "{csv}");
    assert!(!csv.contains("\"alice\""), "{csv}");
    admin.screenshot("admin-pending").await;
    browser.quit().await;
}
