//! Logging setup shared by the daemons.
//!
//! Started by systemd with stderr connected to the journal (`$JOURNAL_STREAM` names stderr's device
//! and inode), events go straight to journald with their fields as structured journal fields,
//! prefixed `GGROK_` (`journalctl -o verbose` shows `GGROK_HOST=api.example.com`, and
//! `journalctl --user -u ggrokd GGROK_HOST=api.example.com` selects one tunnel's events). Otherwise, or when the
//! journald socket cannot be used, human-readable lines go to stderr: a daemon never fails to start
//! for want of a journal. The level comes from `RUST_LOG`, else the default given.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Prefix of the journal fields that carry an event's own fields (`host` → `GGROK_HOST`).
const FIELD_PREFIX: &str = "GGROK";

/// Installs the global subscriber. `default` applies when `RUST_LOG` is unset (e.g. `"info"`).
/// Checks a `log_level` setting: a level (`info`) or a filter (`info,ggrokd=debug`).
pub fn check_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bad = || {
        format!(
            "{filter:?} is not a log level or filter: use one of {} or target=level, comma-separated",
            LEVELS.join(", ")
        )
    };
    // EnvFilter reads a bare word as a target name; here a bare word must be a level.
    for directive in filter.split(',').map(str::trim) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(bad());
        }
    }
    EnvFilter::try_new(filter).map(|_| ()).map_err(|e| format!("{}: {e}", bad()))
}

pub fn init(default: &str) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let journald = journald.with_field_prefix(Some(FIELD_PREFIX.into()));
                let _ = tracing_subscriber::registry().with(filter()).with(journald).try_init();
                return;
            }
            // Said on stderr, which the journal records as plain text.
            Err(e) => eprintln!("cannot log to journald ({e}); logging to stderr instead"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Whether stderr is the stream systemd connected to the journal. Comparing `$JOURNAL_STREAM` with
/// stderr itself (as sd_journal_stream_fd(3) advises) keeps a redirected stderr, or a child that
/// merely inherited the variable, on plain text.
fn stderr_is_journal() -> bool {
    std::env::var("JOURNAL_STREAM").is_ok_and(|stream| names_file(&stream, std::io::stderr().as_fd()))
}

/// Whether `stream` (`DEVICE:INODE`, as in `$JOURNAL_STREAM`) names the file open as `fd`.
fn names_file(stream: &str, fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let Ok(owned) = fd.try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(owned).metadata() else { return false };
    stream.trim() == format!("{}:{}", meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_the_same_file() {
        let file = unlinked_temp_file();
        let meta = file.metadata().unwrap();
        let fd = file.as_fd();
        assert!(names_file(&format!("{}:{}", meta.dev(), meta.ino()), fd));
        assert!(!names_file(&format!("{}:{}", meta.dev(), meta.ino() + 1), fd));
        assert!(!names_file("not a stream", fd));
        assert!(!names_file("", fd));
    }

    fn unlinked_temp_file() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("ggrok-logging-test-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn levels_and_filters_pass_other_words_do_not() {
        for ok in ["info", "WARN", "info,ggrokd=debug", "h2=warn,debug"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["loud", "", "info,,", "ggrokd=loud"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
