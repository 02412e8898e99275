//! HTTP limits (issue 10): slow headers and bodies are cut off, idle
//! connections closed, the connection cap answers 503, an unauthenticated
//! alert is refused before its body, `/metrics` wants its token, `/readyz`
//! answers from the background check, and shutdown lets requests finish.
//! Raw TCP where a well-behaved client (reqwest) cannot misbehave.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn connect(t: &TestApp) -> TcpStream {
    TcpStream::connect(t.app.as_ref().unwrap().addr).await.unwrap()
}

/// Read until the server closes the connection (`Some(text)`), or `None`
/// if it is still open after `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|_| String::from_utf8_lossy(&got).into_owned())
}

/// Read until `needle` arrives (the connection stays open).
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within 5 s"));
    String::from_utf8_lossy(&got).into_owned()
}

async fn slow_headers_are_cut_off(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| {
        c.http.header_timeout = MS(500);
        c.http.idle_timeout = Duration::from_secs(30);
    })
    .await;
    // Half a request, then silence.
    let mut s = connect(&t).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half")
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(
        read_to_close(&mut s, Duration::from_secs(3)).await.is_some(),
        "still open"
    );
    assert!(t0.elapsed() >= MS(400), "closed too early: {:?}", t0.elapsed());

    // A header line every 100 ms never completes the head: bytes moving do
    // not buy more time.
    let mut s = connect(&t).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut closed = false;
    while t0.elapsed() < Duration::from_secs(3) {
        if s.write_all(b"X-Drip: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        if read_to_close(&mut s, MS(100)).await.is_some() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dripping head kept the connection for 3 s");
    t.finish().await;
}

async fn idle_keep_alive_connections_are_closed(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| {
        c.http.header_timeout = Duration::from_secs(30);
        c.http.idle_timeout = MS(300);
    })
    .await;
    let mut s = connect(&t).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(read_until(&mut s, "ok\n").await.starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    assert!(
        read_to_close(&mut s, Duration::from_secs(3)).await.is_some(),
        "an idle keep-alive connection stayed open for 3 s"
    );
    assert!(t0.elapsed() >= MS(250), "closed too early: {:?}", t0.elapsed());
    assert!(
        t.metrics()
            .await
            .contains(r#"runbook_bot_http_connections_total{event="idle_closed"} 1"#)
    );
    t.finish().await;
}

/// An alert request's head with the right token and a 100-byte body to come.
fn alert_head(token: &str, length: usize) -> String {
    format!(
        "POST /alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

async fn slow_bodies_are_cut_off(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| c.http.body_timeout = MS(500)).await;
    // Ten bytes of a hundred, then silence.
    let mut s = connect(&t).await;
    s.write_all(alert_head(ALERT_TOKEN, 100).as_bytes()).await.unwrap();
    s.write_all(b"{\"title\":\"").await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(3)).await.expect("still open");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // A byte every 100 ms: each gap is short, the whole is not.
    let mut s = connect(&t).await;
    s.write_all(alert_head(ALERT_TOKEN, 100).as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let mut answer = None;
    while t0.elapsed() < Duration::from_secs(3) && answer.is_none() {
        let _ = s.write_all(b" ").await;
        answer = read_to_close(&mut s, MS(100)).await;
    }
    let got = answer.expect("a trickled body kept the request open for 3 s");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM alert_inbox").await, 0);
    t.finish().await;
}

async fn unauthenticated_alerts_are_refused_before_their_body(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    for head in [
        alert_head("not-the-token", 500 * 1024),
        alert_head(ALERT_TOKEN, 500 * 1024).replace("Authorization: Bearer", "X-Not-Auth:"),
    ] {
        let mut s = connect(&t).await;
        s.write_all(head.as_bytes()).await.unwrap();
        // The body never comes; the answer must not wait for it.
        let t0 = Instant::now();
        let got = read_until(&mut s, "\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 401"), "{got}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
    assert_eq!(t.scalar("SELECT COUNT(*) FROM alert_inbox").await, 0);
    t.finish().await;
}

async fn over_the_connection_cap_is_503(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| c.http.max_connections = 2).await;
    // Two keep-alive connections hold both permits.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&t).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        read_until(&mut s, "ok\n").await;
        held.push(s);
    }
    let r = t.http.get(format!("{}/healthz", t.addr)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    // A permit comes back when a connection closes.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = t.http.get(format!("{}/healthz", t.addr)).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no permit came back");
        tokio::time::sleep(MS(50)).await;
    }
    drop(held);
    tokio::time::sleep(MS(100)).await;
    let m = t.metrics().await;
    assert!(
        m.contains(r#"runbook_bot_http_connections_total{event="over_capacity"}"#),
        "{m}"
    );
    t.finish().await;
}

async fn metrics_want_their_token(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| {
        c.metrics.token = Some(secrecy::SecretString::from("scrape-token".to_string()));
    })
    .await;
    let url = format!("{}/metrics", t.addr);
    assert_eq!(t.http.get(&url).send().await.unwrap().status(), 401);
    let wrong = t.http.get(&url).bearer_auth("scrape-tokem").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = t.http.get(&url).bearer_auth("scrape-token").send().await.unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("runbook_bot_outbox_pending 0"));
    t.finish().await;
}

async fn readiness_is_answered_from_the_background_check(backend: Backend) {
    // Checked once at start and then not for an hour: with the store
    // closed, every answer still comes from that check, none from a query.
    let t = TestApp::spawn_configured(backend, |c| c.http.readiness_check = Duration::from_secs(3600)).await;
    t.state().store.close().await;
    for _ in 0..20 {
        let r = t.http.get(format!("{}/readyz", t.addr)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let m = t.metrics().await;
    for line in [
        "runbook_bot_outbox_pending 0\n",
        "runbook_bot_outbox_lanes_waiting 0\n",
        "runbook_bot_outbox_lane_backlog_max 0\n",
        "runbook_bot_outbox_oldest_pending_seconds 0",
    ] {
        assert!(m.contains(line), "lacks {line}\n{m}");
    }
    t.finish().await;
}

async fn shutdown_lets_a_request_in_flight_finish(backend: Backend) {
    let mut t = TestApp::spawn(backend).await;
    let body = r#"{"dedup_key":"k","title":"Disk full","severity":"warning"}"#;
    let mut s = connect(&t).await;
    s.write_all(alert_head(ALERT_TOKEN, body.len()).as_bytes())
        .await
        .unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(MS(100)).await;
    let app = t.app.take().unwrap();
    let addr = app.addr;
    let stopping = tokio::spawn(app.shutdown());
    tokio::time::sleep(MS(200)).await;
    // No new connections once shutdown began ...
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown began"
    );
    // ... but the request under way is answered.
    s.write_all(&body.as_bytes()[10..]).await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await.expect("no answer");
    assert!(got.starts_with("HTTP/1.1 202"), "{got}");
    stopping.await.unwrap();
    t.finish().await;
}

both_backends!(
    slow_headers_are_cut_off,
    idle_keep_alive_connections_are_closed,
    slow_bodies_are_cut_off,
    unauthenticated_alerts_are_refused_before_their_body,
    over_the_connection_cap_is_503,
    metrics_want_their_token,
    readiness_is_answered_from_the_background_check,
    shutdown_lets_a_request_in_flight_finish,
);
