//! The units and packages under a real systemd (the scripts in `tests/systemd/`):
//!
//! - `user.sh`: ggrokd.service, as shipped, under a real user manager with journald: start returns
//!   when ggrokd is ready, the status line, `ggrokctl status`, reload, the watchdog, stop, the
//!   journal's fields, no restart loop on an invalid config; against a ggrok-server started here;
//! - `container.sh`: the .debs in a Debian container booted with systemd-nspawn (the server as its
//!   dynamic user in the group ggrok and port 80, TLS, reload, reinstall, the client under a lingering
//!   user end to end, purge), and the .rpm files' dependencies and scripts with rpm there.
//!
//! They need root, mount namespaces and cgroups, and the tools `.ci/setup` installs; the image is
//! made once (about 2 minutes) and cached in `/var/cache/ggrok-test`. Where the host cannot run
//! them (not root, systemd as PID 1, no namespaces) the scripts exit with 77: the test then says
//! why and passes, except under CI (`CI` set), where it fails so that CI always runs them.

use ggrok_tests::bins::bin;
use ggrok_tests::cluster::{ClientDef, Server};
use ggrok_tests::packages::packages;
use ggrok_tests::tls::TestCa;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One at a time: both are heavy, and timing-sensitive (the watchdog).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The scripts' exit status for "this host cannot run me".
const CANNOT_RUN_HERE: i32 = 77;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd").join(name)
}

/// Outside CI, a user other than root skips both tests before building anything; under CI that
/// fails. (The scripts check the rest of what they need, the same way.)
fn root_or_skip(test: &str) -> bool {
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return true;
    }
    let why = "it needs root: it starts systemd managers, a container and a user";
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}, and CI must run it: run the tests as root");
    eprintln!("{test}: not run: {why}");
    false
}

/// Runs a script with `env`, showing its log as it goes; fails unless it passes, or, outside
/// CI, unless the host cannot run it.
fn run(name: &str, env: &[(&str, &Path)]) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut command = Command::new("bash");
    command.arg(script(name));
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command.status().unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    eprintln!("{name}: {status} after {:.1} s", started.elapsed().as_secs_f64());
    if status.code() == Some(CANNOT_RUN_HERE) {
        let why = format!("{name} cannot run on this host (its last lines above say why)");
        assert!(
            std::env::var_os("CI").is_none(),
            "{why}, and CI must run it: run the tests as root on a host like CI's"
        );
        eprintln!("{name}: not run: {why}");
        return;
    }
    assert!(status.success(), "{name} failed ({status}); its log above says where");
}

#[test]
fn user_unit_under_a_real_user_manager() {
    if !root_or_skip("user_unit_under_a_real_user_manager") {
        return;
    }
    let (a, b) = ("a.systemd.example.com", "b.systemd.example.com");
    let token = ggrok_tests::TEST_TOKEN;
    let server = Server::start(&[ClientDef { name: "systemd", token, hosts: &[a, b] }]);
    let url = server.ws_url();
    run(
        "user.sh",
        &[
            ("GGROKD_BIN", &bin("ggrokd")),
            ("GGROKCTL_BIN", &bin("ggrokctl")),
            ("SERVER_URL", Path::new(&url)),
            ("TOKEN", Path::new(token)),
            ("HOST_A", Path::new(a)),
            ("HOST_B", Path::new(b)),
        ],
    );
}

#[test]
fn packages_in_a_booted_debian_container() {
    if !root_or_skip("packages_in_a_booted_debian_container") {
        return;
    }
    let p = packages();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_pem = ca.write_ca(dir.path());
    let (cert, key) = ca.issue(dir.path(), "server", &["lab.example.com", "nobody.example.com"]);
    run(
        "container.sh",
        &[
            ("SERVER_DEB", &p.server_deb),
            ("GGROK_DEB", &p.ggrok_deb),
            ("SERVER_RPM", &p.server_rpm),
            ("GGROK_RPM", &p.ggrok_rpm),
            ("TLS_CERT", &cert),
            ("TLS_KEY", &key),
            ("TLS_CA", &ca_pem),
        ],
    );
}
