//! The deployment examples agree with the programs and with each other: the configs embedded in
//! `packaging/kubernetes/*.yaml` pass `--check`; the server's pod waits longer than its drain; the
//! readiness probe and HAProxy's health check ask `/healthz` on the admin port the config opens.

use ggrok_tests::bins::bin;
use std::path::{Path, PathBuf};
use std::process::Command;

fn packaging(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The block scalar `key: |` of a YAML document, unindented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no `{key}: |` block"));
    let indent = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines.take_while(|l| l.trim().is_empty() || indent_of(l) > indent).collect();
    let inner = body.iter().filter(|l| !l.trim().is_empty()).map(|l| indent_of(l)).min().unwrap();
    body.iter().map(|l| l.get(inner..).unwrap_or("")).collect::<Vec<_>>().join("\n") + "\n"
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The number after `key:` (YAML) or `key =` (TOML) on the first line that has it.
fn number(text: &str, key: &str) -> u64 {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key).map(|rest| rest.trim_start_matches([':', '=', ' '])))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no number for {key}"))
}

fn check(program: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out =
        Command::new(bin(program)).args(["--config", path.to_str().unwrap(), "--check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{program} --check refused the example's config:\n{}{}\n{config}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_configs_are_valid() {
    check("ggrok-server", &block(&packaging("kubernetes/ggrok-server.yaml"), "server.toml"));
    check("ggrokd", &block(&packaging("kubernetes/ggrokd.yaml"), "ggrokd.toml"));
}

#[test]
fn the_server_pods_drain_before_they_are_killed() {
    let yaml = packaging("kubernetes/ggrok-server.yaml");
    let config = block(&yaml, "server.toml");
    let grace = number(&config, "shutdown_grace");
    let pause = number(&yaml, "seconds");
    let termination = number(&yaml, "terminationGracePeriodSeconds");
    assert!(termination > grace + pause, "{termination} s to stop, {grace} s drain after a {pause} s pause");
    assert_eq!(number(&yaml, "replicas"), 3);
    assert!(yaml.contains("clusterIP: None"), "a headless Service for the replicas");
}

#[test]
fn health_checks_ask_healthz_on_the_admin_port() {
    let yaml = packaging("kubernetes/ggrok-server.yaml");
    let config = block(&yaml, "server.toml");
    let admin = config.lines().skip_while(|l| l.trim() != "[admin]").find(|l| l.trim().starts_with("listen"));
    let admin_port: u64 =
        admin.and_then(|l| l.trim_end().trim_end_matches('"').rsplit(':').next()?.parse().ok()).unwrap();
    let probe = yaml.split("readinessProbe:").nth(1).expect("a readiness probe");
    assert!(probe.contains("path: /healthz") && probe.contains("port: admin"), "{probe}");
    assert!(
        yaml.contains(&format!("containerPort: {admin_port}")),
        "the admin port {admin_port} is the pod's"
    );

    let haproxy = packaging("haproxy/haproxy.cfg");
    assert!(haproxy.contains("option httpchk GET /healthz"));
    assert!(haproxy.contains("check port 9090"));
}

#[test]
fn the_daemon_holds_every_pod_through_the_headless_service_and_says_when_ready() {
    let server = packaging("kubernetes/ggrok-server.yaml");
    let peers = server.split("name: ggrok-server-peers").nth(1).expect("the headless Service");
    assert!(peers.contains("clusterIP: None"), "{peers}");
    // A replica that waits for its first session before it is ready must still be reachable.
    assert!(number(&block(&server, "server.toml"), "wait_for_sessions") > 0, "replicas wait for a daemon");
    assert!(peers.contains("publishNotReadyAddresses: true"), "{peers}");
    let port = number(peers, "port:");
    let daemon = packaging("kubernetes/ggrokd.yaml");
    let config = block(&daemon, "ggrokd.toml");
    assert!(config.contains(&format!("server = \"ws://ggrok-server-peers:{port}\"")), "{config}");
    assert!(config.contains("replicas = \"all\""), "{config}");
    let probe = daemon.split("readinessProbe:").nth(1).expect("a readiness probe for ggrokd");
    assert!(probe.contains("\"ggrokctl\"") && probe.contains("\"ready\""), "{probe}");
}
