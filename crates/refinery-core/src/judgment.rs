//! Fail-closed judgment: when a panel's word counts, when a criterion's score is accepted, what
//! keeps a round with passing scores from converging, and when a gain between rounds is no more
//! than the judges' own disagreement.
//!
//! Judges supply scores and evidence; these rules decide what they are worth. Every rule leans
//! the same way: when in doubt the round does **not** converge. A panel whose judges mostly
//! failed decides nothing ([`Quorum`]); a score whose evidence cites something the snapshot does
//! not hold is not accepted as passing ([`panel_criterion`]); passing scores do not converge a
//! round whose checks failed, whose deliverable is empty or unchanged, or that the regression
//! guard could not check ([`blocks`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::checklist::panel_score;

/// How many of a panel's judges gave usable output (a score with evidence for every criterion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// Judges asked.
    pub asked: usize,
    /// Judges whose output was usable.
    pub usable: usize,
}

impl Quorum {
    /// A panel of `asked` judges of which `usable` gave usable output.
    pub fn new(asked: usize, usable: usize) -> Self {
        Self { asked, usable }
    }

    /// Whether the panel may decide: a strict majority of its judges gave usable output. One
    /// judge of two is not enough, since the other might have disagreed; no panel is no quorum.
    pub fn is_met(self) -> bool {
        self.usable * 2 > self.asked
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.asked == 1 { "judge" } else { "judges" };
        write!(formatter, "{} of {} {noun} usable", self.usable, self.asked)
    }
}

/// The lowest and highest score a panel's judges gave one criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    /// The lowest score.
    pub low: u8,
    /// The highest score.
    pub high: u8,
}

impl Spread {
    /// The spread of `scores`; `None` when there are none.
    pub fn of(scores: &[u8]) -> Option<Self> {
        Some(Self {
            low: *scores.iter().min()?,
            high: *scores.iter().max()?,
        })
    }

    /// How far apart the judges were, in points.
    pub fn width(self) -> u8 {
        self.high.saturating_sub(self.low)
    }
}

/// One judge's score on one criterion, and whether its evidence held up (every file and line
/// it cites is in the snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JudgeScore {
    /// The score, 0–10.
    pub score: u8,
    /// Whether every citation in its evidence resolved.
    pub evidence_holds: bool,
}

/// What a panel's scores on one criterion come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanelCriterion {
    /// The score that decides: the lower median of the judges whose evidence held up, or of
    /// all judges when too few did (for the record only: such a score is not accepted).
    pub score: u8,
    /// Whether the score may count as passing: a majority of the judges asked backed it with
    /// evidence that held up.
    pub accepted: bool,
    /// The judges' spread on this criterion (every judge that scored it).
    pub spread: Spread,
}

/// Combines the scores that `asked` judges gave one criterion. A score whose evidence cites
/// something the snapshot does not hold does not count toward the decision; when fewer than a
/// majority of the judges asked remain, the criterion's score is not accepted as passing.
/// `None` when no judge scored it.
pub fn panel_criterion(asked: usize, scores: &[JudgeScore]) -> Option<PanelCriterion> {
    let all: Vec<u8> = scores.iter().map(|judge| judge.score).collect();
    let held: Vec<u8> = scores
        .iter()
        .filter(|judge| judge.evidence_holds)
        .map(|judge| judge.score)
        .collect();
    let accepted = Quorum::new(asked, held.len()).is_met();
    let score = panel_score(if accepted { &held } else { &all })?;
    Some(PanelCriterion {
        score,
        accepted,
        spread: Spread::of(&all)?,
    })
}

/// Why a round whose scores all pass still does not converge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "block", rename_all = "snake_case")]
pub enum Block {
    /// A `--verify` command failed.
    VerifyFailed {
        /// The commands that failed.
        commands: Vec<String>,
    },
    /// The snapshot holds no file: there is nothing to have passed.
    EmptyDeliverable,
    /// The deliverable is byte for byte the one an earlier round delivered, and that round's
    /// evaluation asked for changes: the same bytes cannot go from failing to passing.
    Unchanged {
        /// The round whose deliverable this is.
        since_round: u32,
    },
    /// The regression guard's output stayed unusable, so nobody checked that the round did
    /// not make things worse.
    GuardUnchecked,
}

impl fmt::Display for Block {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Block::VerifyFailed { commands } => {
                let quoted: Vec<String> = commands.iter().map(|cmd| format!("`{cmd}`")).collect();
                write!(formatter, "a check failed ({})", quoted.join(", "))
            }
            Block::EmptyDeliverable => formatter.write_str("the deliverable holds no file"),
            Block::Unchanged { since_round } => write!(
                formatter,
                "the deliverable is unchanged since round {since_round}, whose evaluation asked for changes"
            ),
            Block::GuardUnchecked => {
                formatter.write_str("the regression guard could not check the round")
            }
        }
    }
}

/// What the regression guard made of a round, as far as convergence is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuardCheck {
    /// No guard ran (round 1, or a one-shot evaluation).
    #[default]
    NotRun,
    /// The guard compared the round with the previous one and acted on what it found.
    Checked,
    /// The guard's output stayed unusable (or a repair could not be checked again).
    Unchecked,
}

/// The facts about a round that its scores do not show, gathered by the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundFacts {
    /// `--verify` commands whose last run failed.
    pub failed_checks: Vec<String>,
    /// Files in the round's snapshot.
    pub files: usize,
    /// The latest earlier round whose deliverable is byte for byte this one, if that round's
    /// evaluation asked for changes (a criterion below the bar).
    pub unchanged_since_failing_round: Option<u32>,
    /// What the regression guard made of it.
    pub guard: GuardCheck,
}

/// Everything that keeps a round from converging whatever its scores, in a fixed order.
pub fn blocks(facts: &RoundFacts) -> Vec<Block> {
    let mut blocks = Vec::new();
    if !facts.failed_checks.is_empty() {
        blocks.push(Block::VerifyFailed {
            commands: facts.failed_checks.clone(),
        });
    }
    if facts.files == 0 {
        blocks.push(Block::EmptyDeliverable);
    }
    if let Some(since_round) = facts.unchanged_since_failing_round {
        blocks.push(Block::Unchanged { since_round });
    }
    if facts.guard == GuardCheck::Unchecked {
        blocks.push(Block::GuardUnchecked);
    }
    blocks
}

/// What the checklist rules apply on top of the scores: criteria whose score is not accepted
/// as passing (with why), and what blocks convergence outright.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// Criterion id → why its score is not accepted (its evidence cites what is not there).
    pub refused: BTreeMap<String, String>,
    /// Round-level reasons not to converge.
    pub blocks: Vec<Block>,
}

/// Whether a criterion's gain between two scored rounds is smaller than the judges' own
/// disagreement: `current` is higher than `previous` by fewer points than the wider of the
/// two rounds' spreads. Such a gain may be noise, and the summary says so. A drop or no
/// change is not a gain; a single judge has no spread, so its gains are never marked.
pub fn within_disagreement(
    previous: u8,
    current: u8,
    previous_spread: Option<Spread>,
    current_spread: Option<Spread>,
) -> bool {
    let widest = [previous_spread, current_spread]
        .into_iter()
        .flatten()
        .map(Spread::width)
        .max()
        .unwrap_or(0);
    current > previous && current - previous < widest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panel_decides_only_with_a_majority_of_usable_judges() {
        let cases = [
            (0, 0, false, "0 of 0 judges usable"),
            (1, 0, false, "0 of 1 judge usable"),
            (1, 1, true, "1 of 1 judge usable"),
            (2, 1, false, "1 of 2 judges usable"),
            (2, 2, true, "2 of 2 judges usable"),
            (3, 1, false, "1 of 3 judges usable"),
            (3, 2, true, "2 of 3 judges usable"),
            (4, 2, false, "2 of 4 judges usable"),
            (4, 3, true, "3 of 4 judges usable"),
        ];
        for (asked, usable, met, text) in cases {
            let quorum = Quorum::new(asked, usable);
            assert_eq!(quorum.is_met(), met, "{asked}/{usable}");
            assert_eq!(quorum.to_string(), text);
        }
    }

    #[test]
    fn a_score_counts_only_when_a_majority_backs_it_with_evidence_that_holds() {
        type Case = (usize, Vec<JudgeScore>, Option<(u8, bool, Spread)>);
        let held = |score| JudgeScore {
            score,
            evidence_holds: true,
        };
        let broken = |score| JudgeScore {
            score,
            evidence_holds: false,
        };
        let spread = |low, high| Spread { low, high };
        let cases: [Case; 7] = [
            (1, vec![], None),
            (1, vec![held(9)], Some((9, true, spread(9, 9)))),
            // One judge citing a missing file: its 10 is recorded but not accepted.
            (1, vec![broken(10)], Some((10, false, spread(10, 10)))),
            // Two judges, one broken: the other alone is no majority.
            (
                2,
                vec![held(8), broken(10)],
                Some((8, false, spread(8, 10))),
            ),
            (2, vec![held(8), held(10)], Some((8, true, spread(8, 10)))),
            // Three judges, one broken: the two that hold decide (lower median of 7 and 9).
            (
                3,
                vec![held(9), broken(10), held(7)],
                Some((7, true, spread(7, 10))),
            ),
            // Three asked, one gave no usable reply at all, one broken: no majority.
            (
                3,
                vec![held(9), broken(10)],
                Some((9, false, spread(9, 10))),
            ),
        ];
        for (asked, scores, expected) in cases {
            let got = panel_criterion(asked, &scores)
                .map(|criterion| (criterion.score, criterion.accepted, criterion.spread));
            assert_eq!(got, expected, "{asked} asked: {scores:?}");
        }
    }

    #[test]
    fn what_blocks_a_round_from_converging() {
        let clean = RoundFacts {
            files: 3,
            guard: GuardCheck::Checked,
            ..RoundFacts::default()
        };
        let cases = [
            (clean.clone(), vec![]),
            (
                RoundFacts {
                    guard: GuardCheck::NotRun,
                    ..clean.clone()
                },
                vec![],
            ),
            (
                RoundFacts {
                    failed_checks: vec!["npm test".to_owned()],
                    ..clean.clone()
                },
                vec![Block::VerifyFailed {
                    commands: vec!["npm test".to_owned()],
                }],
            ),
            (
                RoundFacts {
                    files: 0,
                    ..clean.clone()
                },
                vec![Block::EmptyDeliverable],
            ),
            (
                RoundFacts {
                    unchanged_since_failing_round: Some(2),
                    ..clean.clone()
                },
                vec![Block::Unchanged { since_round: 2 }],
            ),
            (
                RoundFacts {
                    guard: GuardCheck::Unchecked,
                    ..clean.clone()
                },
                vec![Block::GuardUnchecked],
            ),
            (
                RoundFacts {
                    failed_checks: vec!["a".to_owned(), "b".to_owned()],
                    files: 0,
                    unchanged_since_failing_round: None,
                    guard: GuardCheck::Unchecked,
                },
                vec![
                    Block::VerifyFailed {
                        commands: vec!["a".to_owned(), "b".to_owned()],
                    },
                    Block::EmptyDeliverable,
                    Block::GuardUnchecked,
                ],
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(blocks(&facts), expected, "{facts:?}");
        }
        assert_eq!(
            Block::VerifyFailed {
                commands: vec!["npm test".to_owned()]
            }
            .to_string(),
            "a check failed (`npm test`)"
        );
    }

    #[test]
    fn a_gain_smaller_than_the_judges_spread_is_within_their_disagreement() {
        let spread = |low, high| Some(Spread { low, high });
        let cases = [
            // A single judge has no spread: no gain is ever marked.
            (5, 6, None, None, false),
            // Gain 1, judges 3 apart this round.
            (6, 7, None, spread(5, 8), true),
            // Gain 1, judges 3 apart in the previous round.
            (6, 7, spread(4, 7), spread(7, 7), true),
            // Gain equal to the spread is not smaller than it.
            (6, 8, spread(6, 8), spread(8, 8), false),
            // Gain 3, spread 2: a real gain.
            (5, 8, spread(5, 7), spread(8, 9), false),
            // A drop or no change is not a gain.
            (8, 6, spread(6, 9), spread(2, 9), false),
            (7, 7, spread(3, 9), spread(3, 9), false),
        ];
        for (previous, current, before, after, within) in cases {
            assert_eq!(
                within_disagreement(previous, current, before, after),
                within,
                "{previous} → {current}, {before:?} / {after:?}"
            );
        }
    }
}
