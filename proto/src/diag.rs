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

    /// A TOML syntax or type error, as reported by the parser. The key is read from the file
    /// (the parser's message does not always name it): the line the error points at, within the
    /// table it is in (`client[1].hosts` for `hosts = …` in the second `[[client]]`). Type errors
    /// say what to write.
    pub fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let line = err.span().map(|s| line_of(text, s.start));
        let place = line.and_then(|n| place_of(text, n));
        let message = err.message().trim();
        let message = match &place {
            Some(place) => explain(message, place),
            None => message.to_owned(),
        };
        Self { path: path.to_owned(), line, key: place.map(|p| p.key), message }
    }
}

/// What line `n` of a TOML text is about.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    /// The dotted path of its key, or of the table it opens.
    key: String,
    /// It opens a table with `[name]` (one table, not an entry of a list).
    single_header: bool,
}

/// The key path of line `n` (1-based): a `key = value` line within the tables opened above it,
/// or a table header; `None` for anything else.
fn place_of(text: &str, n: usize) -> Option<Place> {
    let mut table = String::new();
    let mut entries: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in text.lines().take(n).enumerate() {
        let line = line.trim();
        let header = if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")) {
            let name = name.0.trim().to_owned();
            let count = entries.entry(name.clone()).or_default();
            *count += 1;
            Some((format!("{name}[{}]", *count - 1), false))
        } else {
            line.strip_prefix('[')
                .and_then(|l| l.split_once(']'))
                .map(|(name, _)| (name.trim().to_owned(), true))
        };
        if let Some((name, single)) = header {
            table = name;
            if i + 1 == n {
                return Some(Place { key: table, single_header: single });
            }
            continue;
        }
        if i + 1 == n {
            let (key, _) = line.split_once('=')?;
            let key = key.trim();
            let plain =
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !plain {
                return None;
            }
            let key = if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") };
            return Some(Place { key, single_header: false });
        }
    }
    None
}

/// The parser's `message` about `place`, with what to write instead where that is clear.
fn explain(message: &str, place: &Place) -> String {
    let mut out = message.to_owned();
    for (rust, words) in [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
    ] {
        if let Some(at) =
            out.find(rust).filter(|at| !out[at + rust.len()..].starts_with(char::is_alphanumeric))
        {
            out.replace_range(at..at + rust.len(), words);
        }
    }
    let local = place.key.rsplit('.').next().unwrap_or(&place.key);
    if place.single_header && message.contains("expected a sequence") {
        out.push_str(&format!(
            ": `[{0}]` makes one table, but `{0}` is a list of them: write `[[{0}]]` above each entry",
            place.key
        ));
    } else if let Some(value) = message
        .strip_prefix("invalid type: integer `")
        .and_then(|rest| rest.split_once("`, expected a string"))
        .map(|(value, _)| value)
    {
        out.push_str(&format!(": put it in quotes, {local} = \"{value}\""));
    }
    out
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
        assert!(
            e.to_string().starts_with("x.toml:1: a: invalid type: string \"one\", expected a whole number"),
            "{e}"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Entry {
        name: String,
        #[serde(default)]
        hosts: Vec<String>,
        #[serde(default)]
        local: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Listed {
        #[serde(default)]
        threads: u64,
        #[serde(default)]
        client: Vec<Entry>,
    }

    fn error_of(text: &str) -> String {
        let err = toml::from_str::<Listed>(text).unwrap_err();
        ConfigError::from_toml(Path::new("x.toml"), text, &err).to_string()
    }

    #[test]
    fn keys_are_named_with_their_table() {
        let text = "threads = 1\n[[client]]\nname = \"a\"\n[[client]]\nname = \"b\"\nhosts = \"b.test\"\n";
        let e = error_of(text);
        assert!(
            e.starts_with("x.toml:6: client[1].hosts: invalid type: string \"b.test\", expected a list"),
            "{e}"
        );
        let e = error_of("threads = \"2\"\n");
        assert!(
            e.starts_with("x.toml:1: threads: invalid type: string \"2\", expected a whole number"),
            "{e}"
        );
    }

    #[test]
    fn a_single_table_for_a_list_says_to_double_the_brackets() {
        let e = error_of("[client]\nname = \"a\"\n");
        assert!(
            e.starts_with("x.toml:1: client: invalid type: map, expected a list: `[client]` makes one table")
                && e.contains("write `[[client]]` above each entry"),
            "{e}"
        );
    }

    #[test]
    fn a_number_for_a_string_says_to_quote_it() {
        let e = error_of("[[client]]\nname = \"a\"\nlocal = 8080\n");
        assert!(
            e.starts_with("x.toml:3: client[0].local: invalid type: integer `8080`, expected a string"),
            "{e}"
        );
        assert!(e.ends_with(": put it in quotes, local = \"8080\""), "{e}");
    }
}
