//! A headless Chromium driven over WebDriver, for the inspector page's test: Debian's
//! `chromedriver` (package chromium-driver, installed by .ci/setup) on a free loopback port, and
//! one session of `chromium` with a profile of its own. Both end when the [`Browser`] is dropped
//! (better: [`Browser::close`], which ends the session first).

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the browser has to start, and a condition on the page to hold.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// A chromedriver and a session in a headless Chromium.
pub struct Browser {
    /// The session.
    pub client: Client,
    driver: Option<Child>,
    _profile: TempDir,
}

/// Where Debian installs the two programs.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

impl Browser {
    /// Starts chromedriver and opens a headless window of `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the browser test needs Debian's chromium and chromium-driver (.ci/setup installs them)"
        );
        // The port is probed, then given to chromedriver; another process may take it between
        // the two, so a driver that never answers is tried again on another port.
        for _ in 0..3 {
            let port = free_port();
            let mut driver = spawn_driver(port);
            if wait_ready(&mut driver, port).await {
                let profile = tempfile::tempdir().unwrap();
                let client = session(port, width, height, &profile).await;
                return Self { client, driver: Some(driver), _profile: profile };
            }
            kill_group(driver);
        }
        panic!("chromedriver did not come up on any of three ports");
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        if let Some(driver) = self.driver.take() {
            kill_group(driver);
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the expression `condition` is truthy in the page (polled, bounded by
    /// [`BROWSER_TIMEOUT`]) and returns its value; panics with `what` and the page's text.
    pub async fn wait_until(&self, what: &str, condition: &str) -> Value {
        let script = format!("return ({condition});");
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            let value = self.client.execute(&script, vec![]).await.unwrap_or(Value::Null);
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("") {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.eval("return document.body.innerText;", vec![]).await;
                panic!(
                    "timed out waiting for {what} ({condition}); the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            kill_group(driver);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver in a process group of its own, so that Chromium and its helpers, which it
/// starts, are killed with it.
fn spawn_driver(port: u16) -> Child {
    let mut cmd = Command::new(CHROMEDRIVER);
    cmd.arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if std::env::var_os("GGROK_TEST_ECHO").is_some() {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()).arg("--verbose");
    }
    cmd.spawn().unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"))
}

/// Waits until chromedriver answers `/status` with `ready`; false if it exits or never does.
async fn wait_ready(driver: &mut Child, port: u16) -> bool {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let url: http::Uri = format!("http://127.0.0.1:{port}/status").parse().unwrap();
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    while Instant::now() < deadline {
        if driver.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(resp) = client.get(url.clone()).await {
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let status: Value = serde_json::from_slice(&body).unwrap_or_default();
            if status["value"]["ready"] == json!(true) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn session(port: u16, width: u32, height: u32, profile: &TempDir) -> Client {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-extensions".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-crash-reporter".to_owned(),
        "--disable-breakpad".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let Value::Object(caps) = caps else { unreachable!() };
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(caps);
    let url = format!("http://127.0.0.1:{port}");
    tokio::time::timeout(BROWSER_TIMEOUT, builder.connect(&url))
        .await
        .expect("chromium did not start in time")
        .unwrap_or_else(|e| panic!("a WebDriver session in chromium: {e}"))
}

/// Kills the process group of `child` (chromedriver, Chromium and its helpers) and reaps it.
fn kill_group(mut child: Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}
