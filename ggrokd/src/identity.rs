//! The daemon's identity: a random 128-bit id, kept in the state directory, that ggrokd sends in
//! its version-2 hello. The server lets all connections with one id serve the daemon's tunnels
//! together, and tells them apart from another ggrokd of the same client (which may take a
//! tunnel over).
//!
//! One file per config file (`daemon-<first 16 hex of sha256 of its canonical path>.id`), so two
//! ggrokd of one user with different configs are two daemons, and a restart is the same daemon.
//! The directory is `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
//! `$XDG_STATE_HOME/ggrok`, else `~/.local/state/ggrok`; created 0700, the file 0600. When the
//! id cannot be kept there, ggrokd uses one that lasts until it exits, and says so once.

use sha2::{Digest, Sha256};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tracing::warn;

/// Hex digits of an id: 128 bits.
const ID_HEX: usize = 32;

/// The state directory, from the environment; `None` when neither it nor `$HOME` is set.
pub fn state_dir() -> Option<PathBuf> {
    state_dir_from(|key| std::env::var_os(key))
}

/// [`state_dir`] with the environment given by `var`.
fn state_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let env = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    // systemd passes a colon-separated list when a unit names several directories.
    if let Some(dirs) = env("STATE_DIRECTORY") {
        return std::env::split_paths(&dirs).next();
    }
    env("XDG_STATE_HOME")
        .map(|d| d.join("ggrok"))
        .or_else(|| env("HOME").map(|h| h.join(".local").join("state").join("ggrok")))
}

/// The id file's name for `config`: from its canonical path, so every spelling of one file
/// names one daemon.
pub fn file_name(config: &Path) -> String {
    let canonical = fs::canonicalize(config).unwrap_or_else(|_| config.to_owned());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("daemon-{}.id", &hex::encode(digest)[..16])
}

/// A fresh random id.
pub fn random_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The id kept in `dir` for `config`: read, or created (directory 0700, file 0600) when absent
/// or unreadable as an id.
pub fn load_or_create(dir: &Path, config: &Path) -> io::Result<String> {
    let path = dir.join(file_name(config));
    match fs::read_to_string(&path) {
        Ok(text) if is_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => warn!(file = %path.display(), "the daemon id file is damaged; making a new id"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let id = random_id();
    // Written whole to a temporary file, then put in place: a reader never sees half an id.
    let tmp = dir.join(format!(".{}.tmp-{}", file_name(config), std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| id)
}

/// This daemon's identity while it runs: its id, and the lock that keeps a second ggrokd of the
/// same config from taking it too.
pub struct Identity {
    /// The id sent in the hello.
    pub id: String,
    /// Held (an exclusive `flock`) until the process ends.
    _lock: Option<nix::fcntl::Flock<fs::File>>,
}

/// Takes this config's identity: locks `daemon-….lock` beside the id file, then reads or makes
/// the id ([`daemon_id`]). Two ggrokd with one config file would share the id, and each one's
/// connections would replace the other's on the server, back and forth: the second one to
/// start is refused, with the first one's process id. Without a state directory there is nothing
/// to share (the id is for this run only) and no lock.
pub fn take(config: &Path) -> Result<Identity, String> {
    let lock = match state_dir() {
        Some(dir) => lock(&dir, config)?,
        None => None,
    };
    Ok(Identity { id: daemon_id(config), _lock: lock })
}

/// The lock of `config`'s identity in `dir`; `None` when it cannot be made (the directory is not
/// writable: the id is then not kept either), an error when another process holds it.
fn lock(dir: &Path, config: &Path) -> Result<Option<nix::fcntl::Flock<fs::File>>, String> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Seek};
    let path = dir.join(file_name(config).replace(".id", ".lock"));
    let unlocked = |e: &dyn std::fmt::Display| {
        warn!(
            file = %path.display(),
            "cannot take the lock ({e}): a second ggrokd started with this config would not be refused"
        );
        Ok(None)
    };
    if !dir.exists()
        && let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir)
    {
        return unlocked(&e);
    }
    // Never through a symbolic link: the file is truncated once locked.
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => return unlocked(&e),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            // The holder's process id, for the message a second one gets.
            let _ = held
                .set_len(0)
                .and_then(|()| held.rewind())
                .and_then(|()| writeln!(held, "{}", std::process::id()));
            Ok(Some(held))
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            Err(format!(
                "another ggrokd{holder} is already running with {}: two would take each other's \
                 connections over on the server. Stop it first, or give this one a config file of \
                 its own (lock: {})",
                config.display(),
                path.display()
            ))
        }
        Err((_, e)) => unlocked(&e),
    }
}

/// This daemon's id for `config`: kept in the state directory, or, when that fails, one for
/// this run only (with a warning: a restart will then look like another daemon to the server).
pub fn daemon_id(config: &Path) -> String {
    let kept = match state_dir() {
        Some(dir) => load_or_create(&dir, config).map_err(|e| format!("{}: {e}", dir.display())),
        None => Err("no state directory ($STATE_DIRECTORY, $XDG_STATE_HOME and $HOME are unset)".into()),
    };
    kept.unwrap_or_else(|e| {
        warn!("cannot keep the daemon id ({e}); using one for this run only");
        random_id()
    })
}

fn is_id(s: &str) -> bool {
    s.len() == ID_HEX && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_directory_follows_systemd_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).into())
        };
        static ALL: [(&str, &str); 3] =
            [("STATE_DIRECTORY", "/sd/ggrok:/sd/other"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(state_dir_from(env(&ALL)), Some("/sd/ggrok".into()));
        assert_eq!(state_dir_from(env(&ALL[1..])), Some("/x/ggrok".into()));
        assert_eq!(
            state_dir_from(env(&[("XDG_STATE_HOME", ""), ("HOME", "/h")])),
            Some("/h/.local/state/ggrok".into())
        );
        assert_eq!(state_dir_from(env(&[])), None);
    }

    #[test]
    fn the_id_is_created_private_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("ggrokd.toml");
        fs::write(&config, "").unwrap();
        let dir = tmp.path().join("state").join("ggrok");
        let id = load_or_create(&dir, &config).unwrap();
        assert!(is_id(&id), "{id}");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join(file_name(&config));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{id}\n"));
        assert_eq!(load_or_create(&dir, &config).unwrap(), id, "a restart is the same daemon");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn one_id_per_config_file_whatever_its_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.toml"), tmp.path().join("b.toml"));
        fs::write(&a, "").unwrap();
        fs::write(&b, "").unwrap();
        let dir = tmp.path().join("state");
        let id_a = load_or_create(&dir, &a).unwrap();
        assert_ne!(load_or_create(&dir, &b).unwrap(), id_a, "two configs are two daemons");
        let roundabout = tmp.path().join(".").join("a.toml");
        assert_eq!(load_or_create(&dir, &roundabout).unwrap(), id_a);
        assert!(file_name(&a).starts_with("daemon-") && file_name(&a).len() == "daemon-.id".len() + 16);
    }

    #[test]
    fn a_damaged_file_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("g.toml");
        let dir = tmp.path().to_owned();
        fs::write(dir.join(file_name(&config)), "not an id").unwrap();
        let id = load_or_create(&dir, &config).unwrap();
        assert!(is_id(&id));
        assert_eq!(load_or_create(&dir, &config).unwrap(), id);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        fs::write(&blocker, "").unwrap();
        // A directory that cannot exist: its parent is a file.
        assert!(load_or_create(&blocker.join("ggrok"), &tmp.path().join("g.toml")).is_err());
        assert_ne!(random_id(), random_id());
    }
}
