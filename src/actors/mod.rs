//! The actors: one session per WebSocket, one registry that routes by user
//! id, one scheduler that publishes due announcements, one receipt writer
//! that batches acks and reads; the fan-out that carries what happened to
//! the registry, directly or through the cluster's listener.

pub mod catch_up;
pub mod cluster;
pub mod delivery;
pub mod fanout;
pub mod messages;
pub mod newest;
pub mod receipts;
pub mod registry;
pub mod scheduler;
pub mod session;
pub mod users;
