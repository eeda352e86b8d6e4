//! Tests of `config`.

use super::*;

fn fixtures(kind: &str) -> Vec<(PathBuf, Option<String>)> {
    ggrok_proto::diag::fixtures(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind))
}

#[test]
fn valid_fixtures_load() {
    for (file, _) in fixtures("valid") {
        DaemonConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Each invalid fixture's first line is `# expect: <text>`: the error must contain that text,
/// which includes the line and key.
#[test]
fn invalid_fixtures_fail_with_their_expected_message() {
    for (file, expected) in fixtures("invalid") {
        let err = DaemonConfig::load(&file).expect_err(&file.display().to_string()).to_string();
        ggrok_proto::diag::assert_fixture_error(&file, expected.as_deref(), &err);
    }
}

#[test]
fn request_log_is_read_and_defaults() {
    let base = "server = \"ws://t\"\n";
    let parse = |text: &str| DaemonConfig::parse(Path::new("g.toml"), text);
    assert_eq!(parse(base).unwrap().request_log, crate::reqlog::DEFAULT_CAPACITY);
    assert_eq!(parse(&format!("{base}request_log = 0")).unwrap().request_log, 0);
    assert_eq!(parse(&format!("{base}request_log = 100000")).unwrap().request_log, 100_000);
    let err = parse(&format!("{base}request_log = 100001")).unwrap_err().to_string();
    assert!(err.contains("g.toml:2: request_log: must be between 0 and 100000"), "{err}");
    let err = parse(&format!("{base}request_log = \"many\"")).unwrap_err().to_string();
    assert!(err.contains("g.toml:2") && err.contains("request_log"), "{err}");
}

#[test]
fn connections_are_auto_or_a_bounded_number() {
    let base = "server = \"ws://t\"\n";
    let parse = |text: &str| DaemonConfig::parse(Path::new("g.toml"), text);
    assert_eq!(parse(base).unwrap().connections, Connections::Auto);
    assert_eq!(parse(&format!("{base}connections = \"auto\"")).unwrap().connections, Connections::Auto);
    assert_eq!(parse(&format!("{base}connections = 1")).unwrap().connections, Connections::Fixed(1));
    assert_eq!(parse(&format!("{base}connections = 16")).unwrap().connections, Connections::Fixed(16));
    for bad in ["0", "17", "-1", "\"many\"", "1.5", "true"] {
        let err = parse(&format!("{base}connections = {bad}")).unwrap_err().to_string();
        assert!(err.starts_with("g.toml:2: connections: "), "{bad}: {err}");
    }
}

#[test]
fn auto_follows_the_server_workers_up_to_four() {
    assert_eq!(Connections::Auto.wanted(None), 1, "a version-1 server, or no hello yet");
    assert_eq!(Connections::Auto.wanted(Some(0)), 1);
    assert_eq!(Connections::Auto.wanted(Some(3)), 3);
    assert_eq!(Connections::Auto.wanted(Some(64)), 4);
    assert_eq!(Connections::Fixed(8).wanted(Some(2)), 8);
    assert_eq!(Connections::Fixed(2).wanted(None), 2);
}

#[test]
fn transport_is_one_of_three_words() {
    let base = "server = \"ws://t\"\n";
    let parse = |text: &str| DaemonConfig::parse(Path::new("g.toml"), text);
    assert_eq!(parse(base).unwrap().transport, Transport::Auto);
    for t in [Transport::Auto, Transport::WebSocket, Transport::Raw] {
        let text = format!("{base}transport = \"{}\"", t.as_str());
        assert_eq!(parse(&text).unwrap().transport, t);
    }
    let err = parse(&format!("{base}transport = \"quic\"")).unwrap_err().to_string();
    assert!(err.starts_with("g.toml:2: transport: \"quic\": expected"), "{err}");
}

#[test]
fn buffer_memory_is_a_bounded_size() {
    let base = "server = \"ws://t\"\n";
    let parse = |text: &str| DaemonConfig::parse(Path::new("g.toml"), text);
    assert_eq!(parse(base).unwrap().buffer_memory, 128 << 20);
    assert_eq!(parse(&format!("{base}buffer_memory = \"64 MiB\"")).unwrap().buffer_memory, 64 << 20);
    assert_eq!(parse(&format!("{base}buffer_memory = 1048576")).unwrap().buffer_memory, 1 << 20);
    assert_eq!(parse(&format!("{base}buffer_memory = \"1 GiB\"")).unwrap().buffer_memory, 1 << 30);
    for bad in ["\"64 KiB\"", "1048575", "\"2000 GiB\""] {
        let err = parse(&format!("{base}buffer_memory = {bad}")).unwrap_err().to_string();
        assert!(err.contains("g.toml:2: buffer_memory: must be between 1 MiB and 1 TiB"), "{bad}: {err}");
    }
    for bad in ["\"lots\"", "-1", "true"] {
        let err = parse(&format!("{base}buffer_memory = {bad}")).unwrap_err().to_string();
        assert!(err.contains("g.toml:2") && err.contains("buffer_memory"), "{bad}: {err}");
    }
}

#[test]
fn local_forms() {
    let ok = |s: &str| LocalAddr::parse(s).unwrap().authority;
    assert_eq!(ok("8080"), "localhost:8080");
    assert_eq!(ok("127.0.0.1:3000"), "127.0.0.1:3000");
    assert_eq!(ok("http://devbox:5173"), "devbox:5173");
    assert_eq!(ok("http://devbox/"), "devbox:80");
    assert_eq!(ok("[::1]:8080"), "[::1]:8080");
    for bad in ["", "0", "70000", "host", "http://a/b", "ftp://a:1", "https://a:0", "h2c://", "a:b", ":80"] {
        assert!(LocalAddr::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn server_forms() {
    let ok = |s: &str| ServerUrl::parse(s).unwrap().url;
    assert_eq!(ok("ws://t.example.com"), "ws://t.example.com:80/$$ggrok");
    assert_eq!(ok("ws://127.0.0.1:9000/"), "ws://127.0.0.1:9000/$$ggrok");
    assert_eq!(ok("ws://t:1/custom"), "ws://t:1/custom");
    assert_eq!(ServerUrl::parse("ws://t:1/custom").unwrap().path, "/custom");
    assert_eq!(ServerUrl::parse("ws://t").unwrap().path, "/$$ggrok");
    assert_eq!(ok("wss://t.example.com"), "wss://t.example.com:443/$$ggrok");
    assert!(ServerUrl::parse("wss://t.example.com").unwrap().tls);
    assert_eq!(ServerUrl::parse("wss://[::1]:9/").unwrap().host, "::1");
    assert!(ServerUrl::parse("t.example.com").is_err());
    assert!(ServerUrl::parse("ftp://t").is_err());
    // http:// and https:// are taken for ws:// and wss://.
    assert_eq!(ok("https://t.example.com"), "wss://t.example.com:443/$$ggrok");
    assert_eq!(ok("wss://[::1]"), "wss://[::1]:443/$$ggrok");
    // A port that cannot be used is an error, never the scheme's default port in its place.
    for (bad, says) in [
        ("ws://127.0.0.1:99999", "\"99999\" is not a port number (1-65535)"),
        ("ws://127.0.0.1:abc/", "\"abc\" is not a port number"),
        ("wss://t.example.com:8443x", "\"8443x\" is not a port number"),
        ("ws://t:0", "\"0\" is not a port number"),
        ("ws://[::1]:65536", "\"65536\" is not a port number"),
        ("ws://user:pw@t:9", "the token goes in `token`"),
        ("ws://t:9/?x=1", "a query (?…) is not allowed"),
    ] {
        let e = ServerUrl::parse(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}
