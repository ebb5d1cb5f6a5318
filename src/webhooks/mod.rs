//! Outbound webhooks: events about announcements leave herald from the
//! outbox (`db::outbox`), signed as the Standard Webhooks specification
//! says (`sign`), posted by one sender per node that claims each delivery
//! so that exactly one node sends it (`sender`).

pub mod sender;
pub mod sign;
