//! Configuration errors that point at the file, line and key, so a person can fix them at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error in a configuration file: `server.toml:7: client[1].hosts: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path (`tunnel[2].local`), when known.
    pub key: Option<String>,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`, located by the byte span of its value in `text`.
    pub fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.to_owned(),
            line: Some(line_of(text, span.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about the file as a whole (it cannot be read, a required key is missing).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self { path: path.to_owned(), line: None, key: None, message: message.into() }
    }

    /// A TOML syntax or type error, as reported by the parser. The key is read from the line the
    /// error points at, since the parser's message does not always name it.
    pub fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let line = err.span().map(|s| line_of(text, s.start));
        let key = line
            .and_then(|n| text.lines().nth(n - 1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
            .map(str::to_owned);
        Self { path: path.to_owned(), line, key, message: err.message().trim().to_owned() }
    }
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Fixture files for config tests: the `.toml` files of `dir`, sorted, each with the text its
/// first line promises as `# expect: <text>` (for invalid fixtures). Panics when there are none.
pub fn fixtures(dir: &Path) -> Vec<(PathBuf, Option<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixtures {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let expected = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).map(str::to_owned);
            (file, expected)
        })
        .collect()
}

/// Checks one invalid fixture's error: it starts with the file's path and contains the expected
/// text (which names the line and key).
pub fn assert_fixture_error(file: &Path, expected: Option<&str>, error: &str) {
    let expected = expected.unwrap_or_else(|| panic!("{} lacks a '# expect: ' first line", file.display()));
    assert!(error.starts_with(&file.display().to_string()), "{error}");
    assert!(error.contains(expected), "{}: got {error:?}, expected {expected:?}", file.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_line_and_key() {
        let text = "a = 1\nb = 2\n";
        let e = ConfigError::at(Path::new("x.toml"), text, 10..11, "b", "must be 3");
        assert_eq!(e.to_string(), "x.toml:2: b: must be 3");
    }

    #[test]
    fn toml_errors_carry_their_line() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            a: u32,
        }
        let text = "a = 1\n\nbogus = 2\n";
        let err = toml::from_str::<C>(text).unwrap_err();
        let e = ConfigError::from_toml(Path::new("x.toml"), text, &err);
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("x.toml:3: bogus: unknown field `bogus`"), "{e}");
        let text = "a = \"one\"\n";
        let err = toml::from_str::<C>(text).unwrap_err();
        let e = ConfigError::from_toml(Path::new("x.toml"), text, &err);
        assert!(e.to_string().starts_with("x.toml:1: a: invalid type"), "{e}");
    }
}
