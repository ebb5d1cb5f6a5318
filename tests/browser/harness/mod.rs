//! The browser test harness: a herald child process that can be killed and
//! restarted on the same port and database, a chromedriver + headless
//! Chromium per test, and tabs that await page conditions with timeouts.

mod browser;
mod origin;
mod server;

pub use browser::{js_str, Browser, Tab};
pub use origin::AppOrigin;
pub use server::Herald;

use std::time::Duration;

pub const ADMIN_TOKEN: &str = "browser-admin-token";
pub const JWT_SECRET: &str = "browser-jwt-secret-0123456789";
/// How long a test waits for something that should happen. Generous: the
/// machine running the suite may be busy compiling.
pub const WAIT: Duration = Duration::from_secs(20);
/// The time zone the browser runs in, so that "local time" differs from UTC.
pub const BROWSER_TZ: &str = "Asia/Shanghai";
pub const BROWSER_UTC_OFFSET_HOURS: i64 = 8;

/// Where Chromium and chromedriver are, when browser tests are enabled.
pub struct BrowserEnv {
    chromium: String,
    chromedriver: String,
}

/// `None` (after saying so) unless `HERALD_BROWSER_TESTS=1`.
pub fn browser_env() -> Option<BrowserEnv> {
    if std::env::var("HERALD_BROWSER_TESTS").as_deref() != Ok("1") {
        println!("skipped: HERALD_BROWSER_TESTS not set");
        return None;
    }
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Some(BrowserEnv {
        chromium: var("HERALD_CHROMIUM", "/usr/bin/chromium"),
        chromedriver: var("HERALD_CHROMEDRIVER", "/usr/bin/chromedriver"),
    })
}

/// A user token signed with the test secret.
pub fn token(user: &str, ttl_seconds: u64) -> String {
    herald::auth::TokenKeys::new(JWT_SECRET)
        .mint(user, &[], ttl_seconds)
        .expect("mint token")
        .0
}

pub fn now_ms() -> i64 {
    herald::db::now_ms()
}
