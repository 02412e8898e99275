//! Incidents: declare, acknowledge, update, hand over, resolve; every change
//! is a timeline event, a thread reply and an in-place update of the root
//! message, written to the outbox in the same transaction.

pub mod commands;
pub mod escalation;
pub mod model;
pub mod render;
pub mod store;

/// The key the outbox remembers an incident's root message under.
pub fn root_key(incident_id: i64) -> String {
    format!("incident:{incident_id}")
}
