//! Amounts of memory in configuration files: a number of bytes (`268435456`) or a number with a
//! unit (`"256 MiB"`, `"64KiB"`, `"1 GiB"`; also decimal `"500 MB"`).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

const UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
];

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        let bad =
            || format!("{s:?} is not a size: write bytes, or a number and KiB, MiB or GiB (\"256 MiB\")");
        let number: u64 = number.parse().map_err(|_| bad())?;
        let scale = if unit.is_empty() {
            1
        } else {
            UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)).ok_or_else(bad)?.1
        };
        number.checked_mul(scale).map(Size).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string such as \"256 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom(format!("{v} is not a size (at least 0)")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct C {
        s: Size,
    }

    fn size(toml: &str) -> Result<u64, String> {
        toml::from_str::<C>(toml).map(|c| c.s.0).map_err(|e| e.to_string())
    }

    #[test]
    fn bytes_and_units() {
        assert_eq!(size("s = 1024"), Ok(1024));
        assert_eq!(size("s = \"256 MiB\""), Ok(256 << 20));
        assert_eq!(size("s = \"64KiB\""), Ok(64 << 10));
        assert_eq!(size("s = \"1 gib\""), Ok(1 << 30));
        assert_eq!(size("s = \"500 MB\""), Ok(500_000_000));
        assert_eq!(size("s = \"12\""), Ok(12));
    }

    #[test]
    fn nonsense_is_refused_with_an_example() {
        for bad in
            ["s = -1", "s = \"lots\"", "s = \"12 parsecs\"", "s = \"1.5 MiB\"", "s = \"99999999999 GiB\""]
        {
            let e = size(bad).unwrap_err();
            assert!(e.contains("size"), "{bad}: {e}");
        }
    }
}
