//! The output contract of each role, and strict parsers for what models actually send.
//!
//! A model supplies scores, evidence and prose; these parsers decide whether that output is
//! usable. Anything that does not meet the contract is an [`OutputError`] whose message can be
//! fed back to the model verbatim — never a silent default.
//!
//! This is the edge: a reply is parsed here once, into a type ([`Evaluation`],
//! [`GuardComparison`], [`TraceLessons`], a [`CriteriaSet`]), and nothing past it reads raw
//! JSON again. Evidence citations (`path:line`) are parsed here too ([`Citation`]); whether
//! they resolve is checked against the snapshot by the judge phase.
//!
//! Each role's JSON schema ([`criteria_writer_schema`], [`evaluator_schema`],
//! [`guard_schema`], [`trace_lessons_schema`]) carries every rule of its parser that JSON
//! Schema can say: enums, integer ranges, item counts, required fields (the ones the parser
//! requires, no more), ids of this run's
//! criteria as required properties, non-blank strings. It also bounds every string and list,
//! so a server that turns the schema into a grammar (llama.cpp) ends its output instead of
//! running on. The rule: an instance of the schema always passes the parser, and what the
//! parser refuses the schema refuses too (tests generate instances from the schemas alone).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use refinery_core::checklist::{self, Score, ScoreEntry};
use refinery_core::rounds::Preference;
use refinery_core::{Category, CriteriaSet};

use crate::error::{OutputError, Result};

pub mod ballot;

/// How many criteria a generated set may hold.
pub const CRITERIA_RANGE: std::ops::RangeInclusive<usize> = 3..=7;

/// Finds the JSON object in a model's reply: the whole text, else a fenced ```json block, else
/// the span from the first `{` to the last `}` (models like to add a sentence around it).
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(trimmed) {
        return Some(value);
    }
    let mut rest = trimmed;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |newline| newline + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        let body = &after[body_start..body_start + end];
        if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(body.trim()) {
            return Some(value);
        }
        rest = &after[body_start + end + 3..];
    }
    let (start, end) = (trimmed.find('{')?, trimmed.rfind('}')?);
    // `get` rather than indexing: a `}` before the first `{` yields no span, not a panic.
    match serde_json::from_str::<Value>(trimmed.get(start..=end)?) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

fn object(role: &'static str, text: &str) -> Result<Value> {
    extract_json(text).ok_or_else(|| OutputError::Shape {
        role,
        reason: "no JSON object found; reply with exactly one JSON object".to_owned(),
    })
}

fn shape(role: &'static str, err: &serde_json::Error) -> OutputError {
    OutputError::Shape {
        role,
        reason: err.to_string(),
    }
}

/// One criterion as the criteria writer proposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposedCriterion {
    /// What good looks like, stated as a position a reviewer can check.
    pub text: String,
    /// primary, standard or stretch.
    pub category: String,
    /// Why it matters for this task.
    #[serde(default)]
    pub rationale: String,
    /// Concrete ways work fails it (at least one).
    pub anti_patterns: Vec<String>,
    /// How to check it beyond reading: a command, a page to open, a measurement.
    pub verify_by: String,
    /// What scores 3, 5, 7 and 9 look like.
    #[serde(default)]
    pub score_anchors: BTreeMap<String, String>,
}

/// The criteria writer's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriteriaWriterOutput {
    /// 3–7 criteria, the primary one first.
    pub criteria: Vec<ProposedCriterion>,
}

/// Parses the criteria writer's reply into a validated set numbered E1…En: 3–7 criteria, at
/// least one primary, each with anti-patterns and a verify_by hint.
pub fn parse_criteria_writer(text: &str) -> Result<CriteriaSet> {
    const ROLE: &str = "criteria writer";
    let output: CriteriaWriterOutput =
        serde_json::from_value(object(ROLE, text)?).map_err(|err| shape(ROLE, &err))?;
    let contract = |reason: String| OutputError::Contract { role: ROLE, reason };
    let count = output.criteria.len();
    if !CRITERIA_RANGE.contains(&count) {
        return Err(contract(format!("{count} criteria given; give 3 to 7")));
    }
    let items: Vec<Value> = output
        .criteria
        .iter()
        .enumerate()
        .map(|(index, criterion)| {
            let id = format!("E{}", index + 1);
            if criterion
                .anti_patterns
                .iter()
                .all(|pattern| pattern.trim().is_empty())
            {
                return Err(contract(format!(
                    "{id} has no anti-patterns; name at least one concrete way to fail it"
                )));
            }
            if criterion.verify_by.trim().is_empty() {
                return Err(contract(format!(
                    "{id} has no verify_by; say how to check it beyond reading"
                )));
            }
            if Category::parse(&criterion.category).is_none() {
                return Err(contract(format!(
                    "{id} has category `{}`; use primary, standard or stretch",
                    criterion.category
                )));
            }
            Ok(json!({
                "id": id,
                "text": criterion.text,
                "category": criterion.category,
                "rationale": criterion.rationale,
                "anti_patterns": criterion.anti_patterns,
                "verify_by": criterion.verify_by,
                "score_anchors": criterion.score_anchors,
            }))
        })
        .collect::<Result<_>>()?;
    let mut items = items;
    // The brief asks for the primary criterion first. A set with none marked primary takes
    // its first as primary rather than being refused: the tier decides nothing, and a rule
    // JSON Schema cannot say portably must not fail a reply that follows the schema.
    let has_primary = output
        .criteria
        .iter()
        .any(|criterion| Category::parse(&criterion.category) == Some(Category::Primary));
    if !has_primary && let Some(Value::Object(first)) = items.first_mut() {
        first.insert("category".to_owned(), json!("primary"));
    }
    CriteriaSet::from_json(&Value::Array(items)).map_err(|err| contract(err.to_string()))
}

/// The evaluator's finding on one criterion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionFinding {
    /// Whole number 0–10 (kept as the number sent: `7.0` is a whole number too, and the core's
    /// score rules decide).
    pub score: serde_json::Number,
    /// Quotes, paths with line numbers, command output: what the score rests on (at least one).
    pub evidence: Vec<String>,
    /// Why this score and not one higher.
    pub reasoning: String,
}

/// One step of the improvement spec, in priority order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecItem {
    /// The criterion this step serves.
    pub criterion: String,
    /// What to change, concretely enough to act on.
    pub change: String,
    /// incremental, structural or transformative.
    pub impact: String,
}

/// The round evaluator's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluatorOutput {
    /// One finding per criterion id.
    pub scores: BTreeMap<String, CriterionFinding>,
    /// The critique, most important problem first.
    pub critique: String,
    /// What to change next round, most valuable first.
    pub improvement_spec: Vec<SpecItem>,
    /// What is good and must survive the next round.
    pub preserve: Vec<String>,
}

/// One criterion's validated finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The score, 0–10.
    pub score: Score,
    /// What the score rests on (never empty in a parsed evaluation).
    pub evidence: Vec<String>,
    /// Why this score and not one higher.
    pub reasoning: String,
    /// The `path:line` citations in the evidence, parsed from it.
    pub citations: Vec<Citation>,
}

impl Finding {
    /// A finding, its evidence's citations parsed.
    pub fn new(score: Score, evidence: Vec<String>, reasoning: String) -> Self {
        let citations = evidence.iter().flat_map(|item| citations(item)).collect();
        Self {
            score,
            evidence,
            reasoning,
            citations,
        }
    }
}

/// A place in the deliverable that evidence points at: `path:line`, `path:first-last`, or
/// `path:line:column`, as judges are asked to cite files.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Citation {
    /// The path as cited (relative to the deliverable, or absolute inside a judge's copy).
    pub path: String,
    /// The first line cited (1-based as cited; 0 never exists).
    pub first: u32,
    /// The last line cited (the same as `first` for one line).
    pub last: u32,
}

impl std::fmt::Display for Citation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(formatter, "{}:{}", self.path, self.first)
        } else {
            write!(formatter, "{}:{}-{}", self.path, self.first, self.last)
        }
    }
}

/// The `path:line` citations in one piece of evidence. A token counts when the part before
/// its first `:` looks like a file path (it holds a `/` or a `.`, and no other `:`) and what
/// follows is a line number or range, optionally with a column: `index.html:3`,
/// `src/app.rs:10-24`, `./a.py:7:5`. URLs (`https://…:443`), times (`10:30`) and criterion
/// labels (`E1:`) are not citations.
pub fn citations(evidence: &str) -> Vec<Citation> {
    evidence
        .split(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '`' | '"' | '\'' | '(' | ')' | '[' | ']' | '<' | '>' | ',' | ';' | '|'
                )
        })
        .filter_map(citation)
        .collect()
}

fn citation(token: &str) -> Option<Citation> {
    let token = token.trim_end_matches(['.', ':']);
    let (path, place) = token.split_once(':')?;
    let looks_like_path = (path.contains('/') || path.contains('.'))
        && !path.ends_with('.')
        && path.chars().any(char::is_alphanumeric);
    if !looks_like_path {
        return None;
    }
    // `line`, `first-last` or `line:column` (the column is not checked).
    let lines = place.split_once(':').map_or(place, |(lines, column)| {
        if column.chars().all(|c| c.is_ascii_digit()) {
            lines
        } else {
            ""
        }
    });
    let (first, last) = if let Some((first, last)) = lines.split_once(['-', '–']) {
        (first.parse().ok()?, last.parse().ok()?)
    } else {
        let line = lines.parse().ok()?;
        (line, line)
    };
    Some(Citation {
        path: path.to_owned(),
        first,
        last,
    })
}

/// A validated evaluation: a finding for every criterion, plus the evaluator's prose.
///
/// Saved (in `round_NNN/round.json`) in the evaluator's own reply shape, [`EvaluatorOutput`],
/// so a round file reads the same whether one judge or a panel scored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "EvaluatorOutput", try_from = "EvaluatorOutput")]
pub struct Evaluation {
    /// The finding per criterion id.
    pub findings: BTreeMap<String, Finding>,
    /// The critique.
    pub critique: String,
    /// The ordered improvement spec.
    pub improvement_spec: Vec<SpecItem>,
    /// The preserve list.
    pub preserve: Vec<String>,
}

impl Evaluation {
    /// Scores and reasoning per criterion, as the core's checklist rules take them.
    pub fn scores(&self) -> BTreeMap<String, ScoreEntry> {
        self.findings
            .iter()
            .map(|(id, finding)| {
                (
                    id.clone(),
                    ScoreEntry {
                        score: finding.score,
                        reasoning: finding.reasoning.clone(),
                    },
                )
            })
            .collect()
    }

    /// The bare score per criterion, for events and summaries.
    pub fn score_values(&self) -> BTreeMap<String, u8> {
        self.findings
            .iter()
            .map(|(id, finding)| (id.clone(), finding.score.get()))
            .collect()
    }

    /// The scores in the shape the core's `submit_checklist` takes:
    /// `{"E1": {"score": 7, "reasoning": "…"}, …}`.
    pub fn checklist_scores(&self) -> Value {
        Value::Object(
            self.findings
                .iter()
                .map(|(id, finding)| {
                    (
                        id.clone(),
                        json!({"score": finding.score.get(), "reasoning": finding.reasoning}),
                    )
                })
                .collect(),
        )
    }
}

impl From<Evaluation> for EvaluatorOutput {
    fn from(evaluation: Evaluation) -> Self {
        EvaluatorOutput {
            scores: evaluation
                .findings
                .into_iter()
                .map(|(id, finding)| {
                    (
                        id,
                        CriterionFinding {
                            score: finding.score.get().into(),
                            evidence: finding.evidence,
                            reasoning: finding.reasoning,
                        },
                    )
                })
                .collect(),
            critique: evaluation.critique,
            improvement_spec: evaluation.improvement_spec,
            preserve: evaluation.preserve,
        }
    }
}

/// Reading a saved evaluation back: the file was written from a validated one, so only the
/// score range is checked again (criterion ids need the criteria, which the file lacks).
impl TryFrom<EvaluatorOutput> for Evaluation {
    type Error = String;

    fn try_from(output: EvaluatorOutput) -> std::result::Result<Self, String> {
        let findings = output
            .scores
            .into_iter()
            .map(|(id, finding)| {
                let score = finding
                    .score
                    .as_u64()
                    .and_then(|score| u8::try_from(score).ok())
                    .and_then(Score::new)
                    .ok_or_else(|| format!("`{id}` has score {}, outside 0–10", finding.score))?;
                Ok((id, Finding::new(score, finding.evidence, finding.reasoning)))
            })
            .collect::<std::result::Result<_, String>>()?;
        Ok(Evaluation {
            findings,
            critique: output.critique,
            improvement_spec: output.improvement_spec,
            preserve: output.preserve,
        })
    }
}

/// Parses the round evaluator's reply: every criterion scored 0–10 through the core's strict
/// rules, each with evidence, spec items only for known criteria with a known impact.
pub fn parse_evaluator(criteria: &CriteriaSet, text: &str) -> Result<Evaluation> {
    const ROLE: &str = "round evaluator";
    let output: EvaluatorOutput =
        serde_json::from_value(object(ROLE, text)?).map_err(|err| shape(ROLE, &err))?;
    let contract = |reason: String| OutputError::Contract { role: ROLE, reason };
    let raw_scores: serde_json::Map<String, Value> = output
        .scores
        .iter()
        .map(|(id, finding)| {
            (
                id.clone(),
                json!({"score": finding.score, "reasoning": finding.reasoning}),
            )
        })
        .collect();
    let mut scores = checklist::parse_scores(criteria, &Value::Object(raw_scores))
        .map_err(|err| contract(err.to_string()))?;
    for (id, finding) in &output.scores {
        if finding.evidence.iter().all(|item| item.trim().is_empty()) {
            return Err(contract(format!(
                "`{id}` has no evidence; quote the work, cite a path and line, or paste command output"
            )));
        }
    }
    for item in &output.improvement_spec {
        if criteria.get(&item.criterion).is_none() {
            return Err(contract(format!(
                "improvement_spec names `{}`, which is not a criterion",
                item.criterion
            )));
        }
        if refinery_core::Impact::parse(&item.impact).is_none() {
            return Err(contract(format!(
                "improvement_spec impact `{}` is not incremental, structural or transformative",
                item.impact
            )));
        }
    }
    let findings = output
        .scores
        .into_iter()
        .filter_map(|(id, finding)| {
            let entry = scores.remove(&id)?;
            Some((
                id,
                Finding::new(entry.score, finding.evidence, entry.reasoning),
            ))
        })
        .collect();
    Ok(Evaluation {
        findings,
        critique: output.critique,
        improvement_spec: output.improvement_spec,
        preserve: output.preserve,
    })
}

/// The regression guard's reply for one blind comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionGuardOutput {
    /// Per criterion id: `A`, `B` or `tie`.
    pub preferences: BTreeMap<String, String>,
    /// The reasoning behind the preferences.
    #[serde(default)]
    pub reasoning: String,
}

/// One validated blind comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardComparison {
    /// Which answer is better, per criterion id (every criterion present).
    pub preferences: BTreeMap<String, Preference>,
    /// The guard's reasoning.
    pub reasoning: String,
}

/// Parses one blind comparison: a preference for every criterion, nothing else.
pub fn parse_regression_guard(criteria: &CriteriaSet, text: &str) -> Result<GuardComparison> {
    const ROLE: &str = "regression guard";
    let output: RegressionGuardOutput =
        serde_json::from_value(object(ROLE, text)?).map_err(|err| shape(ROLE, &err))?;
    let contract = |reason: String| OutputError::Contract { role: ROLE, reason };
    let mut preferences = BTreeMap::new();
    for (id, raw) in &output.preferences {
        if criteria.get(id).is_none() {
            return Err(contract(format!("`{id}` is not a criterion")));
        }
        let preference = match raw.trim().to_ascii_lowercase().as_str() {
            "a" => Preference::A,
            "b" => Preference::B,
            "tie" | "equal" | "same" => Preference::Tie,
            _ => {
                return Err(contract(format!(
                    "preference `{raw}` for `{id}` is not A, B or tie"
                )));
            }
        };
        preferences.insert(id.clone(), preference);
    }
    let missing: Vec<String> = criteria
        .ids()
        .into_iter()
        .filter(|id| !preferences.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Err(contract(format!(
            "no preference for {}",
            missing.join(", ")
        )));
    }
    Ok(GuardComparison {
        preferences,
        reasoning: output.reasoning,
    })
}

/// The trace analyzer's lessons (its statistics are computed by code, not by the model).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceLessons {
    /// Habits that helped and should continue.
    #[serde(rename = "do", default)]
    pub keep_doing: Vec<String>,
    /// Habits that wasted effort.
    #[serde(rename = "dont", default)]
    pub stop_doing: Vec<String>,
    /// Mistakes that broke the work or the run.
    #[serde(default)]
    pub critical_errors: Vec<String>,
}

/// Parses the trace analyzer's lessons.
pub fn parse_trace_lessons(text: &str) -> Result<TraceLessons> {
    const ROLE: &str = "trace analyzer";
    serde_json::from_value(object(ROLE, text)?).map_err(|err| shape(ROLE, &err))
}

/// The JSON schema `schemars` derives for `T`, for outputs whose rules a derive can carry
/// (a multi-model run's judgment). Role outputs whose rules depend on the run (criterion ids,
/// bounds) have their own builders below.
pub fn schema_for<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// The bounds every schema puts on strings and lists. They are far above what a useful reply
/// needs (so a capable model never meets them), and low enough that a small model under a
/// grammar stops within a few thousand tokens instead of running until a timeout.
mod bounds {
    /// A criterion's text, a `verify_by` line, one anti-pattern, one score anchor.
    pub(super) const SHORT: u64 = 400;
    /// A rationale, a finding's reasoning, one evidence item, one spec change.
    pub(super) const MEDIUM: u64 = 1_500;
    /// A critique, the guard's reasoning.
    pub(super) const LONG: u64 = 6_000;
    /// Items of a list of findings, lessons, preserve entries or spec steps.
    pub(super) const ITEMS: u64 = 12;
    /// Anti-patterns per criterion.
    pub(super) const ANTI_PATTERNS: u64 = 6;
}

/// A string that may be empty, bounded.
fn text(max: u64) -> Value {
    json!({"type": "string", "maxLength": max})
}

/// A string with at least one character that is not whitespace, bounded (parsers refuse blank
/// text where the reply needs it).
fn filled(max: u64) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S"})
}

fn list(items: &Value, min: u64, max: u64) -> Value {
    json!({"type": "array", "items": items, "minItems": min, "maxItems": max})
}

/// An object with exactly `properties` (no others), the `required` ones required.
fn object_schema(properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The criteria writer's schema: 3–7 criteria, each with its text, a tier from the category
/// enum, 1–6 non-blank anti-patterns and a `verify_by` line, and optionally a rationale and
/// score anchors for 3, 5, 7 and 9.
pub fn criteria_writer_schema() -> Value {
    let anchors = object_schema(
        ["3", "5", "7", "9"]
            .into_iter()
            .map(|score| (score, text(bounds::SHORT)))
            .collect(),
        &[],
    );
    let criterion = object_schema(
        vec![
            ("text", filled(bounds::SHORT)),
            (
                "category",
                json!({"type": "string", "enum": ["primary", "standard", "stretch"]}),
            ),
            ("rationale", text(bounds::MEDIUM)),
            (
                "anti_patterns",
                list(&filled(bounds::SHORT), 1, bounds::ANTI_PATTERNS),
            ),
            ("verify_by", filled(bounds::SHORT)),
            ("score_anchors", anchors),
        ],
        &["text", "category", "anti_patterns", "verify_by"],
    );
    let range = &CRITERIA_RANGE;
    object_schema(
        vec![(
            "criteria",
            list(&criterion, *range.start() as u64, *range.end() as u64),
        )],
        &["criteria"],
    )
}

/// The round evaluator's schema for this run's criteria: a finding for every criterion id and
/// no other (each a whole number 0–10 with 1–12 non-blank evidence items), the critique, up to
/// 12 spec steps naming a criterion of this run and an impact from the enum, and up to 12
/// things to preserve.
pub fn evaluator_schema(criteria: &CriteriaSet) -> Value {
    let ids = criteria.ids();
    let finding = object_schema(
        vec![
            (
                "score",
                json!({"type": "integer", "minimum": 0, "maximum": Score::MAX}),
            ),
            ("evidence", list(&filled(bounds::MEDIUM), 1, bounds::ITEMS)),
            ("reasoning", text(bounds::MEDIUM)),
        ],
        &["score", "evidence", "reasoning"],
    );
    let scores = object_schema(
        ids.iter()
            .map(|id| (id.as_str(), finding.clone()))
            .collect(),
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let step = object_schema(
        vec![
            ("criterion", json!({"type": "string", "enum": ids})),
            ("change", filled(bounds::MEDIUM)),
            (
                "impact",
                json!({"type": "string", "enum": ["incremental", "structural", "transformative"]}),
            ),
        ],
        &["criterion", "change", "impact"],
    );
    object_schema(
        vec![
            ("scores", scores),
            ("critique", text(bounds::LONG)),
            ("improvement_spec", list(&step, 0, bounds::ITEMS)),
            ("preserve", list(&filled(bounds::SHORT), 0, bounds::ITEMS)),
        ],
        &["scores", "critique", "improvement_spec", "preserve"],
    )
}

/// The regression guard's schema for this run's criteria: `A`, `B` or `tie` for every
/// criterion id and no other, and (optionally) the reasoning.
pub fn guard_schema(criteria: &CriteriaSet) -> Value {
    let ids = criteria.ids();
    let preference = json!({"type": "string", "enum": ["A", "B", "tie"]});
    let preferences = object_schema(
        ids.iter()
            .map(|id| (id.as_str(), preference.clone()))
            .collect(),
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    object_schema(
        vec![
            ("preferences", preferences),
            ("reasoning", text(bounds::LONG)),
        ],
        &["preferences"],
    )
}

/// The trace analyzer's schema: up to 12 non-blank lessons in each of `do`, `dont` and
/// `critical_errors` (each list may be left out).
pub fn trace_lessons_schema() -> Value {
    let lessons = || list(&filled(bounds::MEDIUM), 0, bounds::ITEMS);
    object_schema(
        vec![
            ("do", lessons()),
            ("dont", lessons()),
            ("critical_errors", lessons()),
        ],
        &[],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// Two criteria, E1 primary; shared by the engine's tests.
    pub(crate) fn criteria() -> CriteriaSet {
        CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "a", "category": "primary"},
            {"id": "E2", "text": "b"},
        ]))
        .unwrap()
    }

    fn evaluator_reply(e1: &Value, spec_criterion: &str) -> String {
        json!({
            "scores": {
                "E1": e1,
                "E2": {"score": 8, "evidence": ["index.html:3 `<h1>Ship faster</h1>`"], "reasoning": "clear"}
            },
            "critique": "The hero promises speed but nothing shows it.",
            "improvement_spec": [{"criterion": spec_criterion, "change": "add a measured benchmark", "impact": "structural"}],
            "preserve": ["the headline"]
        })
        .to_string()
    }

    #[test]
    fn json_is_found_in_fences_and_prose() {
        assert_eq!(extract_json("{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(
            extract_json("Here you go:\n```json\n{\"a\":1}\n```\nThanks"),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            extract_json("```\nnot json\n```\n```json\n{\"b\":2}\n```"),
            Some(json!({"b": 2}))
        );
        assert_eq!(
            extract_json("Result: {\"a\": {\"b\": 1}} done"),
            Some(json!({"a": {"b": 1}}))
        );
        assert_eq!(extract_json("no json here"), None);
        assert_eq!(extract_json("[1, 2]"), None);
        assert_eq!(extract_json("} {"), None);
    }

    #[test]
    fn a_good_evaluation_parses() {
        let reply = evaluator_reply(
            &json!({"score": 5, "evidence": ["no benchmark anywhere"], "reasoning": "unproven"}),
            "E1",
        );
        let evaluation = parse_evaluator(&criteria(), &reply).unwrap();
        assert_eq!(evaluation.findings["E1"].score.get(), 5);
        assert_eq!(evaluation.findings["E2"].evidence.len(), 1);
        assert_eq!(evaluation.preserve, vec!["the headline"]);
    }

    #[test]
    fn an_evaluation_is_saved_in_the_evaluators_reply_shape() {
        let reply = evaluator_reply(
            &json!({"score": 7, "evidence": ["saw 7"], "reasoning": "fine"}),
            "E1",
        );
        let evaluation = parse_evaluator(&criteria(), &reply).unwrap();
        let saved = serde_json::to_value(&evaluation).unwrap();
        assert_eq!(saved, serde_json::from_str::<Value>(&reply).unwrap());
        let read: Evaluation = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(read, evaluation);
        let mut broken = saved;
        broken["scores"]["E1"]["score"] = json!(11);
        assert!(serde_json::from_value::<Evaluation>(broken).is_err());
    }

    #[test]
    fn bad_evaluations_are_refused_with_a_usable_reason() {
        let cases = [
            (evaluator_reply(&json!({"score": 11, "evidence": ["x"], "reasoning": ""}), "E1"), "0 to 10"),
            (evaluator_reply(&json!({"score": 5, "evidence": [], "reasoning": ""}), "E1"), "no evidence"),
            (evaluator_reply(&json!({"score": 5, "evidence": ["x"], "reasoning": ""}), "E9"), "not a criterion"),
            (json!({"scores": {"E1": {"score": 5, "evidence": ["x"], "reasoning": ""}}, "critique": "", "improvement_spec": [], "preserve": []}).to_string(), "missing score for E2"),
            ("I think it is pretty good!".to_owned(), "no JSON object"),
            (json!({"scores": {}, "critique": 3}).to_string(), "invalid type"),
        ];
        for (reply, needle) in cases {
            let err = parse_evaluator(&criteria(), &reply)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    fn proposed(count: usize, primary: bool) -> String {
        let items: Vec<Value> = (0..count)
            .map(|index| {
                json!({
                    "text": format!("criterion {index}"),
                    "category": if primary && index == 0 { "primary" } else { "standard" },
                    "anti_patterns": ["vague"],
                    "verify_by": "run it"
                })
            })
            .collect();
        json!({"criteria": items}).to_string()
    }

    #[test]
    fn criteria_writer_contract() {
        let set = parse_criteria_writer(&proposed(4, true)).unwrap();
        assert_eq!(set.ids(), vec!["E1", "E2", "E3", "E4"]);
        assert_eq!(set.as_slice()[0].category, Category::Primary);
        // None marked primary: the first (the brief asks for the primary first) is taken.
        let set = parse_criteria_writer(&proposed(4, false)).unwrap();
        assert_eq!(set.as_slice()[0].category, Category::Primary);
        assert_eq!(set.as_slice()[1].category, Category::Standard);
        for (reply, needle) in [
            (proposed(2, true), "give 3 to 7"),
            (proposed(8, true), "give 3 to 7"),
            (json!({"criteria": [{"text": "a", "category": "primary", "anti_patterns": [], "verify_by": "x"}, {"text": "b", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}, {"text": "c", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}]}).to_string(), "no anti-patterns"),
            (json!({"criteria": [{"text": "a", "category": "primary", "anti_patterns": ["z"], "verify_by": " "}, {"text": "b", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}, {"text": "c", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}]}).to_string(), "no verify_by"),
            (json!({"criteria": [{"text": "a", "category": "vital", "anti_patterns": ["z"], "verify_by": "x"}, {"text": "b", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}, {"text": "c", "category": "standard", "anti_patterns": ["y"], "verify_by": "x"}]}).to_string(), "category `vital`"),
        ] {
            let err = parse_criteria_writer(&reply).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn regression_guard_contract() {
        let prefs = parse_regression_guard(
            &criteria(),
            &json!({"preferences": {"E1": "A", "E2": "Tie"}, "reasoning": "A cites sources"})
                .to_string(),
        )
        .unwrap();
        assert_eq!(prefs.reasoning, "A cites sources");
        let prefs = prefs.preferences;
        assert_eq!(prefs["E1"], Preference::A);
        assert_eq!(prefs["E2"], Preference::Tie);
        for (reply, needle) in [
            (json!({"preferences": {"E1": "A"}}), "no preference for E2"),
            (
                json!({"preferences": {"E1": "A", "E2": "C"}}),
                "not A, B or tie",
            ),
            (
                json!({"preferences": {"E1": "A", "E2": "B", "E3": "A"}}),
                "not a criterion",
            ),
        ] {
            let err = parse_regression_guard(&criteria(), &reply.to_string())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn trace_lessons_and_schemas() {
        let lessons = parse_trace_lessons(
            r#"{"do": ["ran the tests first"], "dont": ["rewrote working code"]}"#,
        )
        .unwrap();
        assert_eq!(lessons.keep_doing, vec!["ran the tests first"]);
        assert!(lessons.critical_errors.is_empty());
    }

    #[test]
    fn the_evaluator_and_guard_schemas_name_this_runs_criteria() {
        let schema = evaluator_schema(&criteria());
        assert_eq!(
            schema["required"],
            json!(["scores", "critique", "improvement_spec", "preserve"])
        );
        assert_eq!(
            schema["properties"]["scores"]["required"],
            json!(["E1", "E2"])
        );
        assert_eq!(
            schema["properties"]["scores"]["additionalProperties"],
            json!(false)
        );
        let finding = &schema["properties"]["scores"]["properties"]["E1"];
        assert_eq!(finding["properties"]["score"]["maximum"], json!(10));
        assert_eq!(finding["properties"]["evidence"]["minItems"], json!(1));
        assert_eq!(
            schema["properties"]["improvement_spec"]["items"]["properties"]["criterion"]["enum"],
            json!(["E1", "E2"])
        );
        let guard = guard_schema(&criteria());
        assert_eq!(
            guard["properties"]["preferences"]["required"],
            json!(["E1", "E2"])
        );
        let writer = criteria_writer_schema();
        assert_eq!(
            writer["properties"]["criteria"]["items"]["properties"]["category"]["enum"],
            json!(["primary", "standard", "stretch"])
        );
        assert_eq!(writer["properties"]["criteria"]["minItems"], json!(3));
        assert_eq!(writer["properties"]["criteria"]["maxItems"], json!(7));
    }

    #[test]
    fn citations_are_paths_with_lines() {
        let cited = |text: &str| -> Vec<String> {
            citations(text).iter().map(ToString::to_string).collect()
        };
        let cases: [(&str, &[&str]); 10] = [
            ("index.html:3 `<h1>Ship faster</h1>`", &["index.html:3"]),
            (
                "see `src/app.rs:10-24` and (lib/a.py:7:5).",
                &["src/app.rs:10-24", "lib/a.py:7"],
            ),
            (
                "./index.html:2, haiku.md:1;",
                &["./index.html:2", "haiku.md:1"],
            ),
            ("index.html: observed for E1", &[]),
            ("E1: fine at 10:30", &[]),
            ("https://example.com:443/a.js:10", &[]),
            ("3 failed Bash calls", &[]),
            ("/tmp/judge/index.html:4", &["/tmp/judge/index.html:4"]),
            ("README.md:12–14", &["README.md:12-14"]),
            ("node:internal/modules:1080", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(cited(text), expected, "{text}");
        }
    }
}
