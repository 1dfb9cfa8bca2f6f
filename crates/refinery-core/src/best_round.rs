//! Which finished round a run delivers when it stops without converging.
//!
//! The last round is not always the best one: a run stopped by a cap or a plateau may have
//! scored better a round or two earlier, and a round cut short by a budget was never evaluated
//! at all. So the choice is made here, from the recorded scores only:
//!
//! 1. the scored round with the most criteria passing wins (what the user asked for counts
//!    before how close the rest came);
//! 2. then the highest sum of scores;
//! 3. then the latest round (the newer work, which the judges saw as no worse);
//! 4. an unscored round never wins (no evidence, no pass); with no scored round at all there
//!    is no best round and the caller leaves the workspace as it is.

use crate::checklist::ChecklistOutcome;

/// What the choice needs of a scored round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundScore {
    /// How many criteria met the cutoff.
    pub passing: u32,
    /// The sum of the criteria's scores.
    pub total: u32,
}

impl RoundScore {
    /// The score of a round's recorded checklist outcome.
    pub fn of(outcome: &ChecklistOutcome) -> Self {
        let passing = outcome.items.iter().filter(|item| item.passed).count();
        Self {
            passing: u32::try_from(passing).unwrap_or(u32::MAX),
            total: outcome.items.iter().map(|item| u32::from(item.score)).sum(),
        }
    }
}

/// One finished round, as the choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundStanding {
    /// The round (1-based).
    pub round: u32,
    /// Its score; `None` when the round was unscored.
    pub score: Option<RoundScore>,
}

/// The best round by the rules above, or `None` when no round was scored.
pub fn best_round(rounds: &[RoundStanding]) -> Option<u32> {
    rounds
        .iter()
        .filter_map(|standing| {
            let score = standing.score?;
            Some((score.passing, score.total, standing.round))
        })
        .max()
        .map(|(_, _, round)| round)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(round: u32, passing: u32, total: u32) -> RoundStanding {
        RoundStanding {
            round,
            score: Some(RoundScore { passing, total }),
        }
    }

    fn unscored(round: u32) -> RoundStanding {
        RoundStanding { round, score: None }
    }

    #[test]
    fn the_choice_follows_the_rules_in_order() {
        let table: Vec<(&str, Vec<RoundStanding>, Option<u32>)> = vec![
            ("nothing finished", vec![], None),
            ("nothing scored", vec![unscored(1), unscored(2)], None),
            (
                "a peak in round 2 beats a worse round 3",
                vec![scored(1, 1, 18), scored(2, 2, 21), scored(3, 1, 15)],
                Some(2),
            ),
            (
                "more criteria passing beats a higher sum",
                vec![scored(1, 1, 27), scored(2, 2, 20)],
                Some(2),
            ),
            (
                "more criteria passing beats a higher sum, earlier too",
                vec![scored(1, 2, 20), scored(2, 1, 27)],
                Some(1),
            ),
            (
                "equal passing: the higher sum",
                vec![scored(1, 2, 24), scored(2, 2, 22)],
                Some(1),
            ),
            (
                "a full tie goes to the latest",
                vec![scored(1, 2, 22), scored(2, 2, 22), scored(3, 1, 30)],
                Some(2),
            ),
            (
                "an unscored round never wins, even the latest",
                vec![scored(1, 0, 3), unscored(2)],
                Some(1),
            ),
        ];
        for (name, rounds, expected) in table {
            assert_eq!(best_round(&rounds), expected, "{name}");
        }
    }

    #[test]
    fn a_round_score_counts_passing_items_and_sums_scores() {
        use crate::checklist;
        use crate::criteria::CriteriaSet;
        use crate::session::Cutoff;
        use serde_json::json;
        let criteria = CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "Every requirement is met as asked"},
            {"id": "E2", "text": "It works when run, not only when read"},
            {"id": "E3", "text": "The copy is clear and specific"},
        ]))
        .unwrap();
        let scores =
            checklist::parse_scores(&criteria, &json!({"E1": 9, "E2": 4, "E3": 8})).unwrap();
        let outcome = checklist::evaluate(&criteria, &scores, Cutoff::DEFAULT, 1, &[]);
        assert_eq!(
            RoundScore::of(&outcome),
            RoundScore {
                passing: 2,
                total: 21
            }
        );
    }
}
