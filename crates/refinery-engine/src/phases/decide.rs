//! The decide phase: the round's scores go into the core, which computes the verdict, and the
//! core's rules say what follows (converge, another round, a forced change of approach, or a
//! stop on a cap or plateau). Nothing here judges; it only records and asks.

use refinery_core::ChecklistOutcome;
use refinery_core::rounds::{LoopLimits, LoopProgress, NextStep, RoundEvaluation, decide_next};
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::events::RefineEvent;
use crate::meter::Meter;
use crate::outputs::Evaluation;
use crate::phases::Context;

/// Records a round in the core: its scores, or that it went unscored and why. This is the
/// moment the round counts as done (a resumed run starts after it). Returns the core's
/// outcome when the round was scored.
pub(crate) fn record(
    ctx: &Context<'_>,
    round: u32,
    evaluation: Option<&Evaluation>,
    unscored_reason: &str,
) -> Result<Option<ChecklistOutcome>, EngineError> {
    let now = OffsetDateTime::now_utc();
    let Some(evaluation) = evaluation else {
        ctx.session.record_unscored_round(unscored_reason, now)?;
        ctx.emit(&RefineEvent::Unscored {
            round,
            reason: unscored_reason.to_owned(),
        });
        return Ok(None);
    };
    let record = ctx
        .session
        .submit_checklist(&evaluation.checklist_scores(), None, now)?;
    ctx.emit(&RefineEvent::Scored {
        round,
        scores: record
            .outcome
            .items
            .iter()
            .map(|item| (item.id.clone(), item.score))
            .collect(),
        verdict: record.outcome.verdict,
    });
    Ok(Some(record.outcome))
}

/// The core's recorded outcome of `round`, if it was scored.
pub(crate) fn recorded_outcome(
    ctx: &Context<'_>,
    round: u32,
) -> Result<Option<ChecklistOutcome>, EngineError> {
    Ok(ctx
        .session
        .history()?
        .into_iter()
        .rev()
        .find(|record| record.outcome.round == round)
        .map(|record| record.outcome))
}

/// What the decision is made from.
pub(crate) struct DecideInput<'a> {
    pub round: u32,
    /// The round's outcome; `None` for an unscored round (it counts as iterate).
    pub outcome: Option<&'a ChecklistOutcome>,
    pub limits: &'a LoopLimits,
    /// The round whose decision already forced a change of approach, if any.
    pub forced_change_round: Option<u32>,
}

/// What follows a round, and the run's forced-change round after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub next: NextStep,
    /// Set to this round when its decision is the run's first forced change of approach.
    pub forced_change_round: Option<u32>,
}

/// Asks the core what follows `input.round`, given the money and time the meter has counted.
pub(crate) fn next(meter: &Meter, input: &DecideInput<'_>) -> Decision {
    let progress = LoopProgress {
        round: input.round,
        spent_usd: meter.spend().usd,
        elapsed: meter.elapsed(),
        // The round's own forced change (decided just now) must not count as "already
        // forced" when deciding after that same round.
        forced_change_round: input
            .forced_change_round
            .filter(|forced| *forced < input.round),
    };
    let evaluation = input
        .outcome
        .map_or(RoundEvaluation::Malformed, RoundEvaluation::Scored);
    let next = decide_next(input.limits, &progress, &evaluation);
    let forces_change = matches!(
        &next,
        NextStep::Continue { change_approach_for } if !change_approach_for.is_empty()
    );
    let forced_change_round = match input.forced_change_round {
        None if forces_change => Some(input.round),
        earlier => earlier,
    };
    Decision {
        next,
        forced_change_round,
    }
}
