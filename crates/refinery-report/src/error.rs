//! What can go wrong while reading a session for a report.

use std::path::PathBuf;

/// A report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The core could not read the session (unknown id, corrupt journal or state). The caller
    /// shows it as is: the core's message names the session and the file.
    #[error(transparent)]
    Core(#[from] refinery_core::Error),
    /// Writing the report file failed; the message names the path.
    #[error("could not write the report to `{path}`: {source}")]
    Write {
        /// Where it was going.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: refinery_core::Error,
    },
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
