//! Refinery's refine loop: the roles, their output contracts, and the rounds that drive them.
//!
//! Each role (criteria writer, builder, round evaluator, regression guard, trace analyzer) is
//! data: a prompt file shared with the Claude Code plugin (`refinery-prompts`), an output
//! contract defined here ([`outputs`]), and a [`Backend`] that plays it. [`Refiner`] is the
//! only place that sequences a round; the decisions it acts on (verdicts, caps, plateaus,
//! regressions) are pure functions in `refinery-core`, and every model call passes the
//! [`meter::Meter`] so a cost budget is checked before money is spent, not after.
//!
//! This crate never prints (the binary renders its [`RefineEvent`]s) and never decides a
//! verdict itself.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod backend;
pub mod briefs;
mod error;
mod evaluate;
pub mod handoff;
pub mod meter;
pub mod outputs;
pub mod pack;
mod refine;
pub mod tools;
pub mod trace;
pub mod verify;

pub use backend::{AgentSetup, Backend, BackendSpec};
pub use error::{EngineError, Halt, OutputError, Result};
pub use evaluate::{EvaluateConfig, EvaluateReport, evaluate_once};
pub use refine::{
    CriteriaSource, CriterionLine, Environment, Phase, RefineConfig, RefineEvent, Refiner,
    RegressionReport, Roles, RoundSummary, RunRecord, RunStatus, RunSummary, load_run,
};
