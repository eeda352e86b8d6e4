//! TCP tunnels: `[[tunnel]] tcp = PORT` on ggrokd, `[[client]] ports` on the server; each public
//! TCP connection is one stream of the daemon's connection.

#[path = "tcp/limits.rs"]
mod limits;
#[path = "tcp/transports.rs"]
mod transports;

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::cluster::Daemon;
use ggrok_tests::tcp::{OTHER_TOKEN, echo, free_range, round_trip, server, tcp_tunnel, wait_all_online};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_echo_a_mebibyte_each_with_half_close() {
    let ports = free_range(2);
    let server = server(&ports, &free_range(1));
    let local = echo().await;
    let port = *ports.start();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, local));
    let tunnels = wait_all_online(&daemon, 1);
    assert_eq!(tunnels[0]["host"], format!("tcp://127.0.0.1:{port}"));
    let public: SocketAddr = ([127, 0, 0, 1], port).into();
    let tasks: Vec<_> = (0..50).map(|n| tokio::spawn(round_trip(public, n, 1 << 20))).collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let (sent, back) = task.await.unwrap();
        assert_eq!(sent, back, "connection {n}: checksum");
    }
    let list = String::from_utf8(daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains(&format!("tcp://127.0.0.1:{port}")), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_service_closing_first_is_seen_after_its_data() {
    let ports = free_range(1);
    let server = server(&ports, &free_range(1));
    // Says hello and half-closes at once, then reads what the client still sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(b"hello from the service").await.unwrap();
        socket.shutdown().await.unwrap();
        let mut got = Vec::new();
        socket.read_to_end(&mut got).await.unwrap();
        let _ = got_tx.send(got);
    });
    let port = *ports.start();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, local));
    wait_all_online(&daemon, 1);
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hello = Vec::new();
    client.read_to_end(&mut hello).await.unwrap();
    assert_eq!(hello, b"hello from the service", "the data, then EOF");
    // The other direction is still open.
    client.write_all(b"still talking").await.unwrap();
    client.shutdown().await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), got_rx).await.unwrap().unwrap();
    assert_eq!(got, b"still talking");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_outside_the_range_held_or_busy_are_refused_with_the_reason() {
    let ports = free_range(2);
    let (held, busy) = (*ports.start(), *ports.end());
    let server = server(&ports, &ports);
    let local = echo().await;
    // Another client holds the first port.
    let other = Daemon::start(&server.ws_url(), OTHER_TOKEN, &[], &tcp_tunnel(held, local));
    wait_all_online(&other, 1);
    // Something else listens on the second.
    let _busy = std::net::TcpListener::bind(("127.0.0.1", busy)).unwrap();
    let outside = free_range(1);
    let extra =
        [tcp_tunnel(held, local), tcp_tunnel(busy, local), tcp_tunnel(*outside.start(), local)].concat();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &extra);
    let status = daemon.wait_status("three refusals", |s| {
        let tunnels = s["tunnels"].as_array().cloned().unwrap_or_default();
        tunnels.len() == 3 && tunnels.iter().all(|t| t["state"] == "refused")
    });
    let reason = |port: u16| {
        let tunnels = status["tunnels"].as_array().unwrap();
        let t = tunnels.iter().find(|t| t["host"] == format!("tcp://127.0.0.1:{port}")).unwrap();
        t["reason"].as_str().unwrap().to_owned()
    };
    assert!(
        reason(held).contains(&format!("TCP port {held} is already served by another client")),
        "{}",
        reason(held)
    );
    assert!(reason(busy).contains(&format!("cannot listen on 127.0.0.1:{busy}")), "{}", reason(busy));
    let outside_reason = reason(*outside.start());
    assert!(
        outside_reason.contains("may not claim TCP port") && outside_reason.contains("allowed ports"),
        "{outside_reason}"
    );
    // The holder still serves.
    let (sent, back) = round_trip(([127, 0, 0, 1], held).into(), 7, 1000).await;
    assert_eq!(sent, back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_port_is_saved_and_kept_across_a_daemon_restart() {
    let ports = free_range(3);
    let server = server(&ports, &free_range(1));
    let local = echo().await;
    let mut daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(0, local));
    let tunnels = daemon.wait_status("a port picked", |s| {
        s["tunnels"].as_array().is_some_and(|t| {
            t.len() == 1 && t[0]["state"] == "online" && !t[0]["host"].as_str().unwrap().ends_with(":0")
        })
    })["tunnels"]
        .clone();
    let url = tunnels[0]["host"].as_str().unwrap().to_owned();
    let port: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(ports.contains(&port), "{url}");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    assert!(text.contains(&format!("tcp = {port}")) && !text.contains("tcp = 0"), "{text}");
    let (sent, back) = round_trip(([127, 0, 0, 1], port).into(), 1, 100_000).await;
    assert_eq!(sent, back);

    daemon.restart();
    let tunnels = daemon.wait_status("back online", |s| {
        s["tunnels"].as_array().is_some_and(|t| t.len() == 1 && t[0]["state"] == "online")
    })["tunnels"]
        .clone();
    assert_eq!(tunnels[0]["host"], url.as_str(), "the same port after a restart");
    let (sent, back) = round_trip(([127, 0, 0, 1], port).into(), 2, 100_000).await;
    assert_eq!(sent, back);
}

/// Runs ggrokctl; returns its stdout, asserting the exit code.
fn ctl(daemon: &Daemon, args: &[&str], code: i32) -> String {
    let out = daemon.ctl(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "ggrokctl {args:?}: {stdout}{stderr}");
    format!("{stdout}{stderr}")
}

/// Waits (bounded) until nothing listens on `port` any more.
async fn wait_closed(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "port {port} still listens");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ggrokctl_adds_tcp_tunnels_on_any_or_a_given_port_and_removes_them() {
    let ports = free_range(3);
    let server = server(&ports, &free_range(1));
    let local = echo().await;
    let first = *ports.start();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(first, local));
    wait_all_online(&daemon, 1);
    let before = std::fs::read_to_string(&daemon.config).unwrap();

    // Any port: the one granted is printed and saved.
    let text = ctl(&daemon, &["add", "--tcp", &local.to_string()], 0);
    let url = text.split_whitespace().find(|w| w.starts_with("tcp://")).expect("the URL printed");
    let any: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(ports.contains(&any) && any != first && text.contains("is online"), "{text}");
    let saved = std::fs::read_to_string(&daemon.config).unwrap();
    assert!(saved.starts_with(&before), "{saved}");
    assert!(saved.contains(&format!("[[tunnel]]\ntcp = {any}\nlocal = \"{local}\"\n")), "{saved}");
    let (sent, back) = round_trip(([127, 0, 0, 1], any).into(), 3, 10_000).await;
    assert_eq!(sent, back);

    // A given port; one outside the client's ports is refused and changes nothing.
    let given = ports.clone().find(|p| *p != first && *p != any).unwrap();
    let outside = free_range(1);
    let text = ctl(&daemon, &["add", "--tcp", &outside.start().to_string(), &local.to_string()], 1);
    assert!(text.contains("may not claim TCP port"), "{text}");
    let text = ctl(&daemon, &["add", "--tcp", &given.to_string(), &local.to_string(), "--no-save"], 0);
    assert!(text.contains(&format!("tcp://127.0.0.1:{given} is online")), "{text}");
    assert_eq!(std::fs::read_to_string(&daemon.config).unwrap(), saved);
    let list = ctl(&daemon, &["list"], 0);
    assert!([first, any, given].iter().all(|p| list.contains(&format!("tcp://127.0.0.1:{p}"))), "{list}");

    // Removed: from the table, the file and the server's listeners.
    let text = ctl(&daemon, &["remove", "--tcp", &any.to_string()], 0);
    assert!(text.contains(&format!("tcp:{any} is offline and removed from the config")), "{text}");
    assert_eq!(std::fs::read_to_string(&daemon.config).unwrap(), before);
    ctl(&daemon, &["remove", "--tcp", &given.to_string()], 0);
    wait_closed(any).await;
    wait_closed(given).await;
    let text = ctl(&daemon, &["remove", "--tcp", &given.to_string()], 1);
    assert!(text.contains("has no tunnel"), "{text}");
    let (sent, back) = round_trip(([127, 0, 0, 1], first).into(), 4, 1000).await;
    assert_eq!(sent, back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_sends_the_public_client_to_the_local_service_first() {
    let ports = free_range(1);
    let port = *ports.start();
    let server = server(&ports, &free_range(1));
    // Reads the PROXY v2 header (parsed by `ppp`), answers with its addresses, then echoes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0u8; 16];
                socket.read_exact(&mut head).await.unwrap();
                let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                head.resize(16 + len, 0);
                socket.read_exact(&mut head[16..]).await.unwrap();
                let header = ppp::v2::Header::try_from(head.as_slice()).unwrap();
                let ppp::v2::Addresses::IPv4(a) = header.addresses else { panic!("{header:?}") };
                let line = format!(
                    "{:?} {}:{} {}:{}\n",
                    header.command,
                    a.source_address,
                    a.source_port,
                    a.destination_address,
                    a.destination_port
                );
                socket.write_all(line.as_bytes()).await.unwrap();
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    // From the file first, then the same tunnel added by `ggrokctl add --tcp --proxy-protocol`.
    let tunnel = format!("{}proxy_protocol = true\n", tcp_tunnel(port, local));
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tunnel);
    wait_all_online(&daemon, 1);
    for round in 0..2 {
        if round == 1 {
            ctl(&daemon, &["remove", "--tcp", &port.to_string()], 0);
            wait_closed(port).await;
            ctl(&daemon, &["add", "--tcp", &port.to_string(), &local.to_string(), "--proxy-protocol"], 0);
            let text = std::fs::read_to_string(&daemon.config).unwrap();
            assert!(
                text.contains(&format!("tcp = {port}\nlocal = \"{local}\"\nproxy_protocol = true")),
                "{text}"
            );
        }
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let me = client.local_addr().unwrap();
        client.write_all(b"after the header").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, format!("Proxy {me} 127.0.0.1:{port}\nafter the header"));
    }
}

/// `redis-cli -p PORT ARGS`: its output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args([&["-h", "127.0.0.1", "-p", &port.to_string()], args].concat())
        .output()
        .expect("redis-cli (from redis-tools, see .ci/setup)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_talks_to_redis_server_through_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let redis_port = *free_range(1).start();
    let redis = std::path::Path::new("/usr/bin/redis-server");
    let args = ["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let _redis = ggrok_tests::process::Process::spawn(
        redis,
        &[&args[..], &["--dir", dir.path().to_str().unwrap()]].concat(),
        &[],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while redis_cli(redis_port, &["ping"]) != "PONG" {
        assert!(std::time::Instant::now() < deadline, "redis-server did not answer on {redis_port}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ports = free_range(1);
    let port = *ports.start();
    let server = server(&ports, &free_range(1));
    let local: SocketAddr = ([127, 0, 0, 1], redis_port).into();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, local));
    wait_all_online(&daemon, 1);
    assert_eq!(redis_cli(port, &["set", "k", "through the tunnel"]), "OK");
    assert_eq!(redis_cli(port, &["get", "k"]), "through the tunnel");
    assert_eq!(redis_cli(redis_port, &["get", "k"]), "through the tunnel", "the same server");
}
