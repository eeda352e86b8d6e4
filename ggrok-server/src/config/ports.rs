//! `[[client]] ports = ["20000-20099", "5432"]`: the public TCP ports a client may claim for its
//! TCP tunnels, as single ports or inclusive ranges (strings, or plain numbers for single ports).

use std::ops::RangeInclusive;
use toml::Spanned;

/// The ports a client may claim, in the order the file lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges(pub Vec<RangeInclusive<u16>>);

impl PortRanges {
    /// Whether `port` is among them.
    pub fn allows(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every allowed port, in file order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().flat_map(|r| r.clone())
    }
}

impl std::fmt::Display for PortRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Reads one entry: `"5432"`, `5432` or `"20000-20099"`.
fn parse_one(value: &toml::Value) -> Result<RangeInclusive<u16>, String> {
    let port = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?} is not a port from 1 to 65535"))
    };
    match value {
        toml::Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .map(|p| p..=p)
            .ok_or_else(|| format!("{n} is not a port from 1 to 65535")),
        toml::Value::String(s) => match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("{s:?}: the range ends before it starts"));
                }
                Ok(a..=b)
            }
            None => port(s).map(|p| p..=p),
        },
        other => Err(format!("{other} is not a port or a range such as \"20000-20099\"")),
    }
}

/// Validates a client's `ports`; the error names the index of the entry at fault, with its span.
pub fn parse(raw: &[Spanned<toml::Value>]) -> Result<PortRanges, (usize, std::ops::Range<usize>, String)> {
    let mut ranges: Vec<RangeInclusive<u16>> = Vec::with_capacity(raw.len());
    for (j, v) in raw.iter().enumerate() {
        let range = parse_one(v.get_ref()).map_err(|e| (j, v.span(), e))?;
        if let Some(other) = ranges.iter().find(|o| o.start() <= range.end() && range.start() <= o.end()) {
            let why = format!("overlaps {}", PortRanges(vec![other.clone()]));
            return Err((j, v.span(), why));
        }
        ranges.push(range);
    }
    Ok(PortRanges(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        ports: Vec<Spanned<toml::Value>>,
    }

    fn ports(text: &str) -> Result<PortRanges, String> {
        let doc: Doc = toml::from_str(&format!("ports = {text}")).unwrap();
        parse(&doc.ports).map_err(|(j, _, e)| format!("[{j}] {e}"))
    }

    #[test]
    fn single_ports_and_ranges() {
        let p = ports(r#"["20000-20002", "5432", 6379]"#).unwrap();
        assert_eq!(p.to_string(), "20000-20002, 5432, 6379");
        assert!(p.allows(20001) && p.allows(5432) && p.allows(6379));
        assert!(!p.allows(20003) && !p.allows(80));
        assert_eq!(p.iter().collect::<Vec<_>>(), [20000, 20001, 20002, 5432, 6379]);
        assert_eq!(PortRanges::default().to_string(), "none");
    }

    #[test]
    fn bad_entries_say_which_and_why() {
        assert_eq!(ports(r#"["0"]"#).unwrap_err(), r#"[0] "0" is not a port from 1 to 65535"#);
        assert!(ports(r#"["1", 70000]"#).unwrap_err().starts_with("[1] 70000 is not a port"));
        assert!(ports(r#"["20-10"]"#).unwrap_err().contains("ends before it starts"));
        assert!(ports(r#"["a-b"]"#).unwrap_err().contains("is not a port"));
        assert!(ports(r#"[true]"#).unwrap_err().contains("is not a port or a range"));
        assert_eq!(ports(r#"["10-20", "15"]"#).unwrap_err(), "[1] overlaps 10-20");
    }
}
