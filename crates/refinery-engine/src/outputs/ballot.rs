//! The answer judge's reply in a multi-model run: every answer scored against every criterion
//! with evidence, then one decision (a vote, or an answer to improve on).
//!
//! Answers are named by the letters the judge was shown; the letters mean something only
//! together with that judge's own label map, which the engine keeps. So this parser checks
//! the letters against the set shown (the same set for every judge of a round) and never
//! learns whose answer a letter is.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use refinery_core::CriteriaSet;
use refinery_core::checklist::Score;

use super::{object, shape};
use crate::error::{OutputError, Result};

const ROLE: &str = "answer judge";

/// One criterion of one answer, as the judge scores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoredCriterion {
    /// Whole number 0–10.
    pub score: i64,
    /// What the score rests on: quotes, paths and lines, command output (at least one).
    pub evidence: Vec<String>,
}

/// What the judge does with its judgment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionOutput {
    /// Vote for one answer as it stands.
    Vote {
        /// The letter of the answer voted for.
        answer: String,
        /// Why: the criteria that decided it and their evidence.
        reason: String,
    },
    /// Improve on one answer (the judge then carries out the plan, starting from its files).
    Improve {
        /// The letter of the answer to start from.
        base: String,
        /// What to change, in which files, for which criteria.
        plan: String,
        /// Why no answer is good enough as it stands.
        reason: String,
    },
}

/// The answer judge's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgmentOutput {
    /// Per answer letter, per criterion id: the score and its evidence.
    pub assessments: BTreeMap<String, BTreeMap<String, ScoredCriterion>>,
    /// Exactly one decision.
    pub decision: DecisionOutput,
}

/// A validated score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessed {
    /// 0–10.
    pub score: Score,
    /// Never empty.
    pub evidence: Vec<String>,
}

/// A validated decision, by the letters the judge was shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A vote for the answer shown as `label`.
    Vote {
        /// The letter.
        label: String,
        /// Why.
        reason: String,
    },
    /// Improve on the answer shown as `base`.
    Improve {
        /// The letter to start from.
        base: String,
        /// The plan the judge will carry out.
        plan: String,
        /// Why.
        reason: String,
    },
}

/// A validated judgment: every answer shown, every criterion, with evidence; one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgment {
    /// Per letter, per criterion id.
    pub assessments: BTreeMap<String, BTreeMap<String, Assessed>>,
    /// The decision.
    pub decision: Decision,
}

/// Parses an answer judge's reply. `labels` are the letters shown; every one must be
/// assessed on every criterion with evidence, and the decision must name one of them.
pub fn parse_judgment(criteria: &CriteriaSet, labels: &[String], text: &str) -> Result<Judgment> {
    let output: JudgmentOutput =
        serde_json::from_value(object(ROLE, text)?).map_err(|err| shape(ROLE, &err))?;
    let contract = |reason: String| OutputError::Contract { role: ROLE, reason };
    let known = |label: &str| labels.iter().any(|shown| shown == label);
    let listing = labels.join(", ");
    if let Some(unknown) = output.assessments.keys().find(|label| !known(label)) {
        return Err(contract(format!(
            "answer `{unknown}` was not shown; the answers are {listing}"
        )));
    }
    let mut assessments = BTreeMap::new();
    for label in labels {
        let scores = output
            .assessments
            .get(label)
            .ok_or_else(|| contract(format!("answer {label} is not assessed; assess {listing}")))?;
        assessments.insert(label.clone(), assess(criteria, label, scores)?);
    }
    let decision = match output.decision {
        DecisionOutput::Vote { answer, reason } => {
            let label = answer.trim().to_owned();
            if !known(&label) {
                return Err(contract(format!(
                    "the vote names answer `{answer}`, which was not shown; vote for one of {listing}"
                )));
            }
            Decision::Vote {
                label,
                reason: required(&contract, "the vote", reason)?,
            }
        }
        DecisionOutput::Improve { base, plan, reason } => {
            let label = base.trim().to_owned();
            if !known(&label) {
                return Err(contract(format!(
                    "the improvement starts from answer `{base}`, which was not shown; start from one of {listing}"
                )));
            }
            Decision::Improve {
                base: label,
                plan: required(&contract, "the improvement's plan", plan)?,
                reason: required(&contract, "the improvement", reason)?,
            }
        }
    };
    Ok(Judgment {
        assessments,
        decision,
    })
}

/// One answer's scores: every criterion, 0–10, each with evidence, nothing else.
fn assess(
    criteria: &CriteriaSet,
    label: &str,
    scores: &BTreeMap<String, ScoredCriterion>,
) -> Result<BTreeMap<String, Assessed>> {
    let contract = |reason: String| OutputError::Contract { role: ROLE, reason };
    if let Some(unknown) = scores.keys().find(|id| criteria.get(id).is_none()) {
        return Err(contract(format!(
            "answer {label} scores `{unknown}`, which is not a criterion"
        )));
    }
    criteria
        .ids()
        .into_iter()
        .map(|id| {
            let found = scores
                .get(&id)
                .ok_or_else(|| contract(format!("answer {label} has no score for {id}")))?;
            let score = u8::try_from(found.score)
                .ok()
                .and_then(Score::new)
                .ok_or_else(|| {
                    contract(format!(
                        "answer {label}, {id}: score {} is not a whole number from 0 to 10",
                        found.score
                    ))
                })?;
            if found.evidence.iter().all(|item| item.trim().is_empty()) {
                return Err(contract(format!(
                    "answer {label}, {id} has no evidence; quote the answer, cite a path and line, or paste command output"
                )));
            }
            let assessed = Assessed {
                score,
                evidence: found.evidence.clone(),
            };
            Ok((id, assessed))
        })
        .collect()
}

fn required(contract: &impl Fn(String) -> OutputError, what: &str, text: String) -> Result<String> {
    if text.trim().is_empty() {
        return Err(contract(format!("{what} gives no reason; say why")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::criteria;
    use serde_json::{Value, json};

    fn labels() -> Vec<String> {
        vec!["A".to_owned(), "B".to_owned()]
    }

    fn scored(score: i64) -> Value {
        json!({"score": score, "evidence": [format!("saw {score}")]})
    }

    fn reply(decision: &Value) -> String {
        json!({
            "assessments": {
                "A": {"E1": scored(8), "E2": scored(6)},
                "B": {"E1": scored(5), "E2": scored(9)}
            },
            "decision": decision
        })
        .to_string()
    }

    #[test]
    fn a_vote_and_an_improvement_parse() {
        let vote = parse_judgment(
            &criteria(),
            &labels(),
            &reply(&json!({"action": "vote", "answer": "A", "reason": "E1 decides"})),
        )
        .unwrap();
        assert_eq!(
            vote.decision,
            Decision::Vote {
                label: "A".to_owned(),
                reason: "E1 decides".to_owned()
            }
        );
        assert_eq!(vote.assessments["B"]["E2"].score.get(), 9);
        let improve = parse_judgment(
            &criteria(),
            &labels(),
            &reply(&json!({"action": "improve", "base": " B ", "plan": "add numbers", "reason": "E1 is weak"})),
        )
        .unwrap();
        assert!(matches!(improve.decision, Decision::Improve { base, .. } if base == "B"));
    }

    #[test]
    fn bad_judgments_are_refused_with_a_usable_reason() {
        let unassessed = json!({
            "assessments": {"A": {"E1": scored(8), "E2": scored(6)}},
            "decision": {"action": "vote", "answer": "A", "reason": "r"}
        })
        .to_string();
        let stranger = json!({
            "assessments": {"A": {"E1": scored(8), "E2": scored(6)}, "B": {"E1": scored(8), "E2": scored(6)}, "Z": {}},
            "decision": {"action": "vote", "answer": "A", "reason": "r"}
        })
        .to_string();
        let no_evidence = json!({
            "assessments": {"A": {"E1": {"score": 8, "evidence": [" "]}, "E2": scored(6)}, "B": {"E1": scored(8), "E2": scored(6)}},
            "decision": {"action": "vote", "answer": "A", "reason": "r"}
        })
        .to_string();
        let cases = [
            (
                reply(&json!({"action": "vote", "answer": "C", "reason": "r"})),
                "answer `C`, which was not shown",
            ),
            (
                reply(&json!({"action": "improve", "base": "Q", "plan": "p", "reason": "r"})),
                "starts from answer `Q`",
            ),
            (
                reply(&json!({"action": "vote", "answer": "A", "reason": "  "})),
                "gives no reason",
            ),
            (
                reply(&json!({"action": "abstain"})),
                "not valid JSON of the required shape",
            ),
            (unassessed, "answer B is not assessed"),
            (stranger, "`Z` was not shown"),
            (no_evidence, "has no evidence"),
            (
                reply(&json!({"action": "vote", "answer": "A", "reason": "r", "also": "B"})),
                "unknown field",
            ),
            ("I pick A.".to_owned(), "no JSON object"),
        ];
        for (text, needle) in cases {
            let error = parse_judgment(&criteria(), &labels(), &text)
                .unwrap_err()
                .to_string();
            assert!(error.contains(needle), "{needle}: {error}");
        }
        let out_of_range = reply(&json!({"action": "vote", "answer": "A", "reason": "r"}))
            .replace("\"score\":9", "\"score\":12");
        let error = parse_judgment(&criteria(), &labels(), &out_of_range).unwrap_err();
        assert!(error.to_string().contains("from 0 to 10"), "{error}");
    }
}
