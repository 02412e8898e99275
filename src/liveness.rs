//! `runbook-bot health`: asks a running instance's `/healthz`, for container
//! health checks and probes that have no shell or curl. Exit 0 on a 2xx
//! within the timeout, 1 otherwise with one line saying why.

use std::time::Duration;

/// Where to ask when `--url` is not given: this host, on `BIND`'s port
/// (the container sets `BIND=0.0.0.0:3000`), else the default 3000.
pub fn default_url(bind: Option<&str>) -> String {
    let port = bind
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(3000);
    format!("http://127.0.0.1:{port}/healthz")
}

/// GET `url`; Ok when it answers 2xx within `timeout`, else why not.
pub async fn check(url: &str, timeout: Duration) -> Result<(), String> {
    crate::slack::client::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent("runbook-bot health")
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {} s", timeout.as_secs_f64())),
        Err(e) if e.is_connect() => Err(format!("{url}: connection refused or unreachable")),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_follows_binds_port() {
        assert_eq!(default_url(None), "http://127.0.0.1:3000/healthz");
        assert_eq!(default_url(Some("0.0.0.0:8080")), "http://127.0.0.1:8080/healthz");
        assert_eq!(default_url(Some("[::]:9000")), "http://127.0.0.1:9000/healthz");
        assert_eq!(default_url(Some("nonsense")), "http://127.0.0.1:3000/healthz");
    }
}
