//! Refinery's refine loop: the roles, their output contracts, and what one round hands the
//! next.
//!
//! Each role (criteria writer, builder, round evaluator, regression guard, trace analyzer) is
//! data: a prompt file shared with the Claude Code plugin, an output contract defined here,
//! and a backend. This crate is the only place that sequences a round; the decisions it acts
//! on (verdicts, caps, plateaus, regressions) are pure functions in `refinery-core`.
//!
//! Status: the output contracts ([`outputs`]) and the handoff ([`handoff`]) are built and
//! tested; the round sequencing that drives models through `refinery-llm` is not built yet.
//!
//! This crate never prints (the binary renders its events) and never decides a verdict
//! itself.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod error;
pub mod handoff;
pub mod outputs;

pub use error::{OutputError, Result};
