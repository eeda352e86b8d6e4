//! Per-tunnel access rules, end to end: `basic_auth`, `allow_ips` and `deny_ips` in ggrokd.toml
//! or from `ggrokctl add`, enforced by the server before anything reaches the tunnel; the
//! operator's `[[client]] require`; failed logins rate-limited and counted; a trusted load
//! balancer's PROXY header as the client's address; TCP tunnels' IP rules.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::bins::bin;
use ggrok_tests::client::{Public, full, read_response};
use ggrok_tests::cluster::{Cluster, Daemon, Server, ctl_given};
use ggrok_tests::tcp::{echo, free_range, server_extra};
use ggrok_tests::terminal::Terminal;
use ggrok_tests::upstream::{SEEN_FORWARDED_FOR, Upstream};
use http::{Request, StatusCode, header};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OTHER: [u8; 4] = [127, 0, 0, 2];

/// `user:HASH`, from `ggrokctl hash-password USER` with the password on standard input.
fn hash(user: &str, password: &str) -> String {
    let out = ctl_given(&["hash-password", user], password);
    let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(line.starts_with(&format!("{user}:$argon2id$")) && !line.contains(password), "{line}");
    line
}

fn basic(user_password: &str) -> String {
    // Base64 by hand: the tests crate has no base64 dependency, and this is all it needs.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in user_password.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn get(path: &str, authorization: Option<&str>) -> Request<ggrok_tests::client::Body> {
    let mut req = Request::get(path);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    req.body(full("")).unwrap()
}

/// Whether the upstream's echo report lists header `name`.
fn saw_header(report: &serde_json::Value, name: &str) -> bool {
    report["headers"].as_array().unwrap().iter().any(|h| h[0] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_added_with_ggrokctl_keeps_unauthenticated_requests_out() {
    let upstream = Upstream::start().await;
    let cluster = Cluster::start(&[]);
    let out =
        cluster.daemon.ctl(&["add", "locked.test", &upstream.port(), "--basic-auth", "alice:s3cret-pw"]);
    assert!(out.status.success(), "{out:?}");
    let saved = std::fs::read_to_string(&cluster.daemon.config).unwrap();
    assert!(saved.contains("basic_auth = [\"alice:$argon2id$"), "{saved}");
    assert!(!saved.contains("s3cret-pw"), "no plaintext in the file:\n{saved}");
    // (`add` before the daemon's first connection saves the tunnel and claims it on connecting.)
    cluster.daemon.wait_online("locked.test");
    let public = Public::new(cluster.addr());

    let none = public.fetch("locked.test", get("/", None)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.text());
    assert_eq!(none.headers[header::WWW_AUTHENTICATE], "Basic realm=\"locked.test\", charset=\"UTF-8\"");
    let wrong = public.fetch("locked.test", get("/", Some(&basic("alice:guess")))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let nobody = public.fetch("locked.test", get("/", Some(&basic("mallory:s3cret-pw")))).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let garbage = public.fetch("locked.test", get("/", Some("Basic !!!"))).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let ws = Request::get("/ws")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(full(""))
        .unwrap();
    assert_eq!(public.fetch("locked.test", ws).await.status, StatusCode::UNAUTHORIZED, "upgrades too");
    assert_eq!(upstream.served.load(Ordering::Relaxed), 0, "the local service saw none of them");

    for _ in 0..3 {
        let right = public.fetch("locked.test", get("/hello", Some(&basic("alice:s3cret-pw")))).await;
        assert_eq!(right.status, StatusCode::OK, "{}", right.text());
        assert_eq!(right.json()["path"], "/hello");
        assert!(!saw_header(&right.json(), "authorization"), "the tunnel's credentials stay on the server");
    }
    assert_eq!(upstream.served.load(Ordering::Relaxed), 3);

    let list = String::from_utf8(cluster.daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains("ACCESS") && list.contains("basic auth"), "{list}");
    assert!(!list.contains("$argon2"), "{list}");
    let json: serde_json::Value =
        serde_json::from_slice(&cluster.daemon.ctl(&["--json", "list"]).stdout).unwrap();
    assert_eq!(json["tunnels"][0]["access"]["basic_auth"], serde_json::json!(["alice"]));

    // `--basic-auth USER` alone: the password is asked for (here a line of standard input), so it
    // never appears on a command line.
    let socket = cluster.daemon.socket.to_str().unwrap();
    let port = upstream.port();
    let args = [
        "--socket",
        socket,
        "add",
        "asked.test",
        &port,
        "--basic-auth",
        "carol",
        "--basic-auth",
        "dave:dave-pw",
    ];
    ctl_given(&args, "carol-typed-pw");
    let saved = std::fs::read_to_string(&cluster.daemon.config).unwrap();
    assert!(!saved.contains("carol-typed-pw"), "no plaintext in the file:\n{saved}");
    cluster.daemon.wait_online("asked.test");
    for (who, status) in [
        ("carol:carol-typed-pw", StatusCode::OK),
        ("dave:dave-pw", StatusCode::OK),
        ("carol:", StatusCode::UNAUTHORIZED),
    ] {
        let reply = public.fetch("asked.test", get("/", Some(&basic(who)))).await;
        assert_eq!(reply.status, status, "{who}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_rules_use_the_connection_address_not_x_forwarded_for() {
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let tunnels = format!(
        "[[tunnel]]\nhost = \"allow.test\"\nlocal = \"{port}\"\nallow_ips = [\"127.0.0.2\"]\n\
         [[tunnel]]\nhost = \"deny.test\"\nlocal = \"{port}\"\ndeny_ips = [\"127.0.0.2/32\", \"10.0.0.0/8\"]\n"
    );
    let cluster = Cluster::start_with(&[], &tunnels);
    cluster.daemon.wait_online("allow.test");
    cluster.daemon.wait_online("deny.test");
    let (from_one, from_two) =
        (Public::new(cluster.addr()), Public::from_address(cluster.addr(), OTHER.into()));

    let allowed = from_two.get("allow.test", "/").await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
    let spoofed = Request::get("/").header("x-forwarded-for", "127.0.0.2").body(full("")).unwrap();
    let refused = from_one.fetch("allow.test", spoofed).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "X-Forwarded-For from the client is ignored");
    assert!(refused.text().contains("127.0.0.1 is not allowed"), "{}", refused.text());

    let denied = from_two.get("deny.test", "/").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let others = from_one.get("deny.test", "/").await;
    assert_eq!(others.status, StatusCode::OK);
    assert_eq!(upstream.served.load(Ordering::Relaxed), 2, "only the two allowed requests arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_rate_limited_per_address_and_counted() {
    let upstream = Upstream::start().await;
    let credential = hash("bob", "right-pw");
    let tunnel = format!(
        "[[tunnel]]\nhost = \"guarded.test\"\nlocal = \"{}\"\nbasic_auth = [\"{credential}\"]\n",
        upstream.port()
    );
    let cluster = Cluster::start_full(&[], ADMIN_CONFIG, &tunnel);
    cluster.daemon.wait_online("guarded.test");
    let admin = Admin::of(&cluster.server);
    let public = Public::new(cluster.addr());
    for n in 0..10 {
        let wrong = public.fetch("guarded.test", get("/", Some(&basic(&format!("bob:guess-{n}"))))).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let blocked = public.fetch("guarded.test", get("/", Some(&basic("bob:right-pw")))).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text());
    assert!(blocked.headers.contains_key(header::RETRY_AFTER));
    let elsewhere = Public::from_address(cluster.addr(), OTHER.into());
    let right = elsewhere.fetch("guarded.test", get("/", Some(&basic("bob:right-pw")))).await;
    assert_eq!(right.status, StatusCode::OK, "another address is not blocked");
    assert_eq!(upstream.served.load(Ordering::Relaxed), 1);
    let metrics = admin.metrics_when(|m| m.contains("ggrok_access_denied_total{reason=\"rate\"} 1")).await;
    for line in ["{reason=\"auth\"} 10", "{reason=\"rate\"} 1", "{reason=\"ip\"} 0"] {
        assert!(metrics.contains(&format!("ggrok_access_denied_total{line}")), "{line}:\n{metrics}");
    }

    // Stricter limits, reloaded: three wrong passwords, then ten minutes of 429.
    let path = cluster.server.dir.path().join("server.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[limits]\nmax_auth_failures = 3\nauth_block = 600\n")).unwrap();
    cluster.server.process.signal("HUP");
    cluster.server.process.wait_for(&["config reloaded"]);
    for n in 0..3 {
        let wrong = elsewhere.fetch("guarded.test", get("/", Some(&basic(&format!("bob:again-{n}"))))).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    // (Credentials this address got through with before are remembered, so try others.)
    let blocked = elsewhere.fetch("guarded.test", get("/", Some(&basic("bob:not-tried")))).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "after 3: {}", blocked.text());
    let retry: u64 = blocked.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((540..=600).contains(&retry), "Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_can_require_basic_auth_on_every_tunnel_of_a_client() {
    let upstream = Upstream::start().await;
    let server = Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n[[client]]\nname = \"guests\"\ntoken = {TEST_TOKEN:?}\n\
         hosts = [\"*.test\"]\nrequire = [\"basic_auth\"]\n"
    ));
    let open = format!("[[tunnel]]\nhost = \"open.test\"\nlocal = \"{}\"\n", upstream.port());
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &open);
    let status = daemon.wait_status("open.test refused", |s| s["tunnels"][0]["state"] == "refused");
    let reason = status["tunnels"][0]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("must protect every tunnel with basic_auth"), "{reason}");
    let list = String::from_utf8(daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains("refused: client \"guests\" must protect"), "{list}");

    let refused = daemon.ctl(&["add", "plain.test", &upstream.port()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("basic_auth"), "{refused:?}");
    let added = daemon.ctl(&["add", "locked.test", &upstream.port(), "--basic-auth", "guest:pw"]);
    assert!(added.status.success(), "{added:?}");
    let public = Public::new(server.addr);
    assert_eq!(public.get("open.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public.get("locked.test", "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.served.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_too_old_to_enforce_rules_is_never_sent_the_tunnel() {
    let upstream = Upstream::start().await;
    let server = Server::start_with_env(
        &format!(
            "listen = \"127.0.0.1:0\"\n[[client]]\nname = \"t\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"*.test\"]\n"
        ),
        &[("GGROK_PROTOCOL_MAX", "3")],
    );
    let tunnels = format!(
        "[[tunnel]]\nhost = \"guarded.test\"\nlocal = \"{0}\"\nallow_ips = [\"127.0.0.2\"]\n\
         [[tunnel]]\nhost = \"open.test\"\nlocal = \"{0}\"\n",
        upstream.port()
    );
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tunnels);
    daemon.wait_online("open.test");
    let status = daemon.wait_status("guarded.test refused", |s| {
        s["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["host"] == "guarded.test" && t["state"] == "refused")
    });
    let guarded = status["tunnels"].as_array().unwrap().iter().find(|t| t["host"] == "guarded.test").unwrap();
    assert!(guarded["reason"].as_str().unwrap().contains("upgrade the server"), "{guarded}");
    let public = Public::new(server.addr);
    assert_eq!(public.get("guarded.test", "/").await.status, StatusCode::NOT_FOUND, "not served unprotected");
    assert_eq!(public.get("open.test", "/").await.status, StatusCode::OK);
}

/// A PROXY protocol v2 header for a TCP/IPv4 connection from `source` to `destination`.
fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else { panic!("IPv4 only") };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `prefix`, then `GET /pattern/0/4` for `host`; the status and the client address the
/// local service saw in `X-Forwarded-For`, or `None` when the server closed the connection.
async fn request_with(mut conn: TcpStream, prefix: &[u8], host: &str) -> Option<(String, String)> {
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(
        format!("GET /pattern/0/4 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    if conn.write_all(&bytes).await.is_err() {
        return None;
    }
    let mut first = [0u8; 1];
    match conn.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    let (head, _) = read_response(&mut conn).await;
    let status = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let seen = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix(&format!("{SEEN_FORWARDED_FOR}: ")).map(str::to_owned)
        })
        .unwrap_or_default();
    Some((status, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_balancers_proxy_header_names_the_client_for_ip_rules() {
    let upstream = Upstream::start().await;
    let tunnel = format!(
        "[[tunnel]]\nhost = \"lb.test\"\nlocal = \"{}\"\nallow_ips = [\"203.0.113.0/24\"]\n",
        upstream.port()
    );
    let cluster = Cluster::start_full(&[], "proxy_protocol_from = [\"127.0.0.3\"]\n", &tunnel);
    cluster.daemon.wait_online("lb.test");
    let balancer = [127, 0, 0, 3];
    let addr = cluster.addr();

    let inside = proxy_v2("203.0.113.7:40000".parse().unwrap(), addr);
    let (status, seen) = request_with(connect_from(balancer, addr).await, &inside, "lb.test").await.unwrap();
    assert_eq!((status.as_str(), seen.as_str()), ("200", "203.0.113.7"), "the header's client is the client");
    let outside = proxy_v2("198.51.100.1:40000".parse().unwrap(), addr);
    let (status, _) = request_with(connect_from(balancer, addr).await, &outside, "lb.test").await.unwrap();
    assert_eq!(status, "403");
    let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n";
    let (status, seen) = request_with(connect_from(balancer, addr).await, v1, "lb.test").await.unwrap();
    assert_eq!((status.as_str(), seen.as_str()), ("200", "203.0.113.9"));
    assert!(
        request_with(connect_from(balancer, addr).await, b"", "lb.test").await.is_none(),
        "a trusted balancer's connection without a header is closed"
    );
    // From an address not listed, a PROXY header is not read: it cannot name the client.
    let spoofed = request_with(connect_from(OTHER, addr).await, &inside, "lb.test").await;
    assert_ne!(spoofed.map(|(status, _)| status).as_deref(), Some("200"));
    assert_eq!(upstream.served.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tunnels_check_ip_rules_at_accept() {
    let ports = free_range(1);
    let server = server_extra(&ports, &free_range(1), "");
    let local = echo().await;
    let port = *ports.start();
    let tunnel = format!("\n[[tunnel]]\ntcp = {port}\nlocal = \"{local}\"\nallow_ips = [\"127.0.0.2\"]\n");
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tunnel);
    ggrok_tests::tcp::wait_all_online(&daemon, 1);
    let public: SocketAddr = ([127, 0, 0, 1], port).into();

    let mut allowed = connect_from(OTHER, public).await;
    allowed.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    allowed.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");

    let mut refused = connect_from([127, 0, 0, 1], public).await;
    let _ = refused.write_all(b"ping").await;
    let mut got = Vec::new();
    let _ = refused.read_to_end(&mut got).await;
    assert!(got.is_empty(), "closed without reaching the local service: {got:?}");
    let list = String::from_utf8(daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains("ip rules"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_passwords_are_asked_for_on_the_terminal_without_echo() {
    let upstream = Upstream::start().await;
    let cluster = Cluster::start(&[]);
    let ggrokctl = format!("{} --socket {}", bin("ggrokctl").display(), cluster.daemon.socket.display());
    let mut tty = Terminal::run(&format!("{ggrokctl} add tty.test {} --basic-auth erin", upstream.port()));
    tty.wait_for("Password for erin: ");
    tty.type_keys("erin-tty-pw\n");
    tty.wait_for("Password for erin again: ");
    tty.type_keys("erin-tty-pw\n");
    let (status, transcript) = tty.finish();
    assert!(status.success(), "{transcript}");
    assert!(!transcript.contains("erin-tty-pw"), "the password was echoed: {transcript:?}");
    cluster.daemon.wait_online("tty.test");
    let public = Public::new(cluster.addr());
    let right = public.fetch("tty.test", get("/", Some(&basic("erin:erin-tty-pw")))).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());

    // Ctrl-C at the prompt ends ggrokctl, adds nothing, and gives the shell its echo back (the
    // shell goes on past the interrupted command: `trap`, as an interactive one would).
    let mut tty = Terminal::run(&format!(
        "trap : INT; {ggrokctl} add gone.test {} --basic-auth frank; echo \"ended: $?\"; stty -a",
        upstream.port()
    ));
    tty.wait_for("Password for frank: ");
    tty.type_keys("half-typ\x03");
    let (status, transcript) = tty.finish();
    assert!(status.success(), "{transcript}");
    let after = transcript.split("ended: ").nth(1).unwrap_or_else(|| panic!("{transcript}"));
    assert!(after.starts_with("130"), "ended as Ctrl-C ends a command: {transcript}");
    let flags: Vec<&str> = after.split_whitespace().collect();
    assert!(flags.contains(&"echo") && !flags.contains(&"-echo"), "echo is back on: {after}");
    assert!(!transcript.contains("half-typ"), "{transcript:?}");
    let list = String::from_utf8(cluster.daemon.ctl(&["list"]).stdout).unwrap();
    assert!(!list.contains("gone.test"), "nothing added: {list}");
}
