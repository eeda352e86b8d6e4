//! The four packages (`cargo xtask package`), built once per test binary from the same profile as
//! the tests, for the tests that read them and those that install them (`tests/tests/packaging/`).
//! The packaging tools come from `.ci/setup`; without them this fails and says so.

use crate::bins::bin;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The version every package carries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The four packages.
pub struct Packages {
    /// The client package, .deb.
    pub ggrok_deb: PathBuf,
    /// The client package, .rpm.
    pub ggrok_rpm: PathBuf,
    /// The server package, .deb.
    pub server_deb: PathBuf,
    /// The server package, .rpm.
    pub server_rpm: PathBuf,
}

/// Fails, naming the fix, unless `program` can run.
pub fn require(program: &str, args: &[&str]) {
    let ok = Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program} {}` is not available: run .ci/setup to install the packaging tools",
        args.join(" ")
    );
}

/// Builds the packages once per test binary, from the tests' own profile (`cargo xtask package
/// --profile dev` for a debug build), and returns their paths.
pub fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        require(&cargo, &["deb", "--version"]);
        require(&cargo, &["generate-rpm", "--version"]);
        require("rpm", &["--version"]);
        require("dpkg-deb", &["--version"]);
        let xtask = bin("xtask");
        let profile = match xtask.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()) {
            Some("release") => "release",
            _ => "dev",
        };
        let out = Command::new(&xtask).args(["package", "--profile", profile]).output().expect("run xtask");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo xtask package failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let paths: Vec<PathBuf> = stdout.lines().map(PathBuf::from).collect();
        let find = |name: &str| {
            paths
                .iter()
                .find(|p| p.file_name().is_some_and(|n| n == name))
                .unwrap_or_else(|| panic!("cargo xtask package did not print {name}; it printed:\n{stdout}"))
                .clone()
        };
        Packages {
            ggrok_deb: find(&format!("ggrok_{VERSION}-1_amd64.deb")),
            ggrok_rpm: find(&format!("ggrok-{VERSION}-1.x86_64.rpm")),
            server_deb: find(&format!("ggrok-server_{VERSION}-1_amd64.deb")),
            server_rpm: find(&format!("ggrok-server-{VERSION}-1.x86_64.rpm")),
        }
    })
}
