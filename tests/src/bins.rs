//! The workspace binaries under test.
//!
//! Tests in this crate cannot use `CARGO_BIN_EXE_*` (the binaries belong to other packages), so
//! the first use builds them with the same cargo and profile, and later uses find them beside the
//! test executable.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of a workspace binary (`ggrok-server`, `ggrokd`, `ggrokctl`, `xtask`), built if needed.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (tests) or target/<profile>/<tool> (xtask) → target/<profile>
        let mut dir = exe.parent().expect("target directory").to_owned();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "ggrok-server", "-p", "ggrokd", "-p", "ggrokctl", "-p", "xtask"]);
        // Without the variables cargo sets for the test itself (CARGO_PKG_NAME, CARGO_MANIFEST_DIR,
        // …): build scripts that watch them (ring's) would otherwise see another environment than
        // a build from the shell, and every dependant would be rebuilt each time the two alternate.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                ]
                .contains(&&*key)
            {
                cmd.env_remove(&*key);
            }
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
