//! herald in a real browser: Debian's headless Chromium, driven over
//! WebDriver (chromedriver + fantoccini), against a real herald child process.
//!
//! These tests run only with `HERALD_BROWSER_TESTS=1` (`.ci/run` sets it);
//! otherwise each one prints `skipped: HERALD_BROWSER_TESTS not set` and
//! passes. Every test starts its own herald (own port, own SQLite file), its
//! own chromedriver and its own Chromium profile, so they run in parallel.

mod confirm;
mod harness;
mod inbox;
mod pages;
mod reconnect;
mod seeds;
mod tokens;
mod transport;
