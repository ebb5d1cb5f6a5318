//! herald's integration tests: one binary, a real server per test.

mod admin;
mod delivery;
mod hardening;
mod helpers;
mod restart;
mod resume;
mod websocket;
