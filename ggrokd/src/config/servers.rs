//! `server = "wss://…"` or `server = ["wss://a…", "wss://b…"]`: the servers ggrokd holds its
//! connections to, each independently. A list entry that is wrong is reported with its own line
//! and key (`server[1]`).

use super::ServerUrl;
use ggrok_proto::diag::ConfigError;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The most servers one daemon lists.
pub const MAX_SERVERS: usize = 16;

/// The value of `server`: one URL, or a list of them with each one's place in the file.
pub(super) struct RawServers {
    list: bool,
    entries: Vec<(String, Option<Range<usize>>)>,
}

impl<'de> Deserialize<'de> for RawServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = RawServers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a server URL such as \"wss://tunnel.example.com\", or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawServers, E> {
                Ok(RawServers { list: false, entries: vec![(v.to_owned(), None)] })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawServers, A::Error> {
                let mut entries = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    entries.push((s.get_ref().clone(), Some(s.span())));
                }
                Ok(RawServers { list: true, entries })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// Validates `server`, spanning `span` in `text`: one URL or a list of distinct ones.
pub(super) fn parse(
    path: &Path,
    text: &str,
    raw: &Spanned<RawServers>,
) -> Result<Vec<ServerUrl>, ConfigError> {
    let at = |span: Range<usize>, key: &str, msg: String| ConfigError::at(path, text, span, key, msg);
    let value = raw.get_ref();
    if value.entries.is_empty() {
        return Err(at(raw.span(), "server", "must list at least one server".into()));
    }
    if value.entries.len() > MAX_SERVERS {
        return Err(at(raw.span(), "server", format!("lists more than {MAX_SERVERS} servers")));
    }
    let mut servers: Vec<ServerUrl> = Vec::with_capacity(value.entries.len());
    for (i, (url, span)) in value.entries.iter().enumerate() {
        let key = if value.list { format!("server[{i}]") } else { "server".to_owned() };
        let span = span.clone().unwrap_or_else(|| raw.span());
        let server = ServerUrl::parse(url).map_err(|e| at(span.clone(), &key, e))?;
        if servers.iter().any(|s| s.url == server.url) {
            return Err(at(span, &key, format!("{} is listed twice", server.url)));
        }
        servers.push(server);
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use crate::config::DaemonConfig;
    use std::path::Path;

    fn parse(text: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(Path::new("g.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn one_url_or_a_list() {
        let one = parse("server = \"ws://a\"\n").unwrap();
        assert_eq!(one.servers.iter().map(|s| s.url.as_str()).collect::<Vec<_>>(), ["ws://a:80/$$ggrok"]);
        let two = parse("server = [\"ws://a\", \"wss://b:8443\"]\n").unwrap();
        let urls: Vec<_> = two.servers.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls, ["ws://a:80/$$ggrok", "wss://b:8443/$$ggrok"]);
    }

    #[test]
    fn a_bad_entry_names_its_line_and_index() {
        let err = parse("token = \"x\"\nserver = [\n  \"ws://a\",\n  \"ftp://b\",\n]\n").unwrap_err();
        assert!(err.starts_with("g.toml:4: server[1]: \"ftp://b\" must start with ws://"), "{err}");
        let err = parse("server = [\"ws://a\", \"ws://a:80/\"]\n").unwrap_err();
        assert!(err.starts_with("g.toml:1: server[1]: ws://a:80/$$ggrok is listed twice"), "{err}");
        let err = parse("server = []\n").unwrap_err();
        assert!(err.starts_with("g.toml:1: server: must list at least one server"), "{err}");
        let err = parse("server = [\"ws://a\", 3]\n").unwrap_err();
        assert!(err.contains("g.toml:1") && err.contains("server"), "{err}");
        let err = parse("server = 3\n").unwrap_err();
        assert!(err.contains("g.toml:1") && err.contains("server"), "{err}");
    }
}
