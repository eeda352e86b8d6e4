//! Requests that one of a daemon's connections refuses unprocessed (a `REFUSED_STREAM` reset, as
//! from a connection going away) are sent again on another connection of the same daemon: plain
//! requests without a body and upgrades (WebSocket) alike. The daemon is hand-made
//! (`ggrok_tests::rogue`): two connections, one of which refuses everything.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Server};
use ggrok_tests::rogue::{self, Answers};
use http::StatusCode;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "again.test";
/// Requests of each kind: with two connections to choose from, some go to the refusing one first
/// (each does with a chance of about one half; all sixteen miss it once in 65,536 runs).
const ROUNDS: usize = 16;

async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(conn.read_u8().await.expect("the answer's head"));
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_and_upgrades_are_sent_on_another_connection_of_the_daemon() {
    // One worker, so both connections are on it and either may be picked first.
    let clients = [ClientDef { name: "rogue", token: TEST_TOKEN, hosts: &[HOST] }];
    let server = Server::start_extra(&clients, "threads = 1");
    let daemon = "0123456789abcdef0123456789abcdef";
    let refusing = rogue::connection(server.addr, TEST_TOKEN, daemon, 0, HOST, Answers::Refuse).await;
    let serving = rogue::connection(server.addr, TEST_TOKEN, daemon, 1, HOST, Answers::Serve).await;

    let public = Public::new(server.addr);
    for _ in 0..ROUNDS {
        let reply = public.get(HOST, "/").await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    }
    let refused_plain = refusing.load(Ordering::SeqCst);
    assert!(refused_plain > 0, "no request went to the refusing connection");
    assert_eq!(serving.load(Ordering::SeqCst), ROUNDS, "each request answered once, by the other connection");

    // Upgrades, kept open to the end: each one echoes its own bytes.
    let mut open = Vec::new();
    for i in 0..ROUNDS {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let answer = read_head(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "upgrade {i}: {answer}");
        let said = format!("upgrade {i} says hello");
        conn.write_all(said.as_bytes()).await.unwrap();
        let mut heard = vec![0; said.len()];
        conn.read_exact(&mut heard).await.unwrap();
        assert_eq!(heard, said.as_bytes());
        open.push(conn);
    }
    let refused_upgrades = refusing.load(Ordering::SeqCst) - refused_plain;
    assert!(refused_upgrades > 0, "no upgrade went to the refusing connection");
    assert_eq!(
        serving.load(Ordering::SeqCst),
        2 * ROUNDS,
        "each upgrade answered once, by the other connection"
    );
    drop(open);
}
