//! Edits of ggrokd.toml made by `ggrokctl add`/`remove`: through `toml_edit`, so the user's
//! comments, order and layout stay; validated before writing; written atomically (temporary file
//! in the same directory, fsync, rename, fsync of the directory), so a crash never leaves a
//! truncated config.

use crate::config::{DaemonConfig, Public};
use ggrok_proto::access::AccessRules;
use ggrok_proto::host::HostPattern;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The keys of a `[[tunnel]]` that `add` writes beside its public side and `local`.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    /// `host_header = "rewrite"`.
    pub rewrite_host: bool,
    /// `proxy_protocol = true` (TCP tunnels).
    pub proxy_protocol: bool,
    /// `ca_file` (an `https://` local service), as an absolute path.
    pub ca_file: Option<std::path::PathBuf>,
    /// `tls_skip_verify = true` (an `https://` local service).
    pub tls_skip_verify: bool,
    /// `basic_auth`, `allow_ips`, `deny_ips`.
    pub access: AccessRules,
}

/// Appends a `[[tunnel]]` with `host` (or `tcp = PORT` for a TCP tunnel), `local` (as the user
/// wrote it) and the `keys` that differ from their defaults, access rules as hashes only (a
/// [`Credential`](ggrok_proto::access::Credential) never holds a password).
pub fn add_tunnel(path: &Path, public: &Public, local: &str, keys: &Keys) -> Result<(), String> {
    edit(path, |doc| {
        let tunnels = doc
            .entry("tunnel")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .ok_or("`tunnel` in the config file is not a list of [[tunnel]] tables")?;
        let mut table = Table::new();
        match public {
            Public::Http(host) => table["host"] = value(host.to_string()),
            Public::Tcp(port) => table["tcp"] = value(i64::from(*port)),
        }
        table["local"] = value(local);
        if keys.rewrite_host {
            table["host_header"] = value("rewrite");
        }
        if keys.proxy_protocol {
            table["proxy_protocol"] = value(true);
        }
        if let Some(ca_file) = &keys.ca_file {
            table["ca_file"] = value(ca_file.display().to_string());
        }
        if keys.tls_skip_verify {
            table["tls_skip_verify"] = value(true);
        }
        let access = &keys.access;
        let list = |items: Vec<String>| value(items.into_iter().collect::<toml_edit::Array>());
        if !access.basic_auth.is_empty() {
            table["basic_auth"] =
                list(access.basic_auth.iter().map(|c| format!("{}:{}", c.user, c.hash)).collect());
        }
        if !access.allow_ips.is_empty() {
            table["allow_ips"] = list(access.allow_ips.iter().map(ToString::to_string).collect());
        }
        if !access.deny_ips.is_empty() {
            table["deny_ips"] = list(access.deny_ips.iter().map(ToString::to_string).collect());
        }
        tunnels.push(table);
        Ok(())
    })
}

/// Removes the `[[tunnel]]` of `public` (its host, or its `tcp` port); returns whether there was one.
pub fn remove_tunnel(path: &Path, public: &Public) -> Result<bool, String> {
    edit(path, |doc| {
        let Some(tunnels) = doc.get_mut("tunnel").and_then(Item::as_array_of_tables_mut) else {
            return Ok(false);
        };
        let position = tunnels.iter().position(|t| match public {
            Public::Http(host) => {
                t.get("host").and_then(Item::as_str).and_then(|h| HostPattern::parse(h).ok()).as_ref()
                    == Some(host)
            }
            Public::Tcp(port) => t.get("tcp").and_then(Item::as_integer) == Some(i64::from(*port)),
        });
        match position {
            Some(i) => {
                tunnels.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    })
}

/// Writes `port` into the `[[tunnel]]` with `tcp = 0` (the server picked it); returns whether
/// there was one.
pub fn set_tcp_port(path: &Path, port: u16) -> Result<bool, String> {
    edit(path, |doc| {
        let Some(tunnels) = doc.get_mut("tunnel").and_then(Item::as_array_of_tables_mut) else {
            return Ok(false);
        };
        match tunnels.iter_mut().find(|t| t.get("tcp").and_then(Item::as_integer) == Some(0)) {
            Some(t) => {
                // Keeps the comment after `tcp = 0`, if any.
                let decor = t.get("tcp").and_then(Item::as_value).map(|v| v.decor().clone());
                t["tcp"] = value(i64::from(port));
                if let (Some(decor), Some(v)) = (decor, t.get_mut("tcp").and_then(Item::as_value_mut)) {
                    *v.decor_mut() = decor;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    })
}

fn edit<R>(path: &Path, change: impl FnOnce(&mut DocumentMut) -> Result<R, String>) -> Result<R, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    let result = change(&mut doc)?;
    let new_text = doc.to_string();
    if new_text != text {
        DaemonConfig::parse(path, &new_text)
            .map_err(|e| format!("the edited config would be invalid: {e}"))?;
        write_atomic(path, new_text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(result)
}

/// Replaces `path` with `contents` atomically, keeping the file's permissions.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other("config path has no file name"))?;
    let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "# my tunnels\nserver = \"ws://t.example.com\" # the team server\ntoken = \"x\"\n\n\
        # the API\n[[tunnel]]\nhost = \"api.test\"   # aligned comment\nlocal = \"8080\"\n\n\
        [[tunnel]]\nhost = \"web.test\"\nlocal = \"3000\"\n";

    fn http(host: &str) -> Public {
        HostPattern::parse(host).unwrap().into()
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggrokd.toml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        (dir, path)
    }

    #[test]
    fn add_keeps_comments_and_layout() {
        let (_dir, path) = file(ORIGINAL);
        add_tunnel(
            &path,
            &http("new.test"),
            "http://127.0.0.1:9000",
            &Keys { rewrite_host: true, ..Keys::default() },
        )
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(ORIGINAL), "existing text changed:\n{text}");
        assert!(text.ends_with(
            "[[tunnel]]\nhost = \"new.test\"\nlocal = \"http://127.0.0.1:9000\"\nhost_header = \"rewrite\"\n"
        ));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(DaemonConfig::load(&path).unwrap().tunnels.len(), 3);
    }

    #[test]
    fn remove_takes_out_only_that_tunnel() {
        let (_dir, path) = file(ORIGINAL);
        assert!(remove_tunnel(&path, &http("API.test")).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("api.test"));
        assert!(
            text.contains("# my tunnels") && text.contains("# the team server") && text.contains("web.test")
        );
        assert!(!remove_tunnel(&path, &http("api.test")).unwrap());
    }

    #[test]
    fn access_rules_are_saved_as_lists() {
        let (_dir, path) = file("server = \"ws://t\"\n");
        let hash = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        let access = AccessRules {
            basic_auth: vec![ggrok_proto::access::Credential::parse(&format!("alice:{hash}")).unwrap()],
            allow_ips: vec!["127.0.0.2".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            deny_ips: vec![],
        };
        add_tunnel(&path, &http("a.test"), "8080", &Keys { access: access.clone(), ..Keys::default() })
            .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!(
                "basic_auth = [\"alice:{hash}\"]\nallow_ips = [\"127.0.0.2/32\", \"10.0.0.0/8\"]\n"
            )),
            "{text}"
        );
        assert!(!text.contains("deny_ips"));
        assert_eq!(DaemonConfig::load(&path).unwrap().tunnels[0].access, access);
    }

    #[test]
    fn add_to_a_file_without_tunnels() {
        let (_dir, path) = file("server = \"ws://t\"\ntoken = \"x\"\n");
        add_tunnel(&path, &http("a.test"), "8080", &Keys::default()).unwrap();
        let config = DaemonConfig::load(&path).unwrap();
        assert_eq!(config.tunnels[0].local.authority, "localhost:8080");
    }

    #[test]
    fn the_port_picked_for_tcp_zero_is_saved_with_its_comment() {
        let text = "server = \"ws://t\"\n[[tunnel]]\ntcp = 0 # any port\nlocal = \"5432\"\n";
        let (_dir, path) = file(text);
        assert!(set_tcp_port(&path, 20007).unwrap());
        let saved = fs::read_to_string(&path).unwrap();
        assert_eq!(saved, text.replace("tcp = 0 #", "tcp = 20007 #"));
        assert!(!set_tcp_port(&path, 20008).unwrap(), "no tcp = 0 left");
    }

    #[test]
    fn tcp_tunnels_are_added_and_removed_by_port() {
        let (_dir, path) = file(ORIGINAL);
        add_tunnel(
            &path,
            &Public::Tcp(20001),
            "127.0.0.1:5432",
            &Keys { proxy_protocol: true, ..Keys::default() },
        )
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with("[[tunnel]]\ntcp = 20001\nlocal = \"127.0.0.1:5432\"\nproxy_protocol = true\n"),
            "{text}"
        );
        assert!(!remove_tunnel(&path, &Public::Tcp(20002)).unwrap());
        assert!(remove_tunnel(&path, &Public::Tcp(20001)).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
    }

    #[test]
    fn an_edit_that_would_break_the_config_changes_nothing() {
        let (_dir, path) = file(ORIGINAL);
        let err = add_tunnel(&path, &Public::Tcp(0), "http://a:1", &Keys::default()).unwrap_err();
        assert!(err.contains("a TCP tunnel's local service"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }
}
