//! The ACME cache on disk, reused after a restart: the account, and each name's certificate chain
//! and key. Directories are 0700, files 0600, written whole (a temporary file renamed), so a
//! crash never leaves half a key.
//!
//! ```text
//! <cache_dir>/                                     0700
//!   acme-v02.api.letsencrypt.org-1a2b3c4d/        0700  one folder per directory URL:
//!     account.json                                 0600  staging certificates never serve
//!     tunnel.example.com.crt  (chain, leaf first)  0600  for production
//!     tunnel.example.com.key                       0600
//! ```

use instant_acme::AccountCredentials;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The cache of one ACME directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    dir: PathBuf,
}

impl Cache {
    /// The cache of `directory` under `cache_dir` (nothing is created yet).
    pub fn new(cache_dir: &Path, directory: &str) -> Self {
        Self { root: cache_dir.to_owned(), dir: cache_dir.join(folder(directory)) }
    }

    /// The folder of this directory's account and certificates.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folders (0700), or makes existing ones 0700.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [&self.root, &self.dir] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// The account's credentials, when one was made with this directory.
    pub fn account(&self) -> Result<Option<AccountCredentials>, String> {
        let path = self.dir.join("account.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Keeps the account's credentials (its private key among them).
    pub fn save_account(&self, credentials: &AccountCredentials) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(credentials).map_err(std::io::Error::other)?;
        write_private(&self.dir.join("account.json"), &json)
    }

    /// The chain and key of `name`, as PEM, when cached.
    pub fn certificate(&self, name: &str) -> Option<(String, String)> {
        let (crt, key) = self.paths(name);
        Some((std::fs::read_to_string(crt).ok()?, std::fs::read_to_string(key).ok()?))
    }

    /// Keeps the chain and key of `name`. The key is written first: a chain on disk always has
    /// its key.
    pub fn save_certificate(&self, name: &str, chain: &str, key: &str) -> std::io::Result<()> {
        let (crt_path, key_path) = self.paths(name);
        write_private(&key_path, key.as_bytes())?;
        write_private(&crt_path, chain.as_bytes())
    }

    /// The names with a cached certificate.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".crt").map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn paths(&self, name: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{name}.crt")), self.dir.join(format!("{name}.key")))
    }
}

/// `host[_port]-<8 hex digits of the URL's SHA-256>`: readable, and one per directory URL.
fn folder(directory: &str) -> String {
    let rest = directory.split_once("://").map_or(directory, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let readable: String = authority
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let hash = hex::encode(&Sha256::digest(directory.as_bytes())[..4]);
    format!("{readable}-{hash}")
}

/// Writes `bytes` to `path` readable by the owner only, replacing it whole.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // An older file of the same name may have other permissions.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_private_and_one_per_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("acme");
        let cache = Cache::new(&root, "https://127.0.0.1:14000/dir");
        assert!(cache.dir().file_name().unwrap().to_str().unwrap().starts_with("127.0.0.1_14000-"));
        assert_ne!(cache.dir(), Cache::new(&root, "https://127.0.0.1:14000/other").dir());
        cache.create().unwrap();
        cache.save_certificate("a.test", "CHAIN", "KEY").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.dir().join("a.test.key")), 0o600);
        assert_eq!(mode(&cache.dir().join("a.test.crt")), 0o600);
        assert_eq!(cache.certificate("a.test"), Some(("CHAIN".into(), "KEY".into())));
        assert_eq!(cache.names(), ["a.test"]);
        assert!(cache.account().unwrap().is_none());
    }
}
