//! What a refine run keeps on disk, and the summary made from it.
//!
//! `run.json` ([`RunRecord`]) holds the settings, totals and one [`RoundSummary`] per finished
//! round; `round_NNN/round.json` ([`RoundFile`]) holds what each phase of that round produced.
//! These shapes are a file format: `--resume`, `refinery session` and reports read them, so
//! fields are only ever added (with defaults), never renamed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use refinery_core::copies::Copies;
use refinery_core::fsutil::read_json;
use refinery_core::judgment::{Block, Quorum, Spread};
use refinery_core::latest;
use refinery_core::rounds::{LoopLimits, NextStep, StopReason};
use refinery_core::{Session, StateDir, Verdict};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::events::CriterionLine;
use crate::meter::{Meter, Spend};
use crate::outputs::{Evaluation, TraceLessons};
use crate::trace::TraceStats;
use crate::verify::VerifyResult;

/// `run.json`, in the session folder.
pub(crate) const RUN_FILE: &str = "run.json";
/// Its durable log (see [`refinery_core::latest`]).
pub(crate) const RUN_LOG: &str = "run.jsonl";
/// `round.json`, in each round's folder.
pub(crate) const ROUND_FILE: &str = "round.json";

/// Where the criteria came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriteriaSource {
    /// `--criteria` / `--criteria-file`.
    User,
    /// The criteria writer.
    Writer,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    /// Not finished (running, or killed without a chance to say so).
    Running,
    /// Every criterion met the bar.
    Converged,
    /// A cap or a plateau stopped it; the deliverable is saved.
    Stopped {
        /// Which.
        reason: StopReason,
        /// Set when the stop came in the middle of a round (that round was not evaluated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupted_round: Option<u32>,
    },
    /// Ctrl-C; `--resume` continues.
    Interrupted {
        /// The round that was cut short.
        round: Option<u32>,
    },
    /// An error; `--resume` retries from the last finished round.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl RunStatus {
    /// The status a decision ends the run with, `None` when another round follows.
    pub(crate) fn after(next: &NextStep) -> Option<RunStatus> {
        match next {
            NextStep::Converged => Some(RunStatus::Converged),
            NextStep::Stop { reason } => Some(RunStatus::Stopped {
                reason: *reason,
                interrupted_round: None,
            }),
            NextStep::Continue { .. } => None,
        }
    }
}

/// What the regression guard did with a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// No criterion got worse in both blind orders.
    Accepted,
    /// Something got worse; the builder's one repair was accepted.
    Repaired,
    /// Still worse after the repair: the previous round's files were put back.
    Reverted,
    /// The guard's output stayed unusable (or a repair could not be checked again): nobody
    /// checked that the round did not make things worse, so it cannot converge. Its own state,
    /// never "accepted" or "repaired". (`guard_unusable` in files written before.)
    #[serde(alias = "guard_unusable")]
    Unchecked,
}

/// What the regression guard did in a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Criteria worse in both blind orders (before any repair).
    pub regressed: Vec<String>,
    /// What was done about them.
    pub action: GuardAction,
    /// The guard's reasoning, both orders.
    #[serde(default)]
    pub reasoning: String,
}

/// How a round was judged: the core's verdict, or no verdict at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundVerdict {
    /// Every criterion met the bar.
    Converge,
    /// At least one criterion is below the bar.
    Iterate,
    /// The evaluation was unusable; the round counts as iterate.
    Unscored,
}

impl RoundVerdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundVerdict::Converge => "converge",
            RoundVerdict::Iterate => "iterate",
            RoundVerdict::Unscored => "unscored",
        }
    }
}

impl From<Verdict> for RoundVerdict {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Converge => RoundVerdict::Converge,
            Verdict::Iterate => RoundVerdict::Iterate,
        }
    }
}

impl fmt::Display for RoundVerdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One finished round, as `run.json` and the summary list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round.
    pub round: u32,
    /// Scores by criterion (empty when the evaluation was unusable).
    pub scores: BTreeMap<String, u8>,
    /// The verdict.
    pub verdict: RoundVerdict,
    /// Why the round is unscored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored_reason: Option<String>,
    /// `--verify` outcome: all passed (`None` without commands).
    #[serde(default)]
    pub verify_passed: Option<bool>,
    /// What the regression guard did.
    #[serde(default)]
    pub regression: Option<RegressionReport>,
    /// The builder (fix attempt included) left every file as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builder_changed_nothing: bool,
    /// Why the round did not converge although its scores passed (checks made in code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<Block>,
    /// Criteria whose score was not accepted as passing, with why (evidence citing a file or
    /// line the snapshot does not hold).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, String>,
    /// For a panel: how many judges were usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// For a panel: each criterion's spread across the judges.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spread: BTreeMap<String, Spread>,
    /// Criteria whose gain since the previous scored round is smaller than the judges' own
    /// spread: "within judge disagreement".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub within_disagreement: Vec<String>,
    /// The builder's run, counted (tool calls, errors, repeats, tokens, time).
    #[serde(default)]
    pub trace: TraceStats,
    /// What the loop decided after the round.
    pub next: NextStep,
    /// Totals after the round.
    pub spend: Spend,
}

/// `run.json`: everything needed to report on or resume a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// File format version.
    pub version: u32,
    /// The task.
    pub task: String,
    /// The builder backend, as named.
    pub builder: String,
    /// The evaluator backend, as named.
    pub evaluator: String,
    /// Further judges of each round, as named.
    #[serde(default)]
    pub panel: Vec<String>,
    /// The caps.
    pub limits: LoopLimits,
    /// `--verify` commands.
    pub verify: Vec<String>,
    /// `--prior-answer`, relative to the workspace.
    pub prior_answer: Option<String>,
    /// Where the criteria came from (`None` until they exist).
    pub criteria_source: Option<CriteriaSource>,
    /// Where the run stands.
    pub status: RunStatus,
    /// Finished rounds.
    pub rounds: Vec<RoundSummary>,
    /// The round under way, if any.
    pub in_progress: Option<u32>,
    /// Money and tokens so far.
    pub spend: Spend,
    /// Active time so far, in milliseconds.
    pub elapsed_ms: u64,
    /// The round whose decision forced a change of approach, if any.
    pub forced_change_round: Option<u32>,
    /// Set when the run stopped without converging and an earlier round scored best: the
    /// workspace was put back to that round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_round: Option<BestRound>,
    /// The latest `handoff.md`, what the next round's builder reads. Kept here so that one
    /// durable write of this file concludes a round: the Markdown files are atomic but
    /// unsynced copies, for people. `None` before the first handoff and in runs saved by
    /// earlier versions (their resume reads the files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
    /// The lessons so far, as `learnings.md` holds them (kept here for the same reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learnings: Option<String>,
    /// The latest round's `round.json`, saved here (durably) before the core records that
    /// round, so the file itself is an unsynced copy: a resume that finds the core a round
    /// ahead of `rounds` concludes that round from this. Cleared once the round is concluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) judged: Option<RoundFile>,
    /// When the run started.
    pub created_at: String,
    /// When this file was last written.
    pub updated_at: String,
}

/// The round a stopped run delivers in place of its latest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BestRound {
    /// The best-scoring round, whose files the workspace holds.
    pub round: u32,
    /// The latest round, whose files were replaced (kept in the session:
    /// `round_NNN/replaced.json` and the object store).
    pub replaced: u32,
}

/// What `round_NNN/round.json` keeps about one round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoundFile {
    pub round: u32,
    pub builder_summary: String,
    pub verify: Vec<VerifyResult>,
    pub fix_attempted: bool,
    /// The builder (fix attempt included) left every file as it was.
    #[serde(default)]
    pub builder_changed_nothing: bool,
    pub regression: Option<RegressionReport>,
    /// The evaluation the round is scored by: the evaluator's validated reply, or the panel's
    /// replies combined.
    pub evaluation: Option<Evaluation>,
    /// Each judge's own reply (or why it was unusable).
    #[serde(default)]
    pub panel: Vec<PanelVerdict>,
    /// How many judges were asked and usable.
    #[serde(default)]
    pub quorum: Option<Quorum>,
    /// For a panel: each criterion's spread across the judges.
    #[serde(default)]
    pub spread: BTreeMap<String, Spread>,
    /// Criteria whose score is not accepted as passing, with why.
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
    pub unscored_reason: Option<String>,
    pub trace: TraceStats,
    pub lessons: Option<TraceLessons>,
    /// The analyzer's lessons that the computed statistics contradict, dropped.
    #[serde(default)]
    pub dropped_lessons: Vec<String>,
}

impl RoundFile {
    /// Reads a round's file; a round that never wrote one reads as empty (unscored).
    pub(crate) fn load(session: &Session, round: u32) -> Result<Self, EngineError> {
        Ok(read_json(&session.round_dir(round).join(ROUND_FILE))?.unwrap_or_default())
    }

    /// Hands the round's file for people and reports to the run's writer of copies: what a
    /// resume needs of it is saved in the run's record first ([`RunRecord::judged`]).
    pub(crate) fn save_copy(&self, session: &Session, copies: &Copies) {
        copies.write_json(session.round_dir(self.round).join(ROUND_FILE), self.clone());
    }
}

/// One judge's verdict on a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PanelVerdict {
    pub evaluator: String,
    pub reply: Option<Evaluation>,
    pub problem: Option<String>,
    /// Per criterion, the citations in this judge's evidence the snapshot does not hold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unverified: BTreeMap<String, Vec<String>>,
}

/// Whether `session_id` is a run whose start finished (its record was saved): a session
/// killed while it was starting has none and cannot be resumed.
pub fn run_started(store: &StateDir, session_id: &str) -> bool {
    store
        .existing_session(session_id)
        .is_ok_and(|session| latest::exists(session.dir(), RUN_LOG, RUN_FILE))
}

/// Reads a session's run record (the log's latest, [`latest::load`]), for `--resume` and
/// reports.
pub fn load_run(store: &StateDir, session_id: &str) -> Result<(Session, RunRecord), EngineError> {
    let session = store.existing_session(session_id)?;
    let record = latest::load::<RunRecord>(session.dir(), RUN_LOG, RUN_FILE)?.ok_or_else(|| {
        EngineError::Setup(format!(
            "session `{session_id}` was not started by `refinery refine` (it has no run.json); start a new run instead"
        ))
    })?;
    Ok((session, record))
}

/// A driver's record file (`run.json` of `refine`, `consensus.json` of `run`): the totals
/// every save stamps on it.
pub(crate) trait Journal: Serialize {
    /// Its file name in the session folder (a copy for people and reports).
    const FILE: &'static str;
    /// The log that keeps it durably ([`refinery_core::latest`]).
    const LOG: &'static str;
    /// Sets the totals a save writes.
    fn stamp(&mut self, spend: Spend, elapsed_ms: u64, updated_at: String);
}

/// The record of a run in progress, and where it is written.
#[derive(Debug)]
pub(crate) struct JournalFile<T> {
    pub record: T,
    dir: PathBuf,
    /// Writes the copy for people (`run.json`, `consensus.json`) off the run's thread.
    copies: Copies,
}

impl<T: Journal + Clone + Send + 'static> JournalFile<T> {
    pub(crate) fn new(session: &Session, record: T, copies: &Copies) -> Self {
        Self {
            record,
            dir: session.dir().to_path_buf(),
            copies: copies.clone(),
        }
    }

    /// Saves the record with the meter's totals: durable in the log when this returns, its
    /// copy for people handed to the run's writer of copies. A copy that failed since the
    /// last save fails this one (a disk that fails still fails the run).
    pub(crate) fn save(&mut self, meter: &Meter) -> Result<(), EngineError> {
        self.save_for_resume(meter)?;
        self.copies
            .write_json(self.dir.join(T::FILE), self.record.clone());
        Ok(())
    }

    /// [`JournalFile::save`] for a resume only: the copy for people is left as the last full
    /// save wrote it ([`latest::save`]).
    pub(crate) fn save_for_resume(&mut self, meter: &Meter) -> Result<(), EngineError> {
        self.copies.check()?;
        self.stamp(meter);
        latest::save(&self.dir, T::LOG, &self.record)?;
        Ok(())
    }

    fn stamp(&mut self, meter: &Meter) {
        self.record.stamp(
            meter.spend(),
            millis(meter.elapsed()),
            refinery_core::rfc3339(OffsetDateTime::now_utc()),
        );
    }
}

/// `run.json` of a `refine` in progress.
pub(crate) type RunFile = JournalFile<RunRecord>;

impl Journal for RunRecord {
    const FILE: &'static str = RUN_FILE;
    const LOG: &'static str = RUN_LOG;

    fn stamp(&mut self, spend: Spend, elapsed_ms: u64, updated_at: String) {
        self.spend = spend;
        self.elapsed_ms = elapsed_ms;
        self.updated_at = updated_at;
    }
}

impl RunFile {
    /// The round after the last finished one.
    pub(crate) fn next_round(&self) -> u32 {
        u32::try_from(self.record.rounds.len()).unwrap_or(u32::MAX) + 1
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    /// The session id.
    pub session: String,
    /// The session folder.
    pub session_dir: PathBuf,
    /// The workspace holding the deliverable.
    pub workspace: PathBuf,
    /// How the run ended.
    pub status: RunStatus,
    /// The criteria.
    pub criteria: Vec<CriterionLine>,
    /// Finished rounds.
    pub rounds: Vec<RoundSummary>,
    /// Per criterion, its score in each round (`None` for unscored rounds).
    pub score_history: BTreeMap<String, Vec<Option<u8>>>,
    /// Money and tokens.
    pub spend: Spend,
    /// Active time in milliseconds.
    pub elapsed_ms: u64,
    /// Where the deliverable is and what it holds.
    pub deliverable: String,
    /// Set when the workspace was put back to an earlier, better-scoring round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_round: Option<BestRound>,
}

impl RunSummary {
    /// The summary of a run as its record stands.
    pub(crate) fn of(
        store: &StateDir,
        session: &Session,
        record: &RunRecord,
        meter: &Meter,
    ) -> Result<Self, EngineError> {
        let criteria = session
            .criteria()?
            .map(|set| crate::events::lines(&set))
            .unwrap_or_default();
        let mut score_history: BTreeMap<String, Vec<Option<u8>>> = criteria
            .iter()
            .map(|criterion| (criterion.id.clone(), Vec::new()))
            .collect();
        for summary in &record.rounds {
            for (id, history) in &mut score_history {
                history.push(summary.scores.get(id).copied());
            }
        }
        let workspace = store.workspace().to_path_buf();
        Ok(RunSummary {
            session: session.id().to_string(),
            session_dir: session.dir().to_path_buf(),
            deliverable: deliverable_note(&workspace, session, record),
            workspace,
            status: record.status.clone(),
            criteria,
            rounds: record.rounds.clone(),
            score_history,
            spend: meter.spend(),
            elapsed_ms: millis(meter.elapsed()),
            best_round: record.best_round,
        })
    }
}

/// Where the deliverable is, and which round's version it holds.
fn deliverable_note(workspace: &std::path::Path, session: &Session, record: &RunRecord) -> String {
    let last = record.rounds.last().map(|summary| summary.round);
    if let (RunStatus::Stopped { .. }, Some(best)) = (&record.status, record.best_round) {
        let BestRound { round, replaced } = best;
        let kept = if record
            .rounds
            .iter()
            .any(|summary| summary.round == replaced)
        {
            format!(
                "round {replaced}'s files, which scored lower, were replaced and are kept in the session (refinery session restore {} --round {replaced} --to DIR)",
                session.id()
            )
        } else {
            format!(
                "round {replaced} was cut short; its unevaluated files were replaced and are kept in the session ({})",
                session.round_dir(replaced).join("replaced.json").display()
            )
        };
        return format!(
            "in {} (round {round}, the best-scoring round; {kept})",
            workspace.display()
        );
    }
    match (&record.status, last) {
        (
            RunStatus::Stopped {
                interrupted_round: Some(cut),
                ..
            }
            | RunStatus::Interrupted { round: Some(cut) },
            Some(last),
        ) => format!(
            "in {} — round {cut} was cut short and its unevaluated changes are there; round {last}'s evaluated version is kept in the session (refinery session restore {} --round {last} --to DIR)",
            workspace.display(),
            session.id()
        ),
        (_, Some(last)) => format!(
            "in {} (round {last}, also snapshotted in the session)",
            workspace.display()
        ),
        (_, None) => format!("in {} (no round finished)", workspace.display()),
    }
}
