//! Errors of media generation and reading. Each variant carries what failed (backend,
//! status, path) and maps to a stable [`Error::code`] the MCP tools and `--json` output
//! report. No variant holds a key: provider text passes through the configured redactor
//! before it is stored here.

use std::path::PathBuf;
use std::time::Duration;

use crate::kinds::{Backend, MediaMode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is missing, malformed or out of range. Nothing was sent or written.
    #[error("invalid `{argument}`: {reason}")]
    InvalidArgument {
        argument: &'static str,
        reason: String,
    },

    /// No backend with a key can do this mode. The message lists the variables that would help.
    #[error("no backend can do {mode}: set one of {variables}")]
    NoBackend { mode: String, variables: String },

    /// The named backend has no key.
    #[error("backend `{backend}` has no key: set `{variable}` (environment or `.env`)")]
    MissingKey {
        backend: Backend,
        variable: &'static str,
    },

    /// The named backend cannot do this mode.
    #[error("backend `{backend}` cannot do {mode}; {hint}")]
    UnsupportedMode {
        backend: Backend,
        mode: String,
        hint: &'static str,
    },

    /// A path (input or output) resolves outside the workspace, or is otherwise refused.
    #[error("path `{path}` is outside the workspace `{workspace}`; use a path inside it")]
    OutsideWorkspace { path: PathBuf, workspace: PathBuf },

    /// An input file cannot be used (missing, too large, unknown type, undecodable).
    #[error("cannot use `{path}`: {reason}")]
    InputFile { path: PathBuf, reason: String },

    /// The provider refused the content (a safety or moderation block). Not retried.
    #[error("`{backend}` refused the request on safety grounds: {reason}; rephrase the prompt")]
    SafetyBlock { backend: Backend, reason: String },

    /// The provider answered an HTTP error that is not retried, or a retryable one after the
    /// retry budget ran out (`attempts` tells which).
    #[error("`{backend}` answered HTTP {status} after {attempts} attempt(s): {message}")]
    Http {
        backend: Backend,
        status: u16,
        attempts: u32,
        message: String,
    },

    /// The connection failed or timed out on every attempt.
    #[error("could not reach `{backend}` after {attempts} attempt(s): {message}")]
    Connection {
        backend: Backend,
        attempts: u32,
        message: String,
    },

    /// The provider's answer lacks what the protocol promises (no image, no operation name…).
    #[error("`{backend}` sent an answer Refinery cannot use: {what}")]
    MalformedResponse { backend: Backend, what: String },

    /// The payload is not what the provider said it is (bad base64, wrong file signature).
    #[error("`{backend}` sent bytes that are not a valid {expected}: {found}")]
    BadPayload {
        backend: Backend,
        expected: String,
        found: String,
    },

    /// A long-running job did not finish before the deadline. The job may still finish on
    /// the provider's side; nothing was written here.
    #[error(
        "`{backend}` job `{job}` did not finish within {waited:?}; try again later or raise `REFINERY_MEDIA_JOB_TIMEOUT`"
    )]
    JobTimedOut {
        backend: Backend,
        job: String,
        waited: Duration,
    },

    /// A long-running job ended with an error.
    #[error("`{backend}` job `{job}` failed: {message}")]
    JobFailed {
        backend: Backend,
        job: String,
        message: String,
    },

    /// The finished file could not be downloaded (an expired or revoked link).
    #[error(
        "could not download the result from `{backend}` (HTTP {status}); the link may have expired, generate again"
    )]
    Download { backend: Backend, status: u16 },

    /// The caller cancelled the call. Nothing was written.
    #[error("cancelled")]
    Cancelled,

    /// Reading video frames needs ffmpeg, which is missing or failed.
    #[error("video frames: {reason}")]
    Frames { reason: String },

    /// A local file operation failed.
    #[error("file operation failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::NoBackend { .. } => "no_backend",
            Error::MissingKey { .. } => "missing_key",
            Error::UnsupportedMode { .. } => "unsupported_mode",
            Error::OutsideWorkspace { .. } => "outside_workspace",
            Error::InputFile { .. } => "input_file",
            Error::SafetyBlock { .. } => "safety_block",
            Error::Http { status: 429, .. } => "rate_limited",
            Error::Http { status, .. } if *status >= 500 => "provider_unavailable",
            Error::Http { .. } => "provider_error",
            Error::Connection { .. } => "connection_failed",
            Error::MalformedResponse { .. } => "malformed_response",
            Error::BadPayload { .. } => "bad_payload",
            Error::JobTimedOut { .. } => "job_timed_out",
            Error::JobFailed { .. } => "job_failed",
            Error::Download { .. } => "download_failed",
            Error::Cancelled => "cancelled",
            Error::Frames { .. } => "frames_unavailable",
            Error::Io(_) => "io_error",
        }
    }

    /// Whether the same call may succeed if simply tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { status, .. } => *status == 429 || *status >= 500,
            Error::Connection { .. } | Error::JobTimedOut { .. } | Error::Download { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn invalid(argument: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            argument,
            reason: reason.into(),
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InputFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(backend: Backend, what: impl Into<String>) -> Self {
        Error::MalformedResponse {
            backend,
            what: what.into(),
        }
    }
}

/// Modes named in a [`Error::NoBackend`] message.
pub(crate) fn mode_name(mode: MediaMode) -> String {
    format!("{mode} generation")
}
