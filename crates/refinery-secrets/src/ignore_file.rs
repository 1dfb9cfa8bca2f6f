//! `.refinery-secrets-ignore`: accepted findings by fingerprint, one per line.
//!
//! ```text
//! # comment
//! 0123456789abcdef                 # accepted wherever it occurs
//! 0123456789abcdef tests/data.txt  # accepted in this file only
//! ```
//!
//! There are no line numbers: an entry stays valid when code moves, so the file does not churn
//! (the complaint about line-number baselines in other scanners).

use std::path::Path;

use crate::error::{Error, Result};
use crate::finding::Fingerprint;

/// The ignore file looked up at the root of the scan.
pub const IGNORE_FILE_NAME: &str = ".refinery-secrets-ignore";

/// Parsed ignore entries.
#[derive(Clone, Debug, Default)]
pub struct IgnoreList {
    entries: Vec<(Fingerprint, Option<String>)>,
}

impl IgnoreList {
    /// Reads `path`; a missing file is an empty list, a malformed line an error.
    pub fn load(path: &Path) -> Result<Self> {
        crate::walk::require_regular(path)?;
        match fs_err::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// Parses the file's text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let fingerprint = fields.next().and_then(Fingerprint::parse);
            let scope = fields
                .next()
                .map(|scope| scope.trim_start_matches("./").to_owned());
            match (fingerprint, fields.next()) {
                (Some(fingerprint), None) => entries.push((fingerprint, scope)),
                _ => {
                    return Err(Error::IgnoreFile {
                        path: path.to_owned(),
                        line: index + 1,
                    });
                }
            }
        }
        Ok(Self { entries })
    }

    /// Is this fingerprint accepted at `path`?
    pub fn is_ignored(&self, fingerprint: Fingerprint, path: Option<&str>) -> bool {
        self.entries.iter().any(|(entry, scope)| {
            *entry == fingerprint && scope.as_deref().is_none_or(|scope| path == Some(scope))
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let fingerprint = Fingerprint::parse("0123456789abcdef").unwrap();
        let other = Fingerprint::parse("FEDCBA9876543210").unwrap();
        let list = IgnoreList::parse(
            "# header\n0123456789abcdef\n\nfedcba9876543210 ./a/b.txt # why\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.is_ignored(fingerprint, Some("anything")));
        assert!(list.is_ignored(other, Some("a/b.txt")));
        assert!(!list.is_ignored(other, Some("c.txt")));

        for bad in ["xyz", "0123456789abcde", "0123456789abcdef a b"] {
            let error = IgnoreList::parse(bad, Path::new("ig")).unwrap_err();
            assert!(error.to_string().contains("line 1"), "{error}");
        }
    }
}
