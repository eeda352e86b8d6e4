//! `[cluster] wait_for_sessions`: after a start, the admin listener's `/healthz` answers 503
//! `waiting for tunnel sessions` until a daemon has claimed a host on this server, or until that
//! many seconds have passed; then 200 `ok`, as before.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::Admin;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::process::READY_TIMEOUT;
use ggrok_tests::upstream::Upstream;
use http::{Method, StatusCode};
use std::time::{Duration, Instant};

fn server(wait: &str) -> Server {
    Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n\n[cluster]\nwait_for_sessions = {wait}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"a.test\"]\n"
    ))
}

async fn health(admin: &Admin) -> (StatusCode, String) {
    let reply = admin.request(Method::GET, "/healthz").await;
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_waits_for_the_first_tunnel_session() {
    let up = Upstream::start().await;
    let server = server("3600");
    let admin = Admin::of(&server);
    let waiting = (StatusCode::SERVICE_UNAVAILABLE, "waiting for tunnel sessions\n".to_owned());
    assert_eq!(health(&admin).await, waiting);
    let head = admin.request(Method::HEAD, "/healthz").await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);

    let mut daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &up.port())], "");
    // The daemon says a tunnel is online once the server has registered it.
    daemon.wait_online("a.test");
    assert_eq!(health(&admin).await, (StatusCode::OK, "ok\n".to_owned()));
    server.process.wait_for(&["first tunnel registered: /healthz now says ok"]);

    // Ready once is ready: a daemon that goes away does not make the server wait again.
    daemon.process.stop();
    server.process.wait_for(&["tunnel client disconnected"]);
    assert_eq!(health(&admin).await, (StatusCode::OK, "ok\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_healthz_says_ok_once_the_wait_is_over() {
    let server = server("0.5");
    let admin = Admin::of(&server);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut answers = Vec::new();
    loop {
        let answer = health(&admin).await;
        let ok = answer.0 == StatusCode::OK;
        answers.push(answer);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {answers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (last, before) = answers.split_last().unwrap();
    assert_eq!(last.1, "ok\n");
    let waiting = (StatusCode::SERVICE_UNAVAILABLE, "waiting for tunnel sessions\n".to_owned());
    assert!(before.iter().all(|a| *a == waiting), "{answers:?}");
    assert_eq!(server.process.count(&["tunnel client connected"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_healthz_says_ok_at_once() {
    let server = server("0");
    let admin = Admin::of(&server);
    assert_eq!(health(&admin).await, (StatusCode::OK, "ok\n".to_owned()));
}
