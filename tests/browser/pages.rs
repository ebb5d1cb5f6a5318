//! The admin console and the user page together: schedule in local time,
//! "open as user" in two windows, toasts at the publish time, read sync,
//! cancel and retract — and the screenshots of both pages.

use crate::harness::*;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `datetime-local` text for epoch milliseconds in the browser's time zone.
fn browser_local(ms: i64) -> String {
    let utc = DateTime::<Utc>::from_timestamp_millis(ms).expect("time");
    (utc + chrono::Duration::hours(BROWSER_UTC_OFFSET_HOURS))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// Records, in a user page, when each announcement reached the page and
/// which desktop notifications it raised.
const RECORD_ARRIVALS: &str = "
    window.__arrivals = [];
    heraldApp.client.on('announcement', (a) => __arrivals.push({id: a.id, at: Date.now()}));
    window.__notes = [];
    const Native = window.Notification;
    window.Notification = class extends Native {
      constructor(title, options) { super(title, options); __notes.push({title, body: options?.body}); }
    };
    return Notification.permission;";

fn toast(id: i64) -> String {
    format!("#toasts .toast[data-id='{id}']")
}

fn item(id: i64) -> String {
    format!("#inbox li[data-id='{id}']")
}

fn row(id: i64) -> String {
    format!("#announcements tr[data-id='{id}']")
}

/// Waits for the row of the announcement titled `title`; returns its id.
async fn row_id(admin: &Tab<'_>, title: &str) -> i64 {
    let expr = format!(
        "[...document.querySelectorAll('#announcements tr[data-id]')]
           .find((r) => r.querySelector('.title-text')?.textContent === {})?.dataset.id",
        js_str(title)
    );
    let id = admin.wait_for(&format!("the row of {title}"), &expr).await;
    id.as_str()
        .and_then(|s| s.parse().ok())
        .expect("numeric id")
}

#[tokio::test]
async fn admin_schedules_in_local_time_and_two_user_tabs_toast_it_and_share_reads() {
    let Some(env) = browser_env() else { return };
    let herald = Herald::start();
    let browser = Browser::start(&env).await;
    let base = herald.base();

    // The admin console signs in from the fragment and drops it from the address bar.
    let admin = browser.tab().await;
    admin
        .goto(&format!("{base}/admin.html#token={ADMIN_TOKEN}"))
        .await;
    admin
        .wait_for("the console", "!document.querySelector('#console').hidden")
        .await;
    assert!(!admin
        .js("return location.href")
        .await
        .to_string()
        .contains(ADMIN_TOKEN));
    let tz = admin
        .js("return Intl.DateTimeFormat().resolvedOptions().timeZone")
        .await;
    assert_eq!(tz, BROWSER_TZ, "the browser runs in a non-UTC zone");
    admin
        .wait_for(
            "empty presence",
            "document.querySelector('#presence').textContent.includes('Nobody is connected')",
        )
        .await;

    // "Open as user" mints a token and opens the user page for alice (group staff).
    admin.type_into("#open-as-user-id", "alice").await;
    admin.type_into("#open-as-user-groups", "staff").await;
    let before = browser.windows().await;
    admin.click("#open-as-user-button").await;
    let link = admin
        .wait_for(
            "the user page link",
            "document.querySelector('#open-as-user-link')?.href",
        )
        .await;
    let link = link.as_str().expect("href").to_string();
    assert!(
        link.starts_with(&format!("{base}/#user=alice&token=")),
        "{link}"
    );
    let popup = browser
        .windows()
        .await
        .into_iter()
        .find(|w| !before.contains(w));
    let first = match popup {
        Some(handle) => browser.adopt(handle),
        None => {
            // A pop-up blocker: the console shows the link instead.
            let tab = browser.tab().await;
            tab.goto(&link).await;
            tab
        }
    };
    let second = browser.tab().await;
    second.goto(&link).await;
    for tab in [&first, &second] {
        tab.wait_for(
            "the connection",
            "document.querySelector('#state').textContent === 'open'",
        )
        .await;
        assert_eq!(tab.text("#whoami").await, "alice");
        assert!(!tab
            .js("return location.href")
            .await
            .to_string()
            .contains("token="));
        let permission = tab.js(RECORD_ARRIVALS).await;
        assert_eq!(permission, "granted", "desktop notifications allowed");
    }
    admin
        .wait_for(
            "alice online with two tabs",
            "document.querySelector('#presence [data-user-id=alice]')?.textContent.includes('2 tabs')",
        )
        .await;

    // Publish now, to everyone, as critical.
    admin.type_into("#title", "Welcome to herald").await;
    admin
        .type_into(
            "#content",
            "Announcements appear here as they are published.",
        )
        .await;
    admin.click("#level option[value=critical]").await;
    assert_eq!(admin.text("#compose-submit").await, "Publish now");
    admin.click("#compose-submit").await;
    let welcome = row_id(&admin, "Welcome to herald").await;
    for tab in [&first, &second] {
        tab.wait_for(
            "the welcome toast",
            &format!("document.querySelector(\"{}\")", toast(welcome)),
        )
        .await;
    }

    // Schedule one for group staff a few seconds ahead, typed in local (Shanghai) time.
    let title = "Maintenance <b>tonight</b>";
    let content = "The site is down 22:00-23:00. <img src=x onerror=alert(1)>";
    admin.type_into("#title", title).await;
    admin.type_into("#content", content).await;
    admin.click("#level option[value=warning]").await;
    admin
        .type_into("#link", "https://status.example.com/")
        .await;
    admin.click("input[name=audience][value=groups]").await;
    admin.type_into("#audience-values", "staff").await;
    let publish_ms = (now_ms() / 1000 + 5) * 1000;
    let expires_ms = publish_ms + 24 * 3600 * 1000;
    admin
        .set_value("#publish-at", &browser_local(publish_ms))
        .await;
    admin
        .set_value("#expires-at", &browser_local(expires_ms))
        .await;
    let utc = herald::domain::rfc3339(publish_ms);
    assert_eq!(
        admin.text("#publish-at-utc").await,
        format!("sent as {utc}")
    );
    assert_eq!(admin.text("#compose-submit").await, "Schedule");
    admin.click("#compose-submit").await;
    admin
        .wait_for(
            "the confirmation",
            "document.querySelector('#compose-status').textContent.includes('scheduled for')",
        )
        .await;
    let scheduled = row_id(&admin, title).await;
    assert_eq!(
        admin.text(&format!("{} td.status", row(scheduled))).await,
        "scheduled"
    );
    let stored = herald
        .admin_get(&format!("/api/announcements/{scheduled}"))
        .await;
    assert_eq!(stored["publish_at"], utc, "local time sent as UTC");
    assert_eq!(stored["expires_at"], herald::domain::rfc3339(expires_ms));
    assert_eq!(stored["audience"]["groups"][0], "staff");
    assert_eq!(stored["level"], "warning");

    // Both tabs show the toast at the publish time, as text.
    for tab in [&first, &second] {
        tab.wait_for(
            "the scheduled toast",
            &format!("document.querySelector(\"{}\")", toast(scheduled)),
        )
        .await;
        let arrival = tab
            .js(&format!(
                "return __arrivals.find((a) => a.id === {scheduled}).at"
            ))
            .await
            .as_i64()
            .expect("arrival time");
        assert!(
            arrival >= publish_ms - 50 && arrival < publish_ms + 5_000,
            "shown {} ms after its publish time",
            arrival - publish_ms
        );
        let sel = toast(scheduled);
        assert_eq!(tab.text(&format!("{sel} .title")).await, title);
        assert_eq!(tab.text(&format!("{sel} .content")).await, content);
        let markup = tab
            .js(&format!("return document.querySelectorAll(\"{sel} b, {sel} img, #inbox b, #inbox img\").length"))
            .await;
        assert_eq!(markup, 0, "announcement text is never parsed as HTML");
        let notes = tab.js("return __notes.map((n) => n.title)").await;
        assert!(
            notes
                .as_array()
                .expect("notes")
                .contains(&Value::from(title)),
            "desktop notification: {notes}"
        );
        tab.wait_for(
            "two unread",
            "document.querySelector('#unread-count').textContent === '2'",
        )
        .await;
        assert!(tab
            .js(&format!(
                "return document.querySelector(\"{}\").classList.contains('unread')",
                item(scheduled)
            ))
            .await
            .as_bool()
            .unwrap_or(false));
    }
    assert_eq!(
        first.js("return heraldApp.toastsShown").await,
        serde_json::json!([welcome, scheduled])
    );

    // Reading in one tab updates the other.
    first
        .click(&format!("{} .mark-read", item(scheduled)))
        .await;
    second
        .wait_for(
            "the read to reach the other tab",
            &format!(
                "!document.querySelector(\"{}\").classList.contains('unread')",
                item(scheduled)
            ),
        )
        .await;
    second
        .wait_for(
            "one unread",
            "document.querySelector('#unread-count').textContent === '1'",
        )
        .await;
    first
        .wait_for(
            "one unread",
            "document.querySelector('#unread-count').textContent === '1'",
        )
        .await;
    first.screenshot("user-page").await;

    // The console's list refreshes with delivery and read counts.
    let cells = format!("{} td", row(scheduled));
    admin
        .wait_for(
            "delivered 1, read 1",
            &format!(
                "document.querySelector(\"{cells}.status\").textContent === 'published'
                 && document.querySelector(\"{cells}.delivered\").textContent === '1'
                 && document.querySelector(\"{cells}.read\").textContent === '1'"
            ),
        )
        .await;
    assert_eq!(admin.text(&format!("{cells}.targeted")).await, "1");

    // Cancel a scheduled one.
    admin.type_into("#title", "Quarterly review").await;
    admin.type_into("#content", "Slides next week.").await;
    admin.click("input[name=audience][value=all]").await;
    admin
        .set_value("#publish-at", &browser_local(now_ms() + 3_600_000))
        .await;
    admin.click("#compose-submit").await;
    let later = row_id(&admin, "Quarterly review").await;
    admin
        .wait_for(
            "the cancel button",
            &format!("document.querySelector(\"{} button.cancel\")", row(later)),
        )
        .await;
    admin.click(&format!("{} button.cancel", row(later))).await;
    admin
        .wait_for(
            "cancelled",
            &format!(
                "document.querySelector(\"{} td.status\").textContent === 'cancelled'",
                row(later)
            ),
        )
        .await;

    // Toasts go after 10 s; critical ones stay until dismissed.
    for tab in [&first, &second] {
        tab.wait_for(
            "the warning toast to go by itself",
            &format!("!document.querySelector(\"{}\")", toast(scheduled)),
        )
        .await;
        assert!(tab
            .js(&format!(
                "return !!document.querySelector(\"{}\")",
                toast(welcome)
            ))
            .await
            .as_bool()
            .unwrap_or(false));
    }
    first.click(&format!("{} .dismiss", toast(welcome))).await;
    assert!(first
        .js(&format!(
            "return !document.querySelector(\"{}\")",
            toast(welcome)
        ))
        .await
        .as_bool()
        .unwrap_or(false));

    // Retract a published one: it disappears from both tabs.
    admin
        .click(&format!("{} button.retract", row(welcome)))
        .await;
    for tab in [&first, &second] {
        tab.wait_for(
            "the retracted one to disappear",
            &format!(
                "!document.querySelector(\"{}\") && !document.querySelector(\"{}\")",
                item(welcome),
                toast(welcome)
            ),
        )
        .await;
        assert!(tab
            .js(&format!(
                "return !!document.querySelector(\"{}\")",
                item(scheduled)
            ))
            .await
            .as_bool()
            .unwrap_or(false));
    }
    admin
        .wait_for(
            "the retracted status",
            &format!(
                "document.querySelector(\"{} td.status\").textContent !== 'published'",
                row(welcome)
            ),
        )
        .await;
    admin.screenshot("admin-console").await;
    browser.quit().await;
}
