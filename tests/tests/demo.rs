//! `cargo xtask demo`, the README's first command, really serves a tunnel and stops on Ctrl-C.

use ggrok_tests::bins::bin;
use ggrok_tests::client::Public;
use http::StatusCode;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_curl_line_that_works_and_stops_on_ctrl_c() {
    let mut demo = Command::new(bin("xtask"))
        .args(["demo", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    // The demo prints its instructions once the tunnel is online.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("curl -H 'Host: demo.localhost' http://") {
                let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = tokio::time::timeout(ggrok_tests::process::READY_TIMEOUT * 6, rx)
        .await
        .expect("demo did not come up")
        .expect("demo exited before printing its curl line");

    let reply = Public::new(addr).get("demo.localhost", "/hello?from=test").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("Hello from the sample service"), "{}", reply.text());
    assert!(reply.text().contains("GET /hello?from=test"), "{}", reply.text());

    // Ctrl-C reaches the whole process group in a terminal; SIGINT to the demo is enough here.
    Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    let status = demo.wait().unwrap();
    assert!(status.success(), "demo exited with {status}");
}
