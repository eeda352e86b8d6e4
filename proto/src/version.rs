//! Agreeing on the tunnel protocol version. Each side speaks a range of versions; the handshake
//! carries ggrokd's range ([`crate::HEADER_PROTOCOL`] = oldest, [`crate::HEADER_PROTOCOL_MAX`] =
//! newest) and the server answers with the newest version both speak, or refuses with both ranges
//! named. A version-1 daemon sends only the oldest; a version-1 server reads only the oldest and
//! answers without a version, which means 1.

use std::ops::RangeInclusive;
use thiserror::Error;

/// The versions this build speaks.
pub const SUPPORTED: RangeInclusive<u32> = crate::PROTOCOL_MIN..=crate::PROTOCOL_VERSION;

/// Why no version could be agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    /// A header was missing or not a number.
    #[error("the protocol version {0:?} is not a number")]
    Malformed(String),
    /// The ranges do not overlap.
    #[error(
        "protocol versions {}-{} are not supported; this server speaks {}-{}: {}",
        .client.start(), .client.end(), .server.start(), .server.end(),
        if .client.end() < .server.start() { "upgrade ggrokd" } else { "upgrade the server" }
    )]
    Disjoint {
        /// What the daemon speaks.
        client: RangeInclusive<u32>,
        /// What the server speaks.
        server: RangeInclusive<u32>,
    },
}

/// Environment variable that lowers the newest version a program speaks, so tests (and people
/// trying a mixed fleet) can run a build as if it were an older one. Ignored when not a number in
/// [`SUPPORTED`].
pub const MAX_ENV: &str = "GGROK_PROTOCOL_MAX";

/// The newest version to speak: [`crate::PROTOCOL_VERSION`], or lower when [`MAX_ENV`] says so.
pub fn newest_from_env() -> u32 {
    std::env::var(MAX_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|v| SUPPORTED.contains(v))
        .unwrap_or(crate::PROTOCOL_VERSION)
}

/// The daemon's range from its handshake headers (`min` = [`crate::HEADER_PROTOCOL`], `max` =
/// [`crate::HEADER_PROTOCOL_MAX`], absent for version-1 daemons).
pub fn client_range(min: Option<&str>, max: Option<&str>) -> Result<RangeInclusive<u32>, Mismatch> {
    let number = |s: &str| s.trim().parse::<u32>().map_err(|_| Mismatch::Malformed(s.to_owned()));
    let min = number(min.unwrap_or("none"))?;
    let max = match max {
        Some(m) => number(m)?,
        None => min,
    };
    if max < min {
        return Err(Mismatch::Malformed(format!("{min}-{max}")));
    }
    Ok(min..=max)
}

/// The newest version in both ranges.
pub fn agree(client: RangeInclusive<u32>, server: RangeInclusive<u32>) -> Result<u32, Mismatch> {
    let newest = (*client.end()).min(*server.end());
    if newest >= *client.start() && newest >= *server.start() {
        Ok(newest)
    } else {
        Err(Mismatch::Disjoint { client, server })
    }
}

/// The version a server chose, from the `ggrok-protocol` header of its 101 answer: absent means a
/// version-1 server. A version the daemon does not speak is an error.
pub fn chosen(header: Option<&str>) -> Result<u32, String> {
    let Some(value) = header else { return Ok(1) };
    match value.trim().parse::<u32>() {
        Ok(v) if SUPPORTED.contains(&v) => Ok(v),
        _ => Err(format!(
            "the server chose protocol version {value:?}, which this ggrokd does not speak ({}-{}); upgrade ggrokd",
            SUPPORTED.start(),
            SUPPORTED.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_shared_version_wins() {
        assert_eq!(agree(1..=2, 1..=2), Ok(2));
        assert_eq!(agree(1..=1, 1..=2), Ok(1), "a version-1 daemon");
        assert_eq!(agree(1..=3, 1..=2), Ok(2), "a newer daemon");
        assert_eq!(agree(2..=5, 1..=3), Ok(3));
    }

    #[test]
    fn disjoint_ranges_say_who_must_upgrade() {
        let old_daemon = agree(1..=1, 2..=3).unwrap_err();
        assert!(old_daemon.to_string().contains("upgrade ggrokd"), "{old_daemon}");
        let old_server = agree(3..=4, 1..=2).unwrap_err();
        assert!(old_server.to_string().contains("upgrade the server"), "{old_server}");
    }

    #[test]
    fn ranges_from_headers() {
        assert_eq!(client_range(Some("1"), None), Ok(1..=1));
        assert_eq!(client_range(Some("1"), Some("2")), Ok(1..=2));
        assert!(client_range(None, None).is_err());
        assert!(client_range(Some("x"), None).is_err());
        assert!(client_range(Some("2"), Some("1")).is_err());
    }

    #[test]
    fn the_chosen_version_defaults_to_one() {
        assert_eq!(chosen(None), Ok(1));
        assert_eq!(chosen(Some("2")), Ok(2));
        assert!(chosen(Some("99")).unwrap_err().contains("upgrade ggrokd"));
    }
}
