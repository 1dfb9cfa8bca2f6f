//! Errors of local model set-up and serving; each says what to do.

use std::path::PathBuf;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No home or cache folder to put things in.
    #[error("no cache folder: set HOME or XDG_CACHE_HOME")]
    NoCacheDir,
    /// A program Refinery needs is missing.
    #[error("`{program}` is needed but was not found: {hint}")]
    Missing {
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}); last output:\n{tail}")]
    Command {
        /// The command, shortened.
        command: String,
        /// Its exit status.
        status: String,
        /// Its last lines.
        tail: String,
    },
    /// A model file is not what it claims to be.
    #[error("`{path}` is not a usable model: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A model name that is neither in the catalog nor a file.
    #[error("unknown model `{name}`: use one of {known}, or the path of a .gguf file")]
    UnknownModel {
        /// What was given.
        name: String,
        /// The catalog's ids.
        known: String,
    },
    /// `serve` before `setup`.
    #[error("{0}")]
    NotSetUp(String),
    /// The server did not come up.
    #[error("the server did not start: {reason}\nits log: {log}")]
    ServerStart {
        /// Why.
        reason: String,
        /// Where its output went.
        log: PathBuf,
    },
    /// Stopping failed.
    #[error("{0}")]
    Stop(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A record file is damaged.
    #[error("cannot read `{path}`: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}
