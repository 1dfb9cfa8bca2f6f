//! The refine loop's decisions between rounds: converge, continue (possibly with a forced
//! change of approach), or stop on a cap — and what the regression guard's blind comparisons
//! mean. Pure functions; the engine only carries them out.
//!
//! Rules (see the loop issue and `docs/USAGE.md` once the loop lands):
//! - converge iff every criterion met the cutoff **and** at least `min_rounds` rounds ran;
//! - an evaluation that stayed malformed after retries counts as iterate, never converge;
//! - a plateau first earns one forced change-of-approach round; a plateau after that stops;
//! - `max_rounds`, the cost budget and the time budget stop the loop; the budget is checked
//!   *before* a call that could exceed it ([`can_afford`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checklist::{ChecklistOutcome, Verdict};

/// Caps a run must honour.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopLimits {
    /// Never run more rounds than this.
    pub max_rounds: u32,
    /// Never converge before this many rounds.
    pub min_rounds: u32,
    /// Stop before spending more than this, in USD.
    pub cost_budget_usd: Option<f64>,
    /// Stop once this much wall-clock time has passed.
    pub time_budget: Option<Duration>,
}

impl Default for LoopLimits {
    fn default() -> Self {
        Self {
            max_rounds: 5,
            min_rounds: 1,
            cost_budget_usd: None,
            time_budget: None,
        }
    }
}

/// Where a run stands after a round was evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopProgress {
    /// The round just evaluated (1-based).
    pub round: u32,
    /// Money spent so far, in USD (known costs only).
    pub spent_usd: f64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// The round in which a change of approach was already forced, if any.
    pub forced_change_round: Option<u32>,
}

/// What one round's evaluation produced.
#[derive(Clone, Debug, PartialEq)]
pub enum RoundEvaluation<'a> {
    /// A valid checklist outcome.
    Scored(&'a ChecklistOutcome),
    /// The evaluator's output could not be used, even after retries.
    Malformed,
}

/// Why a run stopped without converging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_rounds` rounds ran.
    MaxRounds,
    /// The next round could overspend the cost budget.
    CostBudget,
    /// The time budget is used up.
    TimeBudget,
    /// Failing criteria stayed stuck even after a forced change of approach.
    Plateau,
}

/// What the loop does next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum NextStep {
    /// The work meets the bar: stop and deliver.
    Converged,
    /// Run another round.
    Continue {
        /// The next builder must abandon the current approach for these criteria.
        change_approach_for: Vec<String>,
    },
    /// Stop without converging; the best deliverable so far is kept.
    Stop {
        /// Why.
        reason: StopReason,
    },
}

/// Decides what follows a round.
///
/// Order matters: a converged round converges even on its last allowed round; caps are checked
/// before plateaus so a capped run never reports a plateau it had no round left to act on.
pub fn decide_next(
    limits: &LoopLimits,
    progress: &LoopProgress,
    evaluation: &RoundEvaluation<'_>,
) -> NextStep {
    let outcome = match evaluation {
        RoundEvaluation::Scored(outcome) => Some(*outcome),
        RoundEvaluation::Malformed => None,
    };
    let all_passed = outcome.is_some_and(|outcome| outcome.verdict == Verdict::Converge);
    if all_passed && progress.round >= limits.min_rounds {
        return NextStep::Converged;
    }
    if progress.round >= limits.max_rounds {
        return NextStep::Stop {
            reason: StopReason::MaxRounds,
        };
    }
    if limits
        .time_budget
        .is_some_and(|budget| progress.elapsed >= budget)
    {
        return NextStep::Stop {
            reason: StopReason::TimeBudget,
        };
    }
    if limits
        .cost_budget_usd
        .is_some_and(|budget| progress.spent_usd >= budget)
    {
        return NextStep::Stop {
            reason: StopReason::CostBudget,
        };
    }
    let plateaued: Vec<String> = outcome
        .map(|outcome| {
            outcome
                .plateaued_criteria
                .iter()
                .map(|plateau| plateau.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if plateaued.is_empty() {
        return NextStep::Continue {
            change_approach_for: Vec::new(),
        };
    }
    match progress.forced_change_round {
        // The forced change already happened and the criteria are still stuck.
        Some(forced) if forced < progress.round => NextStep::Stop {
            reason: StopReason::Plateau,
        },
        _ => NextStep::Continue {
            change_approach_for: plateaued,
        },
    }
}

/// Whether a call estimated to cost `next_call_usd` may start without breaking the budget.
/// An unknown estimate is only allowed while nothing is budgeted.
pub fn can_afford(limits: &LoopLimits, spent_usd: f64, next_call_usd: Option<f64>) -> bool {
    match (limits.cost_budget_usd, next_call_usd) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(budget), Some(estimate)) => spent_usd + estimate <= budget,
    }
}

/// A blind comparison's preference on one criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preference {
    /// The candidate shown as A is better.
    A,
    /// The candidate shown as B is better.
    B,
    /// No meaningful difference.
    Tie,
}

/// The regression guard's two blind comparisons: in `previous_first` the previous round is
/// shown as A and the new one as B; in `current_first` the other way round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindComparisons {
    /// Per criterion, with previous = A.
    pub previous_first: BTreeMap<String, Preference>,
    /// Per criterion, with current = A.
    pub current_first: BTreeMap<String, Preference>,
}

/// Criteria on which the new round is worse in *both* orders (so position bias cannot explain
/// it). A criterion missing from either comparison is not counted.
pub fn regressed_criteria(comparisons: &BlindComparisons) -> Vec<String> {
    let ids: BTreeSet<&String> = comparisons
        .previous_first
        .keys()
        .chain(comparisons.current_first.keys())
        .collect();
    ids.into_iter()
        .filter(|id| {
            comparisons.previous_first.get(*id) == Some(&Preference::A)
                && comparisons.current_first.get(*id) == Some(&Preference::B)
        })
        .cloned()
        .collect()
}

/// What to do about a round after the regression guard looked at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RegressionAction {
    /// No regression: submit the new round.
    Accept,
    /// Give the builder one bounded repair aimed at these criteria, then compare again.
    Repair {
        /// The criteria that got worse.
        criteria: Vec<String>,
    },
    /// Still worse after the repair: deliver the previous round's snapshot instead.
    Revert {
        /// The criteria that got worse.
        criteria: Vec<String>,
    },
}

/// Accept, repair once, or revert.
pub fn regression_action(
    comparisons: &BlindComparisons,
    repair_attempted: bool,
) -> RegressionAction {
    let criteria = regressed_criteria(comparisons);
    if criteria.is_empty() {
        RegressionAction::Accept
    } else if repair_attempted {
        RegressionAction::Revert { criteria }
    } else {
        RegressionAction::Repair { criteria }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checklist::{ChecklistOutcome, Plateau, Verdict};

    fn outcome(verdict: Verdict, plateaued: &[&str]) -> ChecklistOutcome {
        ChecklistOutcome {
            verdict,
            round: 1,
            cutoff: 7,
            explanation: String::new(),
            items: Vec::new(),
            failed_criteria: Vec::new(),
            failing_criteria_detail: Vec::new(),
            plateaued_criteria: plateaued
                .iter()
                .map(|id| Plateau {
                    id: (*id).to_owned(),
                    scores: vec![5, 5, 5],
                })
                .collect(),
            blocked_by: Vec::new(),
        }
    }

    fn progress(round: u32) -> LoopProgress {
        LoopProgress {
            round,
            spent_usd: 0.0,
            elapsed: Duration::from_secs(10),
            forced_change_round: None,
        }
    }

    fn cont(ids: &[&str]) -> NextStep {
        NextStep::Continue {
            change_approach_for: ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }

    fn stop(reason: StopReason) -> NextStep {
        NextStep::Stop { reason }
    }

    #[test]
    fn decision_table() {
        let converge = outcome(Verdict::Converge, &[]);
        let iterate = outcome(Verdict::Iterate, &[]);
        let stuck = outcome(Verdict::Iterate, &["E2"]);
        let limits = LoopLimits::default();
        let min3 = LoopLimits {
            min_rounds: 3,
            ..limits
        };
        let cost = LoopLimits {
            cost_budget_usd: Some(1.0),
            ..limits
        };
        let time = LoopLimits {
            time_budget: Some(Duration::from_secs(5)),
            ..limits
        };
        let spent = LoopProgress {
            spent_usd: 1.0,
            ..progress(2)
        };
        let forced_earlier = LoopProgress {
            forced_change_round: Some(2),
            ..progress(3)
        };
        let forced_now = LoopProgress {
            forced_change_round: Some(3),
            ..progress(3)
        };
        let scored = RoundEvaluation::Scored;
        let cases: Vec<(
            &str,
            &LoopLimits,
            LoopProgress,
            RoundEvaluation<'_>,
            NextStep,
        )> = vec![
            (
                "converges",
                &limits,
                progress(1),
                scored(&converge),
                NextStep::Converged,
            ),
            (
                "converges on the last round",
                &limits,
                progress(5),
                scored(&converge),
                NextStep::Converged,
            ),
            (
                "min rounds not reached",
                &min3,
                progress(2),
                scored(&converge),
                cont(&[]),
            ),
            (
                "min rounds reached",
                &min3,
                progress(3),
                scored(&converge),
                NextStep::Converged,
            ),
            (
                "iterates",
                &limits,
                progress(1),
                scored(&iterate),
                cont(&[]),
            ),
            (
                "max rounds",
                &limits,
                progress(5),
                scored(&iterate),
                stop(StopReason::MaxRounds),
            ),
            (
                "malformed never converges",
                &limits,
                progress(1),
                RoundEvaluation::Malformed,
                cont(&[]),
            ),
            (
                "malformed at the cap stops",
                &limits,
                progress(5),
                RoundEvaluation::Malformed,
                stop(StopReason::MaxRounds),
            ),
            (
                "budget spent",
                &cost,
                spent,
                scored(&iterate),
                stop(StopReason::CostBudget),
            ),
            (
                "time up",
                &time,
                progress(2),
                scored(&iterate),
                stop(StopReason::TimeBudget),
            ),
            (
                "first plateau forces a change",
                &limits,
                progress(3),
                scored(&stuck),
                cont(&["E2"]),
            ),
            (
                "plateau after the forced change stops",
                &limits,
                forced_earlier,
                scored(&stuck),
                stop(StopReason::Plateau),
            ),
            (
                "same round as the forced change",
                &limits,
                forced_now,
                scored(&stuck),
                cont(&["E2"]),
            ),
            (
                "cap beats plateau",
                &limits,
                progress(5),
                scored(&stuck),
                stop(StopReason::MaxRounds),
            ),
        ];
        for (name, limits, progress, evaluation, expected) in cases {
            assert_eq!(
                decide_next(limits, &progress, &evaluation),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn budget_is_checked_before_the_call() {
        let none = LoopLimits::default();
        let one = LoopLimits {
            cost_budget_usd: Some(1.0),
            ..none
        };
        assert!(can_afford(&none, 100.0, None));
        assert!(can_afford(&one, 0.5, Some(0.5)));
        assert!(!can_afford(&one, 0.5, Some(0.51)));
        assert!(
            !can_afford(&one, 0.0, None),
            "an unknown cost cannot be budgeted"
        );
    }

    #[test]
    fn regression_table() {
        use Preference::{A, B, Tie};
        let make = |previous_first: &[(&str, Preference)], current_first: &[(&str, Preference)]| {
            BlindComparisons {
                previous_first: previous_first
                    .iter()
                    .map(|(id, p)| ((*id).to_owned(), *p))
                    .collect(),
                current_first: current_first
                    .iter()
                    .map(|(id, p)| ((*id).to_owned(), *p))
                    .collect(),
            }
        };
        // previous_first: A = previous. current_first: A = current.
        let cases: Vec<(BlindComparisons, Vec<&str>)> = vec![
            (make(&[("E1", A)], &[("E1", B)]), vec!["E1"]), // previous wins both orders
            (make(&[("E1", B)], &[("E1", A)]), vec![]),     // current wins both orders
            (make(&[("E1", A)], &[("E1", A)]), vec![]),     // position bias: A both times
            (make(&[("E1", Tie)], &[("E1", B)]), vec![]),   // worse in one order only
            (
                make(&[("E1", A), ("E2", A)], &[("E1", B), ("E2", Tie)]),
                vec!["E1"],
            ),
            (make(&[("E1", A)], &[]), vec![]), // missing in one order
        ];
        for (comparisons, expected) in cases {
            assert_eq!(
                regressed_criteria(&comparisons),
                expected,
                "{comparisons:?}"
            );
        }
        let worse = make(&[("E1", A)], &[("E1", B)]);
        assert_eq!(
            regression_action(&worse, false),
            RegressionAction::Repair {
                criteria: vec!["E1".into()]
            }
        );
        assert_eq!(
            regression_action(&worse, true),
            RegressionAction::Revert {
                criteria: vec!["E1".into()]
            }
        );
        assert_eq!(
            regression_action(&BlindComparisons::default(), true),
            RegressionAction::Accept
        );
    }
}
