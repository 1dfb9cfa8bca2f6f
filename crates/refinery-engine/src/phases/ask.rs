//! One question to a judging role (criteria writer, evaluator, guard, trace analyzer), with
//! its reply parsed once into a type.
//!
//! A reply that breaks the contract is asked for once more, in a fresh call that carries only
//! the parser's complaint; if it is still unusable the caller gets [`JudgeReply::Unusable`]
//! and decides what that means (an unscored round, an unchecked guard, no lessons). A judge
//! that times out is unusable too (not asked again). A halt or any other backend failure is
//! an `Err`, never an unusable reply.

use std::fmt::Write as _;
use std::path::Path;

use refinery_prompts::Role;
use serde_json::Value;

use crate::backend::{Access, Backend, CallSpec, role_label};
use crate::error::{EngineError, OutputError};
use crate::phases::Context;

/// How many times a judge is asked before its output counts as unusable.
pub(crate) const JUDGE_ATTEMPTS: u32 = 2;

/// The fixed parts of one judge call.
pub(crate) struct Ask<'a> {
    pub backend: &'a Backend,
    pub role: Role,
    /// The JSON schema the reply must follow.
    pub schema: Value,
    /// Where the judge runs (a copy of the deliverable for agent CLIs).
    pub workdir: &'a Path,
    /// Share of the remaining budget this call may take (parallel calls split it).
    pub budget_share: f64,
}

/// What a judge's reply came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JudgeReply<T> {
    /// Parsed and valid.
    Usable(T),
    /// Still breaking the contract after [`JUDGE_ATTEMPTS`] attempts.
    Unusable {
        /// The parser's last complaint.
        problem: String,
    },
}

impl<T> JudgeReply<T> {
    pub(crate) fn usable(&self) -> Option<&T> {
        match self {
            JudgeReply::Usable(value) => Some(value),
            JudgeReply::Unusable { .. } => None,
        }
    }

    pub(crate) fn into_usable(self) -> Option<T> {
        match self {
            JudgeReply::Usable(value) => Some(value),
            JudgeReply::Unusable { .. } => None,
        }
    }

    pub(crate) fn problem(&self) -> Option<&str> {
        match self {
            JudgeReply::Usable(_) => None,
            JudgeReply::Unusable { problem } => Some(problem),
        }
    }
}

/// Asks `call.backend` for JSON and parses it with `parse`, retrying once with the parser's
/// complaint (a fresh call: the complaint is the only thing carried over).
pub(crate) async fn ask<T>(
    ctx: &Context<'_>,
    call: &Ask<'_>,
    prompt: String,
    parse: impl Fn(&str) -> Result<T, OutputError>,
) -> Result<JudgeReply<T>, EngineError> {
    let mut problem: Option<String> = None;
    for _ in 0..JUDGE_ATTEMPTS {
        let mut brief = prompt.clone();
        if let Some(problem) = &problem {
            let _ = write!(
                brief,
                "\n\n## Your previous reply could not be used\n\n{problem}\n\nReply again, with every required part, as exactly one JSON object.\n"
            );
        }
        let reply = call
            .backend
            .call(
                CallSpec {
                    role: call.role,
                    prompt: brief,
                    workdir: call.workdir,
                    access: Access::Inspect,
                    schema: Some(call.schema.clone()),
                    max_tokens: 8_192,
                    budget_share: call.budget_share,
                    timeout: ctx.env.call_timeout,
                    forbidden: Vec::new(),
                    off_limits: refinery_core::OffLimits::default(),
                    scrubber: &ctx.env.scrubber,
                },
                ctx.meter,
                ctx.cancel,
                &mut |_| {},
            )
            .await;
        let text = match reply {
            Ok(reply) => reply.text,
            // A judge that does not answer in time is a judge without usable output, like one
            // that answers garbage: the round goes on unscored or unchecked, the run does not
            // fail. Asking again would only wait as long once more.
            Err(error) if error.is_timeout() => {
                tracing::warn!(role = role_label(call.role), %error, "judge timed out");
                return Ok(JudgeReply::Unusable {
                    problem: format!("the {} timed out: {error}", role_label(call.role)),
                });
            }
            Err(error) => match error.invalid_output() {
                Some(message) => {
                    tracing::warn!(role = role_label(call.role), %message, "reply off its schema");
                    problem = Some(format!(
                        "the {} reply does not follow the schema: {message}",
                        role_label(call.role)
                    ));
                    continue;
                }
                None => return Err(error),
            },
        };
        match parse(&text) {
            Ok(value) => return Ok(JudgeReply::Usable(value)),
            Err(error) => {
                tracing::warn!(role = role_label(call.role), %error, "unusable output");
                problem = Some(if text.trim().is_empty() {
                    format!("the {} returned nothing", role_label(call.role))
                } else {
                    error.to_string()
                });
            }
        }
    }
    Ok(JudgeReply::Unusable {
        problem: problem.unwrap_or_default(),
    })
}
