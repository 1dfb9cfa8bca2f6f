//! Errors of model access. No variant ever holds a key value: provider messages pass
//! through [`crate::ApiKey::redact`] before they are stored here.

use std::path::PathBuf;
use std::time::Duration;

use crate::agent::AgentCli;
use crate::model::Provider;
use crate::price::{Cost, Usage};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model name without `provider/`. Returned by [`crate::ModelId::parse`]; the caller
    /// shows the hint listing providers.
    #[error(
        "invalid model name `{name}`: expected `provider/model`, e.g. `anthropic/claude-sonnet-4-5`"
    )]
    InvalidModelName { name: String },

    /// A `provider/` prefix we do not know.
    #[error(
        "unknown provider in `{name}`: use one of anthropic, openai, openai-chat, gemini, xai, openrouter, ollama, local"
    )]
    UnknownProvider { name: String },

    /// A base URL that is not `http(s)://host[:port][/path]`.
    #[error("invalid base URL `{url}`: expected `http://host:port` or `https://host/path`")]
    InvalidBaseUrl { url: String },

    /// `local/<model>` with no base URL given and no local server answering.
    #[error(
        "no local model server answers for `{model}`: start one with `refinery local serve` (after `refinery local setup`), or name yours with `--base-url http://127.0.0.1:PORT/v1` or `REFINERY_LOCAL_BASE_URL`"
    )]
    MissingBaseUrl { model: String },

    /// No key for a provider that needs one. Not retried; the CLI prints which variable to set.
    #[error("no API key for `{provider}`: set `{variable}` in the environment or a `.env` file")]
    MissingKey {
        provider: Provider,
        variable: &'static str,
    },

    /// The provider answered with an HTTP error that is not retried (4xx other than 408/429),
    /// or a retryable one after the retry budget ran out.
    #[error("`{provider}` answered HTTP {status}: {message}")]
    Http {
        provider: Provider,
        status: u16,
        message: String,
    },

    /// The connection failed or was reset before an answer arrived. Retried while budget remains.
    #[error("cannot reach `{provider}`: {message}")]
    Connection { provider: Provider, message: String },

    /// A streamed answer stopped before its end event. Retried while budget remains
    /// (streaming callers receive [`crate::StreamEvent::Retrying`] and discard partial text).
    #[error("stream from `{provider}` was cut before it finished: {message}")]
    StreamInterrupted { provider: Provider, message: String },

    /// One attempt exceeded the per-request timeout (no first byte, or an idle stream). Retried.
    #[error("`{provider}` timed out after {} without an answer (the per-request timeout; raise it with --call-timeout)", seconds(*timeout))]
    RequestTimeout {
        provider: Provider,
        timeout: Duration,
    },

    /// The overall deadline for the call passed. Not retried.
    #[error("{last} ({} within the call's {} deadline)", attempts_text(*attempts), seconds(*deadline))]
    DeadlineExceeded {
        deadline: Duration,
        attempts: u32,
        last: String,
    },

    /// Every attempt failed with a retryable error.
    #[error("{last} (gave up after {})", attempts_text(*attempts))]
    RetriesExhausted { attempts: u32, last: Box<Error> },

    /// The caller cancelled the call or run.
    #[error("cancelled")]
    Cancelled,

    /// The provider's answer could not be understood.
    #[error("unexpected answer from `{provider}`: {message}")]
    Protocol { provider: Provider, message: String },

    /// A JSON schema given for structured output is not a valid schema.
    #[error("invalid JSON schema: {message}")]
    InvalidSchema { message: String },

    /// The model's output did not validate against the schema, even after feeding the
    /// validation errors back `attempts - 1` times. `usage` and `cost` are what the provider
    /// reported for all those attempts: they were paid for, and a budget must count them.
    #[error("model output did not match the schema after {attempts} attempt(s): {message}")]
    InvalidStructuredOutput {
        attempts: u32,
        message: String,
        usage: Usage,
        cost: Cost,
    },

    /// The price table file could not be parsed.
    #[error("invalid price table `{path}`: {message}")]
    InvalidPriceTable { path: String, message: String },

    /// A `.env` file that could not be parsed.
    #[error("cannot parse `{path}` as a .env file: {message}")]
    DotEnv { path: PathBuf, message: String },

    #[error(transparent)]
    Io(#[from] std::io::Error),

    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The agent CLI is not on the PATH given to the runner.
    #[error("`{program}` not found on PATH: install it with `npm install -g {package}`", program = cli.program(), package = cli.npm_package())]
    AgentNotFound { cli: AgentCli },

    /// The agent CLI could not be started.
    #[error("cannot start `{program}`: {source}", program = cli.program())]
    AgentSpawn {
        cli: AgentCli,
        #[source]
        source: std::io::Error,
    },

    /// The agent run failed: the CLI reported an error (`is_error`, `turn.failed`, an error
    /// result) or exited non-zero. `message` is the CLI's own message.
    #[error("`{program}` run failed (exit code {exit}): {message}", program = cli.program(), exit = exit_code.map_or_else(|| "none".to_string(), |code| code.to_string()))]
    AgentFailed {
        cli: AgentCli,
        exit_code: Option<i32>,
        message: String,
    },

    /// A command-line argument for the agent CLI is longer than Refinery allows on argv
    /// (briefs go through stdin; this is an oversized system prompt or extra argument).
    /// Nothing was started. Linux refuses a single argument over 128 KiB, and `ps` shows
    /// argv to every user of the machine.
    #[error("an argument for `{program}` is {bytes} bytes, over the {limit}-byte limit for one command-line argument; shorten it (briefs are passed on stdin, so this is a system prompt or an extra argument)", program = cli.program())]
    ArgumentTooLong {
        cli: AgentCli,
        bytes: usize,
        limit: usize,
    },

    /// The agent run hit its wall-clock timeout; its whole process group was killed.
    #[error("`{program}` run exceeded its {timeout:?} timeout; its process group was killed", program = cli.program())]
    AgentTimeout { cli: AgentCli, timeout: Duration },
}

impl Error {
    /// Whether the retry loop may try the call again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connection { .. }
            | Error::StreamInterrupted { .. }
            | Error::RequestTimeout { .. } => true,
            Error::Http { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }
}

/// `1 attempt`, `4 attempts`.
pub(crate) fn attempts_text(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    }
}

/// A duration as people read it in a message: `300 s`, `0.4 s`.
pub(crate) fn seconds(duration: Duration) -> String {
    if duration >= Duration::from_secs(10) || duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// 408, 409 (Anthropic's "conflict, retry"), 429, every 5xx (529 = Anthropic overloaded).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        let cases = [
            (200, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (409, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (529, true),
        ];
        for (status, expected) in cases {
            assert_eq!(is_retryable_status(status), expected, "status {status}");
        }
    }
}
