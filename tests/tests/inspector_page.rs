//! The inspector's page in a real headless Chromium (tests/src/browser.rs): requests through the
//! tunnel appear without a reload, selecting one shows its headers and bodies (JSON pretty-printed,
//! form data decoded), replay as is, edited and by key reaches the local service, the filter and
//! copy as curl work, and the narrow layout puts the list above the detail.
//!
//! `GGROK_SCREENSHOT=docs/inspector.png cargo test -p ggrok-tests --test inspector_page` also
//! writes the screenshot it takes to that path (relative to tests/), for the README.

use bytes::Bytes;
use fantoccini::Locator;
use ggrok_tests::browser::Browser;
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::Cluster;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A request as the local service received it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// A local service that records every request (but WebSockets, echoed by the harness's
/// upstream) and answers JSON, or 404 on `/missing`, or an SVG image on `/logo.svg`.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="240" height="64" viewBox="0 0 240 64"><rect width="240" height="64" rx="12" fill="#2f6fdf"/><text x="120" y="42" font-family="sans-serif" font-size="28" font-weight="700" fill="#fff" text-anchor="middle">ggrok</text></svg>"##;

impl Recorder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, log.clone()));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { port, seen }
    }

    /// What was received at `path_prefix`, in order.
    fn at(&self, path_prefix: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path.starts_with(path_prefix)).cloned().collect()
    }

    /// Waits (bounded) until `n` requests were received at `path_prefix`; returns them.
    async fn wait_for(&self, path_prefix: &str, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.at(path_prefix);
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the local service got {} of {n} at {path_prefix}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<ggrok_tests::upstream::Body>, std::convert::Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(ggrok_tests::upstream::websocket(req));
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let n = body.len();
    log.lock().unwrap().push(Seen { method: parts.method.to_string(), path: path.clone(), headers, body });
    let (status, content_type, text) = match path.as_str() {
        "/missing" => (StatusCode::NOT_FOUND, "text/plain", "no such page\n".to_owned()),
        "/logo.svg" => (StatusCode::OK, "image/svg+xml", LOGO.to_owned()),
        _ => {
            let report = json!({ "ok": true, "received": { "method": parts.method.as_str(), "path": path, "bytes": n }, "tags": ["a", "b"] });
            (StatusCode::OK, "application/json", report.to_string())
        }
    };
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed())
        .unwrap())
}

const WEBHOOK: &str = r#"{"id":"evt_1Q2w3E","type":"invoice.paid","amount":4200,"ref":12345678901234567890,"lines":[{"sku":"pro"}]}"#;

async fn post(public: &Public, path: &str, content_type: &str, body: &'static str) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-signature", "t=1700000000,v1=5257a869e7")
        .body(full(body))
        .unwrap();
    assert_eq!(public.fetch("app.test", req).await.status, StatusCode::OK);
}

/// The `id` of the newest row whose path starts with `path`, once it is done.
async fn row_id(page: &Browser, path: &str) -> u64 {
    let condition = format!(
        "[...document.querySelectorAll('#rows tr')].find(r => r.querySelector('.path').textContent.startsWith({path:?}) && r.dataset.state === 'done')?.dataset.id"
    );
    let id = page.wait_until(&format!("a row for {path}"), &condition).await;
    id.as_str().unwrap().parse().unwrap()
}

/// Clicks the element `css` finds; found again when the page replaced it in between (a row
/// redrawn by a live update).
async fn click(page: &Browser, css: &str) {
    for attempt in 1.. {
        let element = page.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        match element.click().await {
            Ok(()) => return,
            Err(e) if attempt < 3 && e.to_string().contains("stale") => continue,
            Err(e) => panic!("click {css}: {e}"),
        }
    }
}

/// Clicks the row of request `id` and waits until its detail shows.
async fn select(page: &Browser, id: u64) {
    click(page, &format!("#rows tr[data-id=\"{id}\"]")).await;
    page.wait_until(
        &format!("the detail of #{id}"),
        &format!("!document.getElementById('detail-body').hidden && document.getElementById('detail-body').dataset.id === '{id}'"),
    )
    .await;
}

/// Types `keys` as a user would on the page (where the focus is: the list, unless a field has it).
async fn keys(page: &Browser, keys: &str) {
    page.client.find(Locator::Css("body")).await.unwrap().send_keys(keys).await.unwrap();
}

/// The text of the element with `id`.
async fn text(page: &Browser, id: &str) -> String {
    let value = page.eval(&format!("return document.getElementById('{id}').innerText;"), vec![]).await;
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_requests_live_and_replays_them() {
    let recorder = Recorder::start().await;
    let port = recorder.port.to_string();
    let cluster = Cluster::start_with(&[("app.test", &port)], "inspect = \"127.0.0.1:0\"\n");
    let line = cluster.daemon.process.wait_for(&["inspector on http://"]);
    let url = line.split("inspector on ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let public = Public::new(cluster.addr());

    let page = Browser::start(1280, 900).await;
    page.client.goto(&format!("{url}/")).await.unwrap();
    page.wait_until("the live stream", "document.getElementById('conn').dataset.state === 'live'").await;
    page.eval("window.loadedOnce = true; return null;", vec![]).await;

    // A webhook arrives: its row appears without a reload.
    post(&public, "/webhook/stripe?attempt=1", "application/json", WEBHOOK).await;
    let hook = row_id(&page, "/webhook/stripe").await;
    assert_eq!(
        page.eval("return window.loadedOnce === true;", vec![]).await,
        json!(true),
        "the page reloaded"
    );

    // Selected, it shows its headers, the JSON bodies pretty-printed (big numbers as sent), the query.
    select(&page, hook).await;
    let headers = text(&page, "request-headers").await;
    assert!(headers.contains("x-signature") && headers.contains("t=1700000000,v1=5257a869e7"), "{headers}");
    assert!(text(&page, "response-headers").await.contains("application/json"));
    page.wait_until("the request's JSON", "document.getElementById('request-body').dataset.kind === 'json'")
        .await;
    let body = text(&page, "request-body").await;
    assert!(body.contains("\"amount\": 4200,\n") && body.contains("\"ref\": 12345678901234567890"), "{body}");
    assert!(body.contains("\"lines\": [\n    {\n      \"sku\": \"pro\""), "indented: {body}");
    assert!(text(&page, "response-body").await.contains("\"ok\": true"));
    assert!(text(&page, "request-query").await.contains("attempt"));

    // Replay as is: the local service gets the same request again, and the replay is listed.
    click(&page, "#replay").await;
    let seen = recorder.wait_for("/webhook/stripe", 2).await;
    assert_eq!(seen[1], Seen { headers: seen[1].headers.clone(), ..seen[0].clone() });
    assert!(seen[1].headers.iter().any(|(n, v)| n == "x-signature" && v == "t=1700000000,v1=5257a869e7"));
    let replay = page
        .wait_until(
            "the replay's row, selected",
            &format!("document.querySelector('#rows tr.sel[data-replay-of=\"{hook}\"]')?.dataset.id"),
        )
        .await;
    assert!(text(&page, "notice").await.contains("Replayed"));
    let replay_id = replay.as_str().unwrap();
    page.wait_until(
        "its detail",
        &format!("document.getElementById('detail-body').dataset.id === '{replay_id}'"),
    )
    .await;
    assert!(text(&page, "detail-meta").await.contains(&format!("replay of #{hook}")));

    // Edit & replay: another path and body.
    select(&page, hook).await;
    click(&page, "#edit-replay").await;
    let path = page.client.find(Locator::Id("edit-path")).await.unwrap();
    path.clear().await.unwrap();
    path.send_keys("/webhook/stripe?attempt=2").await.unwrap();
    page.eval("document.getElementById('edit-body').value = '{\"edited\":true}'; return null;", vec![]).await;
    click(&page, "#edit-send").await;
    let seen = recorder.wait_for("/webhook/stripe", 3).await;
    assert_eq!(
        (seen[2].path.as_str(), &seen[2].body[..]),
        ("/webhook/stripe?attempt=2", &b"{\"edited\":true}"[..])
    );
    page.wait_until("the editor closed", "document.getElementById('editor').hidden").await;

    // Keys: Home selects the newest (the edited replay), j the one below (the first replay), r
    // replays that one.
    keys(&page, "\u{E011}").await;
    page.wait_until("Home", "document.querySelector('#rows tr.sel') === document.querySelector('#rows tr')")
        .await;
    keys(&page, "j").await;
    page.wait_until("j", &format!("document.querySelector('#rows tr.sel')?.dataset.id === '{replay_id}'"))
        .await;
    page.wait_until(
        "its detail",
        &format!("document.getElementById('detail-body').dataset.id === '{replay_id}'"),
    )
    .await;
    keys(&page, "r").await;
    let seen = recorder.wait_for("/webhook/stripe", 4).await;
    assert_eq!((seen[3].path.as_str(), &seen[3].body[..]), ("/webhook/stripe?attempt=1", WEBHOOK.as_bytes()));

    // Form data decoded into a table, a 404, an image, a WebSocket that stays open.
    post(&public, "/signup", "application/x-www-form-urlencoded", "name=Ada+Lovelace&lang=en%2DGB").await;
    assert_eq!(public.get("app.test", "/missing").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public.get("app.test", "/logo.svg").await.status, StatusCode::OK);
    let tcp = tokio::net::TcpStream::connect(cluster.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://app.test/ws", tcp).await.expect("WebSocket");
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    assert!(ws.next().await.is_some());
    page.wait_until("the WebSocket, open", "[...document.querySelectorAll('#rows tr[data-upgrade=websocket]')].some(r => r.querySelector('.dur').textContent.startsWith('open'))").await;
    select(&page, row_id(&page, "/signup").await).await;
    page.wait_until("the form table", "document.getElementById('request-body').dataset.kind === 'form'")
        .await;
    let form = text(&page, "request-form").await;
    assert!(form.contains("Ada Lovelace") && form.contains("en-GB"), "{form}");
    select(&page, row_id(&page, "/logo.svg").await).await;
    page.wait_until("the image", "document.querySelector('#response-body img')?.naturalWidth === 240").await;

    // The filter: status class, then text in the path.
    let filter = page.client.find(Locator::Id("filter")).await.unwrap();
    filter.send_keys("status:4xx").await.unwrap();
    page.wait_until("only the 404", "document.querySelectorAll('#rows tr').length === 1 && document.querySelector('#rows tr').dataset.status === '404'").await;
    filter.clear().await.unwrap();
    filter.send_keys("attempt=2").await.unwrap();
    page.wait_until("only the edited replay", "document.querySelectorAll('#rows tr').length === 1").await;
    page.eval("const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); return null;", vec![]).await;
    page.wait_until("every row again", "document.querySelectorAll('#rows tr').length >= 8").await;

    // Copy as curl, of the webhook.
    select(&page, hook).await;
    click(&page, "#copy-curl").await;
    page.wait_until("the curl command", "!document.getElementById('curl').hidden").await;
    let curl = text(&page, "curl").await;
    assert!(curl.starts_with("curl 'http://app.test/webhook/stripe?attempt=1'"), "{curl}");
    assert!(curl.contains("-H 'x-signature: t=1700000000,v1=5257a869e7'"), "{curl}");
    assert!(curl.contains(&format!("--data-binary '{WEBHOOK}'")), "{curl}");
    assert!(!curl.contains("-X"), "POST with a body needs no -X: {curl}");

    // Wide: the detail beside the list. The screenshot, with the webhook selected.
    keys(&page, "\u{E00C}").await; // Esc hides the curl command
    page.wait_until("the curl command hidden", "document.getElementById('curl').hidden").await;
    let side_by_side = "document.getElementById('detail').getBoundingClientRect().left >= document.getElementById('list-pane').getBoundingClientRect().right - 1";
    page.wait_until("list and detail side by side", side_by_side).await;
    let png = page.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inspector.png"), &png).unwrap();
    if let Some(path) = std::env::var_os("GGROK_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }

    // Narrow: the list above the detail.
    page.client.set_window_size(600, 900).await.unwrap();
    let stacked = "innerWidth < 800 && document.getElementById('detail').getBoundingClientRect().top >= document.getElementById('list-pane').getBoundingClientRect().bottom - 1";
    page.wait_until("the narrow layout", stacked).await;
    assert!(text(&page, "request-headers").await.contains("x-signature"));
    if let Some(path) = std::env::var_os("GGROK_SCREENSHOT_NARROW") {
        std::fs::write(&path, page.client.screenshot().await.unwrap()).unwrap();
    }

    // Clear empties the list (and ggrokd's).
    click(&page, "#clear").await;
    page.wait_until(
        "an empty list",
        "document.querySelectorAll('#rows tr').length === 0 && !document.getElementById('empty').hidden",
    )
    .await;
    drop(ws);
    page.close().await;
}
