//! Everything that speaks Slack's wire formats: request verification, ids,
//! text escaping, and the Web API client.

pub mod client;
pub mod ids;
pub mod text;
pub mod verify;
