//! The actors: one session per WebSocket, one registry that routes by user
//! id, one scheduler that publishes due announcements, one receipt writer
//! that batches acks and reads.

pub mod messages;
pub mod receipts;
pub mod registry;
pub mod scheduler;
pub mod session;
