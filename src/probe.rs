//! HTTP health probes (the runbooks' health-check script: 200 within a
//! latency budget), shared by `/diagnose health` and the health poller.

use std::time::{Duration, Instant};

use crate::config::HealthCheck;

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// `200`, `500`, `timeout`, `unreachable`, `error`.
    pub status: String,
    pub latency_ms: f64,
    pub ok: bool,
    /// Answered 200, but slower than the budget.
    pub slow: bool,
}

pub async fn http(client: &reqwest::Client, h: &HealthCheck) -> Probe {
    let started = Instant::now();
    let budget = Duration::from_millis(h.max_latency_ms);
    let r = client
        .get(&h.url)
        .timeout(budget * 3 + Duration::from_secs(1))
        .send()
        .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let status = match &r {
        Ok(resp) => resp.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "unreachable".into(),
        Err(_) => "error".into(),
    };
    let answered_200 = matches!(&r, Ok(resp) if resp.status() == reqwest::StatusCode::OK);
    let slow = answered_200 && latency_ms > h.max_latency_ms as f64;
    Probe {
        status,
        latency_ms,
        ok: answered_200 && !slow,
        slow,
    }
}
