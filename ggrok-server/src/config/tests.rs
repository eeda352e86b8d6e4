//! Tests of `config`.

use super::*;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn fixtures(kind: &str) -> Vec<(PathBuf, Option<String>)> {
    ggrok_proto::diag::fixtures(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind))
}

#[test]
fn valid_fixtures_load() {
    for (file, _) in fixtures("valid") {
        ServerConfig::load(&file, None).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Each invalid fixture's first line is `# expect: <text>`: the error must contain that text,
/// which includes the line and key.
#[test]
fn invalid_fixtures_fail_with_their_expected_message() {
    for (file, expected) in fixtures("invalid") {
        let err = ServerConfig::load(&file, None).expect_err(&file.display().to_string()).to_string();
        ggrok_proto::diag::assert_fixture_error(&file, expected.as_deref(), &err);
    }
}

#[test]
fn defaults_and_port_override() {
    let text = "[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"*.a.test\"]\n";
    let c = ServerConfig::parse(Path::new("s.toml"), text, None).unwrap();
    assert_eq!(c.listen, "0.0.0.0:80".parse().unwrap());
    assert_eq!(c.tunnel_path, "/$$ggrok");
    assert_eq!((c.keepalive_interval, c.shutdown_grace), (DEFAULT_KEEPALIVE, DEFAULT_SHUTDOWN_GRACE));
    let c = ServerConfig::parse(Path::new("s.toml"), text, Some("5000")).unwrap();
    assert_eq!(c.listen.port(), 5000);
    let e = ServerConfig::parse(Path::new("s.toml"), text, Some("x")).unwrap_err();
    assert!(e.to_string().contains("$PORT"));
}

/// `PORT=` is unset; anything else that is not a port is still an error.
#[test]
fn empty_port_is_unset() {
    let text = "listen = \"127.0.0.1:8080\"\n[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"a.test\"]\n";
    for empty in ["", " "] {
        let c = ServerConfig::parse(Path::new("s.toml"), text, Some(empty)).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    }
    let e = ServerConfig::parse(Path::new("s.toml"), text, Some("80a")).unwrap_err();
    assert!(e.to_string().contains(r#"$PORT is "80a", which is not a port number"#), "{e}");
}

#[test]
fn token_and_its_hash_are_equivalent() {
    let token = "0123456789abcdef";
    let hash = hex::encode(Sha256::digest(token));
    let a = format!("[[client]]\nname = \"a\"\ntoken = \"{token}\"\nhosts = [\"a.test\"]\n");
    let b = format!("[[client]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nhosts = [\"a.test\"]\n");
    let a = ServerConfig::parse(Path::new("s.toml"), &a, None).unwrap();
    let b = ServerConfig::parse(Path::new("s.toml"), &b, None).unwrap();
    assert_eq!(a.clients[0].token_sha256, b.clients[0].token_sha256);
}

/// `domain` allows `*.DOMAIN`; the same pattern in `hosts` (or a host listed twice) is kept once,
/// so a refusal lists each allowed host once.
#[test]
fn hosts_are_kept_once_each_in_order() {
    let text = "[[client]]\nname = \"alice\"\ntoken = \"0123456789abcdef\"\ndomain = \"alice.test\"\n\
                hosts = [\"*.alice.test\", \"api.test\", \"API.test\"]\n";
    let c = ServerConfig::parse(Path::new("s.toml"), text, None).unwrap();
    let hosts: Vec<String> = c.clients[0].hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["*.alice.test", "api.test"]);
}
