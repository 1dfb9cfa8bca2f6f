//! Refinery's role prompts, shared by the Claude Code plugin and the engine.
//!
//! The files in `plugin/agents/*.md` are the single source of every role's text: Claude Code
//! reads them as subagents (their YAML front matter is Claude-Code-specific), and the engine
//! uses the body after the front matter as the role's system prompt. This crate embeds those
//! files at compile time, so a build can never run with a prompt that differs from the
//! plugin's.
//!
//! This crate never reads files at run time, never formats prompts with task data and never
//! holds any logic about when a role runs — that is the engine's job.
//!
//! ```
//! use refinery_prompts::Role;
//!
//! let prompt = Role::RoundEvaluator.prompt();
//! assert!(prompt.starts_with("# Role: round evaluator"));
//! assert!(!prompt.contains("tools: Read"));
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod error;
mod front_matter;

pub use error::{Error, Result};
pub use front_matter::{FrontMatter, split_front_matter};

/// A role the loop can give to an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Judges a round against the criteria and writes the next round's plan.
    RoundEvaluator,
    /// Reads a round's execution trace and writes process lessons.
    ExecutionTraceAnalyzer,
    /// Carries out one specified piece of work.
    Builder,
    /// Compares two versions blind to catch regressions.
    RegressionGuard,
    /// Produces or inspects one media asset.
    MediaWorker,
    /// Writes the evaluation criteria before the first round.
    CriteriaWriter,
    /// In a multi-model run, judges the anonymous answers and votes or improves on one.
    AnswerJudge,
}

impl Role {
    /// Every role, in the order a round meets them.
    pub const ALL: [Role; 7] = [
        Role::CriteriaWriter,
        Role::Builder,
        Role::MediaWorker,
        Role::RegressionGuard,
        Role::RoundEvaluator,
        Role::ExecutionTraceAnalyzer,
        Role::AnswerJudge,
    ];

    /// The role's name as used in file names and in Claude Code (`refinery:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Role::RoundEvaluator => "round-evaluator",
            Role::ExecutionTraceAnalyzer => "execution-trace-analyzer",
            Role::Builder => "builder",
            Role::RegressionGuard => "regression-guard",
            Role::MediaWorker => "media-worker",
            Role::CriteriaWriter => "criteria-writer",
            Role::AnswerJudge => "answer-judge",
        }
    }

    /// The role for a name as [`Role::name`] spells it.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    /// The whole agent file, front matter included.
    pub fn source(self) -> &'static str {
        match self {
            Role::RoundEvaluator => include_str!("../../../plugin/agents/round-evaluator.md"),
            Role::ExecutionTraceAnalyzer => {
                include_str!("../../../plugin/agents/execution-trace-analyzer.md")
            }
            Role::Builder => include_str!("../../../plugin/agents/builder.md"),
            Role::RegressionGuard => include_str!("../../../plugin/agents/regression-guard.md"),
            Role::MediaWorker => include_str!("../../../plugin/agents/media-worker.md"),
            Role::CriteriaWriter => include_str!("../../../plugin/agents/criteria-writer.md"),
            Role::AnswerJudge => include_str!("../../../plugin/agents/answer-judge.md"),
        }
    }

    /// The role prompt: the body after the front matter, trimmed. A file without front
    /// matter is all body (the unit tests make sure every shipped file has one).
    pub fn prompt(self) -> &'static str {
        match split_front_matter(self.source()) {
            Ok((_, body)) => body,
            Err(_) => self.source().trim(),
        }
    }

    /// The parsed front matter of the agent file.
    pub fn front_matter(self) -> Result<FrontMatter<'static>> {
        split_front_matter(self.source()).map(|(front, _)| front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_agent_file_has_front_matter_naming_its_role() {
        for role in Role::ALL {
            let front = role.front_matter().unwrap();
            assert_eq!(front.get("name"), Some(role.name()), "{role:?}");
            assert!(
                front.get("description").is_some_and(|text| text.len() > 40),
                "{role:?} needs a real description"
            );
        }
    }

    #[test]
    fn prompts_are_bodies_without_claude_code_fields() {
        for role in Role::ALL {
            let prompt = role.prompt();
            assert!(prompt.starts_with("# Role: "), "{role:?}: {prompt:.40}");
            // Bodies may show a front matter *template* in a code block (the trace analyzer
            // does), so check for this file's own Claude Code fields rather than any `key:`.
            for (key, value) in role.front_matter().unwrap().fields() {
                let line = format!("{key}: {value}");
                assert!(!prompt.contains(&line), "{role:?} prompt leaks `{line}`");
            }
            assert!(
                prompt.len() > 1_000,
                "{role:?} prompt is too thin to be a role"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("critic"), None);
    }
}
