//! The phases of a round, each a module with a typed input and a typed result.
//!
//! ```text
//!  build ──▶ verify ──▶ guard ──▶ submit ──▶ judge ──────────▶ decide ──▶ handoff
//!  builder   commands,  blind A/B,  core       panel of judges  core       learnings,
//!  turn      one fix    one repair, snapshot   ∥ trace analyzer rules      handoff.md
//!            turn       or revert
//! ```
//!
//! - [`build`]: one builder turn in the workspace; the fix and repair turns of `verify` and
//!   `guard` are builder turns too. How a builder edits files (tool calls, or a whole-file
//!   reply format for API builders) is chosen here and nowhere else.
//! - [`verify`]: the `--verify` commands, and the builder's one fix turn when one fails.
//! - [`guard`]: from round 2, the new version against the previous one, blind, in both
//!   orders; the core's rule says accept, repair once, or revert.
//! - [`submit`]: the core's snapshot of the round: the bytes the judges see.
//! - [`judge`]: the one panel implementation (judges in parallel, blind to each other, the
//!   panel's result with every judge's reply and the combined evaluation), used by `refine`
//!   and `evaluate`; the trace analyzer runs beside it.
//! - [`decide`]: records the round in the core and asks the core what follows.
//! - [`handoff`]: learnings and `handoff.md` for the next round's fresh builder.
//! - [`criteria`] (before round 1, when the user gave none) and [`ask`] (one question to a
//!   judging role, its reply parsed once into a type, retried once) serve the phases above.
//!
//! A phase gets a [`Context`] (what every phase may use) and its own input, and returns its
//! result. It never calls back into a sequencer ([`crate::Refiner`], [`crate::evaluate_once`]):
//! the order of phases, and `run.json`, are the sequencer's alone. Prompts come from
//! [`crate::briefs`], reply contracts from [`crate::outputs`], every read or restore of the
//! whole workspace goes through `crate::workspace`, and every decision through
//! `refinery-core`.

pub(crate) mod answer;
pub(crate) mod ask;
pub(crate) mod build;
pub(crate) mod criteria;
pub(crate) mod decide;
pub(crate) mod guard;
pub(crate) mod handoff;
pub(crate) mod judge;
pub(crate) mod submit;
pub(crate) mod verify;
pub(crate) mod vote;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use refinery_core::copies::Copies;
use refinery_core::{Session, StateDir, WorkspaceScope};
use tokio_util::sync::CancellationToken;

use crate::events::{Phase, RefineEvent};
use crate::meter::Meter;
use crate::pack::Scrubber;
use crate::record::millis;

/// What the driver supplies about the machine.
#[derive(Clone, Debug)]
pub struct Environment {
    /// The environment of `--verify` commands.
    pub env: BTreeMap<String, String>,
    /// Masks secrets in anything sent to a model or saved.
    pub scrubber: Scrubber,
    /// Longest one model call or agent process may take.
    pub call_timeout: Duration,
    /// Longest one `--verify` command may take.
    pub verify_timeout: Duration,
}

/// `on_event` as the shareable sink a [`Context`] carries: phases that run in parallel (judges,
/// agents) emit through one lock, so the caller's sink is never called twice at once.
pub(crate) fn shared_sink(
    on_event: &mut (dyn FnMut(&RefineEvent) + Send),
) -> impl Fn(&RefineEvent) + Sync + '_ {
    let sink = std::sync::Mutex::new(on_event);
    move |event: &RefineEvent| {
        let mut sink = sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (*sink)(event);
    }
}

/// What every phase may use: the store and session, the meter every model call passes, the
/// machine's environment (scrubber, timeouts), the cancel token and the event sink.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub store: &'a StateDir,
    pub session: &'a Session,
    /// Writes the run's copies for people (briefs, event records, handoffs) off this thread.
    pub copies: &'a Copies,
    /// What the run may snapshot and restore, fixed when it started.
    pub scope: &'a WorkspaceScope,
    pub meter: &'a Meter,
    pub env: &'a Environment,
    pub cancel: &'a CancellationToken,
    /// Where events go; shared by phases that run in parallel, hence `Fn + Sync`.
    pub events: &'a (dyn Fn(&RefineEvent) + Sync),
}

impl Context<'_> {
    /// The user's workspace.
    pub(crate) fn workspace(&self) -> &Path {
        self.store.workspace()
    }

    pub(crate) fn emit(&self, event: &RefineEvent) {
        (self.events)(event);
    }

    /// Announces a phase.
    pub(crate) fn phase(&self, round: u32, phase: Phase) {
        self.emit(&RefineEvent::Phase { round, phase });
    }

    /// Reports the totals after model calls.
    pub(crate) fn emit_spend(&self) {
        self.emit(&RefineEvent::Spend {
            spend: self.meter.spend(),
            elapsed_ms: millis(self.meter.elapsed()),
        });
    }
}
