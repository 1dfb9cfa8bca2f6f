//! `.refinery-secrets.toml`: extra rules, disabled rules, allowed paths and the size limit.
//!
//! ```toml
//! max-file-size = 2097152
//! disable = ["generic-secret"]
//! allow-paths = ["tests/fixtures/**"]
//!
//! [[rule]]
//! id = "acme-deploy-token"
//! description = "ACME deploy token"
//! regex = 'acme_(?P<secret>[A-Za-z0-9]{32})'
//! keywords = ["acme_"]
//! min-entropy = 3.0
//! visible-prefix = 5
//! ```

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::scanner::{RuleDefinition, Scanner, ScannerBuilder};

/// The config file looked up at the root of the scan (the repository root in git modes).
pub const CONFIG_FILE_NAME: &str = ".refinery-secrets.toml";

/// The scanner's configuration. Every field is optional; an absent file means defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Extra rules (`[[rule]]` tables).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleDefinition>,
    /// Rule ids to turn off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// gitignore-style globs of paths whose findings are accepted (test fixtures...).
    #[serde(default)]
    pub allow_paths: Vec<String>,
    /// Files larger than this many bytes are skipped (and counted as skipped).
    pub max_file_size: Option<u64>,
}

impl Config {
    /// Reads `path`; a missing file gives the default config, a malformed one an error.
    pub fn load(path: &Path) -> Result<Self> {
        crate::walk::require_regular(path)?;
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => return Err(error.into()),
        };
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|error| Error::Config {
            path: path.to_owned(),
            line: error.span().map_or(1, |span| {
                1 + memchr::memchr_iter(b'\n', &text.as_bytes()[..span.start.min(text.len())])
                    .count()
            }),
            message: error.message().trim().to_owned(),
        })
    }

    /// Compiles the built-in rules with this config's additions and removals.
    pub fn scanner(&self) -> Result<Scanner> {
        let mut builder = ScannerBuilder::new();
        for rule in &self.rules {
            builder = builder.with_rule(rule.clone());
        }
        for id in &self.disable {
            builder = builder.with_disabled_rule(id.clone());
        }
        builder.build()
    }

    /// Compiles `allow-paths` relative to `root`. `source` names the config file in errors.
    pub(crate) fn allowed_paths(&self, root: &Path, source: &Path) -> Result<AllowedPaths> {
        let mut builder = GitignoreBuilder::new(root);
        for glob in &self.allow_paths {
            builder.add_line(None, glob).map_err(|error| Error::Glob {
                path: source.to_owned(),
                glob: glob.clone(),
                source: Box::new(error),
            })?;
        }
        let matcher = builder.build().map_err(|error| Error::Glob {
            path: source.to_owned(),
            glob: self.allow_paths.join(", "),
            source: Box::new(error),
        })?;
        Ok(AllowedPaths {
            root: root.to_owned(),
            matcher,
        })
    }
}

/// Compiled `allow-paths`.
pub(crate) struct AllowedPaths {
    root: PathBuf,
    matcher: Gitignore,
}

impl AllowedPaths {
    /// `path` is relative to the root (as findings report it).
    pub(crate) fn is_allowed(&self, path: &str) -> bool {
        !self.matcher.is_empty()
            && self
                .matcher
                .matched_path_or_any_parents(self.root.join(path), false)
                .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_allow_paths() {
        let text = r#"
max-file-size = 1000
disable = ["jwt"]
allow-paths = ["fixtures/**"]

[[rule]]
id = "acme-token"
regex = 'acme_(?P<secret>[A-Za-z0-9]{32})'
keywords = ["acme_"]
"#;
        let config = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(config.max_file_size, Some(1000));
        let scanner = config.scanner().unwrap();
        assert!(scanner.rules().any(|rule| rule.id == "acme-token"));
        assert!(!scanner.rules().any(|rule| rule.id == "jwt"));
        let allowed = config
            .allowed_paths(Path::new("/repo"), Path::new("c.toml"))
            .unwrap();
        assert!(allowed.is_allowed("fixtures/a/b.txt"));
        assert!(!allowed.is_allowed("src/main.rs"));
    }

    #[test]
    fn errors_name_the_line_but_never_quote_it() {
        let quoted = "do-not-echo-this-value";
        let text = format!("disable = []\ncolour = \"{quoted}\"\n");
        let error = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("config file `c.toml` line 2: "),
            "{error}"
        );
        assert!(error.contains("colour"), "{error}");
        assert!(!error.contains(quoted), "{error}");
        let broken = Config::parse(&format!("x = \"{quoted}"), Path::new("c.toml")).unwrap_err();
        assert!(!broken.to_string().contains(quoted), "{broken}");
    }
}
