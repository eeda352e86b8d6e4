//! Names under the client's domain: `ggrokctl add myapp 8080` becomes `myapp.DOMAIN`, and
//! `ggrokctl add 8080` a random name under it, where DOMAIN is what the server said in its hello
//! (`[[client]] domain` in server.toml).

use crate::daemon::Daemon;

/// What a command's host names.
#[derive(Debug, PartialEq, Eq)]
pub enum Named {
    /// A host, pattern or `tcp:PORT`, as given.
    AsGiven(String),
    /// A name under the domain, made from a bare label.
    Bare(String),
    /// A random name under the domain: a taken one may be drawn again.
    Random(String),
}

impl Named {
    /// The host it stands for.
    pub fn host(&self) -> &str {
        match self {
            Named::AsGiven(h) | Named::Bare(h) | Named::Random(h) => h,
        }
    }
}

/// How many random names `add` draws before it gives up on finding a free one.
pub const RANDOM_TRIES: usize = 3;

/// The host `given` stands for: empty for a random name, a bare label (no dot) for a name under
/// the domain, anything else as given. The reason when the domain is needed but not known.
pub fn resolve(daemon: &Daemon, given: &str) -> Result<Named, String> {
    let given = given.trim();
    let bare = !given.is_empty() && !given.contains('.') && !given.starts_with("tcp:") && given != "*";
    if !given.is_empty() && !bare {
        return Ok(Named::AsGiven(given.to_owned()));
    }
    if bare {
        check_label(given)?;
    }
    let Some(domain) = daemon.domain() else {
        let what = if bare {
            format!("{given:?} is a bare name, to go under your domain")
        } else {
            "without a host name, the tunnel gets a random name under your domain".to_owned()
        };
        return Err(format!(
            "{what}, but no server has named one: give the full host name (e.g. myapp.example.com), \
             or ask the server's operator for `domain = \"you.example.com\"` in your [[client]] \
             (ggrokd learns it when it connects)"
        ));
    };
    Ok(match bare {
        true => Named::Bare(format!("{}.{domain}", given.to_ascii_lowercase())),
        false => Named::Random(format!("{}.{domain}", random_label())),
    })
}

/// A DNS label: letters, digits and inner hyphens, at most 63.
fn check_label(label: &str) -> Result<(), String> {
    let ok = label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid host {label:?}: a host name has dots (api.example.com), and a name under your \
             domain is one DNS label (letters, digits and inner hyphens, at most 63)"
        )),
    }
}

/// Eight characters: a letter, then letters and digits (about 2.1e12 names: one client's random
/// names never meet by chance).
fn random_label() -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut label = String::with_capacity(8);
    label.push(fastrand::lowercase());
    label.extend((0..7).map(|_| ALNUM[fastrand::usize(..ALNUM.len())] as char));
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_and_random_ones_are_valid() {
        assert!(check_label("my-app2").is_ok());
        for bad in ["-a", "a-", "a_b", "a b", &"x".repeat(64)] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
        for _ in 0..100 {
            let label = random_label();
            assert_eq!(label.len(), 8);
            assert!(label.as_bytes()[0].is_ascii_lowercase());
            check_label(&label).unwrap();
        }
    }
}
