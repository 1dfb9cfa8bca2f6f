//! Improvement plans: what the builder will change next round, checked before it starts.
//!
//! The gate exists to stop a loop that only polishes: every failing criterion needs a plan,
//! and at least one plan *on a failing criterion* must change the structure. MassGen pooled
//! entries from any key, so a plan for a made-up criterion could satisfy the gate; here plans
//! for unknown criteria are refused and only failing criteria count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::criteria::{CriteriaSet, as_object, kind};

/// How deep a planned change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    /// Polish within the current approach.
    Incremental,
    /// Reorganises how the work is built.
    Structural,
    /// Replaces the approach.
    Transformative,
}

impl Impact {
    /// Case-insensitive parse.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "incremental" => Some(Self::Incremental),
            "structural" => Some(Self::Structural),
            "transformative" => Some(Self::Transformative),
            _ => None,
        }
    }

    /// Whether the change goes beyond polish.
    pub fn is_non_incremental(self) -> bool {
        match self {
            Self::Incremental => false,
            Self::Structural | Self::Transformative => true,
        }
    }
}

/// One planned change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// What will change, concretely.
    pub plan: String,
    /// How deep it goes.
    pub impact: Impact,
    /// Any other fields the caller sent (sources, effort, …), kept as given.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, Value>,
}

/// A validated improvement plan, keyed by criterion id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImprovementPlan {
    /// The round whose verdict this plan answers.
    pub after_round: u32,
    /// Planned changes per criterion.
    pub improvements: BTreeMap<String, Vec<PlanEntry>>,
    /// What must not be lost while changing things, as the caller gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve: Option<Value>,
    /// The direction for the next round, as the caller gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<String>,
}

impl ImprovementPlan {
    /// All entries across criteria.
    pub fn entry_count(&self) -> usize {
        self.improvements.values().map(Vec::len).sum()
    }

    /// Entries on failing criteria whose impact goes beyond polish.
    pub fn non_incremental_count(&self, failed: &[String]) -> usize {
        failed
            .iter()
            .filter_map(|id| self.improvements.get(id))
            .flatten()
            .filter(|entry| entry.impact.is_non_incremental())
            .count()
    }
}

/// Why a plan was refused. The lists say exactly which criteria need attention.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No checklist has been submitted yet.
    #[error("no checklist result yet; call submit_checklist before proposing improvements")]
    NoChecklist,
    /// The last verdict was converge.
    #[error(
        "the last verdict was converge; improvements are only planned after an iterate verdict"
    )]
    NotIterating,
    /// `improvements` was not an object.
    #[error(
        "improvements must be an object mapping failing criterion ids to lists of {{plan, impact}}, got {found}"
    )]
    NotAnObject {
        /// What was sent instead.
        found: &'static str,
    },
    /// An entry that cannot be read.
    #[error("improvement for `{id}` is not usable: {reason}")]
    BadEntry {
        /// The criterion.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Coverage failed: failing criteria without a plan, or plans for unknown criteria.
    #[error(
        "{}",
        coverage_message(missing_criteria, empty_criteria, unknown_criteria)
    )]
    Coverage {
        /// Failing criteria with no key at all.
        missing_criteria: Vec<String>,
        /// Failing criteria whose plans are all empty.
        empty_criteria: Vec<String>,
        /// Keys that are not criteria of the session.
        unknown_criteria: Vec<String>,
        /// The failing criteria, for reference.
        failed_criteria: Vec<String>,
    },
    /// Every plan on a failing criterion is incremental.
    #[error("every improvement on the failing criteria ({}) is incremental; at least one must be structural or transformative — rethink the approach for the weakest criterion", failed_criteria.join(", "))]
    AllIncremental {
        /// The failing criteria.
        failed_criteria: Vec<String>,
    },
}

fn coverage_message(missing: &[String], empty: &[String], unknown: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("no improvements for {}", missing.join(", ")));
    }
    if !empty.is_empty() {
        parts.push(format!("only empty improvements for {}", empty.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!(
            "{} not criteria of this session",
            unknown.join(", ")
        ));
    }
    format!(
        "{}; give every failing criterion at least one concrete plan",
        parts.join("; ")
    )
}

/// Validates a plan against the criteria and the failing ids of the last iterate verdict.
pub fn validate_plan(
    criteria: &CriteriaSet,
    failed: &[String],
    after_round: u32,
    improvements: &Value,
    preserve: Option<Value>,
    vision: Option<String>,
) -> Result<ImprovementPlan, PlanError> {
    let map = as_object(improvements).map_err(|found| PlanError::NotAnObject { found })?;
    let mut parsed: BTreeMap<String, Vec<PlanEntry>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (id, value) in map.iter() {
        if criteria.get(id).is_none() {
            unknown.push(id.clone());
            continue;
        }
        let entries = parse_entries(id, value)?;
        parsed.insert(id.clone(), entries);
    }
    let missing: Vec<String> = failed
        .iter()
        .filter(|id| !map.contains_key(id.as_str()))
        .cloned()
        .collect();
    let empty: Vec<String> = failed
        .iter()
        .filter(|id| parsed.get(id.as_str()).is_some_and(Vec::is_empty))
        .cloned()
        .collect();
    if !missing.is_empty() || !empty.is_empty() || !unknown.is_empty() {
        return Err(PlanError::Coverage {
            missing_criteria: missing,
            empty_criteria: empty,
            unknown_criteria: unknown,
            failed_criteria: failed.to_vec(),
        });
    }
    let plan = ImprovementPlan {
        after_round,
        improvements: parsed,
        preserve: preserve.filter(|value| !value.is_null()),
        vision: vision.filter(|text| !text.trim().is_empty()),
    };
    if plan.non_incremental_count(failed) == 0 {
        return Err(PlanError::AllIncremental {
            failed_criteria: failed.to_vec(),
        });
    }
    Ok(plan)
}

/// Reads one criterion's value: a list of entries, a single entry, or a bare string (one
/// incremental entry; MassGen split such strings into characters). Blank entries are dropped,
/// so a list of blanks counts as empty.
fn parse_entries(id: &str, value: &Value) -> Result<Vec<PlanEntry>, PlanError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let mut entries = Vec::new();
    for item in items {
        match item {
            Value::String(text) if text.trim().is_empty() => {}
            Value::String(text) => entries.push(PlanEntry {
                plan: text.trim().to_owned(),
                impact: Impact::Incremental,
                extra: serde_json::Map::new(),
            }),
            Value::Object(fields) => {
                let plan = ["plan", "change", "description", "action"]
                    .iter()
                    .find_map(|key| fields.get(*key).and_then(Value::as_str))
                    .map(str::trim)
                    .unwrap_or_default();
                if plan.is_empty() {
                    continue;
                }
                let impact = match fields.get("impact") {
                    None | Some(Value::Null) => Impact::Incremental,
                    Some(Value::String(raw)) => Impact::parse(raw).ok_or_else(|| PlanError::BadEntry {
                        id: id.to_owned(),
                        reason: format!(
                            "impact `{raw}` is not one of incremental, structural, transformative"
                        ),
                    })?,
                    Some(other) => {
                        return Err(PlanError::BadEntry {
                            id: id.to_owned(),
                            reason: format!("impact must be a string, got {}", kind(other)),
                        });
                    }
                };
                let extra = fields
                    .iter()
                    .filter(|(key, _)| {
                        !matches!(
                            key.as_str(),
                            "plan" | "change" | "description" | "action" | "impact"
                        )
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                entries.push(PlanEntry {
                    plan: plan.to_owned(),
                    impact,
                    extra,
                });
            }
            other => {
                return Err(PlanError::BadEntry {
                    id: id.to_owned(),
                    reason: format!(
                        "each entry must be {{\"plan\": \"...\", \"impact\": \"...\"}} or a string, got {}",
                        kind(other)
                    ),
                });
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> CriteriaSet {
        CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "a"}, {"id": "E2", "text": "b"}, {"id": "E3", "text": "c"}
        ]))
        .unwrap()
    }

    fn check(failed: &[&str], improvements: &Value) -> Result<ImprovementPlan, PlanError> {
        let failed: Vec<String> = failed.iter().map(|id| (*id).to_owned()).collect();
        validate_plan(&set(), &failed, 1, improvements, None, None)
    }

    #[test]
    fn accepted_plans() {
        let plan = check(
            &["E1"],
            &json!({"E1": [{"plan": "p", "impact": "structural"}]}),
        )
        .unwrap();
        assert_eq!(plan.entry_count(), 1);
        // Case-insensitive impact (MassGen check 13 was case-sensitive).
        assert!(
            check(
                &["E1"],
                &json!({"E1": [{"plan": "p", "impact": "Structural"}]})
            )
            .is_ok()
        );
        assert!(
            check(
                &["E1"],
                &json!({"E1": {"plan": "p", "impact": "TRANSFORMATIVE"}})
            )
            .is_ok()
        );
        // Plans for passing criteria are fine but do not satisfy the gate on their own.
        let plan = check(
            &["E1"],
            &json!({"E1": [{"plan": "a", "impact": "structural"}], "E2": ["keep it"]}),
        )
        .unwrap();
        assert_eq!(plan.entry_count(), 2);
        assert_eq!(plan.non_incremental_count(&["E1".into()]), 1);
    }

    #[test]
    fn refused_plans_table() {
        let cases: &[(&[&str], Value, &str)] = &[
            (
                &["E1", "E2"],
                json!({"E1": [{"plan": "p", "impact": "structural"}]}),
                "no improvements for E2",
            ),
            (&["E1"], json!({"E1": []}), "only empty improvements for E1"),
            (
                &["E1"],
                json!({"E1": [""]}),
                "only empty improvements for E1",
            ),
            (
                &["E1"],
                json!({"E1": [{"plan": " ", "impact": "structural"}]}),
                "only empty",
            ),
            (
                &["E1"],
                json!({"E1": [{"plan": "tweak", "impact": "incremental"}]}),
                "incremental",
            ),
            (&["E1"], json!({"E1": "tweak"}), "incremental"),
            // Gate gaming (MassGen check 14): an unknown criterion cannot carry the gate.
            (
                &["E1"],
                json!({"E1": [{"plan": "x", "impact": "incremental"}], "E99": [{"plan": "y", "impact": "transformative"}]}),
                "E99 not criteria",
            ),
            // Nor can a passing one.
            (
                &["E1"],
                json!({"E1": ["x"], "E2": [{"plan": "y", "impact": "structural"}]}),
                "incremental",
            ),
            (
                &["E1"],
                json!({"E1": [{"plan": "x", "impact": "huge"}]}),
                "impact `huge`",
            ),
            (&["E1"], json!({"E1": [7]}), "got a number"),
            (&["E1"], json!([1]), "must be an object"),
        ];
        for (failed, input, needle) in cases {
            let err = check(failed, input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn coverage_lists_every_problem() {
        let err = check(&["E1", "E2"], &json!({"E1": [], "E7": ["x"]})).unwrap_err();
        assert_eq!(
            err,
            PlanError::Coverage {
                missing_criteria: vec!["E2".into()],
                empty_criteria: vec!["E1".into()],
                unknown_criteria: vec!["E7".into()],
                failed_criteria: vec!["E1".into(), "E2".into()],
            }
        );
    }

    #[test]
    fn preserve_vision_and_extra_fields_are_kept() {
        let failed = vec!["E1".to_owned()];
        let plan = validate_plan(
            &set(),
            &failed,
            2,
            &json!({"E1": [{"plan": "rebuild nav", "impact": "structural", "sources": ["critique"]}]}),
            Some(json!({"E2": "the hero copy"})),
            Some("calmer, denser".to_owned()),
        )
        .unwrap();
        assert_eq!(plan.after_round, 2);
        assert_eq!(
            plan.improvements["E1"][0].extra["sources"],
            json!(["critique"])
        );
        assert_eq!(plan.preserve, Some(json!({"E2": "the hero copy"})));
        assert_eq!(plan.vision.as_deref(), Some("calmer, denser"));
    }
}
