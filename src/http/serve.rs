//! The HTTP server: a small accept loop that hands each connection to
//! hyper's HTTP/1 builder with the limits of `[http]`. `axum::serve` cannot
//! set a header read timeout, which is why this exists.
//!
//! * A request head must arrive within `header_timeout` (hyper's timer).
//! * A body must arrive within `body_timeout`: tower-http's body timeout
//!   between frames, and `body::read` for the whole body.
//! * A connection idle for `idle_timeout` (see `idle`) is closed.
//! * At most `max_connections` are served at once, each holding a semaphore
//!   permit. Beyond that a connection is answered `503` with `Retry-After`,
//!   by a few extra slots that serve nothing else; beyond those it is closed.
//! * On shutdown, accepting stops, idle connections close, and requests in
//!   flight finish (hyper-util's graceful shutdown).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeout;

use super::idle::Activity;
use crate::config::HttpConfig;
use crate::metrics::Metrics;

/// Connections that may be told "503, come back later" at once.
const REJECT_SLOTS: usize = 32;
/// What a client over the cap is told to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// Serve `router` on `listener` until `cancel`, then drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpConfig,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let reject_slots = Arc::new(Semaphore::new(REJECT_SLOTS));
    let graceful = GracefulShutdown::new();
    let count = |event: &'static str| metrics.http_connection(event);
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Answers are small and a person waits on them: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: let it pass.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            count("accepted");
            spawn_connection(stream, permit, router.clone(), &limits, &graceful, &metrics);
        } else if let Ok(slot) = reject_slots.clone().try_acquire_owned() {
            count("over_capacity");
            spawn_rejection(stream, slot, limits.header_timeout);
        } else {
            count("dropped");
            drop(stream);
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

fn http1_builder(header_timeout: Duration) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    b
}

/// Serve one connection within the limits, holding its permit until it closes.
fn spawn_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    router: Router,
    limits: &HttpConfig,
    graceful: &GracefulShutdown,
    metrics: &Arc<Metrics>,
) {
    let activity = Activity::new();
    let io = TokioIo::new(activity.watch(stream));
    let inner = TowerToHyperService::new(RequestBodyTimeout::new(router, limits.body_timeout));
    let tracked = activity.clone();
    let svc = service_fn(move |req| {
        let busy = tracked.busy();
        let call = hyper::service::Service::call(&inner, req);
        async move {
            let response = call.await;
            drop(busy);
            response
        }
    });
    let conn = graceful.watch(http1_builder(limits.header_timeout).serve_connection(io, svc));
    let (idle_timeout, metrics) = (limits.idle_timeout, metrics.clone());
    tokio::spawn(async move {
        let _permit = permit;
        tokio::select! {
            done = conn => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            }
            _ = activity.idle_for(idle_timeout) => {
                metrics.http_connection("idle_closed");
            }
        }
    });
}

/// Answer every request on this connection `503` with `Retry-After`, then close.
fn spawn_rejection(stream: TcpStream, slot: OwnedSemaphorePermit, header_timeout: Duration) {
    let svc = service_fn(|_req| async {
        let response = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::RETRY_AFTER, RETRY_AFTER_SECS)
            .header(header::CONNECTION, "close")
            .body(Body::from("too many connections; retry shortly\n"))
            .expect("static response");
        Ok::<_, Infallible>(response)
    });
    let mut builder = http1_builder(header_timeout);
    builder.keep_alive(false);
    tokio::spawn(async move {
        let _slot = slot;
        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
    });
}
