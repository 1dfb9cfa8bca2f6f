//! Errors of the scanner. None of them carries a matched value: a path, a line number, a rule
//! id or a git revision is enough to act on, and a secret in an error message would leak into
//! logs and hook output.

use std::path::PathBuf;

/// Everything that can stop a scan or a hook installation.
///
/// Any of these makes the CLI exit with status 2 ("the scan could not run"), never 0: a scan
/// that failed must not look like a clean one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written. Returned by the walker, the config
    /// and ignore-file loaders and the hook installer; the caller reports it and exits 2.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A rule's regular expression did not compile. Returned by
    /// [`ScannerBuilder::build`](crate::ScannerBuilder::build) for rules from a TOML config;
    /// the user fixes the pattern.
    #[error("rule `{rule}` has an invalid regex: {source}")]
    InvalidRegex {
        /// The rule's id.
        rule: String,
        /// What the regex compiler said.
        #[source]
        source: Box<regex::Error>,
    },

    /// A rule definition is unusable (empty id, duplicate id, unknown secret group...).
    #[error("rule `{rule}` is invalid: {reason}")]
    InvalidRule {
        /// The rule's id.
        rule: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The keyword prefilter could not be built (only with pathological keyword lists).
    #[error("could not build the keyword prefilter: {0}")]
    Prefilter(#[from] aho_corasick::BuildError),

    /// The TOML config file is malformed. Only the parser's message and the line are kept:
    /// the parser's own rendering quotes the offending line, which could hold a secret.
    #[error("config file `{path}` line {line}: {message}")]
    Config {
        /// The file that was read.
        path: PathBuf,
        /// 1-based line of the error (1 when the parser gave no position).
        line: usize,
        /// What the parser said, without the quoted source.
        message: String,
    },

    /// A glob in the config's `allow-paths` is malformed.
    #[error("config file `{path}` has an invalid path glob `{glob}`: {source}")]
    Glob {
        /// The file that was read.
        path: PathBuf,
        /// The offending glob.
        glob: String,
        /// What the glob parser said.
        #[source]
        source: Box<ignore::Error>,
    },

    /// A line of the ignore file is not `<16 hex digits> [path]`.
    #[error(
        "ignore file `{path}` line {line}: expected a 16-hex-digit fingerprint, optionally followed by a path"
    )]
    IgnoreFile {
        /// The ignore file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },

    /// A path named on the command line (or as the config or ignore file) is a fifo, socket
    /// or device: it is not read (a fifo would block the scan forever). Exit 2.
    #[error("`{path}` is not a regular file or folder (a pipe, socket or device); it was not read")]
    NotRegular {
        /// The path, as given.
        path: PathBuf,
    },

    /// Walking a directory failed (permission denied, a loop of symlinks...).
    #[error("could not walk `{path}`: {source}")]
    Walk {
        /// The path being walked, as given.
        path: PathBuf,
        /// What the walker said.
        #[source]
        source: Box<ignore::Error>,
    },

    /// `git` could not be started (not installed, not on `PATH`).
    #[error("could not run `git {args}`: {source}")]
    GitSpawn {
        /// The arguments, for the message.
        args: String,
        /// Why spawning failed.
        #[source]
        source: std::io::Error,
    },

    /// `git` ran and failed (not a repository, unknown revision...). `stderr` is git's own
    /// message; git never echoes file contents there.
    #[error("`git {args}` failed ({status}): {stderr}")]
    Git {
        /// The arguments, for the message.
        args: String,
        /// The exit status as text.
        status: String,
        /// git's stderr, trimmed.
        stderr: String,
    },

    /// git printed something we could not parse (a diff header, a pre-push line...).
    #[error("could not parse git output: {what}")]
    GitParse {
        /// Which part was not understood.
        what: String,
    },

    /// The pre-push input (git's hook stdin) is malformed.
    #[error(
        "pre-push input line {line} is not `<local ref> <local sha> <remote ref> <remote sha>`"
    )]
    PrePushInput {
        /// 1-based line number of the input.
        line: usize,
    },

    /// A hook already exists and was not written by us.
    #[error(
        "`{path}` exists and was not installed by refinery; pass `--force` to replace it (a backup is kept)"
    )]
    ForeignHook {
        /// The existing hook file.
        path: PathBuf,
    },

    /// JSON or SARIF output could not be serialized.
    #[error("could not write the report: {0}")]
    Report(#[from] serde_json::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
