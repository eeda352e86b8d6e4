//! TCP tunnels over every transport, over several connections of one daemon, and to several
//! servers at once (each binds the port on its own address).

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::cluster::Daemon;
use ggrok_tests::tcp::{echo, free_range, round_trip, server, tcp_tunnel, wait_all_online};
use std::net::SocketAddr;

/// `n` concurrent checksummed echoes of 256 KiB through `public`.
async fn echoes(public: SocketAddr, n: u32) {
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(round_trip(public, i, 256 << 10))).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (sent, back) = task.await.unwrap();
        assert_eq!(sent, back, "{public}, connection {i}: checksum");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_carries_tcp_over_several_connections() {
    let local = echo().await;
    for transport in ["websocket", "raw"] {
        let ports = free_range(1);
        let server = server(&ports, &free_range(1));
        let port = *ports.start();
        let extra = format!("transport = \"{transport}\"\nconnections = 3\n{}", tcp_tunnel(port, local));
        let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &extra);
        wait_all_online(&daemon, 1);
        daemon.wait_status("three connections up", |s| {
            let c = s["connections"].as_array().map_or(&[][..], Vec::as_slice);
            c.len() == 3 && c.iter().all(|c| c["state"] == "connected" && c["transport"] == transport)
        });
        echoes(([127, 0, 0, 1], port).into(), 30).await;
        let status = daemon.status();
        let used: Vec<u64> = status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["requests"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(used.iter().sum::<u64>(), 30, "{transport}: every TCP connection is one stream: {used:?}");
        assert!(used.iter().filter(|&&n| n > 0).count() >= 2, "{transport}: streams spread: {used:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tunnel_is_served_by_two_servers_on_the_same_port() {
    let local = echo().await;
    // Each server binds its TCP ports on its own listen address: 127.0.0.1 and 127.0.0.2.
    let ports = free_range(1);
    let port = *ports.start();
    let first = server(&ports, &free_range(1));
    let second = ggrok_tests::cluster::Server::start_with(&format!(
        "listen = \"127.0.0.2:0\"\n[[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nports = [\"{port}\"]\n"
    ));
    let servers = format!("[{:?}, {:?}]", first.ws_url(), second.ws_url());
    let daemon = Daemon::start(&servers, TEST_TOKEN, &[], &tcp_tunnel(port, local));
    let tunnels = daemon.wait_status("online on both servers", |s| {
        s["tunnels"][0]["state"] == "online"
            && s["servers"].as_array().is_some_and(|v| v.len() == 2 && v.iter().all(|s| s["ready"] == true))
    })["tunnels"]
        .clone();
    let shown = tunnels[0]["host"].as_str().unwrap().to_owned();
    assert_eq!(shown, format!("tcp://127.0.0.1:{port}, tcp://127.0.0.2:{port}"));
    echoes(([127, 0, 0, 1], port).into(), 10).await;
    echoes(([127, 0, 0, 2], port).into(), 10).await;
}
