//! The Anthropic API's server-side review of tool calls (`dangerous_tool_use`), which Claude
//! Code's "auto" permission mode relies on.
//!
//! Why the fake serves it: in auto mode (which Claude Code 2.1.330 switches to after "Yes,
//! clear context" on its plan dialog) every tool call that is not a read or an edit in the
//! working folder waits for the API's verdict on it. Without one, Claude Code stops the turn
//! with "Auto mode can't check actions in this session". The wire shape, as Claude Code
//! 2.1.330 sends and parses it:
//!
//! - the request opts in with the beta header `dangerous-tool-use-2026-09-03` **and** a
//!   top-level `safeguards` array holding `{"type": "dangerous_tool_use",
//!   "classifier_context": {…}}`;
//! - the answer carries `safeguard_results`: `[{"type": "dangerous_tool_use", "status":
//!   {"type": "available", "tool_uses": {"<tool_use id>": {"type": "evaluated", "outcome":
//!   "not_flagged" | "flagged", "explanation": …}}}}]`, in the final `message_delta`'s
//!   `delta` of a stream, or as a top-level key of a non-streaming reply.
//!
//! Strictness: the fake answers only a request that opts in both ways, only on Anthropic
//! Messages, and only for a turn that makes tool calls (every id of the turn, none other).
//! The verdict is the reviewing model's judgement; tests choose it with
//! [`crate::FakeModelServer::set_safeguard_verdict`] (default: not flagged).

use serde_json::{Value, json};

use crate::reply::Turn;
use crate::server::RecordedRequest;
use crate::wire::Protocol;

/// The beta header value a request opts in with.
pub const SAFEGUARD_BETA: &str = "dangerous-tool-use-2026-09-03";

/// What the server's review says about every tool call of a turn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SafeguardVerdict {
    /// The calls may run.
    #[default]
    NotFlagged,
    /// The calls are blocked, with the reviewer's explanation.
    Flagged { explanation: String },
}

/// Whether `request` asked for the review: the beta header and the `safeguards` entry both.
pub(crate) fn requested(request: &RecordedRequest) -> bool {
    let beta = request
        .header("anthropic-beta")
        .is_some_and(|value| value.split(',').any(|token| token.trim() == SAFEGUARD_BETA));
    let asked = request.body["safeguards"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(|e| e["type"] == "dangerous_tool_use"));
    request.protocol == Some(Protocol::AnthropicMessages) && beta && asked
}

/// The `safeguard_results` value for `turn`, or `None` when it makes no tool call.
pub(crate) fn results(turn: &Turn, verdict: &SafeguardVerdict) -> Option<Value> {
    if turn.tool_calls.is_empty() {
        return None;
    }
    let judged = match verdict {
        SafeguardVerdict::NotFlagged => json!({"type": "evaluated", "outcome": "not_flagged"}),
        SafeguardVerdict::Flagged { explanation } => {
            json!({"type": "evaluated", "outcome": "flagged", "explanation": explanation})
        }
    };
    let tool_uses: serde_json::Map<String, Value> = turn
        .tool_calls
        .iter()
        .map(|call| (call.id.clone(), judged.clone()))
        .collect();
    Some(json!([{"type": "dangerous_tool_use",
                 "status": {"type": "available", "tool_uses": tool_uses}}]))
}
