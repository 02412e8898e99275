//! `AppState`: the one set of handles a request handler or worker may use,
//! built once per `App` (or once per `runbook-bot exec`). It sits below every
//! feature module and above the building blocks it holds, so nothing it
//! holds imports it back; `app.rs` composes it with the server and workers.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, Entry};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::UserError;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::roles::RoleResolver;
use crate::slack::client::SlackApi;
use crate::store::Store;
use crate::targets::{Target, Targets};

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
        Ok(Arc::new(AppState {
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
