//! herald's integration tests: one binary, a real server per test.

#[macro_use]
mod helpers;
mod abuse_net;
mod abuse_session;
mod abuse_storage;
mod admin;
mod cluster;
mod delivery;
mod hardening;
mod migrations;
mod operations;
mod outage;
mod own_postgres;
mod raw_ws;
mod restart;
mod resume;
mod websocket;
