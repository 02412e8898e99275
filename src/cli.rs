//! The command line: `serve`, `check`, `exec`, `migrate`, `health`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::catalog::Catalog;
use crate::clock::SystemClock;
use crate::config::{Config, Problem};
use crate::dispatch::{self, Origin, Via};
use crate::slack::ids::{ChannelId, UserId};
use crate::state::AppState;
use crate::targets::{Targets, rls};

/// How long `check` waits for each target.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(name = "runbook-bot", version, about = "ChatOps bot for Slack incident channels")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server and background workers.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration; exit 1 with one line per problem.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a command from a terminal through the same dispatcher (works when Slack is down).
    Exec {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Slack user id to act as; their configured level applies.
        #[arg(long)]
        user: String,
        /// Channel the command is "typed" in (default: the incident channel).
        #[arg(long)]
        channel: Option<String>,
        /// The command line, e.g. '/incident list'.
        line: String,
    },
    /// Apply state-store migrations (serve does this too).
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask a running instance's /healthz; exit 0 when it answers 2xx, else 1.
    Health {
        /// Default: http://127.0.0.1:<port of BIND, else 3000>/healthz.
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::from_process(config).map_err(|problems| print_problems(&problems))
}

fn print_problems(problems: &[Problem]) -> ExitCode {
    for p in problems {
        eprintln!("{p}");
    }
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(config).await,
        Command::Health { url, timeout } => {
            let url = url.unwrap_or_else(|| crate::liveness::default_url(std::env::var("BIND").ok().as_deref()));
            match crate::liveness::check(&url, Duration::from_secs(timeout)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => {
                    eprintln!("unhealthy: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let p = cfg.serve_problems();
            if !p.is_empty() {
                return print_problems(&p);
            }
            match App::build(cfg).await {
                Ok(app) => report(app.run_until_stopped().await),
                Err(e) => report(Err(e)),
            }
        }
        Command::Migrate { config } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match AppState::connect(cfg, Arc::new(SystemClock)).await {
                Ok(_) => {
                    println!("state store migrated");
                    ExitCode::SUCCESS
                }
                Err(e) => report(Err(e)),
            }
        }
        Command::Exec {
            config,
            user,
            channel,
            line,
        } => {
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match exec(cfg, &user, channel.as_deref(), &line).await {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => report(Err(e)),
            }
        }
    }
}

/// `check`: the config, the catalog, and what each target's role sees.
async fn check(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut p = cfg.serve_problems();
    match Catalog::load(&cfg.commands_dir) {
        Ok(catalog) => {
            p.extend(catalog.unknown_targets(&cfg.targets.keys().cloned().collect()));
            p.extend(catalog.route_problems(&cfg.alerts.routes));
            p.extend(blind_targets(&cfg, &catalog).await);
            if p.is_empty() {
                println!(
                    "configuration OK; {} catalog commands in {}",
                    catalog.all().count(),
                    cfg.commands_dir.display()
                );
                for feature in cfg.features() {
                    println!("  {feature}");
                }
            }
        }
        Err(mut problems) => p.append(&mut problems),
    }
    if p.is_empty() {
        ExitCode::SUCCESS
    } else {
        print_problems(&p)
    }
}

/// A target whose role row-level security blinds is a problem: its
/// diagnostics could not check those tables and its actions are refused.
/// One that cannot be reached only gets a warning: a database may be down
/// while the configuration is right.
async fn blind_targets(cfg: &Config, catalog: &Catalog) -> Vec<Problem> {
    let problem = |field: String, why: String| Problem {
        file: "config".into(),
        field,
        why,
    };
    let targets = match Targets::from_config(&cfg.targets) {
        Ok(t) => t,
        Err(e) => return vec![problem("targets".into(), e.to_string())],
    };
    let mut out = Vec::new();
    for (name, seen) in rls::survey(&targets, catalog.reads(), CHECK_TIMEOUT).await {
        match seen {
            Ok(v) => out.extend(rls::blind_summary(&v).map(|why| {
                problem(
                    format!("targets.{name}"),
                    format!("{why}: rows there are invisible to the bot; grant the role BYPASSRLS"),
                )
            })),
            Err(e) => eprintln!("warning: config: targets.{name}: {e}; its row-level security was not checked"),
        }
    }
    out
}

/// Dispatch one command line and return the reply as terminal text. Slack
/// writes it causes are queued in the outbox for `serve` to deliver.
pub async fn exec(cfg: Config, user: &str, channel: Option<&str>, line: &str) -> anyhow::Result<String> {
    let user = UserId::parse(user)?;
    let channel = match channel {
        Some(c) => ChannelId::parse(c)?,
        None => cfg.slack.incident_channel.clone(),
    };
    let (command, text) = match line.trim().split_once(char::is_whitespace) {
        Some((c, t)) => (c.to_string(), t.trim().to_string()),
        None => (line.trim().to_string(), String::new()),
    };
    let state = AppState::connect(cfg, Arc::new(SystemClock)).await?;
    let origin = Origin {
        user,
        channel,
        response_url: None,
        via: Via::Terminal {
            os_user: Config::os_user_from_process(),
        },
    };
    let reply = dispatch::dispatch(&state, &origin, &command, &text).await;
    state.store.close().await;
    Ok(to_terminal(&reply.text))
}

/// Strip the mrkdwn that reads badly in a terminal.
fn to_terminal(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace('\u{200B}', "")
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
