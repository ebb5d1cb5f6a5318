//! herald's integration tests: one binary, a real server per test.

#[macro_use]
mod helpers;
mod abuse_storage;
mod admin;
mod cluster;
mod delivery;
mod hardening;
mod migrations;
mod restart;
mod resume;
mod websocket;
