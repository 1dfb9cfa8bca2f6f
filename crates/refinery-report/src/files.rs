//! The files a session folder may hold beyond the core's own, read as data.
//!
//! `refinery refine` writes `run.json` and `round_NNN/round.json`, `refinery evaluate` writes
//! `evaluation.json`, the binary appends `progress.jsonl`; a plugin-driven session has none of
//! them. Their types belong to the engine and may move, so the report reads them leniently
//! here (every field optional, unknown fields ignored) and never fails because one is missing
//! or older: what it cannot read it leaves out, and says so.

use std::collections::BTreeMap;
use std::path::Path;

use refinery_core::rounds::NextStep;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `run.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RunFile {
    pub(crate) task: String,
    pub(crate) builder: String,
    pub(crate) evaluator: String,
    pub(crate) panel: Vec<String>,
    pub(crate) limits: LimitsFile,
    pub(crate) verify: Vec<String>,
    pub(crate) prior_answer: Option<String>,
    pub(crate) criteria_source: Option<String>,
    pub(crate) status: StatusFile,
    pub(crate) rounds: Vec<RunRoundFile>,
    pub(crate) in_progress: Option<u32>,
    pub(crate) spend: SpendFile,
    pub(crate) elapsed_ms: u64,
}

/// The caps in `run.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LimitsFile {
    pub(crate) max_rounds: Option<u32>,
    pub(crate) min_rounds: Option<u32>,
    pub(crate) cost_budget_usd: Option<f64>,
    pub(crate) time_budget: Option<DurationFile>,
}

/// A `std::time::Duration` as serde writes it.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DurationFile {
    pub(crate) secs: u64,
    pub(crate) nanos: u32,
}

/// `RunStatus`, tagged by `status`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusFile {
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) interrupted_round: Option<u32>,
    pub(crate) round: Option<u32>,
    pub(crate) error: Option<String>,
}

/// Money and tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct SpendFile {
    pub(crate) usd: f64,
    pub(crate) unknown_cost_calls: u32,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) calls: u32,
}

impl SpendFile {
    /// What was spent between `earlier` and `self` (both cumulative).
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            usd: (self.usd - earlier.usd).max(0.0),
            unknown_cost_calls: self
                .unknown_cost_calls
                .saturating_sub(earlier.unknown_cost_calls),
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            calls: self.calls.saturating_sub(earlier.calls),
        }
    }
}

/// One finished round in `run.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RunRoundFile {
    pub(crate) round: u32,
    pub(crate) verdict: String,
    pub(crate) unscored_reason: Option<String>,
    pub(crate) next: Option<NextStep>,
    pub(crate) spend: SpendFile,
}

/// `round_NNN/round.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoundFile {
    pub(crate) builder_summary: String,
    pub(crate) verify: Vec<VerifyFile>,
    pub(crate) fix_attempted: bool,
    pub(crate) regression: Option<RegressionFile>,
    pub(crate) evaluation: Option<Value>,
    pub(crate) panel: Vec<PanelFile>,
    pub(crate) unscored_reason: Option<String>,
    pub(crate) trace: Option<TraceFile>,
    pub(crate) lessons: Option<LessonsFile>,
}

/// One `--verify` command's result.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct VerifyFile {
    pub(crate) command: String,
    pub(crate) exit_code: Option<i32>,
    pub(crate) passed: bool,
    pub(crate) timed_out: bool,
    pub(crate) output: String,
    pub(crate) duration_ms: u64,
}

/// What the regression guard did.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RegressionFile {
    pub(crate) regressed: Vec<String>,
    pub(crate) action: String,
    pub(crate) reasoning: String,
}

/// One judge of a panel.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PanelFile {
    pub(crate) evaluator: String,
    pub(crate) reply: Option<Value>,
    pub(crate) problem: Option<String>,
}

/// The builder's run, counted.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TraceFile {
    pub(crate) tool_calls: u32,
    pub(crate) by_tool: BTreeMap<String, u32>,
    pub(crate) tool_errors: u32,
    pub(crate) agent_errors: u32,
    pub(crate) repeated_calls: u32,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) duration_ms: u64,
}

/// The trace analyzer's lessons.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LessonsFile {
    #[serde(rename = "do")]
    pub(crate) keep_doing: Vec<String>,
    #[serde(rename = "dont")]
    pub(crate) stop_doing: Vec<String>,
    pub(crate) critical_errors: Vec<String>,
}

/// `evaluation.json` from `refinery evaluate`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EvaluationFile {
    pub(crate) criteria_source: Option<String>,
    pub(crate) verdict: String,
    pub(crate) passed: bool,
    pub(crate) evidence: BTreeMap<String, Vec<String>>,
    pub(crate) critique: String,
    pub(crate) improvement_spec: Vec<SpecFile>,
    pub(crate) preserve: Vec<String>,
    pub(crate) unscored_reason: Option<String>,
    pub(crate) spend: SpendFile,
}

/// One step of an improvement spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SpecFile {
    pub(crate) criterion: String,
    pub(crate) change: String,
    pub(crate) impact: String,
}

/// An evaluator's reply (the combined one, or one judge's), as far as the report shows it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EvaluationReply {
    pub(crate) scores: BTreeMap<String, FindingFile>,
    pub(crate) critique: String,
    pub(crate) improvement_spec: Vec<SpecFile>,
    pub(crate) preserve: Vec<String>,
}

/// One criterion's finding in a reply.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FindingFile {
    pub(crate) score: Option<i64>,
    pub(crate) evidence: Vec<String>,
    pub(crate) reasoning: String,
}

impl EvaluationReply {
    /// The reply in `value`, or `None` when it is not an object of this shape.
    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// Scores that are whole numbers 0–10.
    pub(crate) fn scores(&self) -> BTreeMap<String, u8> {
        self.scores
            .iter()
            .filter_map(|(id, finding)| {
                let score = u8::try_from(finding.score?)
                    .ok()
                    .filter(|score| *score <= 10)?;
                Some((id.clone(), score))
            })
            .collect()
    }
}

/// Reads a JSON file leniently: `Ok(None)` when it is missing, `Err(reason)` when it exists
/// but cannot be read or parsed (the report then says so instead of failing).
pub(crate) fn read_lenient<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match fs_err::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| format!("{} could not be read: {err}", file_name(path))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// Reads a text file; `None` when it is missing or unreadable.
pub(crate) fn read_text(path: &Path) -> Option<String> {
    fs_err::read_to_string(path).ok()
}

fn file_name(path: &Path) -> String {
    let mut parts: Vec<String> = path
        .iter()
        .rev()
        .take(2)
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}
