//! `cargo xtask test`: every test, with what the tests need installed first.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;

/// Runs `.ci/setup`, `cargo test --workspace`, `.ci/fuzz` and the benchmark's smoke run (every
/// part of `cargo xtask bench` on debug builds with tiny loads: it still works; no speed is
/// judged), stopping at the first failure.
pub fn run() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let steps: [(&str, Command); 4] = [
        ("install the test tools (.ci/setup)", shell(root, ".ci/setup")),
        ("cargo test --workspace", {
            let mut c = Command::new(&cargo);
            c.args(["test", "--workspace"]).current_dir(root);
            c
        }),
        ("fuzz smoke run (.ci/fuzz)", shell(root, ".ci/fuzz")),
        ("benchmark smoke run (cargo xtask bench --smoke)", {
            let mut c = Command::new(&cargo);
            c.args(["xtask", "bench", "--smoke"]).current_dir(root);
            c
        }),
    ];
    for (what, mut command) in steps {
        eprintln!("== {what}");
        let status = command.status().with_context(|| format!("cannot run {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
    }
    Ok(())
}

fn shell(root: &Path, script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(script).current_dir(root);
    c
}
