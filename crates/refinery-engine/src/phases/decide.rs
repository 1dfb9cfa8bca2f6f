//! The decide phase: the round's scores go into the core, which computes the verdict, and the
//! core's rules say what follows (converge, another round, a forced change of approach, or a
//! stop on a cap or plateau). Nothing here judges; it only records and asks.

use std::collections::BTreeMap;

use refinery_core::ChecklistOutcome;
use refinery_core::judgment::{Gates, Spread};
use refinery_core::rounds::{LoopLimits, LoopProgress, NextStep, RoundEvaluation, decide_next};
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::events::RefineEvent;
use crate::meter::Meter;
use crate::outputs::Evaluation;
use crate::phases::Context;

/// What a round's judgment came to, as the core records it.
pub(crate) struct Judgment<'a> {
    /// The evaluation the round is scored by; `None` leaves it unscored.
    pub evaluation: Option<&'a Evaluation>,
    /// Why it is unscored (when it is).
    pub unscored_reason: &'a str,
    /// Criteria whose scores are not accepted, and what blocks convergence.
    pub gates: &'a Gates,
    /// For a panel: each criterion's spread across the judges (reported, not decided on).
    pub spread: &'a BTreeMap<String, Spread>,
}

/// Records a round in the core: its scores with the checks made in code (refused criteria,
/// blocks), or that it went unscored and why. This is the moment the round counts as done (a
/// resumed run starts after it). Returns the core's outcome when the round was scored.
pub(crate) fn record(
    ctx: &Context<'_>,
    round: u32,
    judgment: &Judgment<'_>,
) -> Result<Option<ChecklistOutcome>, EngineError> {
    let now = OffsetDateTime::now_utc();
    let Some(evaluation) = judgment.evaluation else {
        ctx.session
            .record_unscored_round(judgment.unscored_reason, now)?;
        ctx.emit(&RefineEvent::Unscored {
            round,
            reason: judgment.unscored_reason.to_owned(),
        });
        return Ok(None);
    };
    let record =
        ctx.session
            .submit_gated_checklist(&evaluation.checklist_scores(), judgment.gates, now)?;
    ctx.emit(&RefineEvent::Scored {
        round,
        scores: scores(&record.outcome),
        verdict: record.outcome.verdict,
        blocked_by: record.outcome.blocked_by.clone(),
        refused: refused(&record.outcome),
        spread: judgment.spread.clone(),
    });
    Ok(Some(record.outcome))
}

/// The criteria of a recorded outcome whose score was not accepted, with why.
pub(crate) fn refused(outcome: &ChecklistOutcome) -> BTreeMap<String, String> {
    let items = outcome.items.iter();
    items
        .filter_map(|item| Some((item.id.clone(), item.refused.clone()?)))
        .collect()
}

/// The score per criterion of a recorded outcome.
pub(crate) fn scores(outcome: &ChecklistOutcome) -> BTreeMap<String, u8> {
    let items = outcome.items.iter();
    items.map(|item| (item.id.clone(), item.score)).collect()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pretty_assertions::assert_eq;
    use refinery_core::Cutoff;
    use refinery_core::checklist::{self, RoundScores};
    use refinery_core::rounds::StopReason;
    use serde_json::json;

    use super::*;
    use crate::meter::Spend;

    /// Round 3's outcome by the core's own rules; E2 stuck at 5 since round 1 when `stuck`.
    fn outcome(e1: u8, stuck: bool) -> ChecklistOutcome {
        let criteria = crate::outputs::tests::criteria();
        let e2 = if stuck { 5 } else { 9 };
        let scores = checklist::parse_scores(&criteria, &json!({"E1": e1, "E2": e2})).unwrap();
        let history: Vec<RoundScores> = (1..=2)
            .map(|round| RoundScores {
                round,
                scores: [("E1".to_owned(), e1), ("E2".to_owned(), e2)].into(),
            })
            .collect();
        checklist::evaluate(&criteria, &scores, Cutoff::DEFAULT, 3, &history)
    }

    #[test]
    fn the_first_forced_change_is_remembered_and_a_second_plateau_stops() {
        let limits = LoopLimits::default();
        let meter = Meter::new(limits, Spend::default(), Duration::ZERO);
        let stuck = outcome(9, true);
        let decide = |round, outcome, forced_change_round| {
            next(
                &meter,
                &DecideInput {
                    round,
                    outcome,
                    limits: &limits,
                    forced_change_round,
                },
            )
        };
        let change = NextStep::Continue {
            change_approach_for: vec!["E2".to_owned()],
        };
        let cases = [
            // A plateau forces a change, and this round is remembered as the one that did.
            (decide(3, Some(&stuck), None), change.clone(), Some(3)),
            // Deciding again after that same round (a resume) gives the same answer.
            (decide(3, Some(&stuck), Some(3)), change.clone(), Some(3)),
            // Still stuck after the forced change: stop.
            (
                decide(4, Some(&stuck), Some(3)),
                NextStep::Stop {
                    reason: StopReason::Plateau,
                },
                Some(3),
            ),
            // An unscored round counts as iterate and forces nothing.
            (
                decide(2, None, None),
                NextStep::Continue {
                    change_approach_for: Vec::new(),
                },
                None,
            ),
            (
                decide(2, Some(&outcome(9, false)), None),
                NextStep::Converged,
                None,
            ),
        ];
        for (decision, next_step, forced_change_round) in cases {
            assert_eq!(
                decision,
                Decision {
                    next: next_step,
                    forced_change_round
                }
            );
        }
    }
}
