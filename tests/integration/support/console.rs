//! The incident console as a browser without JavaScript sees it: the
//! sign-in link from `/incident console`, the sign-in form, pages fetched
//! with the session cookie (no redirects followed, so each status is seen).

use runbook_bot::config::Config;
use sqlx::Row;

use super::{Backend, TestApp};

/// What `console.public_url` is in the tests; links are opened at the
/// app's real address with the token they carry.
pub const PUBLIC_URL: &str = "http://localhost:8080";

pub fn enable(cfg: &mut Config) {
    cfg.console.enabled = true;
    cfg.console.public_url = Some(PUBLIC_URL.into());
}

pub async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_configured(backend, enable).await
}

/// The console on a port chosen now, with its public URL that address, so
/// a browser opening the app sends the public URL's origin.
pub fn enable_on_own_address(cfg: &mut Config) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    cfg.bind = ([127, 0, 0, 1], port).into();
    cfg.console.enabled = true;
    cfg.console.public_url = Some(format!("http://127.0.0.1:{port}"));
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The token of the link in a `/incident console` reply.
pub fn token_in(reply: &str) -> String {
    let start = reply
        .find("/console/login?token=")
        .unwrap_or_else(|| panic!("no sign-in link in {reply}"))
        + "/console/login?token=".len();
    reply[start..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
}

/// `/incident console` as `user`; returns the link's token.
pub async fn link(t: &TestApp, user: &str) -> String {
    let reply = t.command(user, "console").await;
    assert!(
        reply.contains(&format!("<{}/console/login?token=", origin(t))),
        "{reply}"
    );
    token_in(&reply)
}

/// The console's origin, as a browser on its pages sends it in `Origin`.
pub fn origin(t: &TestApp) -> String {
    t.config.console.public_url().expect("the console is on").to_string()
}

/// POST the sign-in form from the console's own page; the response as is.
pub async fn post_sign_in(t: &TestApp, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/console/login", t.addr))
        .header("origin", origin(t))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// The session cookie's value from a sign-in response.
pub fn session_cookie(resp: &reqwest::Response) -> String {
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    set.strip_prefix("rb_console=")
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {set}"))
        .to_string()
}

/// Sign `user` in through the link and the form; returns the cookie value.
pub async fn sign_in(t: &TestApp, user: &str) -> String {
    let token = link(t, user).await;
    let resp = post_sign_in(t, &token).await;
    assert_eq!(resp.status(), 303);
    session_cookie(&resp)
}

pub async fn get(t: &TestApp, cookie: Option<&str>, path: &str) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", t.addr));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("rb_console={c}"));
    }
    req.send().await.unwrap()
}

/// GET a page that must answer 200; its HTML.
pub async fn page(t: &TestApp, cookie: &str, path: &str) -> String {
    let resp = get(t, Some(cookie), path).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// POST a form from the console's own page.
pub async fn post_form(t: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}{path}", t.addr))
        .header("origin", origin(t))
        .header("cookie", format!("rb_console={cookie}"))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The CSRF token a page's forms carry.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].chars().take_while(|c| *c != '"').collect()
}

pub async fn count(t: &TestApp, table: &'static str) -> i64 {
    let sql = match table {
        "console_links" => "SELECT COUNT(*) AS n FROM console_links",
        "console_sessions" => "SELECT COUNT(*) AS n FROM console_sessions",
        other => panic!("no count for {other}"),
    };
    sqlx::query(sql)
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// The console's security headers, on every answer (pages and refusals).
pub fn assert_secure_headers(resp: &reqwest::Response) {
    let h = resp.headers();
    let url = resp.url();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        "{url}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
    assert_eq!(h["referrer-policy"], "same-origin", "{url}");
    assert_eq!(h["x-frame-options"], "DENY", "{url}");
    assert_eq!(h["cache-control"], "no-store", "{url}");
}
