//! Log subscriber setup. Log lines carry identifiers in fields
//! (`incident.id`, `command.name`, `slack.user_id`), never tokens, secrets or
//! message text typed by people.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,slack_morphism=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
