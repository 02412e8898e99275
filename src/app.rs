//! The composition root: builds the one `AppState`, the HTTP server and the
//! supervised background workers (each given the handles it uses), all
//! stopped by one cancellation token. Nothing but `main`/`cli` imports this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::state::AppState;

pub struct App {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    cancel: CancellationToken,
    /// What receives Slack's requests (the HTTP server, Socket Mode), and
    /// so starts command tasks.
    receivers: Vec<JoinHandle<()>>,
    /// The background workers.
    tasks: Vec<JoinHandle<()>>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let bind = config.bind;
        let state = AppState::connect(config, clock).await?;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        // Built before anything is spawned, so a failure leaves nothing running.
        let socket = socket_mode(&state)?;
        warn_blind_targets(&state);

        // Ready from the first request: one check now, then in the background.
        state.readiness.check(&state.outbox).await;
        let server = tokio::spawn(crate::http::serve::serve(
            listener,
            crate::http::router(state.clone()),
            state.config.http.clone(),
            state.metrics.clone(),
            cancel.clone(),
        ));
        let mut receivers = vec![server];
        let tasks = spawn_workers(&state, &cancel);
        if let Some(socket) = socket {
            receivers.push(supervise("socket", cancel.clone(), move |cancel| {
                socket.clone().run(cancel)
            }));
        }
        tracing::info!(%addr, backend = ?state.store.backend, "runbook-bot listening");
        for feature in state.config.features() {
            tracing::info!(feature = feature.name, on = feature.on, "{feature}");
        }
        Ok(App {
            addr,
            state,
            cancel,
            receivers,
            tasks,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Serve until Ctrl-C or SIGTERM, then drain.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }

    /// Stop accepting requests, let workers finish their current step, wait.
    /// The receivers go first: a request they are still answering may start
    /// a command task, which must be tracked before the tracker is waited on,
    /// and every task must end before the state store closes under it.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let limit = Duration::from_secs(20);
        for t in self.receivers {
            if tokio::time::timeout(limit, t).await.is_err() {
                tracing::warn!("a receiver did not stop within 20 s");
            }
        }
        self.state.tasks.close();
        if tokio::time::timeout(limit, self.state.tasks.wait()).await.is_err() {
            tracing::warn!("command tasks did not finish within 20 s");
        }
        for t in self.tasks {
            if tokio::time::timeout(limit, t).await.is_err() {
                tracing::warn!("a task did not stop within 20 s");
            }
        }
        self.state.store.close().await;
    }
}

/// With an app token, Slack's requests also arrive over Socket Mode
/// connections, handled by the same code as the HTTP routes.
fn socket_mode(state: &Arc<AppState>) -> anyhow::Result<Option<crate::slack::socket::SocketMode>> {
    let Some(token) = &state.config.slack.app_token else {
        return Ok(None);
    };
    let api = crate::slack::client::SlackApi::new(&state.config.slack.api_url, token)?;
    Ok(Some(crate::slack::socket::SocketMode::new(
        api,
        state.config.slack.socket_connections,
        crate::inbound::socket::handler(state.clone()),
        state.metrics.clone(),
    )))
}

/// Say which targets row-level security blinds, in the background: a slow
/// or unreachable target must not delay start.
fn warn_blind_targets(state: &Arc<AppState>) {
    let survey = state.clone();
    state.tasks.spawn(async move {
        let reads = survey.catalog.reads();
        crate::targets::rls::warn_blind(&survey.targets, reads, Duration::from_secs(5)).await;
    });
}

/// The background workers, each supervised until `cancel`.
fn spawn_workers(state: &Arc<AppState>, cancel: &CancellationToken) -> Vec<JoinHandle<()>> {
    let readiness = supervise("readiness", cancel.clone(), {
        let (readiness, outbox) = (state.readiness.clone(), state.outbox.clone());
        let every = state.config.http.readiness_check;
        move |cancel| crate::readiness::run(readiness.clone(), outbox.clone(), every, cancel)
    });
    let outbox = supervise("outbox", cancel.clone(), {
        let state = state.clone();
        move |cancel| {
            let worker = crate::outbox::worker::Worker {
                outbox: state.outbox.clone(),
                slack: state.slack.clone(),
                metrics: state.metrics.clone(),
                config: state.config.outbox.clone(),
                rooms: Some(Arc::new(crate::incident::room::steps::Steps { state: state.clone() })),
            };
            worker.run(cancel)
        }
    });
    let janitor = supervise("janitor", cancel.clone(), {
        let (store, clock) = (state.store.clone(), state.clock.clone());
        let retention = state.config.retention.clone();
        move |cancel| crate::store::janitor::run(store.clone(), clock.clone(), retention.clone(), cancel)
    });
    let checkpoint = supervise("checkpoint", cancel.clone(), {
        let store = state.store.clone();
        move |cancel| crate::store::checkpoint::run(store.clone(), cancel)
    });
    let approvals = supervise("approvals", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::approval::worker::run(state.clone(), cancel)
    });
    let alerts = supervise("alerts", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::alerts::process::run(state.clone(), cancel)
    });
    let escalation = supervise("escalation", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::incident::escalation::run(state.clone(), cancel)
    });
    let followups = supervise("followups", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::approval::followup::worker::run(state.clone(), cancel)
    });
    let rooms = supervise("room-archive", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::incident::room::archive::run(state.clone(), cancel)
    });
    let health = supervise("health", cancel.clone(), {
        let state = state.clone();
        move |cancel| crate::alerts::health::run(state.clone(), cancel)
    });
    vec![
        readiness, outbox, janitor, checkpoint, approvals, alerts, escalation, followups, rooms, health,
    ]
}

/// Run a long-lived worker; if it panics, log and restart it after a pause,
/// until shutdown.
fn supervise<F, Fut>(name: &'static str, cancel: CancellationToken, make: F) -> JoinHandle<()>
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(make(cancel.clone()));
            match run.await {
                Ok(()) => break,
                Err(e) if e.is_panic() => {
                    tracing::error!(worker = name, "worker panicked; restarting in 1 s");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(_) => break,
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
