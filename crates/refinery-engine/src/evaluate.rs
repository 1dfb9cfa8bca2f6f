//! `refinery evaluate`: criteria, one evaluation, a report. No building, no iteration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use refinery_core::rounds::LoopLimits;
use refinery_core::{CriteriaSet, SessionSettings, StateDir};
use refinery_prompts::Role;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::briefs::{self, EvaluatorBrief};
use crate::error::EngineError;
use crate::handoff::{HandoffInput, render_handoff};
use crate::meter::{Meter, Spend};
use crate::outputs::{
    CriteriaWriterOutput, EvaluatorOutput, SpecItem, parse_criteria_writer, parse_evaluator,
    schema_for,
};
use crate::pack;
use crate::refine::{
    CriteriaSource, CriterionLine, Environment, JUDGE_ATTEMPTS, JudgeCall, ask_judge, lines,
};

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
    /// `converge`, `iterate` or `unscored`.
    pub verdict: String,
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
/// combines their scores.
pub async fn evaluate_once(
    store: StateDir,
    config: EvaluateConfig,
    evaluator: Backend,
    panel: Vec<Backend>,
    env: Environment,
    cancel: &CancellationToken,
) -> Result<EvaluateReport, EngineError> {
    if config.cost_budget_usd.is_some()
        && let Some(problem) = std::iter::once(&evaluator)
            .chain(&panel)
            .find_map(Backend::budget_problem)
    {
        return Err(EngineError::Setup(problem));
    }
    let now = OffsetDateTime::now_utc;
    let meter = Meter::new(
        LoopLimits {
            max_rounds: 1,
            min_rounds: 1,
            cost_budget_usd: config.cost_budget_usd,
            time_budget: None,
        },
        Spend::default(),
        Duration::ZERO,
    );
    let session = store.init_session(
        "evaluate",
        SessionSettings {
            max_rounds: Some(1),
            ..SessionSettings::default()
        },
        now(),
    )?;
    fs_err::write(store.root().join(".gitignore"), "*\n")?;
    // Snapshot first: the report must describe exactly the bytes judged.
    let submission = session.new_answer("evaluated as is", &config.paths, now())?;
    if submission.files.is_empty() {
        return Err(EngineError::Setup(format!(
            "nothing to evaluate: {} holds no files Refinery can read (skipped: {})",
            config.paths.join(", "),
            if submission.skipped.is_empty() {
                "none".to_owned()
            } else {
                submission
                    .skipped
                    .iter()
                    .map(|skip| format!("{} — {}", skip.path, skip.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        )));
    }
    let task = config.task.clone().unwrap_or_else(|| {
        format!(
            "The deliverable at {}: judge it as the people it is meant for would use it.",
            config
                .paths
                .iter()
                .map(|path| format!("`{path}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let deliverable = pack::render_view(
        evaluator.view(),
        &store.objects(),
        &submission.files,
        &env.scrubber,
    );
    let judge_dir = tempfile::Builder::new()
        .prefix("refinery-judge-")
        .tempdir()?;
    if std::iter::once(&evaluator)
        .chain(&panel)
        .any(Backend::reads_files)
    {
        refinery_core::snapshot::restore(&store.objects(), &submission.files, judge_dir.path())?;
    }
    let call = |role: Role, schema: Value| JudgeCall {
        backend: &evaluator,
        scrubber: &env.scrubber,
        meter: &meter,
        timeout: env.call_timeout,
        role,
        schema,
        workdir: judge_dir.path(),
        budget_share: 1.0,
    };
    let (criteria, criteria_source) = if let Some(criteria) = config.criteria {
        (criteria, CriteriaSource::User)
    } else {
        let prompt = briefs::criteria_writer(&task, Some(&deliverable));
        let criteria = ask_judge(
                &call(Role::CriteriaWriter, schema_for::<CriteriaWriterOutput>()),
                prompt,
                parse_criteria_writer,
                cancel,
            )
            .await?
            .map_err(|reason| {
                EngineError::Setup(format!(
                    "the criteria writer gave no usable criteria after {JUDGE_ATTEMPTS} attempts ({reason}); pass --criteria or --criteria-file, or try another --evaluator"
                ))
            })?;
        (criteria, CriteriaSource::Writer)
    };
    session.register_criteria(&criteria, now())?;
    let judges: Vec<&Backend> = std::iter::once(&evaluator).chain(&panel).collect();
    #[allow(clippy::cast_precision_loss, reason = "a handful of judges")]
    let share = 1.0 / judges.len() as f64;
    let replies = futures::future::join_all(judges.iter().map(|judge| {
        let deliverable = pack::render_view(
            judge.view(),
            &store.objects(),
            &submission.files,
            &env.scrubber,
        );
        let prompt = briefs::evaluator(&EvaluatorBrief {
            task: &task,
            criteria: &criteria,
            round: 1,
            deliverable: &deliverable,
            files_note: judge.files_note(),
            verify: &[],
            previous: None,
        });
        let call = JudgeCall {
            backend: judge,
            scrubber: &env.scrubber,
            meter: &meter,
            timeout: env.call_timeout,
            role: Role::RoundEvaluator,
            schema: schema_for::<EvaluatorOutput>(),
            workdir: judge_dir.path(),
            budget_share: share,
        };
        let criteria = &criteria;
        async move {
            ask_judge(
                &call,
                prompt,
                |text| {
                    parse_evaluator(criteria, text)
                        .map(|_| crate::outputs::extract_json(text).unwrap_or(Value::Null))
                },
                cancel,
            )
            .await
        }
    }))
    .await;
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (judge, reply) in judges.iter().zip(replies) {
        match reply? {
            Ok(value) => usable.push(value),
            Err(reason) if judges.len() > 1 => problems.push(format!("{}: {reason}", judge.spec())),
            Err(reason) => problems.push(reason),
        }
    }
    let evaluation = if usable.is_empty() {
        Err(problems.join("; "))
    } else {
        let combined = crate::outputs::combine_evaluations(&usable)?;
        Ok(parse_evaluator(&criteria, &combined.to_string())?)
    };
    let report_path = session.dir().join("evaluation.md");
    let spend = meter.spend();
    let mut report = EvaluateReport {
        session: session.id().to_string(),
        session_dir: session.dir().to_path_buf(),
        report_path: report_path.clone(),
        criteria_source,
        criteria: lines(&criteria),
        verdict: "unscored".to_owned(),
        passed: false,
        scores: BTreeMap::new(),
        evidence: BTreeMap::new(),
        critique: String::new(),
        improvement_spec: Vec::new(),
        preserve: Vec::new(),
        unscored_reason: None,
        spend,
    };
    match evaluation {
        Ok(evaluation) => {
            let record = session.submit_checklist(&evaluation.checklist_scores(), None, now())?;
            let text = render_handoff(&HandoffInput {
                task: &task,
                criteria: &criteria,
                outcome: &record.outcome,
                evaluation: Some(&evaluation),
                change_approach_for: &[],
                learnings: "",
            });
            let text = text.replacen("# Handoff after round 1", "# Evaluation", 1);
            refinery_core::fsutil::write_atomic(
                &report_path,
                env.scrubber.scrub(&text).as_bytes(),
            )?;
            record
                .outcome
                .verdict
                .as_str()
                .clone_into(&mut report.verdict);
            report.passed = record.outcome.verdict == refinery_core::Verdict::Converge;
            report.scores = record
                .outcome
                .items
                .iter()
                .map(|item| (item.id.clone(), item.score))
                .collect();
            report.evidence = evaluation.evidence;
            report.critique = evaluation.critique;
            report.improvement_spec = evaluation.improvement_spec;
            report.preserve = evaluation.preserve;
        }
        Err(reason) => {
            session.record_unscored_round(&reason, now())?;
            refinery_core::fsutil::write_atomic(
                &report_path,
                format!("# Evaluation\n\nThe evaluator's output stayed unusable after {JUDGE_ATTEMPTS} attempts, so nothing was scored: {reason}\n").as_bytes(),
            )?;
            report.unscored_reason = Some(reason);
        }
    }
    // The JSON form next to the Markdown, for tools.
    refinery_core::fsutil::write_json(&session.dir().join("evaluation.json"), &report)?;
    Ok(report)
}
