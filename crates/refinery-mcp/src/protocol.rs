//! Tool inputs (`<Tool>Params`) and outputs (`<Tool>Response`).
//!
//! Argument names follow MassGen's standalone servers so existing skills and agents keep
//! working; the inputs are a superset (criteria keep all their fields, `init_session` takes an
//! optional cutoff and round cap). Each response type is also the tool's output schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use refinery_core::checklist::{ChecklistItem, FailingCriterion, Plateau};
use refinery_core::snapshot::Skipped;
use refinery_core::{AnswerRef, Verdict};

/// `init_session` input.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct InitSessionParams {
    /// Short label for the session (becomes part of its id).
    #[serde(default)]
    pub label: String,
    /// Score every criterion needs to pass, 1–10 (default 7).
    #[serde(default)]
    pub cutoff: Option<u8>,
    /// Refuse submissions past this round (rounds are counted across resets and new
    /// criteria).
    #[serde(default)]
    pub max_rounds: Option<u32>,
    /// Spending limit in US dollars for this loop, measured from the Claude Code transcripts;
    /// once it is spent, new_answer refuses a new round. Only inside Claude Code.
    #[serde(default)]
    pub cost_budget: Option<f64>,
    /// Continue this existing session instead of starting one (its settings are kept).
    #[serde(default)]
    pub resume: Option<String>,
}

/// `init_session` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct InitSessionResponse {
    /// Always `ok`.
    pub status: String,
    /// The new session's id.
    pub session_id: String,
    /// Its folder.
    pub session_dir: String,
    /// The pass mark.
    pub cutoff: u8,
    /// The round cap, if any.
    pub max_rounds: Option<u32>,
    /// Rounds already scored (0 for a new session).
    pub round: u32,
    /// Rounds that count toward `max_rounds` (resets and new criteria never give them back).
    pub rounds_used: u32,
    /// The spending limit in US dollars, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<f64>,
}

fn criteria_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "description": "Criteria in order. Each: id (E1…), text, category (primary|standard|stretch, or must|should|could), rationale, anti_patterns (list), score_anchors (score → meaning), verify_by.",
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "text": {"type": "string"},
                "category": {"type": "string"},
                "rationale": {"type": "string"},
                "anti_patterns": {"type": "array", "items": {"type": "string"}},
                "score_anchors": {"type": "object", "additionalProperties": {"type": "string"}},
                "verify_by": {"type": "string"}
            },
            "required": ["text"]
        }
    })
}

/// `generate_eval_criteria` input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GenerateEvalCriteriaParams {
    /// The criteria to store.
    #[schemars(schema_with = "criteria_schema")]
    pub criteria: Value,
}

/// `generate_eval_criteria` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GenerateEvalCriteriaResponse {
    /// Always `ok`.
    pub status: String,
    /// How many were stored.
    pub criteria_count: usize,
    /// The criteria file.
    pub path: String,
    /// Stored ids in order.
    pub criteria_ids: Vec<String>,
    /// Advice that did not block storing.
    pub warnings: Vec<String>,
}

fn scores_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Criterion id → whole-number score 0–10, or {score, reasoning}. Every criterion must be scored.",
        "additionalProperties": {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 10},
                {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}, "reasoning": {"type": "string"}}, "required": ["score"]}
            ]
        }
    })
}

/// `submit_checklist` input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubmitChecklistParams {
    /// The scores (leave out with `panel_session`).
    #[serde(default)]
    #[schemars(schema_with = "scores_schema")]
    pub scores: Value,
    /// The evaluator's report file, inside the workspace.
    #[serde(default)]
    pub report_path: Option<String>,
    /// The `session` that `refinery evaluate --json` printed for a panel of this round: its
    /// combined scores, evidence and report are recorded as they are (instead of `scores`).
    #[serde(default)]
    pub panel_session: Option<String>,
}

/// `submit_checklist` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SubmitChecklistResponse {
    /// Always `accepted`.
    pub status: String,
    /// `converge` or `iterate`.
    #[schemars(with = "String")]
    pub verdict: Verdict,
    /// The round scored.
    pub round: u32,
    /// The pass mark.
    pub cutoff: u8,
    /// What happened and what to do next.
    pub explanation: String,
    /// Every criterion with its score.
    #[schemars(with = "Vec<ChecklistItemSchema>")]
    pub items: Vec<ChecklistItem>,
    /// Ids below the cutoff.
    pub failed_criteria: Vec<String>,
    /// Those criteria with texts and scores.
    #[schemars(with = "Vec<FailingCriterionSchema>")]
    pub failing_criteria_detail: Vec<FailingCriterion>,
    /// Failing criteria that stopped improving.
    #[schemars(with = "Vec<PlateauSchema>")]
    pub plateaued_criteria: Vec<Plateau>,
    /// The submission scored (round and revision), if one was made for this round.
    #[schemars(with = "Option<AnswerRefSchema>")]
    pub submission: Option<AnswerRef>,
    /// The report recorded with the scores.
    pub report_path: Option<String>,
    /// The round cap, if any.
    pub max_rounds: Option<u32>,
    /// Rounds that count toward `max_rounds`, this one included.
    pub rounds_used: u32,
    /// The spending limit in US dollars, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<f64>,
    /// What the loop's Claude Code transcripts cost so far, when a budget is set and the
    /// spending could be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_usd: Option<f64>,
}

/// Schema mirror of `ChecklistItem`.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "only describes the wire shape")]
struct ChecklistItemSchema {
    id: String,
    text: String,
    score: u8,
    passed: bool,
    reasoning: String,
}

/// Schema mirror of `FailingCriterion`.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "only describes the wire shape")]
struct FailingCriterionSchema {
    id: String,
    text: String,
    score: u8,
}

/// Schema mirror of `Plateau`.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "only describes the wire shape")]
struct PlateauSchema {
    id: String,
    scores: Vec<u8>,
}

/// Schema mirror of `AnswerRef`.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "only describes the wire shape")]
struct AnswerRefSchema {
    round: u32,
    revision: u32,
}

/// `propose_improvements` / `draft_approach` input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProposeImprovementsParams {
    /// Failing criterion id → list of {plan, impact: incremental|structural|transformative}.
    #[schemars(with = "BTreeMap<String, Value>")]
    pub improvements: Value,
    /// What must survive the changes.
    #[serde(default)]
    pub preserve: Option<Value>,
    /// The direction for the next round.
    #[serde(default)]
    pub vision: Option<String>,
}

/// `propose_improvements` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProposeImprovementsResponse {
    /// Always `accepted`.
    pub status: String,
    /// Always true.
    pub valid: bool,
    /// What to do next.
    pub message: String,
    /// Entries across criteria.
    pub improvements_count: usize,
    /// Structural or transformative entries on failing criteria.
    pub non_incremental_count: usize,
    /// The failing criteria the plan answers.
    pub failed_criteria: Vec<String>,
    /// Where the plan was saved.
    pub plan_path: String,
}

/// `reset_evaluation` input (no arguments).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetEvaluationParams {}

/// `reset_evaluation` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetEvaluationResponse {
    /// Always `ok`.
    pub status: String,
    /// What happened.
    pub message: String,
    /// Round folders moved aside.
    pub archived_rounds: Vec<String>,
}

/// `new_answer` input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NewAnswerParams {
    /// A summary of the answer.
    pub answer: String,
    /// Files and folders to snapshot, relative to the workspace.
    #[serde(default)]
    pub file_paths: Option<Vec<String>>,
}

/// Echo of the arguments, as MassGen's workflow tools return them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NewAnswerArguments {
    /// The answer summary.
    pub answer: String,
    /// The paths as given.
    pub file_paths: Option<Vec<String>>,
}

/// `new_answer` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NewAnswerResponse {
    /// Always `ok`.
    pub status: String,
    /// `refinery_workflow`.
    pub server: String,
    /// `new_answer`.
    pub tool_name: String,
    /// The round this answer will be scored as.
    pub round: u32,
    /// 1 for the first submission of the round, more for replacements.
    pub revision: u32,
    /// The session.
    pub session_id: String,
    /// Its folder.
    pub session_dir: String,
    /// The round's folder.
    pub round_dir: String,
    /// A folder for verification evidence.
    pub scratch_dir: String,
    /// Stored paths, relative to the workspace.
    pub snapshots: Vec<String>,
    /// Paths left out, with reasons.
    #[schemars(with = "Vec<SkippedSchema>")]
    pub skipped: Vec<Skipped>,
    /// Files left out by ignore rules.
    pub ignored: u64,
    /// Total size of the stored files.
    pub total_bytes: u64,
    /// Bytes added to the store (0 when nothing changed).
    pub new_bytes: u64,
    /// The spending limit in US dollars, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<f64>,
    /// What the loop's Claude Code transcripts cost so far, when a budget is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_usd: Option<f64>,
    /// The arguments as received.
    pub arguments: NewAnswerArguments,
}

/// Schema mirror of `Skipped`.
#[derive(JsonSchema)]
#[expect(dead_code, reason = "only describes the wire shape")]
struct SkippedSchema {
    path: String,
    reason: String,
}

/// `vote` input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VoteParams {
    /// The answer voted for.
    pub choice: String,
    /// Why.
    #[serde(default)]
    pub reasoning: String,
}

/// Echo of the vote.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VoteArguments {
    /// The answer voted for.
    pub choice: String,
    /// Why.
    pub reasoning: String,
}

/// `vote` output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VoteResponse {
    /// Always `ok`.
    pub status: String,
    /// `refinery_workflow`.
    pub server: String,
    /// `vote`.
    pub tool_name: String,
    /// The vote was written to the session journal.
    pub recorded: bool,
    /// Checklists recorded so far in the session.
    pub round: u32,
    /// The arguments as received.
    pub arguments: VoteArguments,
}
