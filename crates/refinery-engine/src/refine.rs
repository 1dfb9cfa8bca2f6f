//! The refine loop: one round after another, each with new processes, until the core says
//! converge or stop.
//!
//! A round: build (fresh builder, handoff from disk) → verify (one fix attempt) → regression
//! guard (blind, both orders, one repair, else revert) → submit (core snapshot) → evaluate and
//! analyze the trace in parallel → decide (core) → write learnings and `handoff.md`.
//!
//! Everything a later round or a resumed run needs is on disk in the session folder:
//! `run.json` (settings, totals, per-round summaries), `round_NNN/round.json` (what each phase
//! produced), `handoff.md`, `learnings.md`, and the core's own state and snapshots. The order
//! of writes makes a crash at any point resumable: a round counts as done once the core has
//! recorded its checklist, and the decision after it is a pure function that is simply
//! computed again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use refinery_core::fsutil::{LockGuard, read_json, write_json};
use refinery_core::rounds::{
    BlindComparisons, LoopLimits, LoopProgress, NextStep, Preference, RegressionAction,
    RoundEvaluation, StopReason, decide_next, regression_action,
};
use refinery_core::snapshot::take_snapshot;
use refinery_core::{
    ChecklistOutcome, CriteriaSet, ManifestEntry, Session, SessionSettings, StateDir, Verdict,
};
use refinery_llm::AgentEvent;
use refinery_prompts::Role;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backend::{Access, Backend, CallSpec, role_label};
use crate::briefs::{self, BuilderBrief, EvaluatorBrief};
use crate::error::{EngineError, Halt};
use crate::handoff::{HandoffInput, append_learnings, render_handoff};
use crate::meter::{Meter, Spend};
use crate::outputs::{
    CriteriaWriterOutput, EvaluatorOutput, RegressionGuardOutput, TraceLessons,
    parse_criteria_writer, parse_evaluator, parse_regression_guard, parse_trace_lessons,
    schema_for,
};
use crate::pack::{self, Scrubber};
use crate::trace::{self, TraceStats};
use crate::verify::{self, VerifyResult};

const RUN_FILE: &str = "run.json";
const RUN_LOCK: &str = ".run.lock";
const ROUND_FILE: &str = "round.json";
const BASELINE_FILE: &str = "baseline.json";
const HANDOFF_FILE: &str = "handoff.md";
const LEARNINGS_FILE: &str = "learnings.md";
/// How many times a judge is asked before its output counts as unusable.
pub(crate) const JUDGE_ATTEMPTS: u32 = 2;
/// Most text of the previous version put in a repair brief.
const REPAIR_PACK_LIMIT: usize = 64 * 1024;

/// What to refine and within which limits.
#[derive(Clone, Debug)]
pub struct RefineConfig {
    /// The task, in the user's words.
    pub task: String,
    /// Criteria given by the user; `None` has the criteria writer write them.
    pub criteria: Option<CriteriaSet>,
    /// An existing version to improve, relative to the workspace.
    pub prior_answer: Option<String>,
    /// The caps.
    pub limits: LoopLimits,
    /// Commands that check the deliverable.
    pub verify: Vec<String>,
    /// A label for the session id.
    pub label: String,
}

/// Which backend plays which role.
#[derive(Clone, Debug)]
pub struct Roles {
    /// Builds and repairs (and fixes failing checks).
    pub builder: Backend,
    /// Writes criteria, judges rounds, guards against regressions, analyzes traces.
    pub evaluator: Backend,
    /// More judges of each round, in parallel and blind to each other; the core combines their
    /// scores (the lower median per criterion).
    pub panel: Vec<Backend>,
}

/// What the driver supplies about the machine.
#[derive(Clone, Debug)]
pub struct Environment {
    /// The environment of `--verify` commands.
    pub env: BTreeMap<String, String>,
    /// Masks secrets in anything sent to a model or saved.
    pub scrubber: Scrubber,
    /// Longest one model call or agent process may take.
    pub call_timeout: Duration,
    /// Longest one `--verify` command may take.
    pub verify_timeout: Duration,
}

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

/// What the regression guard did in a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Criteria worse in both blind orders (before any repair).
    pub regressed: Vec<String>,
    /// `accepted`, `repaired`, `reverted` or `guard_unusable`.
    pub action: String,
    /// The guard's reasoning, both orders.
    #[serde(default)]
    pub reasoning: String,
}

/// One finished round, as `run.json` and the summary list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round.
    pub round: u32,
    /// Scores by criterion (empty when the evaluation was unusable).
    pub scores: BTreeMap<String, u8>,
    /// `converge`, `iterate` or `unscored`.
    pub verdict: String,
    /// Why the round is unscored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored_reason: Option<String>,
    /// `--verify` outcome: all passed (`None` without commands).
    #[serde(default)]
    pub verify_passed: Option<bool>,
    /// What the regression guard did.
    #[serde(default)]
    pub regression: Option<RegressionReport>,
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
    /// When the run started.
    pub created_at: String,
    /// When this file was last written.
    pub updated_at: String,
}

/// What `round_NNN/round.json` keeps about one round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RoundFile {
    round: u32,
    builder_summary: String,
    verify: Vec<VerifyResult>,
    fix_attempted: bool,
    regression: Option<RegressionReport>,
    /// The evaluation the round is scored by: the evaluator's validated reply, or the panel's
    /// replies combined.
    evaluation: Option<Value>,
    /// Each judge's own reply (or why it was unusable), when there is more than one judge.
    #[serde(default)]
    panel: Vec<PanelVerdict>,
    unscored_reason: Option<String>,
    trace: TraceStats,
    lessons: Option<TraceLessons>,
}

/// One judge's verdict on a round.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PanelVerdict {
    evaluator: String,
    reply: Option<Value>,
    problem: Option<String>,
}

/// Scores by criterion from a validated evaluator reply.
fn scores_of(reply: &Value) -> BTreeMap<String, u8> {
    reply["scores"]
        .as_object()
        .map(|scores| {
            scores
                .iter()
                .filter_map(|(id, finding)| {
                    let score = finding["score"]
                        .as_u64()
                        .and_then(|score| u8::try_from(score).ok())?;
                    Some((id.clone(), score))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A phase of a round, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Writing criteria.
    Criteria,
    /// The builder works.
    Build,
    /// `--verify` commands run.
    Verify,
    /// The builder's fix attempt.
    Fix,
    /// Blind comparison with the previous round.
    RegressionGuard,
    /// The builder's repair attempt.
    Repair,
    /// Snapshot through the core.
    Submit,
    /// Evaluator and trace analyzer.
    Evaluate,
}

impl Phase {
    /// How the phase reads in progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Criteria => "writing criteria",
            Phase::Build => "building",
            Phase::Verify => "verifying",
            Phase::Fix => "fixing failed checks",
            Phase::RegressionGuard => "regression guard",
            Phase::Repair => "repairing a regression",
            Phase::Submit => "snapshot",
            Phase::Evaluate => "evaluating",
        }
    }
}

/// One criterion, for events and summaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CriterionLine {
    /// Id.
    pub id: String,
    /// primary / standard / stretch.
    pub category: String,
    /// Text.
    pub text: String,
}

/// What the loop reports as it goes; the driver renders these (bar, lines or JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RefineEvent {
    /// The session is ready.
    Session {
        /// Its id.
        session: String,
        /// Its folder.
        dir: PathBuf,
        /// Whether this continues an earlier run.
        resumed: bool,
        /// Builder backend.
        builder: String,
        /// Evaluator backend.
        evaluator: String,
        /// Further judges.
        panel: Vec<String>,
    },
    /// The criteria in use.
    Criteria {
        /// Where they came from.
        source: CriteriaSource,
        /// The criteria.
        criteria: Vec<CriterionLine>,
        /// Advice that did not block the run (a count outside 3–7).
        warnings: Vec<String>,
    },
    /// A round begins.
    RoundStarted {
        /// The round.
        round: u32,
        /// The cap.
        max_rounds: u32,
    },
    /// A phase begins.
    Phase {
        /// The round (0 before the first).
        round: u32,
        /// The phase.
        phase: Phase,
    },
    /// The builder used a tool.
    Activity {
        /// The round.
        round: u32,
        /// The tool.
        tool: String,
    },
    /// A `--verify` command finished.
    Verify {
        /// The round.
        round: u32,
        /// The command.
        command: String,
        /// Whether it passed.
        passed: bool,
        /// Its exit code.
        exit_code: Option<i32>,
    },
    /// The regression guard's outcome.
    Regression {
        /// The round.
        round: u32,
        /// What it found and did.
        report: RegressionReport,
    },
    /// The round was snapshotted.
    Submitted {
        /// The round.
        round: u32,
        /// Files stored.
        files: usize,
        /// Their size.
        bytes: u64,
    },
    /// The round was scored.
    Scored {
        /// The round.
        round: u32,
        /// Scores by criterion.
        scores: BTreeMap<String, u8>,
        /// The verdict.
        verdict: String,
    },
    /// One judge of a panel scored the round (only with more than one judge).
    Judged {
        /// The round.
        round: u32,
        /// The judge.
        evaluator: String,
        /// Its scores, when its reply was usable.
        scores: Option<BTreeMap<String, u8>>,
        /// Why its reply was unusable.
        problem: Option<String>,
    },
    /// The evaluation was unusable; the round counts as iterate.
    Unscored {
        /// The round.
        round: u32,
        /// Why.
        reason: String,
    },
    /// What follows the round.
    Decision {
        /// The round.
        round: u32,
        /// The decision.
        next: NextStep,
    },
    /// Totals after a model call.
    Spend {
        /// Money and tokens.
        spend: Spend,
        /// Active time in milliseconds.
        elapsed_ms: u64,
    },
    /// The run ended (for now).
    Finished {
        /// How.
        status: RunStatus,
    },
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
}

/// Reads a session's `run.json`, for `--resume` and reports.
pub fn load_run(store: &StateDir, session_id: &str) -> Result<(Session, RunRecord), EngineError> {
    let session = store.existing_session(session_id)?;
    let record = read_json::<RunRecord>(&session.dir().join(RUN_FILE))?.ok_or_else(|| {
        EngineError::Setup(format!(
            "session `{session_id}` was not started by `refinery refine` (it has no run.json); start a new run instead"
        ))
    })?;
    Ok((session, record))
}

/// A run in progress, holding the session's run lock.
pub struct Refiner {
    store: StateDir,
    session: Session,
    record: RunRecord,
    roles: Roles,
    env: Environment,
    meter: Meter,
    resumed: bool,
    _lock: LockGuard,
}

impl std::fmt::Debug for Refiner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Refiner")
            .field("session", self.session.id())
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn take_lock(session: &Session) -> Result<LockGuard, EngineError> {
    LockGuard::try_acquire(&session.dir().join(RUN_LOCK))?.ok_or_else(|| {
        EngineError::Setup(format!(
            "session `{}` is being run by another `refinery refine`; wait for it or stop it first",
            session.id()
        ))
    })
}

fn check_budget(limits: &LoopLimits, roles: &Roles) -> Result<(), EngineError> {
    if limits.cost_budget_usd.is_some() {
        for backend in [&roles.builder, &roles.evaluator]
            .into_iter()
            .chain(&roles.panel)
        {
            if let Some(problem) = backend.budget_problem() {
                return Err(EngineError::Setup(problem));
            }
        }
    }
    Ok(())
}

impl Refiner {
    /// Starts a new run: a new session, the baseline snapshot, the user's criteria if any.
    pub fn start(
        store: StateDir,
        config: RefineConfig,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        check_budget(&config.limits, &roles)?;
        if config.limits.max_rounds == 0 || config.limits.min_rounds > config.limits.max_rounds {
            return Err(EngineError::Setup(format!(
                "--min-rounds {} and --max-rounds {} leave no round to run; max-rounds must be at least 1 and at least min-rounds",
                config.limits.min_rounds, config.limits.max_rounds
            )));
        }
        let started = now();
        let session = store.init_session(
            &config.label,
            SessionSettings {
                max_rounds: None,
                ..SessionSettings::default()
            },
            started,
        )?;
        let lock = take_lock(&session)?;
        fs_err::write(store.root().join(".gitignore"), "*\n")?;
        // The workspace as it was before any round, so an interrupted first round can be
        // undone on resume.
        let baseline = take_snapshot(
            &store.objects(),
            store.workspace(),
            &[store.root().to_path_buf()],
            &[".".to_owned()],
        )?;
        write_json(&session.dir().join(BASELINE_FILE), &baseline.entries)?;
        let criteria_source = match &config.criteria {
            Some(criteria) => {
                session.register_criteria(criteria, started)?;
                Some(CriteriaSource::User)
            }
            None => None,
        };
        let record = RunRecord {
            version: 1,
            // The task is sent to models and saved; a key pasted into it must be neither.
            task: env.scrubber.scrub(&config.task),
            builder: roles.builder.spec().to_string(),
            evaluator: roles.evaluator.spec().to_string(),
            panel: roles
                .panel
                .iter()
                .map(|judge| judge.spec().to_string())
                .collect(),
            limits: config.limits,
            verify: config.verify,
            prior_answer: config.prior_answer,
            criteria_source,
            status: RunStatus::Running,
            rounds: Vec::new(),
            in_progress: None,
            spend: Spend::default(),
            elapsed_ms: 0,
            forced_change_round: None,
            created_at: refinery_core::rfc3339(started),
            updated_at: refinery_core::rfc3339(started),
        };
        write_json(&session.dir().join(RUN_FILE), &record)?;
        let meter = Meter::new(record.limits, Spend::default(), Duration::ZERO);
        Ok(Self {
            store,
            session,
            record,
            roles,
            env,
            meter,
            resumed: false,
            _lock: lock,
        })
    }

    /// Continues a run from its last finished round. `limits` replaces the stored caps (the
    /// driver merges the flags given now with the stored ones).
    pub fn resume(
        store: StateDir,
        session_id: &str,
        limits: LoopLimits,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        let (session, mut record) = load_run(&store, session_id)?;
        let lock = take_lock(&session)?;
        check_budget(&limits, &roles)?;
        record.limits = limits;
        record.builder = roles.builder.spec().to_string();
        record.evaluator = roles.evaluator.spec().to_string();
        record.panel = roles
            .panel
            .iter()
            .map(|judge| judge.spec().to_string())
            .collect();
        let meter = Meter::new(
            record.limits,
            record.spend,
            Duration::from_millis(record.elapsed_ms),
        );
        Ok(Self {
            store,
            session,
            record,
            roles,
            env,
            meter,
            resumed: true,
            _lock: lock,
        })
    }

    /// The session this run writes to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn save(&mut self) -> Result<(), EngineError> {
        self.record.spend = self.meter.spend();
        self.record.elapsed_ms = millis(self.meter.elapsed());
        self.record.updated_at = refinery_core::rfc3339(now());
        write_json(&self.session.dir().join(RUN_FILE), &self.record)?;
        Ok(())
    }

    fn state_dir_note(&self) -> String {
        self.store
            .root()
            .strip_prefix(self.store.workspace())
            .map_or_else(
                |_| self.store.root().display().to_string(),
                |relative| relative.display().to_string(),
            )
    }

    /// Runs rounds until the core says converge or stop, a cap halts the run, or `cancel`
    /// fires. State is saved after every step; the returned summary says how it ended.
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<RunSummary, EngineError> {
        on_event(&RefineEvent::Session {
            session: self.session.id().to_string(),
            dir: self.session.dir().to_path_buf(),
            resumed: self.resumed,
            builder: self.record.builder.clone(),
            evaluator: self.record.evaluator.clone(),
            panel: self.record.panel.clone(),
        });
        let outcome = self.drive(cancel, on_event).await;
        let status = match outcome {
            Ok(status) => status,
            Err(EngineError::Halted(halt)) => match halt {
                Halt::Cancelled => RunStatus::Interrupted {
                    round: self.record.in_progress,
                },
                Halt::CostBudget => RunStatus::Stopped {
                    reason: StopReason::CostBudget,
                    interrupted_round: self.record.in_progress,
                },
                Halt::TimeBudget => RunStatus::Stopped {
                    reason: StopReason::TimeBudget,
                    interrupted_round: self.record.in_progress,
                },
            },
            Err(error) => {
                self.record.status = RunStatus::Failed {
                    error: error.to_string(),
                };
                // The original error matters more than a failure to record it.
                let _ = self.save();
                return Err(error);
            }
        };
        self.record.status = status.clone();
        self.save()?;
        on_event(&RefineEvent::Finished { status });
        self.summary()
    }

    async fn drive(
        &mut self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<RunStatus, EngineError> {
        let criteria = self.ensure_criteria(cancel, on_event).await?;
        self.recover(&criteria)?;
        // A resumed run re-decides after its last round under the limits given now, so a
        // run stopped by max-rounds can be given more rounds.
        if let Some(last) = self.record.rounds.last() {
            let outcome = if last.verdict == "unscored" {
                None
            } else {
                self.recorded_outcome(last.round)?
            };
            let next = self.decide(last.round, outcome.as_ref());
            if let Some(summary) = self.record.rounds.last_mut() {
                summary.next = next.clone();
            }
            if let Some(status) = terminal(&next) {
                return Ok(status);
            }
        }
        loop {
            let round = u32::try_from(self.record.rounds.len()).unwrap_or(u32::MAX) + 1;
            self.meter.check_time()?;
            self.record.in_progress = Some(round);
            self.save()?;
            on_event(&RefineEvent::RoundStarted {
                round,
                max_rounds: self.record.limits.max_rounds,
            });
            let summary = self.round(round, &criteria, cancel, on_event).await?;
            on_event(&RefineEvent::Decision {
                round,
                next: summary.next.clone(),
            });
            let next = summary.next.clone();
            self.record.rounds.push(summary);
            self.record.in_progress = None;
            self.save()?;
            if let Some(status) = terminal(&next) {
                return Ok(status);
            }
        }
    }

    async fn ensure_criteria(
        &mut self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<CriteriaSet, EngineError> {
        if let Some(criteria) = self.session.criteria()? {
            let source = self.record.criteria_source.unwrap_or(CriteriaSource::User);
            on_event(&RefineEvent::Criteria {
                source,
                criteria: lines(&criteria),
                warnings: criteria_advice(&criteria),
            });
            return Ok(criteria);
        }
        on_event(&RefineEvent::Phase {
            round: 0,
            phase: Phase::Criteria,
        });
        let existing = self.workspace_pack()?;
        let existing = (!existing.entries_empty).then_some(existing.text);
        let prompt = briefs::criteria_writer(&self.record.task, existing.as_deref());
        let workspace = self.store.workspace().to_path_buf();
        let outcome = self
            .ask_judge(
                &self.roles.evaluator,
                Role::CriteriaWriter,
                prompt,
                schema_for::<CriteriaWriterOutput>(),
                &workspace,
                1.0,
                parse_criteria_writer,
                cancel,
            )
            .await?;
        self.emit_spend(on_event);
        let criteria = outcome.map_err(|reason| {
            EngineError::Setup(format!(
                "the criteria writer gave no usable criteria after {JUDGE_ATTEMPTS} attempts ({reason}); pass --criteria or --criteria-file, or try another --evaluator"
            ))
        })?;
        self.session.register_criteria(&criteria, now())?;
        self.record.criteria_source = Some(CriteriaSource::Writer);
        self.save()?;
        on_event(&RefineEvent::Criteria {
            source: CriteriaSource::Writer,
            criteria: lines(&criteria),
            warnings: Vec::new(),
        });
        Ok(criteria)
    }

    /// Brings `run.json` in line with the core after a crash: a round the core finished is
    /// recorded, and a round cut short is undone so it can start clean.
    fn recover(&mut self, criteria: &CriteriaSet) -> Result<(), EngineError> {
        let core_round = self.session.state()?.round;
        while u32::try_from(self.record.rounds.len()).unwrap_or(u32::MAX) < core_round {
            let round = u32::try_from(self.record.rounds.len()).unwrap_or(u32::MAX) + 1;
            let file: RoundFile =
                read_json(&self.session.round_dir(round).join(ROUND_FILE))?.unwrap_or_default();
            let summary = self.finish_round(round, criteria, &file)?;
            self.record.rounds.push(summary);
        }
        if let Some(cut) = self.record.in_progress.take()
            && cut > core_round
        {
            // The interrupted round's files go back to what the last finished round
            // delivered (or to the workspace before round 1); the discarded state is kept in
            // the object store.
            let target = self.delivered_entries(core_round)?;
            self.restore_exact(&target, &self.session.round_dir(cut).join("discarded.json"))?;
        }
        self.save()
    }

    fn delivered_entries(&self, round: u32) -> Result<Vec<ManifestEntry>, EngineError> {
        if round == 0 {
            return Ok(
                read_json::<Vec<ManifestEntry>>(&self.session.dir().join(BASELINE_FILE))?
                    .unwrap_or_default(),
            );
        }
        let submissions = self.session.submissions()?;
        submissions
            .get(&round)
            .map(|submission| submission.files.clone())
            .ok_or_else(|| {
                EngineError::Setup(format!(
                    "round {round} of session `{}` has no submission on disk; the session folder was changed by hand",
                    self.session.id()
                ))
            })
    }

    /// Makes the workspace hold exactly `target` (files the ignore rules skip are left
    /// alone). What is removed or overwritten is snapshotted to `backup` first.
    fn restore_exact(&self, target: &[ManifestEntry], backup: &Path) -> Result<(), EngineError> {
        let current = self.snapshot_workspace()?;
        write_json(backup, &current.entries)?;
        let keep: BTreeSet<&str> = target.iter().map(|entry| entry.path.as_str()).collect();
        for entry in &current.entries {
            if !keep.contains(entry.path.as_str()) {
                let path = self.store.workspace().join(&entry.path);
                match fs_err::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        refinery_core::snapshot::restore(&self.store.objects(), target, self.store.workspace())?;
        Ok(())
    }

    /// The workspace as it is now, stored in the object store (unchanged files cost nothing).
    fn snapshot_workspace(&self) -> Result<refinery_core::Snapshot, EngineError> {
        Ok(take_snapshot(
            &self.store.objects(),
            self.store.workspace(),
            &[self.store.root().to_path_buf()],
            &[".".to_owned()],
        )?)
    }

    fn workspace_pack(&self) -> Result<WorkspacePack, EngineError> {
        let snapshot = self.snapshot_workspace()?;
        Ok(WorkspacePack {
            entries_empty: snapshot.entries.is_empty(),
            text: pack::render_view(
                self.roles.evaluator.view(),
                &self.store.objects(),
                &snapshot.entries,
                &self.env.scrubber,
            ),
        })
    }

    fn emit_spend(&self, on_event: &mut (dyn FnMut(&RefineEvent) + Send)) {
        on_event(&RefineEvent::Spend {
            spend: self.meter.spend(),
            elapsed_ms: millis(self.meter.elapsed()),
        });
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one round reads best as one sequence of phases"
    )]
    async fn round(
        &mut self,
        round: u32,
        criteria: &CriteriaSet,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<RoundSummary, EngineError> {
        let round_dir = self.session.round_dir(round);
        fs_err::create_dir_all(&round_dir)?;
        let mut file = RoundFile {
            round,
            ..RoundFile::default()
        };
        let mut builder_events: Vec<AgentEvent> = Vec::new();
        let mut builder_time = Duration::ZERO;

        // 1. Build, with a fresh process and only the handoff from earlier rounds.
        on_event(&RefineEvent::Phase {
            round,
            phase: Phase::Build,
        });
        let handoff = if round > 1 {
            fs_err::read_to_string(self.session.dir().join(HANDOFF_FILE)).ok()
        } else {
            None
        };
        let state_dir = self.state_dir_note();
        let prompt = briefs::builder(&BuilderBrief {
            task: &self.record.task,
            criteria,
            round,
            handoff: handoff.as_deref(),
            prior_answer: if round == 1 {
                self.record.prior_answer.as_deref()
            } else {
                None
            },
            verify: &self.record.verify,
            state_dir: &state_dir,
        });
        fs_err::write(
            round_dir.join("builder_prompt.md"),
            self.env.scrubber.scrub(&prompt),
        )?;
        let reply = self
            .build(Role::Builder, prompt, round, cancel, on_event)
            .await?;
        builder_time += reply.duration;
        builder_events.extend(reply.events);
        file.builder_summary = self.env.scrubber.scrub(&reply.text);

        // 2. Verify; one bounded fix attempt.
        if !self.record.verify.is_empty() {
            file.verify = self.run_verify(round, cancel, on_event).await?;
            let failures: Vec<&VerifyResult> =
                file.verify.iter().filter(|result| !result.passed).collect();
            if !failures.is_empty() {
                on_event(&RefineEvent::Phase {
                    round,
                    phase: Phase::Fix,
                });
                file.fix_attempted = true;
                let prompt = briefs::fix(&self.record.task, &failures);
                let reply = self
                    .build(Role::Builder, prompt, round, cancel, on_event)
                    .await?;
                builder_time += reply.duration;
                builder_events.extend(reply.events);
                file.verify = self.run_verify(round, cancel, on_event).await?;
            }
        }

        // 3. Regression guard against the previous round.
        if round > 1 {
            file.regression = Some(
                self.guard(
                    round,
                    criteria,
                    &mut file,
                    &mut builder_events,
                    &mut builder_time,
                    cancel,
                    on_event,
                )
                .await?,
            );
        }

        // 4. Submit.
        on_event(&RefineEvent::Phase {
            round,
            phase: Phase::Submit,
        });
        let submission =
            self.session
                .new_answer(&file.builder_summary, &[".".to_owned()], now())?;
        on_event(&RefineEvent::Submitted {
            round,
            files: submission.files.len(),
            bytes: submission.total_bytes,
        });
        write_events(
            &round_dir.join("builder_events.jsonl"),
            &builder_events,
            &self.env.scrubber,
        )?;

        // 5. Evaluate and analyze the trace, in parallel.
        on_event(&RefineEvent::Phase {
            round,
            phase: Phase::Evaluate,
        });
        file.trace = trace::stats(&builder_events, builder_time);
        let judges: Vec<&Backend> = std::iter::once(&self.roles.evaluator)
            .chain(&self.roles.panel)
            .collect();
        let judge_dir = tempfile::Builder::new()
            .prefix("refinery-judge-")
            .tempdir()?;
        if judges.iter().any(|judge| judge.reads_files()) {
            refinery_core::snapshot::restore(
                &self.store.objects(),
                &submission.files,
                judge_dir.path(),
            )?;
        }
        let previous = self.previous_scores_note();
        let evaluator_prompt = |judge: &Backend| {
            let deliverable = pack::render_view(
                judge.view(),
                &self.store.objects(),
                &submission.files,
                &self.env.scrubber,
            );
            briefs::evaluator(&EvaluatorBrief {
                task: &self.record.task,
                criteria,
                round,
                deliverable: &deliverable,
                files_note: judge.files_note(),
                verify: &file.verify,
                previous: previous.as_deref(),
            })
        };
        let stats_json = serde_json::to_string_pretty(&file.trace).unwrap_or_default();
        let trace_prompt = briefs::trace_analyzer(
            &self.record.task,
            &stats_json,
            &self.env.scrubber.scrub(&trace::condensed(&builder_events)),
        );
        let parse_evaluation = |text: &str| {
            parse_evaluator(criteria, text)
                .map(|_| crate::outputs::extract_json(text).unwrap_or(Value::Null))
        };
        // Judges score blind: none sees another's reply, and they share the evaluation's part
        // of the budget equally.
        #[allow(clippy::cast_precision_loss, reason = "a handful of judges")]
        let share = 0.6 / judges.len() as f64;
        let evaluations = futures::future::join_all(judges.iter().map(|judge| {
            self.ask_judge(
                judge,
                Role::RoundEvaluator,
                evaluator_prompt(judge),
                schema_for::<EvaluatorOutput>(),
                judge_dir.path(),
                share,
                parse_evaluation,
                cancel,
            )
        }));
        let (evaluations, lessons) = tokio::join!(
            evaluations,
            self.ask_judge(
                &self.roles.evaluator,
                Role::ExecutionTraceAnalyzer,
                trace_prompt,
                schema_for::<TraceLessons>(),
                judge_dir.path(),
                0.4,
                parse_trace_lessons,
                cancel,
            ),
        );
        self.emit_spend(on_event);
        let mut usable = Vec::new();
        let mut problems = Vec::new();
        for (judge, evaluation) in judges.iter().zip(evaluations) {
            let verdict = match evaluation? {
                Ok(value) => {
                    usable.push(value.clone());
                    PanelVerdict {
                        evaluator: judge.spec().to_string(),
                        reply: Some(value),
                        problem: None,
                    }
                }
                Err(reason) => {
                    problems.push(if judges.len() > 1 {
                        format!("{}: {reason}", judge.spec())
                    } else {
                        reason.clone()
                    });
                    PanelVerdict {
                        evaluator: judge.spec().to_string(),
                        reply: None,
                        problem: Some(reason),
                    }
                }
            };
            if judges.len() > 1 {
                on_event(&RefineEvent::Judged {
                    round,
                    evaluator: verdict.evaluator.clone(),
                    scores: verdict.reply.as_ref().map(scores_of),
                    problem: verdict.problem.clone(),
                });
            }
            file.panel.push(verdict);
        }
        if usable.is_empty() {
            file.unscored_reason = Some(problems.join("; "));
        } else {
            file.evaluation = Some(crate::outputs::combine_evaluations(&usable)?);
        }
        // Lessons are advice; without them the round still counts.
        file.lessons = match lessons {
            Ok(Ok(lessons)) => Some(lessons),
            Ok(Err(_)) => None,
            Err(EngineError::Halted(halt)) => return Err(halt.into()),
            Err(error) => {
                tracing::warn!(%error, "trace analyzer failed; the round goes on without lessons");
                None
            }
        };

        // 6. Record in the core (this is the moment the round counts as done).
        write_json(&round_dir.join(ROUND_FILE), &file)?;
        if let Some(value) = &file.evaluation {
            {
                let evaluation = parse_evaluator(criteria, &value.to_string())?;
                let record =
                    self.session
                        .submit_checklist(&evaluation.checklist_scores(), None, now())?;
                on_event(&RefineEvent::Scored {
                    round,
                    scores: record
                        .outcome
                        .items
                        .iter()
                        .map(|item| (item.id.clone(), item.score))
                        .collect(),
                    verdict: record.outcome.verdict.as_str().to_owned(),
                });
            }
        } else {
            let reason = file.unscored_reason.clone().unwrap_or_default();
            self.session.record_unscored_round(&reason, now())?;
            on_event(&RefineEvent::Unscored { round, reason });
        }

        // 7. Decide, keep the learnings, write the handoff.
        self.finish_round(round, criteria, &file)
    }

    /// Everything after the core recorded a round: decision, learnings, handoff. Pure with
    /// respect to the round's files, so recovery after a crash computes the same result.
    fn finish_round(
        &mut self,
        round: u32,
        criteria: &CriteriaSet,
        file: &RoundFile,
    ) -> Result<RoundSummary, EngineError> {
        let outcome = if file.evaluation.is_some() {
            self.recorded_outcome(round)?
        } else {
            None
        };
        let mut summary = RoundSummary {
            round,
            scores: outcome
                .as_ref()
                .map(|outcome| {
                    outcome
                        .items
                        .iter()
                        .map(|item| (item.id.clone(), item.score))
                        .collect()
                })
                .unwrap_or_default(),
            verdict: outcome
                .as_ref()
                .map_or("unscored", |outcome| outcome.verdict.as_str())
                .to_owned(),
            unscored_reason: file.unscored_reason.clone(),
            verify_passed: (!file.verify.is_empty())
                .then(|| file.verify.iter().all(|result| result.passed)),
            regression: file.regression.clone(),
            trace: file.trace.clone(),
            next: NextStep::Continue {
                change_approach_for: Vec::new(),
            },
            spend: self.meter.spend(),
        };
        let next = self.decide(round, outcome.as_ref());
        if let NextStep::Continue {
            change_approach_for,
        } = &next
            && !change_approach_for.is_empty()
            && self.record.forced_change_round.is_none()
        {
            self.record.forced_change_round = Some(round);
        }
        summary.next = next.clone();

        let learnings_path = self.session.dir().join(LEARNINGS_FILE);
        let mut learnings = fs_err::read_to_string(&learnings_path).unwrap_or_default();
        if let Some(lessons) = &file.lessons
            && !learnings.contains(&format!("### Round {round}\n"))
        {
            learnings = append_learnings(&learnings, round, lessons);
            refinery_core::fsutil::write_atomic(&learnings_path, learnings.as_bytes())?;
        }
        let evaluation = file
            .evaluation
            .as_ref()
            .and_then(|value| parse_evaluator(criteria, &value.to_string()).ok());
        let change_approach_for = match &next {
            NextStep::Continue {
                change_approach_for,
            } => change_approach_for.clone(),
            _ => Vec::new(),
        };
        let outcome_for_handoff = outcome
            .clone()
            .unwrap_or_else(|| unscored_outcome(criteria, round));
        let handoff = render_handoff(&HandoffInput {
            task: &self.record.task,
            criteria,
            outcome: &outcome_for_handoff,
            evaluation: evaluation.as_ref(),
            change_approach_for: &change_approach_for,
            learnings: &learnings,
        });
        let handoff = self.env.scrubber.scrub(&handoff);
        refinery_core::fsutil::write_atomic(
            &self.session.dir().join(HANDOFF_FILE),
            handoff.as_bytes(),
        )?;
        refinery_core::fsutil::write_atomic(
            &self.session.round_dir(round).join(HANDOFF_FILE),
            handoff.as_bytes(),
        )?;
        Ok(summary)
    }

    /// The core's recorded outcome of `round`, if it was scored.
    fn recorded_outcome(&self, round: u32) -> Result<Option<ChecklistOutcome>, EngineError> {
        Ok(self
            .session
            .history()?
            .into_iter()
            .rev()
            .find(|record| record.outcome.round == round)
            .map(|record| record.outcome))
    }

    /// What follows `round`, given its scored outcome (`None`: unscored, counts as iterate).
    fn decide(&self, round: u32, outcome: Option<&ChecklistOutcome>) -> NextStep {
        let progress = LoopProgress {
            round,
            spent_usd: self.meter.spend().usd,
            elapsed: self.meter.elapsed(),
            // The round's own forced change (decided just now) must not count as "already
            // forced" when deciding after that same round.
            forced_change_round: self
                .record
                .forced_change_round
                .filter(|forced| *forced < round),
        };
        let evaluation = outcome.map_or(RoundEvaluation::Malformed, RoundEvaluation::Scored);
        decide_next(&self.record.limits, &progress, &evaluation)
    }

    fn previous_scores_note(&self) -> Option<String> {
        if self.record.rounds.is_empty() {
            return None;
        }
        let mut out = String::new();
        for summary in &self.record.rounds {
            let scores: Vec<String> = summary
                .scores
                .iter()
                .map(|(id, score)| format!("{id} {score}"))
                .collect();
            let _ = writeln!(
                out,
                "- Round {}: {} ({})",
                summary.round,
                summary.verdict,
                if scores.is_empty() {
                    "no scores".to_owned()
                } else {
                    scores.join(", ")
                }
            );
        }
        out.push_str(
            "\nScore what is there now, not the trend: earlier scores are context only.\n",
        );
        Some(out)
    }

    async fn build(
        &self,
        role: Role,
        prompt: String,
        round: u32,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<crate::backend::CallReply, EngineError> {
        let mut forward = |event: &AgentEvent| {
            if let AgentEvent::ToolUse { name, .. } = event {
                on_event(&RefineEvent::Activity {
                    round,
                    tool: name.clone(),
                });
            }
        };
        let reply = self
            .roles
            .builder
            .call(
                CallSpec {
                    role,
                    prompt,
                    workdir: self.store.workspace(),
                    access: Access::Write,
                    schema: None,
                    max_tokens: 16_384,
                    budget_share: 1.0,
                    timeout: self.env.call_timeout,
                    forbidden: vec![self.store.root().to_path_buf()],
                    scrubber: &self.env.scrubber,
                },
                &self.meter,
                cancel,
                &mut forward,
            )
            .await?;
        on_event(&RefineEvent::Spend {
            spend: self.meter.spend(),
            elapsed_ms: millis(self.meter.elapsed()),
        });
        Ok(reply)
    }

    async fn run_verify(
        &self,
        round: u32,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<Vec<VerifyResult>, EngineError> {
        on_event(&RefineEvent::Phase {
            round,
            phase: Phase::Verify,
        });
        let timeout = self
            .meter
            .time_left()
            .map_or(self.env.verify_timeout, |left| {
                left.min(self.env.verify_timeout)
            });
        let mut results = verify::run_all(
            &self.record.verify,
            self.store.workspace(),
            &self.env.env,
            timeout,
            cancel,
        )
        .await?;
        for result in &mut results {
            result.output = self.env.scrubber.scrub(&result.output);
            on_event(&RefineEvent::Verify {
                round,
                command: result.command.clone(),
                passed: result.passed,
                exit_code: result.exit_code,
            });
        }
        Ok(results)
    }

    /// Asks a judge for JSON; see [`ask_judge`].
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per role; a struct would only rename them"
    )]
    async fn ask_judge<T>(
        &self,
        backend: &Backend,
        role: Role,
        prompt: String,
        schema: Value,
        workdir: &Path,
        budget_share: f64,
        parse: impl Fn(&str) -> Result<T, crate::OutputError>,
        cancel: &CancellationToken,
    ) -> Result<Result<T, String>, EngineError> {
        ask_judge(
            &JudgeCall {
                backend,
                scrubber: &self.env.scrubber,
                meter: &self.meter,
                timeout: self.env.call_timeout,
                role,
                schema,
                workdir,
                budget_share,
            },
            prompt,
            parse,
            cancel,
        )
        .await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the round's working state, passed explicitly"
    )]
    async fn guard(
        &self,
        round: u32,
        criteria: &CriteriaSet,
        file: &mut RoundFile,
        builder_events: &mut Vec<AgentEvent>,
        builder_time: &mut Duration,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<RegressionReport, EngineError> {
        on_event(&RefineEvent::Phase {
            round,
            phase: Phase::RegressionGuard,
        });
        let previous = self.delivered_entries(round - 1)?;
        let first = self.compare(criteria, &previous, cancel).await?;
        let Some((comparisons, reasoning)) = first else {
            let report = RegressionReport {
                regressed: Vec::new(),
                action: "guard_unusable".to_owned(),
                reasoning:
                    "the regression guard's output was unusable; the round was submitted unchecked"
                        .to_owned(),
            };
            on_event(&RefineEvent::Regression {
                round,
                report: report.clone(),
            });
            return Ok(report);
        };
        let report = match regression_action(&comparisons, false) {
            RegressionAction::Accept => RegressionReport {
                regressed: Vec::new(),
                action: "accepted".to_owned(),
                reasoning,
            },
            RegressionAction::Repair {
                criteria: regressed,
            }
            | RegressionAction::Revert {
                criteria: regressed,
            } => {
                on_event(&RefineEvent::Phase {
                    round,
                    phase: Phase::Repair,
                });
                let previous_text = self.changed_since(&previous)?;
                let prompt = briefs::repair(
                    &self.record.task,
                    criteria,
                    &regressed,
                    &reasoning,
                    &previous_text,
                );
                let reply = self
                    .build(Role::Builder, prompt, round, cancel, on_event)
                    .await?;
                *builder_time += reply.duration;
                builder_events.extend(reply.events);
                if !self.record.verify.is_empty() {
                    file.verify = self.run_verify(round, cancel, on_event).await?;
                }
                let again = self.compare(criteria, &previous, cancel).await?;
                let action = again
                    .as_ref()
                    .map_or(RegressionAction::Accept, |(comparisons, _)| {
                        regression_action(comparisons, true)
                    });
                match action {
                    RegressionAction::Revert { .. } => {
                        self.restore_exact(
                            &previous,
                            &self.session.round_dir(round).join("discarded.json"),
                        )?;
                        if !self.record.verify.is_empty() {
                            file.verify = self.run_verify(round, cancel, on_event).await?;
                        }
                        RegressionReport {
                            regressed,
                            action: "reverted".to_owned(),
                            reasoning: again.map(|(_, reasoning)| reasoning).unwrap_or(reasoning),
                        }
                    }
                    _ => RegressionReport {
                        regressed,
                        action: "repaired".to_owned(),
                        reasoning,
                    },
                }
            }
        };
        on_event(&RefineEvent::Regression {
            round,
            report: report.clone(),
        });
        Ok(report)
    }

    /// Two blind comparisons (previous as A, then current as A), in parallel. `None` when
    /// either stayed unusable.
    async fn compare(
        &self,
        criteria: &CriteriaSet,
        previous: &[ManifestEntry],
        cancel: &CancellationToken,
    ) -> Result<Option<(BlindComparisons, String)>, EngineError> {
        let current = self.snapshot_workspace()?;
        let objects = self.store.objects();
        let view = self.roles.evaluator.view();
        let previous_text = pack::render_view(view, &objects, previous, &self.env.scrubber);
        let current_text = pack::render_view(view, &objects, &current.entries, &self.env.scrubber);
        let dir = tempfile::Builder::new()
            .prefix("refinery-guard-")
            .tempdir()?;
        let (first_dir, second_dir) = (
            dir.path().join("previous_first"),
            dir.path().join("current_first"),
        );
        for (folder, a, b) in [
            (&first_dir, previous, current.entries.as_slice()),
            (&second_dir, current.entries.as_slice(), previous),
        ] {
            fs_err::create_dir_all(folder)?;
            if self.roles.evaluator.reads_files() {
                refinery_core::snapshot::restore(&objects, a, &folder.join("A"))?;
                refinery_core::snapshot::restore(&objects, b, &folder.join("B"))?;
            }
        }
        // Agent-CLI judges open the files in ./A and ./B; API judges read them here.
        let note = |text: &str, folder: &str| match view {
            pack::View::Listing => format!("(files in `./{folder}/`)\n\n{text}"),
            pack::View::Contents => text.to_owned(),
        };
        let (previous_as_a, current_as_b) = (note(&previous_text, "A"), note(&current_text, "B"));
        let (current_as_a, previous_as_b) = (note(&current_text, "A"), note(&previous_text, "B"));
        let (previous_first, current_first) = tokio::join!(
            self.blind_comparison(criteria, &previous_as_a, &current_as_b, &first_dir, cancel),
            self.blind_comparison(criteria, &current_as_a, &previous_as_b, &second_dir, cancel),
        );
        match (previous_first?, current_first?) {
            (Ok((previous_first, first_reasoning)), Ok((current_first, second_reasoning))) => {
                Ok(Some((
                    BlindComparisons {
                        previous_first,
                        current_first,
                    },
                    format!(
                        "Previous shown as A: {}\nCurrent shown as A: {}",
                        first_reasoning.trim(),
                        second_reasoning.trim()
                    ),
                )))
            }
            _ => Ok(None),
        }
    }

    /// The previous version of the files this round changed or deleted, for a repair brief:
    /// what the builder needs to restore, bounded so any CLI can take it as an argument.
    fn changed_since(&self, previous: &[ManifestEntry]) -> Result<String, EngineError> {
        let current = self.snapshot_workspace()?;
        let now: BTreeMap<&str, &str> = current
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.hash.as_str()))
            .collect();
        let changed: Vec<ManifestEntry> = previous
            .iter()
            .filter(|entry| now.get(entry.path.as_str()) != Some(&entry.hash.as_str()))
            .cloned()
            .collect();
        if changed.is_empty() {
            return Ok("(no file of the previous version was changed or deleted)".to_owned());
        }
        Ok(pack::render_limited(
            &self.store.objects(),
            &changed,
            &self.env.scrubber,
            REPAIR_PACK_LIMIT,
        ))
    }

    /// One blind comparison: preferences per criterion and the guard's reasoning.
    async fn blind_comparison(
        &self,
        criteria: &CriteriaSet,
        answer_a: &str,
        answer_b: &str,
        workdir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Result<(BTreeMap<String, Preference>, String), String>, EngineError> {
        let parse = |text: &str| {
            parse_regression_guard(criteria, text).map(|preferences| {
                let reasoning = crate::outputs::extract_json(text)
                    .and_then(|value| {
                        value
                            .get("reasoning")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                (preferences, reasoning)
            })
        };
        self.ask_judge(
            &self.roles.evaluator,
            Role::RegressionGuard,
            briefs::regression_guard(criteria, answer_a, answer_b),
            schema_for::<RegressionGuardOutput>(),
            workdir,
            0.5,
            parse,
            cancel,
        )
        .await
    }

    /// The summary of the run as it stands.
    pub fn summary(&self) -> Result<RunSummary, EngineError> {
        let criteria = self
            .session
            .criteria()?
            .map(|set| lines(&set))
            .unwrap_or_default();
        let mut score_history: BTreeMap<String, Vec<Option<u8>>> = criteria
            .iter()
            .map(|criterion| (criterion.id.clone(), Vec::new()))
            .collect();
        for summary in &self.record.rounds {
            for (id, history) in &mut score_history {
                history.push(summary.scores.get(id).copied());
            }
        }
        let workspace = self.store.workspace().to_path_buf();
        let last = self.record.rounds.last().map(|summary| summary.round);
        let deliverable = match (&self.record.status, last) {
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
                self.session.id()
            ),
            (_, Some(last)) => format!(
                "in {} (round {last}, also snapshotted in the session)",
                workspace.display()
            ),
            (_, None) => format!("in {} (no round finished)", workspace.display()),
        };
        Ok(RunSummary {
            session: self.session.id().to_string(),
            session_dir: self.session.dir().to_path_buf(),
            workspace,
            status: self.record.status.clone(),
            criteria,
            rounds: self.record.rounds.clone(),
            score_history,
            spend: self.meter.spend(),
            elapsed_ms: millis(self.meter.elapsed()),
            deliverable,
        })
    }
}

/// What the packer needs for the criteria writer: the workspace as it is.
struct WorkspacePack {
    text: String,
    entries_empty: bool,
}

fn terminal(next: &NextStep) -> Option<RunStatus> {
    match next {
        NextStep::Converged => Some(RunStatus::Converged),
        NextStep::Stop { reason } => Some(RunStatus::Stopped {
            reason: *reason,
            interrupted_round: None,
        }),
        NextStep::Continue { .. } => None,
    }
}

/// What is worth saying about a set of criteria without refusing it.
fn criteria_advice(criteria: &CriteriaSet) -> Vec<String> {
    let count = criteria.len();
    if crate::outputs::CRITERIA_RANGE.contains(&count) {
        Vec::new()
    } else {
        vec![format!(
            "{count} criteria given; 3 to 7 usually work best (fewer miss failure modes, more dilute every verdict)"
        )]
    }
}

pub(crate) fn lines(criteria: &CriteriaSet) -> Vec<CriterionLine> {
    criteria
        .as_slice()
        .iter()
        .map(|criterion| CriterionLine {
            id: criterion.id.clone(),
            category: criterion.category.as_str().to_owned(),
            text: criterion.text.clone(),
        })
        .collect()
}

/// A stand-in outcome for the handoff of an unscored round: every criterion below the bar,
/// verdict iterate. Only rendered, never recorded.
fn unscored_outcome(criteria: &CriteriaSet, round: u32) -> ChecklistOutcome {
    let zeros: serde_json::Map<String, Value> = criteria
        .ids()
        .into_iter()
        .map(|id| (id, json!(0)))
        .collect();
    let scores =
        refinery_core::checklist::parse_scores(criteria, &Value::Object(zeros)).unwrap_or_default();
    let mut outcome = refinery_core::checklist::evaluate(
        criteria,
        &scores,
        refinery_core::Cutoff::DEFAULT,
        round,
        &[],
    );
    outcome.verdict = Verdict::Iterate;
    outcome
}

fn write_events(
    path: &Path,
    events: &[AgentEvent],
    scrubber: &Scrubber,
) -> Result<(), EngineError> {
    let mut text = String::new();
    for event in events {
        if let Ok(line) = serde_json::to_string(event) {
            text.push_str(&scrubber.scrub(&line));
            text.push('\n');
        }
    }
    refinery_core::fsutil::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// One judge call's fixed parts.
pub(crate) struct JudgeCall<'a> {
    pub backend: &'a Backend,
    pub scrubber: &'a Scrubber,
    pub meter: &'a Meter,
    pub timeout: Duration,
    pub role: Role,
    pub schema: Value,
    pub workdir: &'a Path,
    pub budget_share: f64,
}

/// Asks a judge for JSON, retrying once with the parser's complaint (a fresh call: the
/// complaint is the only thing carried over). `Ok(Err(reason))` means the output stayed
/// unusable; `Err` is a halt or a backend failure.
pub(crate) async fn ask_judge<T>(
    call: &JudgeCall<'_>,
    prompt: String,
    parse: impl Fn(&str) -> Result<T, crate::OutputError>,
    cancel: &CancellationToken,
) -> Result<Result<T, String>, EngineError> {
    let mut problem: Option<String> = None;
    for _ in 0..JUDGE_ATTEMPTS {
        let mut brief = prompt.clone();
        if let Some(problem) = &problem {
            let _ = write!(
                brief,
                "\n\n## Your previous reply could not be used\n\n{problem}\n\nReply again, with every required part, as exactly one JSON object.\n"
            );
        }
        let reply = call
            .backend
            .call(
                CallSpec {
                    role: call.role,
                    prompt: brief,
                    workdir: call.workdir,
                    access: Access::Inspect,
                    schema: Some(call.schema.clone()),
                    max_tokens: 8_192,
                    budget_share: call.budget_share,
                    timeout: call.timeout,
                    forbidden: Vec::new(),
                    scrubber: call.scrubber,
                },
                call.meter,
                cancel,
                &mut |_| {},
            )
            .await?;
        match parse(&reply.text) {
            Ok(value) => return Ok(Ok(value)),
            Err(error) => {
                tracing::warn!(role = role_label(call.role), %error, "unusable output");
                problem = Some(if reply.text.trim().is_empty() {
                    format!(
                        "the {} returned nothing that follows the schema",
                        role_label(call.role)
                    )
                } else {
                    error.to_string()
                });
            }
        }
    }
    Ok(Err(problem.unwrap_or_default()))
}
