//! Headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`), spoken to in W3C WebDriver over reqwest.
//!
//! Hand-written rather than the `fantoccini` crate: fantoccini (even with
//! default features off and only `rustls-tls`) pulls the `webdriver` crate,
//! which brings second major versions of http (0.2), cookie, thiserror (1)
//! and the icu/zerovec family into Cargo.lock; the dozen endpoints the tests
//! use are a small JSON-over-HTTP client on the reqwest we already have.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which an element reference comes back.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Option<Child>,
    http: reqwest::Client,
    base: String,
    session: String,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Start chromedriver on a free port and open a headless Chromium
    /// session with its own profile and download folder. Missing binaries
    /// fail loudly: CI installs them (`.ci/run`).
    pub async fn start() -> Browser {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            driver: Some(driver),
            http,
            base,
            session: String::new(),
            downloads: tempfile::tempdir().unwrap(),
            _profile: tempfile::tempdir().unwrap(),
        };
        b.wait_ready().await;
        b.session = b.new_session().await;
        b
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/status", self.base)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn new_session(&self) -> String {
        let downloads = self.downloads.path().display().to_string();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run",
                         format!("--user-data-dir={}", self._profile.path().display())],
                "prefs": {"download.default_directory": downloads, "download.prompt_for_download": false}
            }
        }}});
        let v = self.call(reqwest::Method::POST, "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        // Headless Chromium downloads only where it is told to.
        let cdp = json!({"cmd": "Browser.setDownloadBehavior",
                         "params": {"behavior": "allow", "downloadPath": downloads}});
        self.call(
            reqwest::Method::POST,
            &format!("/session/{id}/goog/cdp/execute"),
            Some(cdp),
        )
        .await;
        id
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn session_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.session_call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until the browser is at a URL ending in `suffix` (a form's
    /// POST and its redirect may finish after the click returned).
    pub async fn wait_url(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) {
                return;
            }
            assert!(Instant::now() < deadline, "at {url}, not …{suffix}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the page's body.
    pub async fn text(&self) -> String {
        let body = self.find("body").await;
        self.session_call(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .session_call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        all.into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.session_call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.session_call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }

    /// Wait for a finished download named `name`.
    pub async fn downloaded(&self, name: &str) -> String {
        let path: PathBuf = self.downloads.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.is_empty()
            {
                return text;
            }
            assert!(Instant::now() < deadline, "{name} was not downloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Close the browser and stop chromedriver.
    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Drop for Browser {
    /// On a failed test: end the browser session (Chromium would outlive
    /// its driver), then the driver.
    fn drop(&mut self) {
        if self.driver.is_none() {
            return;
        }
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    let c = reqwest::Client::builder().no_proxy().build().unwrap();
                    let _ = c.delete(url).timeout(Duration::from_secs(10)).send().await;
                });
            }
        })
        .join();
        self.stop_driver();
    }
}
