//! herald's integration tests: one binary, a real server per test.

#[macro_use]
mod helpers;
mod abuse_net;
mod abuse_session;
mod abuse_storage;
mod admin;
mod archive;
mod client_package;
mod cluster;
mod confirm;
mod cors;
mod delivery;
mod hardening;
mod identity;
mod identity_keys;
mod idp;
mod memory;
mod migrations;
mod openapi;
mod operations;
mod outage;
mod own_postgres;
mod raw_ws;
mod restart;
mod resume;
mod shutdown;
mod sse;
mod storm;
mod upgrade_requests;
mod webhooks;
mod websocket;
