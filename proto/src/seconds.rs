//! Durations in configuration files, written as seconds: `20`, `0.5`.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A duration given in seconds, integer or fractional; never negative or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, such as 20 or 0.5")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(v)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("{v} is not a number of seconds (at least 0)")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(|v| Seconds(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("{v} is not a number of seconds (at least 0)")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(v)))
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct C {
        t: Seconds,
    }

    #[test]
    fn integers_and_fractions() {
        let c: C = toml::from_str("t = 20").unwrap();
        assert_eq!(c.t.0, Duration::from_secs(20));
        let c: C = toml::from_str("t = 0.5").unwrap();
        assert_eq!(c.t.0, Duration::from_millis(500));
        assert!(toml::from_str::<C>("t = -1").is_err());
        assert!(toml::from_str::<C>("t = \"20s\"").is_err());
    }
}
