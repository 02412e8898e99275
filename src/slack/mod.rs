//! Everything that speaks Slack's wire formats: request verification, ids,
//! text escaping, the Web API client, and the Socket Mode connection.

pub mod client;
pub mod ids;
pub mod socket;
pub mod text;
pub mod verify;
