//! Refinery's refine loop: the roles, their output contracts, and the rounds that drive them.
//!
//! Each role (criteria writer, builder, round evaluator, regression guard, trace analyzer) is
//! data: a prompt file shared with the Claude Code plugin (`refinery-prompts`), an output
//! contract defined here ([`outputs`], where every reply is parsed once into a type), and a
//! [`Backend`] that plays it.
//!
//! A round is a row of phases, each its own module with a typed input and result
//! (`phases/`): `build` → `verify` → `guard` → `submit` → `judge` (the one evaluator panel,
//! with the trace analyzer beside it) → `decide` → `handoff`. Phases take a small context
//! (store and session, meter, environment, cancel token, event sink) and never call back into
//! a sequencer. [`Refiner`] (`refine`) and [`evaluate_once`] (`evaluate`) are short
//! sequencers over them. The decisions they act on (verdicts, caps, plateaus, regressions,
//! panel scores) are pure functions in `refinery-core`, and every model call passes the
//! [`meter::Meter`] so a cost budget is checked before money is spent, not after.
//!
//! This crate never prints (the binary renders its [`RefineEvent`]s) and never decides a
//! verdict itself.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod backend;
pub mod briefs;
mod error;
mod evaluate;
mod events;
pub mod git_view;
pub mod handoff;
pub mod meter;
pub mod outputs;
pub mod pack;
mod phases;
pub mod plugin_spend;
mod record;
mod refine;
mod run;
pub mod tools;
pub mod trace;
pub mod verify;
pub mod whole_file;
mod workspace;

pub use backend::{AgentSetup, Backend, BackendSpec, BuilderFormat};
pub use error::{EngineError, Halt, OutputError, Result};
pub use evaluate::{EvaluateConfig, EvaluateReport, evaluate_once};
pub use events::{CriterionLine, Phase, RefineEvent};
pub use phases::Environment;
pub use record::{
    BestRound, CriteriaSource, GuardAction, RegressionReport, RoundSummary, RoundVerdict,
    RunRecord, RunStatus, RunSummary, load_run, run_started,
};
pub use refine::{RefineConfig, Refiner, Roles, run_in_progress};
pub use run::{
    AnswerRecord, AnswerScores, AssessmentRecord, ConsensusRecord, ConsensusRun, ConsensusStatus,
    ConsensusSummary, JudgmentOutcome, JudgmentRecord, MODELS, RoundTally, RunConfig, WinnerRecord,
    load_consensus,
};
