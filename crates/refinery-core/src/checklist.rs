//! Checklist scoring: strict score parsing, the verdict, and plateau detection.
//!
//! These are pure functions. The model supplies numbers and reasoning; whether the work
//! converges, which criteria failed, and which ones are stuck are decided here.
//!
//! Deliberate differences from MassGen (see `docs/compat.md`): scores must be whole numbers
//! from 0 to 10 (MassGen truncated floats, counted booleans and strings as 0 and accepted 80),
//! unknown criterion ids are errors (MassGen ignored them), and only *failing* criteria can
//! plateau (MassGen flagged passing criteria such as 9 → 9 → 9 too).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::criteria::{CriteriaSet, as_object, kind};
use crate::judgment::{Block, Gates};
use crate::session::Cutoff;

/// A score from 0 to 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Score(u8);

impl Score {
    /// The highest score.
    pub const MAX: u8 = 10;

    /// A score if `value` is within 0–10.
    pub fn new(value: u8) -> Option<Self> {
        (value <= Self::MAX).then_some(Self(value))
    }

    /// The numeric value.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Score {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, String> {
        Self::new(value).ok_or_else(|| format!("score {value} is outside 0–10"))
    }
}

impl From<Score> for u8 {
    fn from(value: Score) -> Self {
        value.0
    }
}

/// One criterion's score with the evaluator's reasoning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreEntry {
    /// The score.
    pub score: Score,
    /// Why, in the evaluator's words (may be empty).
    pub reasoning: String,
}

/// Why a set of scores was refused. Each variant names the criterion involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreError {
    /// `scores` was not an object keyed by criterion id.
    #[error("scores must be an object mapping criterion ids to scores 0–10, got {found}")]
    NotAnObject {
        /// What was sent instead.
        found: &'static str,
    },
    /// Criteria without a score.
    #[error("missing score for {}; every criterion must be scored (ids: {})", missing.join(", "), criteria_ids.join(", "))]
    Missing {
        /// The criteria that were not scored.
        missing: Vec<String>,
        /// Every criterion id, in order.
        criteria_ids: Vec<String>,
    },
    /// A score for a criterion that does not exist.
    #[error("`{id}` is not a criterion of this session (ids: {}); score only these", criteria_ids.join(", "))]
    UnknownCriterion {
        /// The unknown id.
        id: String,
        /// Every criterion id, in order.
        criteria_ids: Vec<String>,
    },
    /// A number outside 0–10 or not whole.
    #[error("score for `{id}` is {value}; use a whole number from 0 to 10")]
    OutOfRange {
        /// The criterion.
        id: String,
        /// The value as sent.
        value: String,
    },
    /// A value of the wrong type (boolean, string, list, null, object without `score`).
    #[error(
        "score for `{id}` is {found}; use a whole number 0–10 or {{\"score\": n, \"reasoning\": \"...\"}}"
    )]
    WrongType {
        /// The criterion.
        id: String,
        /// What was sent instead.
        found: String,
    },
}

impl ScoreError {
    /// The criterion ids, for error payloads that list them.
    pub fn criteria_ids(&self) -> Option<&[String]> {
        match self {
            Self::Missing { criteria_ids, .. } | Self::UnknownCriterion { criteria_ids, .. } => {
                Some(criteria_ids)
            }
            Self::NotAnObject { .. } | Self::OutOfRange { .. } | Self::WrongType { .. } => None,
        }
    }
}

/// Parses and validates `scores` against `criteria`: every criterion scored, nothing else,
/// each a whole number 0–10 or `{score, reasoning}`. A JSON string holding such an object is
/// accepted too, since some agent CLIs serialise tool arguments twice.
pub fn parse_scores(
    criteria: &CriteriaSet,
    scores: &Value,
) -> Result<BTreeMap<String, ScoreEntry>, ScoreError> {
    let map = as_object(scores).map_err(|found| ScoreError::NotAnObject { found })?;
    let criteria_ids = criteria.ids();
    if let Some(unknown) = map.keys().find(|id| criteria.get(id).is_none()) {
        return Err(ScoreError::UnknownCriterion {
            id: unknown.clone(),
            criteria_ids,
        });
    }
    let missing: Vec<String> = criteria_ids
        .iter()
        .filter(|id| !map.contains_key(id.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ScoreError::Missing {
            missing,
            criteria_ids,
        });
    }
    let mut parsed = BTreeMap::new();
    for id in &criteria_ids {
        let value = &map[id.as_str()];
        let (score_value, reasoning) = match value {
            Value::Object(entry) => {
                let reasoning = match entry.get("reasoning") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                };
                match entry.get("score") {
                    Some(score) => (score, reasoning),
                    None => {
                        return Err(ScoreError::WrongType {
                            id: id.clone(),
                            found: "an object without `score`".to_owned(),
                        });
                    }
                }
            }
            other => (other, String::new()),
        };
        let score = parse_one(id, score_value)?;
        parsed.insert(id.clone(), ScoreEntry { score, reasoning });
    }
    Ok(parsed)
}

fn parse_one(id: &str, value: &Value) -> Result<Score, ScoreError> {
    let Value::Number(number) = value else {
        return Err(ScoreError::WrongType {
            id: id.to_owned(),
            found: kind(value).to_owned(),
        });
    };
    let out_of_range = || ScoreError::OutOfRange {
        id: id.to_owned(),
        value: number.to_string(),
    };
    // 7.0 is a whole number a model may well send; 6.99 is not and must not become 6.
    let whole = if let Some(int) = number.as_u64() {
        int
    } else if let Some(float) = number.as_f64() {
        if float.fract() != 0.0 || float < 0.0 {
            return Err(out_of_range());
        }
        float as u64
    } else {
        return Err(out_of_range());
    };
    u8::try_from(whole)
        .ok()
        .and_then(Score::new)
        .ok_or_else(out_of_range)
}

/// The checklist decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every criterion met the cutoff: stop refining.
    Converge,
    /// At least one criterion is below the cutoff: plan and build another round.
    Iterate,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Converge => "converge",
            Self::Iterate => "iterate",
        }
    }
}

/// A scored criterion as reported back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    /// Criterion id.
    pub id: String,
    /// Criterion text.
    pub text: String,
    /// The score given.
    pub score: u8,
    /// Whether it met the cutoff.
    pub passed: bool,
    /// The evaluator's reasoning.
    #[serde(default)]
    pub reasoning: String,
    /// Why the score is not accepted as passing whatever its value (its evidence cites a file
    /// or line the snapshot does not hold); `None` when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A failing criterion with its text, so the next step does not need to look it up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingCriterion {
    /// Criterion id.
    pub id: String,
    /// Criterion text.
    pub text: String,
    /// The score given.
    pub score: u8,
}

/// A failing criterion that has stopped improving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plateau {
    /// Criterion id.
    pub id: String,
    /// The last three scores, oldest first, the current one last.
    pub scores: Vec<u8>,
}

/// Scores of one earlier round, as plateau detection needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundScores {
    /// The round.
    pub round: u32,
    /// Score per criterion id.
    pub scores: BTreeMap<String, u8>,
}

/// The outcome of one checklist submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistOutcome {
    /// converge or iterate.
    pub verdict: Verdict,
    /// The round these scores belong to.
    pub round: u32,
    /// The pass mark used.
    pub cutoff: u8,
    /// A sentence for the agent: what happened and what to do next.
    pub explanation: String,
    /// Every criterion with its score.
    pub items: Vec<ChecklistItem>,
    /// Ids of criteria below the cutoff, in criteria order.
    pub failed_criteria: Vec<String>,
    /// The same criteria with their texts and scores.
    pub failing_criteria_detail: Vec<FailingCriterion>,
    /// Failing criteria that gained at most one point in each of the last two rounds.
    pub plateaued_criteria: Vec<Plateau>,
    /// Why the round does not converge although every score passes (a failed check, an empty
    /// or unchanged deliverable, an unchecked round); empty when nothing blocks it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<Block>,
}

/// One criterion's score from a panel of judges who scored blind: the lower median.
///
/// The median keeps one outlier (a lenient or a hostile judge) from deciding alone; taking the
/// lower of the two middle scores keeps an even panel conservative, so two judges converge only
/// when both would. `None` for an empty panel.
pub fn panel_score(scores: &[u8]) -> Option<u8> {
    let mut sorted = scores.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len().checked_sub(1)? / 2;
    sorted.get(middle).copied()
}

/// How many earlier rounds plateau detection looks back over.
pub const PLATEAU_WINDOW: usize = 2;

/// Scores a round: converge iff every criterion meets the cutoff, else iterate with the
/// failing criteria; plateaus are computed from `history` (earlier rounds, oldest first).
pub fn evaluate(
    criteria: &CriteriaSet,
    scores: &BTreeMap<String, ScoreEntry>,
    cutoff: Cutoff,
    round: u32,
    history: &[RoundScores],
) -> ChecklistOutcome {
    evaluate_gated(criteria, scores, cutoff, round, history, &Gates::default())
}

/// [`evaluate`] with the checks made in code applied on top of the scores: a criterion in
/// `gates.refused` does not pass whatever its score (it fails, and can plateau, like any
/// failing criterion), and any of `gates.blocks` keeps the verdict at iterate.
pub fn evaluate_gated(
    criteria: &CriteriaSet,
    scores: &BTreeMap<String, ScoreEntry>,
    cutoff: Cutoff,
    round: u32,
    history: &[RoundScores],
    gates: &Gates,
) -> ChecklistOutcome {
    let items: Vec<ChecklistItem> = criteria
        .as_slice()
        .iter()
        .map(|criterion| {
            let entry = scores.get(&criterion.id);
            let score = entry.map_or(0, |entry| entry.score.get());
            let refused = gates.refused.get(&criterion.id).cloned();
            ChecklistItem {
                id: criterion.id.clone(),
                text: criterion.text.clone(),
                score,
                passed: score >= cutoff.get() && refused.is_none(),
                reasoning: entry
                    .map(|entry| entry.reasoning.clone())
                    .unwrap_or_default(),
                refused,
            }
        })
        .collect();
    let failing_criteria_detail: Vec<FailingCriterion> = items
        .iter()
        .filter(|item| !item.passed)
        .map(|item| FailingCriterion {
            id: item.id.clone(),
            text: item.text.clone(),
            score: item.score,
        })
        .collect();
    let failed_criteria: Vec<String> = failing_criteria_detail
        .iter()
        .map(|item| item.id.clone())
        .collect();
    let current: BTreeMap<String, u8> = items
        .iter()
        .map(|item| (item.id.clone(), item.score))
        .collect();
    let plateaued_criteria = find_plateaued(&failed_criteria, &current, history);
    let verdict = if failed_criteria.is_empty() && gates.blocks.is_empty() {
        Verdict::Converge
    } else {
        Verdict::Iterate
    };
    let mut explanation = explain(
        verdict,
        &items,
        cutoff,
        &failed_criteria,
        &plateaued_criteria,
    );
    explain_gates(&mut explanation, &items, &gates.blocks);
    ChecklistOutcome {
        verdict,
        round,
        cutoff: cutoff.get(),
        explanation,
        items,
        failed_criteria,
        failing_criteria_detail,
        plateaued_criteria,
        blocked_by: gates.blocks.clone(),
    }
}

/// Says which scores were not accepted and what blocked convergence, after the verdict's own
/// explanation.
fn explain_gates(text: &mut String, items: &[ChecklistItem], blocks: &[Block]) {
    for item in items {
        if let Some(reason) = &item.refused {
            let _ = write!(
                text,
                " {} scored {} but is not accepted as passing: {reason}.",
                item.id, item.score
            );
        }
    }
    if !blocks.is_empty() {
        let reasons: Vec<String> = blocks.iter().map(ToString::to_string).collect();
        let _ = write!(
            text,
            " The round cannot converge while {}.",
            reasons.join("; and ")
        );
    }
}

/// A failing criterion is plateaued when, in each of the last [`PLATEAU_WINDOW`] rounds, it
/// gained at most one point (a drop counts as no gain). Passing criteria never plateau.
pub fn find_plateaued(
    failing: &[String],
    current: &BTreeMap<String, u8>,
    history: &[RoundScores],
) -> Vec<Plateau> {
    if history.len() < PLATEAU_WINDOW {
        return Vec::new();
    }
    let window = &history[history.len() - PLATEAU_WINDOW..];
    failing
        .iter()
        .filter_map(|id| {
            let mut series: Vec<u8> = window
                .iter()
                .map(|round| round.scores.get(id).copied())
                .collect::<Option<Vec<u8>>>()?;
            series.push(*current.get(id)?);
            let stuck = series
                .windows(2)
                .all(|pair| u16::from(pair[1]) <= u16::from(pair[0]) + 1);
            stuck.then(|| Plateau {
                id: id.clone(),
                scores: series,
            })
        })
        .collect()
}

fn explain(
    verdict: Verdict,
    items: &[ChecklistItem],
    cutoff: Cutoff,
    failed: &[String],
    plateaued: &[Plateau],
) -> String {
    let total = items.len();
    let cutoff = cutoff.get();
    match verdict {
        Verdict::Converge => format!(
            "All {total} criteria passed (every score >= {cutoff}). The quality bar is met. Verdict: converge."
        ),
        Verdict::Iterate if failed.is_empty() => format!(
            "All {total} criteria scored at or above {cutoff}, but checks made in code block convergence. Verdict: iterate."
        ),
        Verdict::Iterate => {
            let passed = total - failed.len();
            let mut text = format!(
                "{passed} of {total} criteria passed (required: {total}, cutoff {cutoff}). Verdict: iterate. Below the bar: {}.",
                failed.join(", ")
            );
            if !plateaued.is_empty() {
                let stuck: Vec<String> = plateaued
                    .iter()
                    .map(|plateau| {
                        let series: Vec<String> =
                            plateau.scores.iter().map(ToString::to_string).collect();
                        format!("{} (scores: {})", plateau.id, series.join(" -> "))
                    })
                    .collect();
                text.push_str(" Plateaued criteria: ");
                text.push_str(&stuck.join(", "));
                text.push_str(
                    ". The current approach has stopped paying off for these; change it rather than polish it.",
                );
            }
            text.push_str(
                " NEXT STEP: call propose_improvements (also named draft_approach) with at least one concrete plan per failing criterion, one of them structural or transformative.",
            );
            text
        }
    }
}

#[cfg(test)]
mod panel_tests {
    use super::panel_score;

    #[test]
    fn panels_take_the_lower_median() {
        let cases: [(&[u8], Option<u8>); 7] = [
            (&[], None),
            (&[7], Some(7)),
            (&[9, 5], Some(5)),
            (&[5, 9, 8], Some(8)),
            (&[10, 2, 9], Some(9)),
            (&[7, 7, 6, 9], Some(7)),
            (&[3, 10, 10, 10], Some(10)),
        ];
        for (scores, expected) in cases {
            assert_eq!(panel_score(scores), expected, "{scores:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type VerdictCase<'a> = (&'a [(&'a str, u8)], u8, Verdict, &'a [&'a str]);

    fn criteria(ids: &[&str]) -> CriteriaSet {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "text": format!("text of {id}")}))
            .collect();
        CriteriaSet::from_json(&Value::Array(items)).unwrap()
    }

    fn scores(pairs: &[(&str, u8)]) -> BTreeMap<String, ScoreEntry> {
        pairs
            .iter()
            .map(|(id, score)| {
                (
                    (*id).to_owned(),
                    ScoreEntry {
                        score: Score::new(*score).unwrap(),
                        reasoning: String::new(),
                    },
                )
            })
            .collect()
    }

    fn round(round: u32, pairs: &[(&str, u8)]) -> RoundScores {
        RoundScores {
            round,
            scores: pairs.iter().map(|(id, s)| ((*id).to_owned(), *s)).collect(),
        }
    }

    #[test]
    fn score_parsing_table() {
        let set = criteria(&["E1"]);
        let ok =
            |value: Value| parse_scores(&set, &json!({"E1": value})).map(|m| m["E1"].score.get());
        assert_eq!(ok(json!(7)), Ok(7));
        assert_eq!(ok(json!(0)), Ok(0));
        assert_eq!(ok(json!(10)), Ok(10));
        assert_eq!(ok(json!(7.0)), Ok(7));
        assert_eq!(ok(json!({"score": 8, "reasoning": "fine"})), Ok(8));
        for bad in [
            json!(6.99),
            json!(11),
            json!(80),
            json!(-1),
            json!(true),
            json!("high"),
            json!("7"),
            json!(null),
            json!([7]),
            json!({"reasoning": "x"}),
            json!({"score": null}),
            json!({"score": 11}),
        ] {
            let err = ok(bad.clone()).unwrap_err();
            assert!(err.to_string().contains("E1"), "{bad}: {err}");
        }
    }

    #[test]
    fn reasoning_is_kept() {
        let set = criteria(&["E1"]);
        let parsed = parse_scores(&set, &json!({"E1": {"score": 7, "reasoning": "ok"}})).unwrap();
        assert_eq!(parsed["E1"].reasoning, "ok");
    }

    #[test]
    fn missing_unknown_and_non_objects() {
        let set = criteria(&["E1", "E2"]);
        assert_eq!(
            parse_scores(&set, &json!({"E1": 9})),
            Err(ScoreError::Missing {
                missing: vec!["E2".into()],
                criteria_ids: vec!["E1".into(), "E2".into()]
            })
        );
        assert!(matches!(
            parse_scores(&set, &json!({"E1": 9, "E2": 9, "E9": 9})),
            Err(ScoreError::UnknownCriterion { id, .. }) if id == "E9"
        ));
        assert!(matches!(
            parse_scores(&set, &json!([9, 9])),
            Err(ScoreError::NotAnObject { .. })
        ));
        // A JSON string holding the object is accepted.
        assert!(parse_scores(&set, &json!("{\"E1\": 9, \"E2\": 8}")).is_ok());
        assert!(parse_scores(&set, &json!("not json")).is_err());
    }

    #[test]
    fn verdict_table() {
        let set = criteria(&["E1", "E2"]);
        let cases: &[VerdictCase] = &[
            (&[("E1", 7), ("E2", 7)], 7, Verdict::Converge, &[]),
            (&[("E1", 6), ("E2", 10)], 7, Verdict::Iterate, &["E1"]),
            (&[("E1", 5), ("E2", 8)], 7, Verdict::Iterate, &["E1"]),
            (&[("E1", 0), ("E2", 0)], 7, Verdict::Iterate, &["E1", "E2"]),
            (&[("E1", 8), ("E2", 8)], 9, Verdict::Iterate, &["E1", "E2"]),
            (&[("E1", 9), ("E2", 10)], 9, Verdict::Converge, &[]),
            (&[("E1", 1), ("E2", 1)], 1, Verdict::Converge, &[]),
        ];
        for (pairs, cutoff, verdict, failed) in cases {
            let outcome = evaluate(&set, &scores(pairs), Cutoff::new(*cutoff).unwrap(), 1, &[]);
            assert_eq!(outcome.verdict, *verdict, "{pairs:?} cutoff {cutoff}");
            assert_eq!(
                outcome.failed_criteria, *failed,
                "{pairs:?} cutoff {cutoff}"
            );
            assert_eq!(outcome.failing_criteria_detail.len(), failed.len());
        }
    }

    #[test]
    fn gates_refuse_scores_and_block_convergence() {
        type Case<'a> = (&'a [(&'a str, u8)], Gates, Verdict, &'a [&'a str]);
        use crate::judgment::{Block, Gates};
        let set = criteria(&["E1", "E2"]);
        let refused = |id: &str| Gates {
            refused: [(
                id.to_owned(),
                "its evidence cites `a.md:1`, which the snapshot does not hold".to_owned(),
            )]
            .into(),
            blocks: Vec::new(),
        };
        let blocked = Gates {
            refused: BTreeMap::new(),
            blocks: vec![Block::EmptyDeliverable],
        };
        let cases: [Case<'_>; 5] = [
            (
                &[("E1", 10), ("E2", 9)],
                Gates::default(),
                Verdict::Converge,
                &[],
            ),
            // A refused 10 fails like a low score.
            (
                &[("E1", 10), ("E2", 9)],
                refused("E1"),
                Verdict::Iterate,
                &["E1"],
            ),
            (
                &[("E1", 3), ("E2", 9)],
                refused("E2"),
                Verdict::Iterate,
                &["E1", "E2"],
            ),
            // A block keeps passing scores at iterate without failing any criterion.
            (
                &[("E1", 10), ("E2", 9)],
                blocked.clone(),
                Verdict::Iterate,
                &[],
            ),
            (
                &[("E1", 2), ("E2", 9)],
                blocked.clone(),
                Verdict::Iterate,
                &["E1"],
            ),
        ];
        for (pairs, gates, verdict, failed) in cases {
            let outcome = evaluate_gated(&set, &scores(pairs), Cutoff::DEFAULT, 1, &[], &gates);
            assert_eq!(outcome.verdict, verdict, "{pairs:?} {gates:?}");
            assert_eq!(outcome.failed_criteria, failed, "{pairs:?} {gates:?}");
            assert_eq!(outcome.blocked_by, gates.blocks);
            // The score itself is kept as the judge gave it.
            assert_eq!(outcome.items[0].score, pairs[0].1);
        }
        let outcome = evaluate_gated(
            &set,
            &scores(&[("E1", 10), ("E2", 9)]),
            Cutoff::DEFAULT,
            1,
            &[],
            &refused("E1"),
        );
        assert_eq!(
            outcome.items[0].refused.as_deref(),
            Some("its evidence cites `a.md:1`, which the snapshot does not hold")
        );
        assert!(
            outcome
                .explanation
                .contains("E1 scored 10 but is not accepted as passing"),
            "{}",
            outcome.explanation
        );
        let outcome = evaluate_gated(
            &set,
            &scores(&[("E1", 10), ("E2", 9)]),
            Cutoff::DEFAULT,
            1,
            &[],
            &blocked,
        );
        assert!(
            outcome
                .explanation
                .contains("cannot converge while the deliverable holds no file"),
            "{}",
            outcome.explanation
        );
        // A refused criterion that keeps its score round after round plateaus like any other.
        let history = [
            round(1, &[("E1", 10), ("E2", 9)]),
            round(2, &[("E1", 10), ("E2", 9)]),
        ];
        let outcome = evaluate_gated(
            &set,
            &scores(&[("E1", 10), ("E2", 9)]),
            Cutoff::DEFAULT,
            3,
            &history,
            &refused("E1"),
        );
        assert_eq!(outcome.plateaued_criteria.len(), 1);
    }

    #[test]
    fn explanation_names_counts_and_next_step() {
        let set = criteria(&["E1", "E2"]);
        let outcome = evaluate(
            &set,
            &scores(&[("E1", 5), ("E2", 8)]),
            Cutoff::DEFAULT,
            1,
            &[],
        );
        assert!(
            outcome
                .explanation
                .contains("1 of 2 criteria passed (required: 2")
        );
        assert!(outcome.explanation.contains("NEXT STEP"));
        assert!(outcome.explanation.contains("propose_improvements"));
        let converged = evaluate(
            &set,
            &scores(&[("E1", 7), ("E2", 8)]),
            Cutoff::DEFAULT,
            1,
            &[],
        );
        assert!(converged.explanation.contains("All 2 criteria passed"));
    }

    #[test]
    fn plateau_table() {
        // (history of E1 scores, current E1 score, plateaued?)
        let cases: &[(&[u8], u8, bool)] = &[
            (&[5, 5], 5, true),
            (&[5, 5], 6, true),  // a one-point gain is still stuck
            (&[5, 6], 7, false), // passing now: never a plateau
            (&[4, 5], 6, true),  // +1, +1
            (&[3, 5], 5, false), // the older step gained 2
            (&[5, 5], 3, true),  // a fall is no gain
            (&[5], 5, false),    // not enough history
            (&[], 5, false),
            (&[2, 2, 5], 5, false), // only the last two rounds count
            (&[5, 2, 2], 2, true),
        ];
        let set = criteria(&["E1"]);
        for (past, current, expected) in cases {
            let history: Vec<RoundScores> = past
                .iter()
                .enumerate()
                .map(|(index, score)| round(index as u32 + 1, &[("E1", *score)]))
                .collect();
            let outcome = evaluate(
                &set,
                &scores(&[("E1", *current)]),
                Cutoff::DEFAULT,
                history.len() as u32 + 1,
                &history,
            );
            assert_eq!(
                !outcome.plateaued_criteria.is_empty(),
                *expected,
                "{past:?} -> {current}"
            );
        }
    }

    #[test]
    fn reference_plateau_check_reports_only_failing_criteria() {
        // MassGen check 8: (9,5), (9,5), (9,6) reported E1 9->9->9 as well; we report E2 only.
        let set = criteria(&["E1", "E2"]);
        let history = vec![
            round(1, &[("E1", 9), ("E2", 5)]),
            round(2, &[("E1", 9), ("E2", 5)]),
        ];
        let outcome = evaluate(
            &set,
            &scores(&[("E1", 9), ("E2", 6)]),
            Cutoff::DEFAULT,
            3,
            &history,
        );
        assert_eq!(
            outcome.plateaued_criteria,
            vec![Plateau {
                id: "E2".into(),
                scores: vec![5, 5, 6]
            }]
        );
        assert!(
            outcome
                .explanation
                .contains("Plateaued criteria: E2 (scores: 5 -> 5 -> 6)")
        );
        assert!(!outcome.explanation.contains("E1 (scores"));
    }

    #[test]
    fn plateau_skips_criteria_missing_from_history() {
        let history = vec![round(1, &[("E1", 5)]), round(2, &[("E2", 5)])];
        let current: BTreeMap<String, u8> = [("E1".to_owned(), 5)].into();
        assert!(find_plateaued(&["E1".to_owned()], &current, &history).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn verdict_is_converge_iff_all_meet_cutoff(raw in proptest::collection::vec(0u8..=10, 1..7), cutoff in 1u8..=10) {
            let ids: Vec<String> = (1..=raw.len()).map(|i| format!("E{i}")).collect();
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let set = criteria(&id_refs);
            let pairs: Vec<(&str, u8)> = id_refs.iter().copied().zip(raw.iter().copied()).collect();
            let outcome = evaluate(&set, &scores(&pairs), Cutoff::new(cutoff).unwrap(), 1, &[]);
            let all_pass = raw.iter().all(|s| *s >= cutoff);
            proptest::prop_assert_eq!(outcome.verdict == Verdict::Converge, all_pass);
            proptest::prop_assert_eq!(outcome.failed_criteria.len(), raw.iter().filter(|s| **s < cutoff).count());
        }
    }
}
