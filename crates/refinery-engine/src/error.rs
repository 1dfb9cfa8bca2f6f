//! Errors of the engine.

/// Why a role's output could not be used.
///
/// Returned by the `parse_*` functions. The loop feeds the message back to the model for a
/// bounded number of retries; if the output is still unusable, the round counts as
/// `iterate` (never `converge`) and the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Not JSON at all, or not the expected shape.
    #[error("the {role} output is not valid JSON of the required shape: {reason}")]
    Shape {
        /// The role whose output failed.
        role: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// Valid JSON that breaks a rule of the contract.
    #[error("the {role} output breaks the contract: {reason}")]
    Contract {
        /// The role whose output failed.
        role: &'static str,
        /// Which rule, and how to fix it.
        reason: String,
    },
}

/// `Result` with [`OutputError`].
pub type Result<T, E = OutputError> = std::result::Result<T, E>;

/// Why a run stopped part-way through a round without an error: a cap that must not be
/// crossed, or the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Halt {
    /// The next call could have crossed `--cost-budget`.
    CostBudget,
    /// `--time-budget` is used up.
    TimeBudget,
    /// Ctrl-C (or the caller's cancellation token).
    Cancelled,
}

impl std::fmt::Display for Halt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Halt::CostBudget => "the next call could exceed the cost budget",
            Halt::TimeBudget => "the time budget is used up",
            Halt::Cancelled => "interrupted",
        })
    }
}

/// Everything that can stop the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The run cannot start as configured; the message says what to change.
    #[error("{0}")]
    Setup(String),
    /// A cap or the user stopped the run; state is saved.
    #[error("{0}")]
    Halted(Halt),
    /// A role's output stayed unusable after retries (where that is fatal: criteria writing).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Reading or writing the session failed.
    #[error(transparent)]
    Store(#[from] refinery_core::Error),
    /// A model or agent CLI failed after its retries.
    /// (Not an error `source`: the message already says it, and a chain would repeat it.)
    #[error("the {role} ({backend}): {error}")]
    Backend {
        /// The role being played.
        role: &'static str,
        /// Which backend.
        backend: String,
        /// What went wrong.
        error: refinery_llm::Error,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl EngineError {
    /// Whether a model call or agent process ran out of time (`--call-timeout`, or a request's
    /// own timeout): for a judge that means unusable output, not a failed run.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            EngineError::Backend {
                error: refinery_llm::Error::RequestTimeout { .. }
                    | refinery_llm::Error::DeadlineExceeded { .. }
                    | refinery_llm::Error::AgentTimeout { .. },
                ..
            }
        )
    }
}

impl EngineError {
    /// What was wrong with a reply that never followed its schema (the model answered, but
    /// not in the required shape): for a judge, unusable output to retry, not a failed run.
    pub fn invalid_output(&self) -> Option<&str> {
        match self {
            EngineError::Backend {
                error: refinery_llm::Error::InvalidStructuredOutput { message, .. },
                ..
            } => Some(message),
            _ => None,
        }
    }
}

impl From<Halt> for EngineError {
    fn from(halt: Halt) -> Self {
        EngineError::Halted(halt)
    }
}
