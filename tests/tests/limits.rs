//! Limits and hostile input: each limit exceeded is answered with its status and a log line, while
//! a legitimate tunnel keeps working in the same test. Attackers connect from 127.0.0.2, the
//! legitimate client from 127.0.0.1.

use futures_util::SinkExt;
use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server};
use ggrok_tests::rogue;
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: &str = "127.0.0.2";
/// Only catches hangs; nothing here asserts how long anything took.
const HANG: Duration = Duration::from_secs(30);

async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads what the server says until it closes (bounded).
async fn answer(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(HANG, conn.read_to_end(&mut out))
        .await
        .expect("the server never answered or closed");
    String::from_utf8_lossy(&out).into_owned()
}

async fn legit_works(public: &Public) {
    assert_eq!(
        public.get("api.test", "/").await.status,
        StatusCode::OK,
        "the legitimate tunnel was affected"
    );
}

/// One more request on an open keep-alive connection is answered 200.
async fn keep_alive_works(conn: &mut TcpStream) {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await.unwrap();
    let (head, _) =
        tokio::time::timeout(HANG, ggrok_tests::client::read_response(conn)).await.expect("no answer");
    assert!(head.starts_with("HTTP/1.1 200"), "the legitimate keep-alive connection was affected: {head}");
}

fn cluster(up: &Upstream, limits: &str) -> Cluster {
    Cluster::start_full(&[("api.test", &up.port())], &format!("[limits]\n{limits}"), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_gets_408_and_oversized_heads_431() {
    let up = Upstream::start().await;
    let cluster = cluster(&up, "header_read_timeout = 1\nmax_header_bytes = 8192");
    let public = Public::new(cluster.addr());

    let mut slow = connect_from(ATTACKER, cluster.addr()).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Slow: ").await.unwrap();
    let mut silent = connect_from(ATTACKER, cluster.addr()).await;
    legit_works(&public).await;
    assert!(answer(&mut slow).await.starts_with("HTTP/1.1 408"));
    assert!(answer(&mut silent).await.starts_with("HTTP/1.1 408"));

    let mut big = connect_from(ATTACKER, cluster.addr()).await;
    let head = format!("GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let _ = big.write_all(head.as_bytes()).await;
    assert!(answer(&mut big).await.starts_with("HTTP/1.1 431"));
    // On a new connection: with header_read_timeout = 1 the server closes a keep-alive connection
    // idle for a second, and the first one may be closing just as it is reused.
    legit_works(&Public::new(cluster.addr())).await;
    cluster.server.process.wait_for(&["limit:", "408"]);
    cluster.server.process.wait_for(&["limit:", "431"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_waiting_connections_get_429_per_address_and_503_in_all() {
    let up = Upstream::start().await;
    let cluster =
        cluster(&up, "max_pending_per_ip = 3\nmax_pending_connections = 5\nheader_read_timeout = 60");
    // A keep-alive connection made before the flood keeps working during it. (A pooling client
    // could open a new connection for a request, which the flood would then refuse.)
    let mut keep = TcpStream::connect(cluster.addr()).await.unwrap();
    keep_alive_works(&mut keep).await;

    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from(ATTACKER, cluster.addr()).await);
    }
    // Accepting is asynchronous: the fourth from the same address is refused once the three count.
    let mut refused = String::new();
    for _ in 0..100 {
        let mut fourth = connect_from(ATTACKER, cluster.addr()).await;
        let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await;
        refused = answer(&mut fourth).await;
        if refused.starts_with("HTTP/1.1 429") {
            break;
        }
    }
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    keep_alive_works(&mut keep).await;

    idle.push(connect_from("127.0.0.3", cluster.addr()).await);
    idle.push(connect_from("127.0.0.4", cluster.addr()).await);
    let mut refused = String::new();
    for _ in 0..100 {
        let mut sixth = connect_from("127.0.0.5", cluster.addr()).await;
        refused = answer(&mut sixth).await;
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    keep_alive_works(&mut keep).await;
    cluster.server.process.wait_for(&["limit:", "429"]);
    drop(idle);
    // Once they are gone, new connections are welcome again.
    assert_eq!(
        Public::from_address(cluster.addr(), "127.0.0.6".parse::<IpAddr>().unwrap())
            .get("api.test", "/")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_a_slow_one_is_not() {
    let up = Upstream::start().await;
    let cluster = cluster(&up, "stalled_read_timeout = 2");
    let public = Public::new(cluster.addr());

    // Asks for 64 MiB and reads nothing: once buffers are full, nothing moves for two seconds.
    let mut stalled = connect_from(ATTACKER, cluster.addr()).await;
    stalled.write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: api.test\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let line = cluster.server.process.wait_for(&["limit:", "stalled_read_timeout"]);
    assert!(line.contains("127.0.0.2"), "{line}");
    println!("stalled reader cut after {:.1}s", started.elapsed().as_secs_f64());
    legit_works(&public).await;
    // The connection was closed: what was buffered, then the end, well short of 64 MiB.
    let mut got = Vec::new();
    tokio::time::timeout(HANG, stalled.read_to_end(&mut got)).await.expect("not closed").ok();
    assert!(got.len() < 64 << 20, "{} bytes", got.len());

    // A slow reader: 2 MiB at a time, then a pause of 0.8 s (under the 2 s timeout, long enough
    // for the server's buffers to fill and its writes to block): it gets all of 16 MiB.
    let mut slow = connect_from("127.0.0.3", cluster.addr()).await;
    slow.write_all(b"GET /bytes/16777216 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut burst = 0usize;
    loop {
        let n = tokio::time::timeout(HANG, slow.read(&mut buf)).await.expect("the slow reader hung").unwrap();
        if n == 0 {
            break;
        }
        total += n;
        burst += n;
        if burst >= 2 << 20 {
            burst = 0;
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
    }
    assert!(total > 16 << 20, "the slow reader got {total} bytes");
    println!("slow reader done after {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(
        cluster.server.process.count(&["limit:", "stalled_read_timeout"]),
        1,
        "only the stalled one was cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_per_session_are_capped_with_503() {
    let (busy, other) = (Upstream::start().await, Upstream::start().await);
    let server = Server::start_extra(
        &[
            ClientDef { name: "busy", token: TEST_TOKEN, hosts: &["busy.test"] },
            ClientDef { name: "other", token: "other-token-0123456789", hosts: &["api.test"] },
        ],
        "[limits]\nmax_streams_per_session = 2",
    );
    let d1 = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("busy.test", &busy.port())], "");
    let d2 = Daemon::start(&server.ws_url(), "other-token-0123456789", &[("api.test", &other.port())], "");
    d1.wait_online("busy.test");
    d2.wait_online("api.test");
    let public = Public::new(server.addr);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let public = public.clone();
            tokio::spawn(async move { public.get("busy.test", "/slow").await })
        })
        .collect();
    while busy.served.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    let third = public.get("busy.test", "/").await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE, "{}", third.text());
    assert!(third.text().contains("too many requests in flight"));
    legit_works(&public).await;
    busy.release_slow();
    for s in slow {
        assert_eq!(s.await.unwrap().status, StatusCode::OK);
    }
    // The places are free again.
    assert_eq!(public.get("busy.test", "/").await.status, StatusCode::OK);
    server.process.wait_for(&["limit:", "requests in flight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_hold_only_so_many_hosts() {
    let up = Upstream::start().await;
    let server = Server::start_extra(
        &[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["*.test"] }],
        "[limits]\nmax_hosts_per_client = 2",
    );
    let daemon = Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[("a.test", &up.port()), ("b.test", &up.port()), ("c.test", &up.port())],
        "",
    );
    let line = daemon.process.wait_for(&["tunnel refused", "max_hosts_per_client"]);
    assert!(line.contains("c.test") || line.contains("b.test") || line.contains("a.test"), "{line}");
    assert_eq!(daemon.process.count(&["tunnel online"]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_garbled_control_stream_closes_only_that_session() {
    let up = Upstream::start().await;
    let cluster = cluster(&up, "handshake_timeout = 1\nmax_control_message = 1024");
    let public = Public::new(cluster.addr());

    // Silent: never greets.
    let _silent = rogue::control_stream(cluster.addr(), TEST_TOKEN).await;
    cluster.server.process.wait_for(&["no greeting within handshake_timeout"]);
    legit_works(&public).await;

    // Garbled: a frame that is not JSON before the greeting.
    let mut garbled = hyper_util::rt::TokioIo::new(rogue::control_stream(cluster.addr(), TEST_TOKEN).await);
    garbled.write_all(&[0, 0, 0, 5, b'{', b'x', b'y', b'z', b'!']).await.unwrap();
    cluster.server.process.wait_for(&["tunnel client disconnected", "malformed control message"]);
    legit_works(&public).await;

    // Oversized: a length prefix past max_control_message.
    let mut huge = hyper_util::rt::TokioIo::new(rogue::control_stream(cluster.addr(), TEST_TOKEN).await);
    huge.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    cluster.server.process.wait_for(&["tunnel client disconnected", "frame size too big"]);
    legit_works(&public).await;
    // The legitimate daemon never lost its connection.
    assert_eq!(cluster.daemon.process.count(&["lost the connection"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_half_open_and_invalid_frames_on_the_tunnel_path() {
    let up = Upstream::start().await;
    let cluster = cluster(&up, "header_read_timeout = 1");
    let public = Public::new(cluster.addr());

    let mut garbage = connect_from(ATTACKER, cluster.addr()).await;
    garbage.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await.unwrap();
    assert!(answer(&mut garbage).await.starts_with("HTTP/1.1 400"));

    let mut half_open = connect_from(ATTACKER, cluster.addr()).await;
    half_open.write_all(b"GET /$$ggrok HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(answer(&mut half_open).await.starts_with("HTTP/1.1 408"));

    // A valid handshake followed by bytes that are no WebSocket frame.
    let ws = rogue::websocket(cluster.addr(), TEST_TOKEN).await;
    let mut raw = ws.into_inner();
    raw.write_all(&[0xff; 64]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(HANG, raw.read_to_end(&mut rest))
        .await
        .expect("server kept a broken tunnel open");

    // A valid WebSocket carrying bytes that are no HTTP/2.
    let mut ws = rogue::websocket(cluster.addr(), TEST_TOKEN).await;
    ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![0u8; 100])).await.unwrap();
    cluster.server.process.wait_for(&["tunnel setup failed"]);
    legit_works(&public).await;
    assert_eq!(cluster.daemon.process.count(&["lost the connection"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_handshakes_leaves_tunnels_serving() {
    let up = Upstream::start().await;
    let cluster = cluster(&up, "");
    let public = Public::new(cluster.addr());
    let server = cluster.addr();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            tokio::spawn(async move {
                let mut conn = connect_from(ATTACKER, server).await;
                let req = format!(
                    "GET /$$ggrok HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     ggrok-protocol: 1\r\nAuthorization: Bearer guess-{i}\r\n\r\n"
                );
                let _ = conn.write_all(req.as_bytes()).await;
                let mut buf = [0u8; 12];
                let _ = conn.read_exact(&mut buf).await;
                String::from_utf8_lossy(&buf).into_owned()
            })
        })
        .collect();
    // The legitimate tunnel serves while the flood runs.
    for _ in 0..20 {
        legit_works(&public).await;
    }
    for answer in futures_util::future::join_all(flood).await {
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 429"), "{answer}");
    }
    legit_works(&public).await;
    assert_eq!(cluster.server.process.count(&["tunnel client connected"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_or_an_answer() {
    let up = Upstream::start().await;
    let secret = "s3cr3t-token-that-must-never-show-0001";
    let server = Server::start(&[ClientDef { name: "t", token: secret, hosts: &["api.test"] }]);
    let daemon = Daemon::start(&server.ws_url(), secret, &[("api.test", &up.port())], "");
    daemon.wait_online("api.test");
    let wrong = Daemon::start(&server.ws_url(), "wrong-but-also-secret-0002", &[("api.test", "1")], "");
    wrong.process.wait_for(&["unauthorized"]);
    let list = daemon.ctl(&["list", "--json"]);
    let status = daemon.ctl(&["status"]);
    let check = std::process::Command::new(ggrok_tests::bins::bin("ggrokd"))
        .args(["--check", "--config", daemon.config.to_str().unwrap()])
        .output()
        .unwrap();
    let help = std::process::Command::new(ggrok_tests::bins::bin("ggrokd")).arg("--help").output().unwrap();
    let everything = [
        server.process.log(),
        daemon.process.log(),
        wrong.process.log(),
        String::from_utf8_lossy(&list.stdout).into_owned(),
        String::from_utf8_lossy(&status.stdout).into_owned(),
        String::from_utf8_lossy(&check.stdout).into_owned(),
        String::from_utf8_lossy(&check.stderr).into_owned(),
        String::from_utf8_lossy(&help.stdout).into_owned(),
    ]
    .join("\n");
    assert!(!everything.is_empty());
    for token in [secret, "wrong-but-also-secret-0002"] {
        assert!(!everything.contains(token), "{token} leaked:\n{everything}");
    }
}
