//! The access keys of a `[[tunnel]]`: `basic_auth = ["user:HASH"]` (bcrypt or argon2, never a
//! password), `allow_ips` and `deny_ips` (addresses or CIDR networks). The server enforces them;
//! here they are only checked, so that a mistake is named with its line rather than found by a
//! visitor.

use ggrok_proto::access::{AccessRules, Cidr, Credential, MAX_RULES};
use ggrok_proto::diag::ConfigError;
use std::path::Path;
use toml::Spanned;

/// A list of strings as TOML has it, with the place of each.
pub(super) type RawList = Option<Spanned<Vec<Spanned<String>>>>;

/// The raw access keys of one tunnel.
pub(super) struct RawAccess<'a> {
    pub basic_auth: &'a RawList,
    pub allow_ips: &'a RawList,
    pub deny_ips: &'a RawList,
}

/// Validates the access keys of tunnel `i`; `tcp` says it is a TCP tunnel, where basic
/// authentication cannot be asked.
pub(super) fn parse(
    path: &Path,
    text: &str,
    i: usize,
    raw: RawAccess<'_>,
    tcp: bool,
) -> Result<AccessRules, ConfigError> {
    let at =
        |span: std::ops::Range<usize>, key: String, msg: String| ConfigError::at(path, text, span, key, msg);
    let too_many = |list: &Spanned<Vec<Spanned<String>>>, key: &str| {
        (list.get_ref().len() > MAX_RULES)
            .then(|| at(list.span(), format!("tunnel[{i}].{key}"), format!("at most {MAX_RULES} entries")))
    };
    let mut rules = AccessRules::default();
    if let Some(list) = raw.basic_auth {
        if tcp {
            return Err(at(
                list.span(),
                format!("tunnel[{i}].basic_auth"),
                "applies to HTTP tunnels only (a TCP connection has no place for a password); \
                 use allow_ips to limit who may connect"
                    .into(),
            ));
        }
        if let Some(e) = too_many(list, "basic_auth") {
            return Err(e);
        }
        for (j, entry) in list.get_ref().iter().enumerate() {
            let key = format!("tunnel[{i}].basic_auth[{j}]");
            let credential = Credential::parse(entry.get_ref())
                .map_err(|e| at(entry.span(), key.clone(), e.to_string()))?;
            if rules.basic_auth.iter().any(|c| c.user == credential.user) {
                return Err(at(entry.span(), key, format!("user {:?} is listed twice", credential.user)));
            }
            rules.basic_auth.push(credential);
        }
    }
    for (name, list, into) in
        [("allow_ips", raw.allow_ips, &mut rules.allow_ips), ("deny_ips", raw.deny_ips, &mut rules.deny_ips)]
    {
        let Some(list) = list else { continue };
        if let Some(e) = too_many(list, name) {
            return Err(e);
        }
        for (j, entry) in list.get_ref().iter().enumerate() {
            let net: Cidr = entry
                .get_ref()
                .parse()
                .map_err(|e| at(entry.span(), format!("tunnel[{i}].{name}[{j}]"), e))?;
            into.push(net);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use crate::config::DaemonConfig;
    use std::path::Path;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0IjW2vmJ2YdHnoX0cTy5Ip4WHR5nUsWVO7xTeIQFrsg";

    fn parse(tunnel: &str) -> Result<DaemonConfig, String> {
        let text = format!("server = \"ws://t\"\n[[tunnel]]\n{tunnel}");
        DaemonConfig::parse(Path::new("g.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn access_keys_are_read() {
        let c = parse(&format!(
            "host = \"a.test\"\nlocal = \"1\"\nbasic_auth = [\"alice:{HASH}\"]\nallow_ips = [\"127.0.0.2\", \"10.0.0.0/8\"]\ndeny_ips = [\"10.9.0.0/16\"]\n"
        ))
        .unwrap();
        let access = &c.tunnels[0].access;
        assert_eq!(access.basic_auth[0].user, "alice");
        assert_eq!(access.allow_ips.len(), 2);
        assert!(!access.allows_ip("10.9.1.1".parse().unwrap()));
        let tcp = parse("tcp = 22\nlocal = \"22\"\nallow_ips = [\"127.0.0.1\"]\n").unwrap();
        assert!(tcp.tunnels[0].access.has_ip_rules());
        assert!(parse("host = \"a.test\"\nlocal = \"1\"\n").unwrap().tunnels[0].access.is_empty());
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        let cases = [
            (
                "host = \"a.test\"\nlocal = \"1\"\nbasic_auth = [\"alice:hunter2\"]\n".to_owned(),
                "g.toml:5: tunnel[0].basic_auth[0]: user \"alice\" has what looks like a plaintext password",
            ),
            (
                "host = \"a.test\"\nlocal = \"1\"\nbasic_auth = [\"nobody\"]\n".to_owned(),
                "g.toml:5: tunnel[0].basic_auth[0]: expected \"user:hash\"",
            ),
            (
                format!("host = \"a.test\"\nlocal = \"1\"\nbasic_auth = [\"a:{HASH}\", \"a:{HASH}\"]\n"),
                "g.toml:5: tunnel[0].basic_auth[1]: user \"a\" is listed twice",
            ),
            (
                format!("tcp = 22\nlocal = \"22\"\nbasic_auth = [\"a:{HASH}\"]\n"),
                "g.toml:5: tunnel[0].basic_auth: applies to HTTP tunnels only",
            ),
            (
                "host = \"a.test\"\nlocal = \"1\"\nallow_ips = [\"127.0.0.1\", \"localhost\"]\n".to_owned(),
                "g.toml:5: tunnel[0].allow_ips[1]: \"localhost\" is not an address",
            ),
            (
                "host = \"a.test\"\nlocal = \"1\"\ndeny_ips = [\"10.0.0.0/40\"]\n".to_owned(),
                "g.toml:5: tunnel[0].deny_ips[0]: \"10.0.0.0/40\" is not an address",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with(expected), "{text}: {err}");
            assert!(!err.contains("hunter2"), "the password is not repeated: {err}");
        }
    }
}
