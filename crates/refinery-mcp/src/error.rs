//! How core errors reach an MCP client.
//!
//! A failed tool call is a *tool* error (`isError: true`), not a JSON-RPC error, so the model
//! reads the message and can recover. The text is a JSON object compatible with MassGen's
//! `{"status": "error", "error": …}` plus a stable `code` and, where useful, the lists a caller
//! needs to fix its input (missing criteria, failed criteria, …). Never `Debug` output.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value, json};

use refinery_core::{Error, PlanError, ScoreError};

/// The error payload for `err`.
pub(crate) fn error_payload(err: &Error) -> Value {
    let mut body = Map::new();
    body.insert("status".to_owned(), json!("error"));
    body.insert("code".to_owned(), json!(err.code()));
    body.insert("error".to_owned(), json!(err.to_string()));
    match err {
        Error::Scores(score_error) => {
            if let Some(ids) = score_error.criteria_ids() {
                body.insert("criteria_ids".to_owned(), json!(ids));
            }
            if let ScoreError::Missing { missing, .. } = score_error {
                body.insert("missing".to_owned(), json!(missing));
            }
        }
        Error::Plan(plan_error) => {
            body.insert("valid".to_owned(), json!(false));
            match plan_error {
                PlanError::Coverage {
                    missing_criteria,
                    empty_criteria,
                    unknown_criteria,
                    failed_criteria,
                } => {
                    body.insert("missing_criteria".to_owned(), json!(missing_criteria));
                    body.insert("empty_criteria".to_owned(), json!(empty_criteria));
                    body.insert("unknown_criteria".to_owned(), json!(unknown_criteria));
                    body.insert("failed_criteria".to_owned(), json!(failed_criteria));
                }
                PlanError::AllIncremental { failed_criteria } => {
                    body.insert("failed_criteria".to_owned(), json!(failed_criteria));
                }
                // NoChecklist, NotIterating, NotAnObject, BadEntry: the message says it all.
                _ => {}
            }
        }
        Error::MaxRoundsReached {
            max_rounds, round, ..
        } => {
            body.insert("max_rounds".to_owned(), json!(max_rounds));
            body.insert("round".to_owned(), json!(round));
        }
        _ => {}
    }
    Value::Object(body)
}

/// A tool-error result carrying [`error_payload`] as text.
pub(crate) fn tool_error(err: &Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(error_payload(err).to_string())])
}

/// A tool-error result for a failure outside the core (a panicked worker thread).
pub(crate) fn internal_error(message: &str) -> CallToolResult {
    let body = json!({"status": "error", "code": "internal_error", "error": message});
    CallToolResult::error(vec![ContentBlock::text(body.to_string())])
}
