//! Refinery's vocabulary and its rules, kept on disk.
//!
//! Sessions, criteria, checklist scores, verdicts, plateaus, improvement plans, snapshots and
//! votes live here, together with the store that persists them under a state folder
//! (`.refinery/` by default). Every decision the refinement loop makes — converge or iterate,
//! which criteria failed, which are stuck, whether a plan is bold enough, who wins a vote — is
//! a pure function in this crate, so the MCP servers, the CLI and the engine can never
//! disagree about it.
//!
//! This crate never touches the network, never spawns a process and never reads the clock:
//! callers pass the current time in, which keeps every rule deterministic and testable.
//!
//! ```
//! use refinery_core::{CriteriaSet, Cutoff, Verdict, checklist};
//! use serde_json::json;
//!
//! let criteria = CriteriaSet::from_json(&json!([
//!     {"id": "E1", "text": "Every requirement is met as asked", "category": "must"},
//!     {"id": "E2", "text": "It works when run, not only when read"},
//! ]))?;
//! let scores = checklist::parse_scores(&criteria, &json!({"E1": 8, "E2": {"score": 5, "reasoning": "crashes on empty input"}}))?;
//! let outcome = checklist::evaluate(&criteria, &scores, Cutoff::DEFAULT, 1, &[]);
//! assert_eq!(outcome.verdict, Verdict::Iterate);
//! assert_eq!(outcome.failed_criteria, vec!["E2"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod best_round;
pub mod budget;
pub mod budget_split;
pub mod checklist;
pub mod claude_session;
pub mod copies;
pub mod criteria;
mod error;
pub mod fsutil;
mod journal;
pub mod judgment;
pub mod latest;
mod objects;
mod packs;
pub mod plan;
pub mod restore;
pub mod rounds;
pub mod scope;
pub mod session;
pub mod snapshot;
mod statcache;
mod store;
pub mod transcript;
pub mod votes;
mod walk;

pub use budget::{LoopUsage, MeasuredSpend};
pub use checklist::{ChecklistOutcome, Score, ScoreError, Verdict};
pub use claude_session::{
    ClaudeBinding, ClaudeSessionId, ClaudeSessionStart, SessionSelector, StartSource,
};
pub use criteria::{Category, CriteriaSet, Criterion};
pub use error::{Error, PackDamage, Result};
pub use plan::{Impact, ImprovementPlan, PlanError};
pub use restore::{RestoreMode, RestoreReport};
pub use scope::{GitListing, OffLimits, OutOfScope, WorkspaceScope};
pub use session::{CostBudget, Cutoff, SessionId, SessionInfo, SessionSettings};
pub use snapshot::{ManifestEntry, ObjectStore, Snapshot};
pub use store::{
    AnswerRef, ChecklistRecord, CriteriaStored, PlanAccepted, ResetDone, Session, SessionPointer,
    SessionState, StateDir, Submission, rfc3339,
};
