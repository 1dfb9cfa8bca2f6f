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
