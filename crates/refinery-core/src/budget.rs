//! The plugin's cost budget, enforced by the tools rather than left to a prompt.
//!
//! Inside Claude Code, the model's spending is recorded in the session transcripts, not seen
//! by Refinery's own code. So spending is measured from those transcripts: every Claude Code
//! session bound to the Refinery session (the first context and every context after a
//! clear), each with the subagent transcripts beside it, each API response counted once,
//! minus the responses that were already there when the loop began. The caller prices the
//! tokens (the price table lives in `refinery-llm`; `refinery_engine::plugin_spend` does it)
//! and this module decides, failing closed: a budget whose spending cannot be measured —
//! a model with no known price, a transcript that cannot be read, no transcript at all —
//! stops the loop just as a spent budget does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::session::{CostBudget, SessionId};
use crate::store::StateDir;
use crate::transcript::{self, MessageUsage, ModelUsage};

/// What a loop's Claude Code transcripts say it used, before pricing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopUsage {
    /// Tokens by model, each response counted once.
    pub by_model: BTreeMap<String, ModelUsage>,
    /// How many Claude Code sessions' transcripts were read.
    pub transcripts: usize,
    /// What could not be read, with the reason.
    pub problems: Vec<String>,
}

/// Spending measured for a session with a budget, priced by the caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeasuredSpend {
    /// US dollars, for the models that have a price.
    pub usd: f64,
    /// Models that used tokens but have no price.
    pub unpriced_models: BTreeSet<String>,
    /// How many Claude Code sessions' transcripts were read.
    pub transcripts: usize,
    /// What could not be read, with the reason.
    pub problems: Vec<String>,
}

/// The rule: a new round may start only while the measured spending is complete and below
/// the budget.
pub fn check(session: &SessionId, budget: CostBudget, spend: Option<&MeasuredSpend>) -> Result<()> {
    let unmeasured = |reason: String| Error::CostUnmeasured {
        session: session.to_string(),
        reason,
    };
    let Some(spend) = spend else {
        return Err(unmeasured(
            "this caller does not measure spending; only the Claude Code plugin can enforce a cost budget".to_owned(),
        ));
    };
    if !spend.problems.is_empty() {
        return Err(unmeasured(spend.problems.join("; ")));
    }
    if spend.transcripts == 0 {
        return Err(unmeasured(
            "no Claude Code transcript is bound to this session (the plugin's SessionStart hook records it)".to_owned(),
        ));
    }
    if !spend.unpriced_models.is_empty() {
        let models: Vec<&str> = spend.unpriced_models.iter().map(String::as_str).collect();
        return Err(unmeasured(format!(
            "no price is known for model(s) `{}`; add them to the price table or start the session without cost_budget",
            models.join("`, `")
        )));
    }
    if spend.usd >= budget.usd() {
        return Err(Error::CostBudgetReached {
            session: session.to_string(),
            spent_usd: spend.usd,
            budget_usd: budget.usd(),
        });
    }
    Ok(())
}

impl StateDir {
    /// The tokens the Claude Code sessions bound to `session` used since the loop began.
    pub fn loop_usage(&self, session: &SessionId) -> Result<LoopUsage> {
        let mut usage = LoopUsage::default();
        let mut messages: BTreeMap<String, MessageUsage> = BTreeMap::new();
        let mut before_loop: BTreeSet<String> = BTreeSet::new();
        for binding in self.claude_bindings()? {
            if binding.refinery_session.as_ref() != Some(session) {
                continue;
            }
            let Some(path) = &binding.transcript_path else {
                usage.problems.push(format!(
                    "Claude Code session `{}` has no transcript path (the plugin's SessionStart hook records it)",
                    binding.claude_session_id
                ));
                continue;
            };
            match transcript::read_messages(std::path::Path::new(path)) {
                Ok(found) => {
                    usage.transcripts += 1;
                    for (id, message) in found {
                        messages
                            .entry(id)
                            .and_modify(|seen| seen.usage = seen.usage.max(message.usage))
                            .or_insert(message);
                    }
                }
                Err(reason) => usage.problems.push(reason),
            }
            before_loop.extend(binding.messages_before_loop.iter().cloned());
        }
        usage.by_model = transcript::usage_by_model(
            messages
                .iter()
                .filter(|(id, _)| !before_loop.contains(*id))
                .map(|(_, message)| message),
        );
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude_session::{ClaudeSessionId, ClaudeSessionStart, StartSource};
    use crate::session::SessionSettings;
    use serde_json::json;
    use time::macros::datetime;

    fn response(id: &str, output: u64) -> String {
        json!({"type": "assistant", "message": {"id": id, "model": "claude-m",
            "usage": {"input_tokens": 10, "output_tokens": output}}})
        .to_string()
            + "\n"
    }

    #[test]
    fn loop_usage_sums_every_bound_context_once_and_skips_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join(".refinery"), dir.path());
        let now = datetime!(2026-11-24 01:00:00 UTC);
        let first = dir.path().join("first.jsonl");
        // Spent before the loop began: not the loop's.
        fs_err::write(&first, response("before", 1000)).unwrap();
        let start = |id: &str, source, transcript: &std::path::Path| ClaudeSessionStart {
            claude_session_id: ClaudeSessionId::parse(id).unwrap(),
            source,
            transcript_path: Some(transcript.display().to_string()),
            claude_pid: Some(42),
        };
        store
            .record_claude_session_start(&start("one", StartSource::Startup, &first), now)
            .unwrap();
        let session = store
            .init_session("loop", SessionSettings::default(), now)
            .unwrap();
        store
            .bind_claude_session(&ClaudeSessionId::parse("one").unwrap(), session.id(), now)
            .unwrap();
        fs_err::write(
            &first,
            response("before", 1000) + &response("m1", 5) + &response("m1", 7),
        )
        .unwrap();
        // After a clear: a new transcript, with a subagent's beside it; one response also
        // appears in both files and is counted once.
        let second = dir.path().join("second.jsonl");
        fs_err::write(&second, response("m2", 3)).unwrap();
        fs_err::create_dir_all(dir.path().join("second/subagents")).unwrap();
        fs_err::write(
            dir.path().join("second/subagents/agent-1.jsonl"),
            response("m3", 4) + &response("m2", 3),
        )
        .unwrap();
        store
            .record_claude_session_start(&start("two", StartSource::Clear, &second), now)
            .unwrap();
        let usage = store.loop_usage(session.id()).unwrap();
        assert_eq!(usage.transcripts, 2);
        assert!(usage.problems.is_empty(), "{:?}", usage.problems);
        let tokens = usage.by_model["claude-m"];
        assert_eq!((tokens.input, tokens.output), (30, 7 + 3 + 4));
    }

    fn spend(usd: f64, transcripts: usize, unpriced: &[&str], problems: &[&str]) -> MeasuredSpend {
        MeasuredSpend {
            usd,
            unpriced_models: unpriced.iter().map(|m| (*m).to_owned()).collect(),
            transcripts,
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn the_budget_rule_fails_closed() {
        let id = SessionId::parse("s").unwrap();
        let budget = CostBudget::from_usd(1.0).unwrap();
        let table: [(Option<MeasuredSpend>, &str); 7] = [
            (Some(spend(0.5, 1, &[], &[])), "ok"),
            (Some(spend(0.999_999, 2, &[], &[])), "ok"),
            (Some(spend(1.0, 1, &[], &[])), "cost_budget_reached"),
            (Some(spend(3.0, 1, &[], &[])), "cost_budget_reached"),
            (Some(spend(0.1, 1, &["claude-new"], &[])), "cost_unmeasured"),
            (
                Some(spend(0.1, 1, &[], &["transcript gone"])),
                "cost_unmeasured",
            ),
            (Some(spend(0.0, 0, &[], &[])), "cost_unmeasured"),
        ];
        for (measured, expected) in table {
            let code =
                check(&id, budget, measured.as_ref()).map_or_else(|err| err.code(), |()| "ok");
            assert_eq!(code, expected, "{measured:?}");
        }
        assert_eq!(
            check(&id, budget, None).unwrap_err().code(),
            "cost_unmeasured"
        );
    }
}
