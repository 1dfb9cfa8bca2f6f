//! The one error type of `refinery-prompts`.

/// What can be wrong with an agent file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The file starts a front matter block with `---` but never closes it.
    #[error(
        "front matter opened with `---` on line 1 is never closed; add a `---` line after the last field"
    )]
    UnclosedFrontMatter,
    /// A front matter line is not `key: value`.
    #[error("front matter line {line} is not `key: value`: `{text}`")]
    BadFrontMatterLine {
        /// 1-based line number in the file.
        line: usize,
        /// The offending line.
        text: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
