//! The server's side of tunnels' access rules in server.toml: `[[client]] require` (rules every
//! tunnel of that client must carry) and `proxy_protocol_from` (load balancers whose PROXY
//! protocol header names the client, for access rules and everything else).

use ggrok_proto::access::{AccessRules, Cidr};
use toml::Spanned;

/// What `[[client]] require` asks of every tunnel of the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `"basic_auth"`: every tunnel asks for a password (so the client can have no TCP tunnels).
    pub basic_auth: bool,
    /// `"allow_ips"`: every tunnel lets in only the networks it lists.
    pub allow_ips: bool,
}

impl Requirements {
    /// Reads `require = ["basic_auth", "allow_ips"]`; on error, the entry's index, span and why.
    pub(super) fn parse(list: &[Spanned<String>]) -> Result<Self, (usize, std::ops::Range<usize>, String)> {
        let mut req = Requirements::default();
        for (j, item) in list.iter().enumerate() {
            match item.get_ref().as_str() {
                "basic_auth" => req.basic_auth = true,
                "allow_ips" => req.allow_ips = true,
                other => {
                    return Err((
                        j,
                        item.span(),
                        format!("{other:?}: expected \"basic_auth\" or \"allow_ips\""),
                    ));
                }
            }
        }
        Ok(req)
    }

    /// Why a claim of `client` with `rules` is refused, if it is; `tcp` for a TCP tunnel.
    pub fn refusal(&self, client: &str, rules: &AccessRules, tcp: bool) -> Option<String> {
        if self.basic_auth && tcp {
            return Some(format!(
                "client {client:?} must protect every tunnel with basic_auth (require in server.toml), \
                 which a TCP tunnel cannot have"
            ));
        }
        if self.basic_auth && rules.basic_auth.is_empty() {
            return Some(format!(
                "client {client:?} must protect every tunnel with basic_auth (require in server.toml); \
                 add basic_auth to the tunnel (ggrokctl add --basic-auth user:password)"
            ));
        }
        if self.allow_ips && rules.allow_ips.is_empty() {
            return Some(format!(
                "client {client:?} must limit every tunnel with allow_ips (require in server.toml); \
                 add allow_ips to the tunnel (ggrokctl add --allow-ip CIDR)"
            ));
        }
        None
    }
}

/// Reads `proxy_protocol_from`: addresses or networks of trusted load balancers.
pub(super) fn trusted(
    list: &[Spanned<String>],
) -> Result<Vec<Cidr>, (usize, std::ops::Range<usize>, String)> {
    list.iter().enumerate().map(|(j, item)| item.get_ref().parse().map_err(|e| (j, item.span(), e))).collect()
}

#[cfg(test)]
mod tests {
    use crate::config::ServerConfig;
    use std::path::Path;

    const CLIENT: &str = "[[client]]\nname = \"g\"\ntoken = \"0123456789abcdef\"\nhosts = [\"*.g.test\"]\n";

    fn parse(text: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(Path::new("s.toml"), text, None).map_err(|e| e.to_string())
    }

    #[test]
    fn requirements_refuse_claims_without_the_rules() {
        let c = parse(&format!("{CLIENT}ports = [\"2000\"]\nrequire = [\"basic_auth\", \"allow_ips\"]\n"))
            .unwrap();
        let req = c.clients[0].require;
        assert!(req.basic_auth && req.allow_ips);
        let mut rules = ggrok_proto::access::AccessRules::default();
        assert!(req.refusal("g", &rules, false).unwrap().contains("basic_auth"));
        let hash = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        rules.basic_auth.push(ggrok_proto::access::Credential::parse(&format!("a:{hash}")).unwrap());
        assert!(req.refusal("g", &rules, false).unwrap().contains("allow_ips"));
        rules.allow_ips.push("10.0.0.0/8".parse().unwrap());
        assert_eq!(req.refusal("g", &rules, false), None);
        assert!(req.refusal("g", &rules, true).unwrap().contains("TCP tunnel cannot"));
        assert_eq!(parse(CLIENT).unwrap().clients[0].require, Default::default());
    }

    #[test]
    fn trusted_balancers_and_mistakes() {
        let c = parse(&format!("proxy_protocol_from = [\"10.0.0.0/8\", \"127.0.0.3\"]\n{CLIENT}")).unwrap();
        assert_eq!(c.proxy_protocol_from.len(), 2);
        let err = parse(&format!("proxy_protocol_from = [\"lb.internal\"]\n{CLIENT}")).unwrap_err();
        assert!(
            err.starts_with("s.toml:1: proxy_protocol_from[0]: \"lb.internal\" is not an address"),
            "{err}"
        );
        let err = parse(&format!("{CLIENT}require = [\"password\"]\n")).unwrap_err();
        assert!(err.starts_with("s.toml:5: client[0].require[0]: \"password\": expected"), "{err}");
    }
}
