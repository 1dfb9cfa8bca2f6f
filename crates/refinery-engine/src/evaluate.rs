//! `refinery evaluate`: criteria, one evaluation, a report. No building, no iteration.
//!
//! A short sequencer over the same phases as a refine round: submit (the core's snapshot of
//! the paths), criteria (when none were given), judge (the same panel), decide (the core's
//! verdict), and a report rendered like a handoff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use refinery_core::copies::Copies;
use refinery_core::judgment::Gates;
use refinery_core::rounds::LoopLimits;
use refinery_core::{CriteriaSet, Session, SessionSettings, StateDir, Submission, WorkspaceScope};
use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::error::EngineError;
use crate::events::{CriterionLine, Phase, RefineEvent, lines};
use crate::handoff::{HandoffInput, render_handoff};
use crate::meter::{Meter, Spend};
use crate::outputs::SpecItem;
use crate::pack;
use crate::phases::ask::JUDGE_ATTEMPTS;
use crate::phases::criteria::{self, CriteriaInput};
use crate::phases::decide::{self, Judgment};
use crate::phases::judge::{self, Combined, EvaluationInput, Panel};
use crate::phases::{Context, Environment, shared_sink};
use crate::record::{CriteriaSource, RoundVerdict};

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvaluateConfig {
    /// Paths of the deliverable, relative to the workspace.
    pub paths: Vec<String>,
    /// What the deliverable is for; defaults to judging it as its users would.
    pub task: Option<String>,
    /// Criteria given by the user; `None` has the criteria writer write them.
    pub criteria: Option<CriteriaSet>,
    /// `--cost-budget` for the whole evaluation.
    pub cost_budget_usd: Option<f64>,
}

/// The result of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvaluateReport {
    /// The session holding the snapshot and the report.
    pub session: String,
    /// Its folder.
    pub session_dir: PathBuf,
    /// `evaluation.md` in the session.
    pub report_path: PathBuf,
    /// Where the criteria came from.
    pub criteria_source: CriteriaSource,
    /// The criteria.
    pub criteria: Vec<CriterionLine>,
    /// The verdict.
    pub verdict: RoundVerdict,
    /// Whether every criterion met the bar.
    pub passed: bool,
    /// Scores by criterion.
    pub scores: BTreeMap<String, u8>,
    /// Evidence by criterion.
    pub evidence: BTreeMap<String, Vec<String>>,
    /// The critique.
    pub critique: String,
    /// What to do next, in order.
    pub improvement_spec: Vec<SpecItem>,
    /// What is good and must stay.
    pub preserve: Vec<String>,
    /// Why no scores, when the evaluator's output stayed unusable.
    pub unscored_reason: Option<String>,
    /// Money and tokens.
    pub spend: Spend,
}

/// Runs one evaluation of `config.paths` with `evaluator` (which also writes the criteria when
/// none were given) and the further judges of `panel`, all blind to each other; the core
/// combines their scores. Reports its phases, the criteria and the spend through `on_event`,
/// as a refine round does.
pub async fn evaluate_once(
    store: StateDir,
    config: EvaluateConfig,
    evaluator: Backend,
    panel: Vec<Backend>,
    env: Environment,
    cancel: &CancellationToken,
    on_event: &mut (dyn FnMut(&RefineEvent) + Send),
) -> Result<EvaluateReport, EngineError> {
    let judges: Vec<&Backend> = std::iter::once(&evaluator).chain(&panel).collect();
    let meter = one_evaluation_meter(config.cost_budget_usd, &judges)?;
    let (session, scope, submission) = submit(&store, &config)?;
    let task = config
        .task
        .clone()
        .unwrap_or_else(|| default_task(&config.paths));
    let events = shared_sink(on_event);
    let copies = Copies::new();
    let ctx = Context {
        store: &store,
        session: &session,
        copies: &copies,
        scope: &scope,
        meter: &meter,
        env: &env,
        cancel,
        events: &events,
    };
    let folder = judge::deliverable_copy(&ctx, &judges, &submission.files)?;
    let (criteria, criteria_source) = if let Some(criteria) = config.criteria {
        (criteria, CriteriaSource::User)
    } else {
        let objects = store.objects();
        let deliverable =
            pack::render_view(evaluator.view(), &objects, &submission.files, &env.scrubber);
        let input = CriteriaInput {
            writer: &evaluator,
            task: &task,
            existing: Some(&deliverable),
            workdir: folder.path(),
        };
        (criteria::write(&ctx, input).await?, CriteriaSource::Writer)
    };
    session.register_criteria(&criteria, OffsetDateTime::now_utc())?;
    ctx.emit(&RefineEvent::Criteria {
        source: criteria_source,
        criteria: lines(&criteria),
        warnings: Vec::new(),
    });
    ctx.phase(1, Phase::Evaluate);
    let panel = Panel {
        judges: &judges,
        workdir: folder.path(),
        budget_share: 1.0,
    };
    let input = EvaluationInput {
        task: &task,
        criteria: &criteria,
        files: &submission.files,
        verify: &[],
    };
    let evaluated = judge::evaluate(&ctx, &panel, &input).await?;
    ctx.emit_spend();
    let unscored_reason = evaluated.unscored_reason();
    let scored = Scored {
        task: &task,
        criteria: &criteria,
        criteria_source,
        combined: evaluated.combined,
        unscored_reason,
    };
    let report = report(&ctx, scored)?;
    copies.flush()?;
    Ok(report)
}

/// The meter of one evaluation: one round, the budget if any (refused up front when a judge's
/// cost cannot be bounded).
fn one_evaluation_meter(
    cost_budget_usd: Option<f64>,
    judges: &[&Backend],
) -> Result<Meter, EngineError> {
    if cost_budget_usd.is_some()
        && let Some(problem) = judges.iter().find_map(|judge| judge.budget_problem())
    {
        return Err(EngineError::Setup(problem));
    }
    Ok(Meter::new(
        LoopLimits {
            max_rounds: 1,
            min_rounds: 1,
            cost_budget_usd,
            time_budget: None,
        },
        Spend::default(),
        Duration::ZERO,
    ))
}

/// A new session holding the snapshot of `config.paths`: the report describes exactly the
/// bytes judged.
fn submit(
    store: &StateDir,
    config: &EvaluateConfig,
) -> Result<(Session, WorkspaceScope, Submission), EngineError> {
    let now = OffsetDateTime::now_utc;
    let settings = SessionSettings {
        max_rounds: Some(1),
        ..SessionSettings::default()
    };
    let session = store.init_session("evaluate", settings, now())?;
    let scope = crate::git_view::ensure_session_scope(&session, store.workspace(), now())?;
    let submission = session.new_answer("evaluated as is", &config.paths, now())?;
    if submission.files.is_empty() {
        let skipped = if submission.skipped.is_empty() {
            "none".to_owned()
        } else {
            let skipped = submission.skipped.iter();
            let reasons = skipped.map(|skip| format!("{} — {}", skip.path, skip.reason));
            reasons.collect::<Vec<_>>().join("; ")
        };
        return Err(EngineError::Setup(format!(
            "nothing to evaluate: {} holds no files Refinery can read (skipped: {skipped})",
            config.paths.join(", "),
        )));
    }
    Ok((session, scope, submission))
}

fn default_task(paths: &[String]) -> String {
    let quoted: Vec<String> = paths.iter().map(|path| format!("`{path}`")).collect();
    format!(
        "The deliverable at {}: judge it as the people it is meant for would use it.",
        quoted.join(", ")
    )
}

/// What the panel came to.
struct Scored<'a> {
    task: &'a str,
    criteria: &'a CriteriaSet,
    criteria_source: CriteriaSource,
    combined: Option<Combined>,
    unscored_reason: Option<String>,
}

/// Records the verdict in the core and writes `evaluation.md` and `evaluation.json`.
fn report(ctx: &Context<'_>, scored: Scored<'_>) -> Result<EvaluateReport, EngineError> {
    let session = ctx.session;
    let reason = scored.unscored_reason.clone().unwrap_or_default();
    let (evaluation, gates, spread) = match scored.combined {
        Some(combined) => {
            let gates = Gates {
                refused: combined.refused,
                blocks: Vec::new(),
            };
            (Some(combined.evaluation), gates, combined.spread)
        }
        None => (None, Gates::default(), BTreeMap::new()),
    };
    let judgment = Judgment {
        evaluation: evaluation.as_ref(),
        unscored_reason: &reason,
        gates: &gates,
        spread: &spread,
    };
    let outcome = decide::record(ctx, 1, &judgment)?;
    let report_path = session.dir().join("evaluation.md");
    let mut report = EvaluateReport {
        session: session.id().to_string(),
        session_dir: session.dir().to_path_buf(),
        report_path: report_path.clone(),
        criteria_source: scored.criteria_source,
        criteria: lines(scored.criteria),
        verdict: RoundVerdict::Unscored,
        passed: false,
        scores: BTreeMap::new(),
        evidence: BTreeMap::new(),
        critique: String::new(),
        improvement_spec: Vec::new(),
        preserve: Vec::new(),
        unscored_reason: None,
        spend: ctx.meter.spend(),
    };
    let text = if let (Some(outcome), Some(evaluation)) = (outcome, evaluation) {
        let text = render_handoff(&HandoffInput {
            task: scored.task,
            criteria: scored.criteria,
            outcome: &outcome,
            evaluation: Some(&evaluation),
            change_approach_for: &[],
            learnings: "",
            trajectory: &BTreeMap::new(),
        });
        report.verdict = outcome.verdict.into();
        report.passed = report.verdict == RoundVerdict::Converge;
        report.scores = decide::scores(&outcome);
        let findings = evaluation.findings.into_iter();
        report.evidence = findings.map(|(id, found)| (id, found.evidence)).collect();
        report.critique = evaluation.critique;
        report.improvement_spec = evaluation.improvement_spec;
        report.preserve = evaluation.preserve;
        ctx.env
            .scrubber
            .scrub(&text.replacen("# Handoff after round 1", "# Evaluation", 1))
    } else {
        report.unscored_reason = Some(reason.clone());
        format!(
            "# Evaluation\n\nNothing was scored: {reason}\n\n(A judge's output counts as unusable after {JUDGE_ATTEMPTS} attempts or a timeout, and a panel decides only when a majority of its judges were usable.)\n"
        )
    };
    refinery_core::fsutil::write_atomic(&report_path, text.as_bytes())?;
    // The JSON form next to the Markdown, for tools.
    refinery_core::fsutil::write_json(&session.dir().join("evaluation.json"), &report)?;
    Ok(report)
}
