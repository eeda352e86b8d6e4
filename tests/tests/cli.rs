//! Command lines: `--check`, configuration errors that name file, line and key, `--help`.

use ggrok_tests::bins::bin;
use std::path::Path;
use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(bin(binary)).args(args).env_clear().env("RUST_LOG", "off").output().expect("run binary")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn server_check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "server.toml",
        "listen = \"127.0.0.1:0\"\n[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"*.a.test\"]\n",
    );
    let out = run("ggrok-server", &["--config", &path, "--check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn server_check_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "server.toml",
        "listen = \"127.0.0.1:0\"\n\n[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"ok.test\", \"bad..test\"]\n",
    );
    let out = run("ggrok-server", &["--config", &path, "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{path}:6: client[0].hosts[1]")), "{err}");

    let path = write(dir.path(), "typo.toml", "listen = \"127.0.0.1:0\"\nlisten_port = 80\n");
    let out = run("ggrok-server", &["--config", &path, "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{path}:2:")) && err.contains("unknown field `listen_port`"), "{err}");
}

#[test]
fn server_refuses_to_start_on_a_bad_config() {
    let out = run("ggrok-server", &["--config", "/nonexistent/server.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/server.toml: cannot read"));
}

#[test]
fn daemon_check_accepts_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.toml",
        "server = \"ws://127.0.0.1:9\"\ntoken = \"t\"\n[[tunnel]]\nhost = \"a.test\"\nlocal = \"8080\"\n",
    );
    let out = run("ggrokd", &["--config", &good, "--check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = write(
        dir.path(),
        "bad.toml",
        "server = \"ws://127.0.0.1:9\"\ntoken = \"t\"\n[[tunnel]]\nhost = \"a.test\"\nlocal = \"http://x/y\"\n",
    );
    let out = run("ggrokd", &["--config", &bad, "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{bad}:5: tunnel[0].local")), "{err}");
    assert!(!err.contains("\"t\""), "the token must not be printed: {err}");
}

#[test]
fn daemon_uses_the_xdg_config_path_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("ggrokd"))
        .arg("--check")
        .env_clear()
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let expected = dir.path().join("ggrok/ggrokd.toml");
    assert!(String::from_utf8_lossy(&out.stderr).contains(expected.to_str().unwrap()));
}

#[test]
fn help_texts_explain_the_programs() {
    for (binary, needle) in [("ggrok-server", "--config"), ("ggrokd", "--check"), ("ggrokctl", "ggrokd")] {
        let out = run(binary, &["--help"]);
        assert!(out.status.success(), "{binary} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{binary} --help lacks {needle}: {text}");
        let version = run(binary, &["--version"]);
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn packaged_example_configs_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples");
    for (binary, file) in [("ggrok-server", "server.toml"), ("ggrokd", "ggrokd.toml")] {
        let path = examples.join(file);
        let out = run(binary, &["--config", path.to_str().unwrap(), "--check"]);
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn log_level_from_the_config_applies_when_rust_log_is_unset() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "ggrokd.toml",
        "server = \"ws://127.0.0.1:9\"\ntoken = \"t\"\nlog_level = \"warn\"\n",
    );
    let socket = dir.path().join("ggrokd.sock");
    let mut daemon = Command::new(bin("ggrokd"))
        .args(["--config", &config, "--socket", socket.to_str().unwrap()])
        .env_clear()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(daemon.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("cannot connect to the server");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(seen.last().is_some_and(|l| l.contains("WARN")), "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains("INFO")), "info lines despite log_level = warn: {seen:?}");
}
