//! herald: a real-time announcement server. Admins schedule announcements;
//! herald pushes them over WebSocket to every open tab of every targeted user
//! at the publish time and keeps them in each user's inbox.

pub mod actors;
pub mod auth;
pub mod claims;
pub mod commands;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod webhooks;
