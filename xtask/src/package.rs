//! `cargo xtask package`: builds the `ggrok` package (ggrokd, ggrokctl, the systemd user unit) and
//! the `ggrok-server` package (the server, its system unit, `/etc/ggrok/server.toml`), each as a
//! .deb (cargo-deb) and an .rpm (cargo-generate-rpm).
//!
//! The binaries are built with the release profile (`--profile` picks another, which the tests use
//! to reuse their debug build), copied and stripped into a staging directory beside them, together
//! with man pages and completions generated from the programs' clap definitions. The package
//! metadata in `ggrokd/Cargo.toml` and `ggrok-server/Cargo.toml` names the staged files as
//! `target/release/ggrok-package/...`; both tools map `target/release` to the profile's directory.

use crate::docs::{self, GGROK_SERVER, GGROKCTL, GGROKD};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Staging directory under the profile's output directory, as the package metadata names it.
const STAGING: &str = "ggrok-package";

/// The crates whose metadata defines a package: (crate, package name).
const PACKAGES: [(&str, &str); 2] = [("ggrokd", "ggrok"), ("ggrok-server", "ggrok-server")];

/// Runs the task; `args` are those after `package`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let profile = match args {
        [] => "release".to_owned(),
        [flag, profile] if flag == "--profile" => profile.clone(),
        _ => bail!("usage: cargo xtask package [--profile PROFILE]"),
    };
    check_tools()?;
    let target_dir = target_dir()?;
    let profile_dir = target_dir.join(match profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    });

    eprintln!("== building ggrok-server, ggrokd and ggrokctl ({profile} profile)");
    // The same selection as the tests' build (tests/src/bins.rs), so features unify the same way
    // and a test run of this task reuses the binaries instead of rebuilding them.
    cargo(&[
        "build",
        "--profile",
        &profile,
        "-p",
        "ggrok-server",
        "-p",
        "ggrokd",
        "-p",
        "ggrokctl",
        "-p",
        "xtask",
    ])?;

    let staging = profile_dir.join(STAGING);
    eprintln!("== staging binaries, man pages and completions in {}", staging.display());
    recreate(&staging)?;
    for binary in ["ggrokd", "ggrokctl", "ggrok-server"] {
        stage_binary(&profile_dir.join(binary), &staging.join("bin").join(binary))?;
    }
    for (package, programs) in [("ggrok", &[GGROKD, GGROKCTL][..]), ("ggrok-server", &[GGROK_SERVER][..])] {
        for program in programs {
            docs::man_pages(program, &staging.join(package).join("man"))?;
            docs::completions(program, &staging.join(package).join("completions"))?;
        }
    }

    let out = profile_dir.join("packages");
    recreate(&out)?;
    for (krate, package) in PACKAGES {
        eprintln!("== {package}.deb");
        let out_arg = out.to_str().context("the target directory path is not UTF-8")?;
        cargo(&["deb", "-p", krate, "--no-build", "--no-strip", "--profile", &profile, "--output", out_arg])?;
        eprintln!("== {package}.rpm");
        let target_arg = target_dir.to_str().context("the target directory path is not UTF-8")?;
        cargo(&[
            "generate-rpm",
            "-p",
            krate,
            "--profile",
            &profile,
            "--target-dir",
            target_arg,
            "--output",
            out_arg,
        ])?;
    }
    let mut built: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb" || x == "rpm"))
        .collect();
    built.sort();
    if built.len() != 4 {
        bail!("expected 4 packages in {}, found {}: {built:?}", out.display(), built.len());
    }
    for path in built {
        println!("{}", path.display());
    }
    Ok(())
}

/// Installs the two cargo subcommands that build the packages when they are missing or at another
/// version than `.ci/setup` pins (as the benchmark installs rathole), and, as root, the apt packages it
/// needs, so that this task works on a fresh machine; as another user it names the apt command.
fn check_tools() -> anyhow::Result<()> {
    let setup = std::fs::read_to_string(workspace_root().join(".ci/setup")).context("reading .ci/setup")?;
    for (subcommand, krate, pin) in [
        ("deb", "cargo-deb", "CARGO_DEB_VERSION"),
        ("generate-rpm", "cargo-generate-rpm", "CARGO_GENERATE_RPM_VERSION"),
    ] {
        let version = pinned(&setup, pin)?;
        let installed = Command::new(cargo_program())
            .args([subcommand, "--version"])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version));
        if !installed {
            eprintln!("== installing {krate} {version} (pinned in .ci/setup)");
            let status = Command::new(cargo_program())
                .args(["install", "--locked", krate, "--version", version])
                .stdout(std::io::stderr())
                .status()
                .with_context(|| format!("cannot run cargo install {krate}"))?;
            if !status.success() {
                bail!("cargo install --locked {krate} --version {version} failed ({status})");
            }
        }
    }
    // strip, and dpkg-shlibdeps for the .debs' automatic dependencies (libc6): apt packages.
    let missing: Vec<&str> = [("strip", "binutils"), ("dpkg-shlibdeps", "dpkg-dev")]
        .into_iter()
        .filter(|(program, _)| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .is_ok_and(|o| !o.status.success())
        })
        .map(|(_, package)| package)
        .collect();
    if !missing.is_empty() {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !root {
            bail!("missing {}: install as root: apt-get install {}", missing.join(", "), missing.join(" "));
        }
        eprintln!("== installing {} (apt)", missing.join(" "));
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::io::stderr())
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get install {} failed ({status})", missing.join(" "));
        }
    }
    Ok(())
}

/// `NAME=VERSION` from `.ci/setup`, the one place the packaging tools' versions are pinned.
fn pinned<'a>(setup: &'a str, name: &str) -> anyhow::Result<&'a str> {
    setup
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(str::trim)
        .with_context(|| format!(".ci/setup pins no {name}"))
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs cargo with `args` in the workspace, failing with the command line when it fails. Its
/// output goes to stderr, so that stdout carries only the list of packages.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(cargo_program())
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned()
}

/// The workspace's target directory, as cargo reports it (honours `CARGO_TARGET_DIR`).
fn target_dir() -> anyhow::Result<PathBuf> {
    let output = Command::new(cargo_program())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    metadata["target_directory"].as_str().map(PathBuf::from).context("cargo metadata has no target_directory")
}

/// Empties `dir`, creating it if needed, so no file of an earlier run is packaged.
fn recreate(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Copies a built binary to `to` and strips its symbols there; cargo's own output stays untouched
/// (tests may be running it).
fn stage_binary(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    let status = Command::new("strip").arg(to).status().context("cannot run strip")?;
    if !status.success() {
        bail!("strip {} failed ({status})", to.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaging_tools_are_pinned_in_ci_setup() {
        let setup = std::fs::read_to_string(workspace_root().join(".ci/setup")).unwrap();
        for name in ["CARGO_DEB_VERSION", "CARGO_GENERATE_RPM_VERSION"] {
            let version = pinned(&setup, name).unwrap();
            assert!(
                version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{name}={version}"
            );
        }
        assert!(pinned("X=1\n", "CARGO_DEB_VERSION").is_err());
    }
}
