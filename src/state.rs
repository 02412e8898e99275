//! `AppState`: the one set of handles a request handler or worker may use,
//! built once per `App` (or once per `runbook-bot exec`). It sits below every
//! feature module and above the building blocks it holds, so nothing it
//! holds imports it back; `app.rs` composes it with the server and workers.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Entry};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::UserError;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::readiness::Readiness;
use crate::roles::RoleResolver;
use crate::slack::client::SlackApi;
use crate::store::Store;
use crate::targets::{Target, Targets};
use crate::throttle::Throttle;

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub slack: SlackApi,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub roles: RoleResolver,
    /// Commits Slack writes and wakes their worker.
    pub outbox: Outbox,
    /// Command work that outlived its HTTP request; waited for on shutdown.
    pub tasks: TaskTracker,
    /// Poked when an alert payload is accepted.
    pub alerts_wake: Notify,
    pub catalog: Catalog,
    pub targets: Targets,
    /// For HTTP health checks and deploy hooks.
    pub http: reqwest::Client,
    /// Automatic diagnostics running now, bot-wide; one permit each. A run
    /// that finds none is skipped, not queued (`diagnose::auto`).
    pub auto_diagnose: Arc<Semaphore>,
    /// The state store as last checked, for `/readyz` and `/metrics`.
    pub readiness: Readiness,
    /// Clicks refused for want of level, per user: recorded and answered
    /// once per `abuse.refusal_window`.
    pub refusals: Throttle,
    /// @mentions answered, per user.
    pub mentions: Throttle,
}

impl AppState {
    /// Load the catalog, connect to the state store and migrate it; no
    /// server, no workers. `exec` and `migrate` use this directly.
    pub async fn connect(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<AppState>> {
        crate::slack::client::install_crypto_provider();
        let catalog = Catalog::load(&config.commands_dir).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the command catalog has problems:\n{}", lines.join("\n"))
        })?;
        let mut unknown = catalog.unknown_targets(&config.targets.keys().cloned().collect());
        unknown.extend(catalog.route_problems(&config.alerts.routes));
        if let Some(p) = unknown.first() {
            anyhow::bail!("{p}");
        }
        let targets = Targets::from_config(&config.targets)?;
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        let slack = SlackApi::new(&config.slack.api_url, &config.slack.bot_token)?;
        let auto_diagnose = Arc::new(Semaphore::new(config.alerts.auto_diagnose.max_concurrent as usize));
        let abuse = &config.abuse;
        let refusals = Throttle::new(1, abuse.refusal_window, abuse.max_tracked_users);
        let mentions = Throttle::new(abuse.mention_burst, abuse.mention_refill, abuse.max_tracked_users);
        Ok(Arc::new(AppState {
            auto_diagnose,
            outbox: Outbox::new(store.clone(), clock.clone()),
            roles: RoleResolver::new(clock.clone()),
            config,
            store,
            slack,
            clock,
            metrics: Arc::new(Metrics::new()),
            tasks: TaskTracker::new(),
            alerts_wake: Notify::new(),
            catalog,
            targets,
            http: reqwest::Client::builder().user_agent("runbook-bot").build()?,
            readiness: Readiness::default(),
            refusals,
            mentions,
        }))
    }

    /// The target a catalog command runs against: named by the person, else
    /// by the catalog file, else the config's default.
    pub fn target_for(&self, entry: &Entry, named: Option<&str>) -> Result<&Target, UserError> {
        self.targets.pick(
            named,
            entry.def.target.as_deref(),
            self.config.default_target.as_deref(),
        )
    }
}
