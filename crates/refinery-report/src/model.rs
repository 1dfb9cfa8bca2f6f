//! The report's view of a session: what the page shows, already read, scrubbed and ordered.
//! [`crate::load`] builds it from disk; [`crate::html`] renders it and decides nothing.

use std::collections::BTreeMap;

use crate::diff::FileChange;
use crate::files::SpendFile;
use crate::scrub::Text;

/// Who drove the session, which decides what files it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Driver {
    /// `refinery refine`: `run.json`, `round_NNN/round.json`, maybe `progress.jsonl`.
    Refine,
    /// `refinery evaluate`: `evaluation.json`.
    Evaluate,
    /// Claude Code through the MCP tools (or any MCP client): only the core's files.
    Plugin,
}

impl Driver {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Refine => "refinery refine",
            Self::Evaluate => "refinery evaluate",
            Self::Plugin => "MCP tools (Claude Code plugin)",
        }
    }
}

/// How the outcome should look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    Good,
    Warn,
    Bad,
    Neutral,
}

impl Tone {
    pub(crate) fn class(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Warn => "warn",
            Self::Bad => "bad",
            Self::Neutral => "neutral",
        }
    }
}

/// Where the session stands.
#[derive(Clone, Debug)]
pub(crate) struct StatusView {
    pub(crate) tone: Tone,
    pub(crate) headline: String,
    pub(crate) detail: Option<Text>,
    /// Whether the session is over (a verdict, a cap, an error, an interruption).
    pub(crate) ended: bool,
}

/// One criterion.
#[derive(Clone, Debug)]
pub(crate) struct CriterionView {
    pub(crate) id: Text,
    pub(crate) tier: &'static str,
    pub(crate) text: Text,
    pub(crate) rationale: Option<Text>,
    pub(crate) anti_patterns: Vec<Text>,
    pub(crate) verify_by: Option<Text>,
    pub(crate) anchors: Vec<(Text, Text)>,
}

/// How a round ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RoundVerdict {
    Converge,
    Iterate,
    /// The evaluation was unusable; the round counts as iterate.
    Unscored(Text),
    /// Submitted but not scored (yet).
    Pending,
}

impl RoundVerdict {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Converge => "converge",
            Self::Iterate => "iterate",
            Self::Unscored(_) => "unscored",
            Self::Pending => "not scored yet",
        }
    }

    pub(crate) fn tone(&self) -> Tone {
        match self {
            Self::Converge => Tone::Good,
            Self::Iterate => Tone::Warn,
            Self::Unscored(_) => Tone::Bad,
            Self::Pending => Tone::Neutral,
        }
    }
}

/// What the loop did after a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Converged,
    Continue { change_approach_for: Vec<Text> },
    Stop(&'static str),
}

/// One judge of a panel.
#[derive(Clone, Debug)]
pub(crate) struct JudgeView {
    pub(crate) name: Text,
    pub(crate) scores: BTreeMap<String, u8>,
    pub(crate) critique: Option<Text>,
    pub(crate) evidence: BTreeMap<String, Vec<Text>>,
    pub(crate) problem: Option<Text>,
}

/// One `--verify` command's result.
#[derive(Clone, Debug)]
pub(crate) struct VerifyView {
    pub(crate) command: Text,
    pub(crate) passed: bool,
    pub(crate) exit_code: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) duration_ms: u64,
    pub(crate) output: Text,
}

/// What the regression guard did.
#[derive(Clone, Debug)]
pub(crate) struct RegressionView {
    pub(crate) action: Text,
    pub(crate) regressed: Vec<Text>,
    pub(crate) reasoning: Text,
}

/// One step of an improvement spec or plan.
#[derive(Clone, Debug)]
pub(crate) struct StepView {
    pub(crate) criterion: Text,
    pub(crate) change: Text,
    pub(crate) impact: Text,
}

/// The time and money of one phase.
#[derive(Clone, Debug)]
pub(crate) struct PhaseCost {
    pub(crate) label: Text,
    pub(crate) wall_ms: Option<i64>,
    pub(crate) spend: Option<SpendFile>,
}

/// The time and money of one round.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoundCost {
    pub(crate) spend: Option<SpendFile>,
    pub(crate) wall_ms: Option<i64>,
    pub(crate) phases: Vec<PhaseCost>,
    /// The builder's own run (tool calls, tokens, time), when recorded.
    pub(crate) builder: Option<BuilderView>,
    /// Where the times come from, when they are only as precise as journal timestamps.
    pub(crate) coarse_times: bool,
}

/// The builder's run, counted by the engine.
#[derive(Clone, Debug, Default)]
pub(crate) struct BuilderView {
    pub(crate) tool_calls: u32,
    pub(crate) by_tool: Vec<(Text, u32)>,
    pub(crate) tool_errors: u32,
    pub(crate) repeated_calls: u32,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) duration_ms: u64,
}

/// A criterion as the chart and tables show it: its id as recorded (to look scores up) and
/// as shown (scrubbed).
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) key: String,
    pub(crate) shown: Text,
}

/// The trace analyzer's lessons.
#[derive(Clone, Debug, Default)]
pub(crate) struct LessonsView {
    pub(crate) keep_doing: Vec<Text>,
    pub(crate) stop_doing: Vec<Text>,
    pub(crate) critical_errors: Vec<Text>,
}

/// One round.
#[derive(Clone, Debug)]
pub(crate) struct RoundView {
    pub(crate) round: u32,
    pub(crate) verdict: RoundVerdict,
    /// The scores that decided the round (a panel's combined scores).
    pub(crate) scores: BTreeMap<String, u8>,
    pub(crate) explanation: Option<Text>,
    pub(crate) failing: Vec<Text>,
    /// Failing criteria that stopped improving, with their last scores.
    pub(crate) plateaued: Vec<(Text, Vec<u8>)>,
    pub(crate) decision: Option<Decision>,
    pub(crate) reasoning: BTreeMap<String, Text>,
    pub(crate) evidence: BTreeMap<String, Vec<Text>>,
    pub(crate) critique: Option<Text>,
    pub(crate) improvement_spec: Vec<StepView>,
    pub(crate) preserve: Vec<Text>,
    pub(crate) judges: Vec<JudgeView>,
    pub(crate) report_file: Option<(Text, Option<Text>)>,
    pub(crate) plan: Vec<StepView>,
    pub(crate) plan_vision: Option<Text>,
    pub(crate) verify: Vec<VerifyView>,
    pub(crate) fix_attempted: bool,
    pub(crate) regression: Option<RegressionView>,
    pub(crate) builder_summary: Option<Text>,
    pub(crate) lessons: Option<LessonsView>,
    pub(crate) cost: RoundCost,
    pub(crate) submitted: Option<(usize, u64)>,
    pub(crate) changes: Vec<FileChange>,
    /// What the changes are compared with.
    pub(crate) changes_against: &'static str,
}

impl RoundView {
    /// A round with nothing known about it yet but its verdict.
    pub(crate) fn new(round: u32, verdict: RoundVerdict) -> Self {
        Self {
            round,
            verdict,
            scores: BTreeMap::new(),
            explanation: None,
            failing: Vec::new(),
            plateaued: Vec::new(),
            decision: None,
            reasoning: BTreeMap::new(),
            evidence: BTreeMap::new(),
            critique: None,
            improvement_spec: Vec::new(),
            preserve: Vec::new(),
            judges: Vec::new(),
            report_file: None,
            plan: Vec::new(),
            plan_vision: None,
            verify: Vec::new(),
            fix_attempted: false,
            regression: None,
            builder_summary: None,
            lessons: None,
            cost: RoundCost::default(),
            submitted: None,
            changes: Vec::new(),
            changes_against: "",
        }
    }
}

/// Where the final deliverable is.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliverableView {
    pub(crate) location: Option<Text>,
    pub(crate) restore: Option<Text>,
    pub(crate) files: Vec<(Text, u64)>,
    pub(crate) more_files: usize,
}

/// Totals of the whole session.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) spend: Option<SpendFile>,
    pub(crate) active_ms: Option<u64>,
    pub(crate) wall_ms: Option<i64>,
    /// Time and money before round 1 (writing criteria).
    pub(crate) setup: Option<PhaseCost>,
}

/// Everything the page shows.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    pub(crate) id: Text,
    pub(crate) label: Text,
    pub(crate) created_at: Text,
    pub(crate) driver: Driver,
    pub(crate) task: Option<Text>,
    pub(crate) status: StatusView,
    pub(crate) cutoff: u8,
    pub(crate) settings: Vec<(&'static str, Text)>,
    pub(crate) criteria: Vec<CriterionView>,
    pub(crate) criteria_source: Option<&'static str>,
    /// Criteria in chart order: the stored ones first, then ids only earlier rounds used.
    pub(crate) series: Vec<Series>,
    pub(crate) rounds: Vec<RoundView>,
    pub(crate) totals: Totals,
    pub(crate) learnings: Option<Text>,
    pub(crate) deliverable: DeliverableView,
    /// Files that could not be read, in words.
    pub(crate) notes: Vec<Text>,
}
