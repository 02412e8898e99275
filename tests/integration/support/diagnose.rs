//! Runs catalog diagnostics the way the bot does, without Slack: a catalog
//! folder, named targets, and the step results to assert on.

use std::path::Path;

use runbook_bot::catalog::Catalog;
use runbook_bot::config::{HealthCheck, TargetConfig};
use runbook_bot::diagnose::run::{self, Env, Outcome, StepOutcome};
use runbook_bot::dispatch::parse::{Invocation, parse};
use runbook_bot::targets::Targets;

use super::SupabaseDb;

pub struct Harness {
    pub catalog: Catalog,
    pub targets: Targets,
    pub http: reqwest::Client,
    pub health: Vec<HealthCheck>,
}

impl Harness {
    /// Diagnostics from `dir`, run on `target` as `production`.
    pub fn new(dir: &Path, target: TargetConfig) -> Harness {
        Harness::with_targets(dir, vec![("production", target)])
    }

    /// Several named targets; `run` uses `production`.
    pub fn with_targets(dir: &Path, targets: Vec<(&str, TargetConfig)>) -> Harness {
        runbook_bot::slack::client::install_crypto_provider();
        let targets = targets.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        Harness {
            catalog: Catalog::load(dir).expect("catalog loads"),
            targets: Targets::from_config(&targets).unwrap(),
            http: reqwest::Client::new(),
            health: Vec::new(),
        }
    }

    pub fn for_db(db: &SupabaseDb) -> Harness {
        Harness::new(Path::new("commands"), db.target_config())
    }

    pub async fn run(&self, text: &str) -> Outcome {
        let inv = parse("/diagnose", text, &self.catalog).unwrap_or_else(|e| panic!("`{text}`: {e}"));
        let Invocation::Catalog { entry, values, .. } = inv else {
            panic!("not a catalog command: {text}")
        };
        let env = Env {
            http: &self.http,
            health_checks: &self.health,
            targets: &self.targets,
            catalog_reads: self.catalog.reads(),
        };
        run::run(&entry, &values, self.targets.get("production").unwrap(), &env).await
    }
}

/// The step whose title starts with `title`.
pub fn step<'a>(o: &'a Outcome, title: &str) -> &'a StepOutcome {
    o.steps
        .iter()
        .find(|s| s.title.starts_with(title))
        .unwrap_or_else(|| panic!("no step `{title}` in {o:#?}"))
}

/// The values of one column of a step's rows.
pub fn col(s: &StepOutcome, name: &str) -> Vec<String> {
    let i = s
        .table
        .columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}: {s:#?}"));
    s.table.rows.iter().map(|r| r[i].clone()).collect()
}
