//! Man pages and shell completions, generated from the programs' own clap definitions so they
//! always match `--help`. Sections that clap cannot know (files, signals, environment, exit
//! status) are added here.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A packaged program.
pub struct Program {
    /// The command name.
    pub name: &'static str,
    /// Its clap definition.
    command: fn() -> clap::Command,
    /// Man page sections after the options: (title, [(term, explanation)]).
    sections: &'static [Section],
}

type Section = (&'static str, &'static [(&'static str, &'static str)]);

/// The client daemon.
pub const GGROKD: Program = Program {
    name: "ggrokd",
    command: ggrokd::cli::Cli::command,
    sections: &[
        (
            "FILES",
            &[
                (
                    "~/.config/ggrok/ggrokd.toml",
                    "The configuration ($XDG_CONFIG_HOME/ggrok/ggrokd.toml when XDG_CONFIG_HOME is set). \
                     ggrokctl add and remove edit it, keeping comments and layout.",
                ),
                ("/usr/share/doc/ggrok/examples/ggrokd.toml", "A commented example configuration."),
                ("$XDG_RUNTIME_DIR/ggrok/ggrokd.sock", "The control socket that ggrokctl talks to."),
                (
                    "/usr/lib/systemd/user/ggrokd.service",
                    "The systemd user unit: systemctl --user enable --now ggrokd",
                ),
            ],
        ),
        (
            "SIGNALS",
            &[
                (
                    "SIGHUP",
                    "Re-read the configuration and apply only what changed (systemctl --user reload ggrokd, ggrokctl reload).",
                ),
                (
                    "SIGTERM, SIGINT",
                    "Stop taking requests, let those in flight finish for up to shutdown_grace, and exit.",
                ),
            ],
        ),
        (
            "ENVIRONMENT",
            &[
                ("GGROK_SOCKET", "The control socket, unless --socket is given."),
                ("RUST_LOG", "Log level or filter, such as debug or ggrokd=debug (default: info)."),
                (
                    "NOTIFY_SOCKET, WATCHDOG_USEC",
                    "Set by systemd for Type=notify units: ggrokd reports readiness, a status line and reloads, and feeds the watchdog.",
                ),
                ("JOURNAL_STREAM", "Set by systemd: logs then go to the journal with structured fields."),
            ],
        ),
        (
            "EXIT STATUS",
            &[
                ("0", "Stopped cleanly."),
                ("1", "Failed while running."),
                ("2", "The configuration is invalid."),
            ],
        ),
        ("SEE ALSO", &[("ggrokctl(1), ggrok-server(1)", "")]),
    ],
};

/// The command-line client.
pub const GGROKCTL: Program = Program {
    name: "ggrokctl",
    command: ggrokctl::cli::Cli::command,
    sections: &[
        (
            "ENVIRONMENT",
            &[(
                "GGROK_SOCKET, XDG_RUNTIME_DIR",
                "Where the control socket is, unless --socket is given (the same rule as ggrokd).",
            )],
        ),
        ("SEE ALSO", &[("ggrokd(1), ggrok-server(1)", "")]),
    ],
};

/// The public server.
pub const GGROK_SERVER: Program = Program {
    name: "ggrok-server",
    command: ggrok_server::cli::Cli::command,
    sections: &[
        (
            "FILES",
            &[
                (
                    "/etc/ggrok/server.toml",
                    "The configuration. Package upgrades never overwrite it; ggrok-server --check validates it.",
                ),
                ("/usr/share/doc/ggrok-server/examples/server.toml", "A commented example configuration."),
                (
                    "/usr/lib/systemd/system/ggrok-server.service",
                    "The systemd unit: systemctl enable --now ggrok-server",
                ),
            ],
        ),
        (
            "SIGNALS",
            &[(
                "SIGTERM, SIGINT",
                "Stop accepting, let requests in flight finish for up to shutdown_grace, close the tunnels, and exit.",
            )],
        ),
        (
            "ENVIRONMENT",
            &[
                ("PORT", "Listen on this port instead of the configured one (for PaaS hosts that set it)."),
                ("RUST_LOG", "Log level or filter, such as debug (default: info)."),
                (
                    "NOTIFY_SOCKET, WATCHDOG_USEC",
                    "Set by systemd for Type=notify units: the server reports readiness and a status line, and feeds the watchdog.",
                ),
                ("JOURNAL_STREAM", "Set by systemd: logs then go to the journal with structured fields."),
            ],
        ),
        (
            "EXIT STATUS",
            &[
                ("0", "Stopped cleanly."),
                ("1", "Failed while running."),
                ("2", "The configuration is invalid."),
            ],
        ),
        ("SEE ALSO", &[("ggrokd(1), ggrokctl(1)", "")]),
    ],
};

/// Writes `NAME.1.gz`, plus `NAME-SUB.1.gz` for each subcommand, into `dir`.
pub fn man_pages(program: &Program, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = (program.command)().disable_help_subcommand(true);
    command.build();
    let mut pages =
        vec![write_gz(&dir.join(format!("{}.1.gz", program.name)), &main_page(&command, program)?)?];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.push(write_gz(&dir.join(format!("{}.gz", man.get_filename())), &page)?);
    }
    Ok(pages)
}

/// clap_mangen's page with `program.sections` between the options and the version.
fn main_page(command: &clap::Command, program: &Program) -> anyhow::Result<Vec<u8>> {
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if command.get_after_help().is_some() || command.get_after_long_help().is_some() {
        man.render_extra_section(&mut page)?;
    }
    let mut roff = Roff::new();
    for (title, items) in program.sections {
        roff.control("SH", [*title]);
        for (term, text) in *items {
            if text.is_empty() {
                roff.text([roman(*term)]);
            } else {
                roff.control("TP", []).text([bold(*term)]).text([roman(*text)]);
            }
        }
    }
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Writes bash, zsh and fish completions for `program` under `dir/{bash,zsh,fish}/`, each named as
/// its shell looks it up (`NAME`, `_NAME`, `NAME.fish`).
pub fn completions(program: &Program, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (shell, file) in [
        (Shell::Bash, program.name.to_owned()),
        (Shell::Zsh, format!("_{}", program.name)),
        (Shell::Fish, format!("{}.fish", program.name)),
    ] {
        let shell_dir = dir.join(shell.to_string());
        std::fs::create_dir_all(&shell_dir)
            .with_context(|| format!("cannot create {}", shell_dir.display()))?;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut (program.command)(), program.name, &mut script);
        let path = shell_dir.join(file);
        std::fs::write(&path, script).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Gzips `data` into `path`, reproducibly (no name, no time stamp in the header).
fn write_gz(path: &Path, data: &[u8]) -> anyhow::Result<PathBuf> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut gz = GzEncoder::new(file, Compression::best());
    gz.write_all(data)?;
    gz.finish()?.flush()?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn man_pages_cover_subcommands_and_the_sections_clap_cannot_know() {
        let dir = std::env::temp_dir().join(format!("ggrok-xtask-docs-{}", std::process::id()));
        let pages = man_pages(&GGROKCTL, &dir).unwrap();
        let names: Vec<_> =
            pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for name in
            ["ggrokctl.1.gz", "ggrokctl-add.1.gz", "ggrokctl-remove.1.gz", "ggrokctl-completions.1.gz"]
        {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let page = gunzip(&man_pages(&GGROKD, &dir).unwrap()[0]);
        for needle in
            [".TH ggrokd", ".SH OPTIONS", "\\-\\-config", ".SH SIGNALS", "SIGHUP", ".SH \"EXIT STATUS\""]
        {
            assert!(page.contains(needle), "ggrokd.1 lacks {needle}:\n{page}");
        }
        let completions = completions(&GGROK_SERVER, &dir).unwrap();
        let bash = std::fs::read_to_string(dir.join("bash/ggrok-server")).unwrap();
        assert!(bash.contains("--config") && completions.len() == 3, "{bash}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
