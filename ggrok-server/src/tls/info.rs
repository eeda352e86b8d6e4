//! What an operator wants to know of a certificate: the names it covers, who issued it, when it
//! expires. Read with x509-parser, for `--check`, the admin listener, metrics and expiry warnings.

use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The DNS names of its subject alternative names (else its subject's common name).
    pub names: Vec<String>,
    /// Its issuer, as `CN=…, O=…`.
    pub issuer: String,
    /// Valid from, Unix seconds.
    pub not_before: i64,
    /// Valid until, Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            names.extend(
                cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_owned),
            );
        }
        let validity = cert.validity();
        Ok(Self {
            names,
            issuer: cert.issuer().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// When it expires.
    pub fn expires(&self) -> SystemTime {
        at(self.not_after)
    }

    /// Its whole lifetime.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.not_after - self.not_before).unwrap_or(0))
    }

    /// `names; issuer …; expires 2025-05-01T12:00:00Z (in 40 days)`, for people.
    pub fn describe(&self, now: SystemTime) -> String {
        format!(
            "{}; issuer {}; expires {} ({})",
            self.names.join(", "),
            self.issuer,
            rfc3339(self.not_after),
            until(self.expires(), now)
        )
    }
}

/// A Unix time as a `SystemTime`.
pub fn at(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2025-05-01T12:00:00Z`.
pub fn rfc3339(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// `in 3 days`, `in 5 hours`, `expired 2 minutes ago`.
pub fn until(then: SystemTime, now: SystemTime) -> String {
    match then.duration_since(now) {
        Ok(left) => format!("in {}", span(left)),
        Err(e) => format!("expired {} ago", span(e.duration())),
    }
}

fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..120 => (s, "second"),
        120..7200 => (s / 60, "minute"),
        7200..172_800 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_issuer_and_expiry() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into(), "b.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 4, 1);
        params.distinguished_name.push(rcgen::DnType::CommonName, "a.test");
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::parse(cert.der()).unwrap();
        assert_eq!(info.names, ["a.test", "b.test"]);
        assert_eq!(info.issuer, "CN=a.test");
        assert_eq!(rfc3339(info.not_after), "2024-04-01T00:00:00Z");
        assert_eq!(info.lifetime(), Duration::from_secs(91 * 86_400));
        let now = at(info.not_after) - Duration::from_secs(3 * 86_400);
        assert!(
            info.describe(now).ends_with("expires 2024-04-01T00:00:00Z (in 3 days)"),
            "{}",
            info.describe(now)
        );
        assert_eq!(until(now, at(info.not_after)), "expired 3 days ago");
    }
}
