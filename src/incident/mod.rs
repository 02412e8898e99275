//! Incidents: declare, acknowledge, update, hand over, resolve; every change
//! is a timeline event, a thread reply and an in-place update of the root
//! message, written to the outbox in the same transaction.

pub mod cmd;
pub mod escalation;
pub mod model;
pub mod render;
pub mod room;
pub mod store;

pub use crate::outbox::incident_root_key as root_key;
