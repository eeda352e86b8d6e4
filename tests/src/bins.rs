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
