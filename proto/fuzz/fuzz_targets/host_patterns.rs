//! Arbitrary strings as Host headers and host patterns: nothing panics, normalising is idempotent,
//! and a wildcard only ever matches one label in front of its own suffix.

#![no_main]

use ggrok_proto::host::{HostPattern, normalize_host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (left, right) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    if let Ok(host) = normalize_host(left) {
        assert_eq!(normalize_host(&host).as_deref(), Ok(host.as_str()), "normalising twice changed {host:?}");
        if let Ok(pattern) = HostPattern::parse(right) {
            if pattern.matches(&host) {
                match &pattern {
                    HostPattern::Exact(name) => assert_eq!(name, &host),
                    HostPattern::Wildcard(suffix) => {
                        let (label, rest) = host.split_once('.').expect("a matched host has a dot");
                        assert!(!label.is_empty() && !label.contains('.') && rest == suffix);
                    }
                }
            }
            assert!(pattern.allows(&pattern), "{pattern} does not allow itself");
        }
    }
});
