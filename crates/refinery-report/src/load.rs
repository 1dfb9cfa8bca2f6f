//! Reads a session into a [`SessionView`]: the core's records through its public API (info,
//! criteria, state, journal, checklist history, submissions, snapshots), and the drivers' own
//! files leniently (see [`crate::files`]). Every string passes the [`Scrub`] on the way in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use refinery_core::rounds::NextStep;
use refinery_core::{ChecklistRecord, ManifestEntry, Session, StateDir, Submission};
use serde_json::Value;

use crate::diff;
use crate::error::Result;
use crate::files::{
    EvaluationFile, EvaluationReply, RoundFile, RunFile, SpendFile, StatusFile, read_lenient,
    read_text,
};
use crate::model::{
    BuilderView, CriterionView, Decision, DeliverableView, Driver, JudgeView, LessonsView,
    PhaseCost, RegressionView, RoundCost, RoundVerdict, RoundView, Series, SessionView, StatusView,
    StepView, Tone, Totals, VerifyView,
};
use crate::progress::{self, Timeline, phase_label};
use crate::scrub::{Scrub, Text};

/// How much diff text one report may hold in all.
const DIFF_BUDGET: usize = 2 * 1024 * 1024;
/// How many deliverable files are listed by name.
const LISTED_FILES: usize = 200;
/// How much of an evaluator's report file is shown.
const REPORT_FILE_LIMIT: usize = 64 * 1024;

/// The core's journal since the last `reset_evaluation`.
#[derive(Default)]
pub(crate) struct Journal {
    pub(crate) records: Vec<ChecklistRecord>,
    pub(crate) unscored: BTreeMap<u32, (String, Option<i64>)>,
    answered_ms: BTreeMap<u32, i64>,
    criteria_ms: Option<i64>,
    init_ms: Option<i64>,
    plans: BTreeSet<u32>,
}

impl Journal {
    pub(crate) fn read(session: &Session) -> Result<Self> {
        let events = session.events()?;
        let history = session.history()?;
        let is = |event: &Value, op: &str| event["op"].as_str() == Some(op);
        let start = events
            .iter()
            .rposition(|event| is(event, "reset_evaluation"))
            .map_or(0, |index| index + 1);
        let skip = events[..start]
            .iter()
            .filter(|event| is(event, "submit_checklist"))
            .count();
        let mut journal = Self {
            records: history.into_iter().skip(skip).collect(),
            ..Self::default()
        };
        for event in &events {
            if is(event, "init_session") {
                journal.init_ms = journal.init_ms.or_else(|| unix_ms(&event["ts"]));
            }
        }
        for event in &events[start..] {
            let round = event["round"]
                .as_u64()
                .and_then(|round| u32::try_from(round).ok());
            let ts = unix_ms(&event["ts"]);
            match event["op"].as_str().unwrap_or_default() {
                "generate_eval_criteria" => journal.criteria_ms = journal.criteria_ms.or(ts),
                "new_answer" => {
                    if let (Some(round), Some(ts)) = (round, ts) {
                        journal.answered_ms.insert(round, ts);
                    }
                }
                "unscored_round" => {
                    if let Some(round) = round {
                        let reason = event["reason"].as_str().unwrap_or_default().to_owned();
                        journal.unscored.insert(round, (reason, ts));
                    }
                }
                "propose_improvements" => {
                    if let Some(after) = event["after_round"]
                        .as_u64()
                        .and_then(|r| u32::try_from(r).ok())
                    {
                        journal.plans.insert(after);
                    }
                }
                _ => {}
            }
        }
        Ok(journal)
    }

    pub(crate) fn record(&self, round: u32) -> Option<&ChecklistRecord> {
        self.records
            .iter()
            .rev()
            .find(|record| record.outcome.round == round)
    }

    /// When round `round` was scored (or closed unscored).
    fn closed_ms(&self, round: u32) -> Option<i64> {
        self.record(round)
            .and_then(|record| unix_ms(&Value::from(record.timestamp.clone())))
            .or_else(|| self.unscored.get(&round).and_then(|(_, ts)| *ts))
    }
}

/// Unix milliseconds of an RFC 3339 timestamp.
pub(crate) fn unix_ms(value: &Value) -> Option<i64> {
    let parsed = time::OffsetDateTime::parse(
        value.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Everything a round view is built from.
struct Context<'a> {
    store: &'a StateDir,
    session: &'a Session,
    scrub: &'a Scrub,
    driver: Driver,
    run: Option<RunFile>,
    evaluation: Option<EvaluationFile>,
    journal: Journal,
    submissions: BTreeMap<u32, Submission>,
    baseline: Option<Vec<ManifestEntry>>,
    timeline: Timeline,
    max_rounds: Option<u32>,
    notes: Vec<Text>,
    diff_budget: usize,
}

/// Reads `session` for a report.
pub(crate) fn load(store: &StateDir, session: &Session, scrub: &Scrub) -> Result<SessionView> {
    let info = session.info()?;
    let criteria = session.criteria()?;
    let mut context = context(store, session, scrub, &info)?;
    let rounds: Vec<RoundView> = round_numbers(&context)
        .into_iter()
        .map(|round| round_view(&mut context, round))
        .collect();
    let last_closed = rounds
        .iter()
        .rev()
        .find(|round| round.verdict != RoundVerdict::Pending)
        .map(|round| (round.round, round.verdict.clone()));
    let status = status(
        &StatusInput {
            driver: context.driver,
            run: context.run.as_ref(),
            evaluation: context.evaluation.as_ref(),
            max_rounds: context.max_rounds,
            session_id: session.id().as_str(),
            last_closed,
            rounds: rounds.len(),
        },
        scrub,
    );
    Ok(SessionView {
        id: scrub.text(session.id().as_str()),
        label: scrub.text(&info.label),
        created_at: scrub.text(&refinery_core::rfc3339(info.created_at)),
        driver: context.driver,
        task: task(&context),
        status,
        cutoff: info.settings.cutoff.get(),
        settings: settings(&context),
        criteria: criteria
            .as_ref()
            .map(|set| {
                set.as_slice()
                    .iter()
                    .map(|criterion| criterion_view(criterion, scrub))
                    .collect()
            })
            .unwrap_or_default(),
        criteria_source: criteria_source(&context),
        series: series(criteria.as_ref(), &rounds, scrub),
        totals: totals(&context),
        learnings: read_text(&session.dir().join("learnings.md"))
            .filter(|text| !text.trim().is_empty())
            .map(|text| scrub.text(&text)),
        deliverable: deliverable(&context),
        rounds,
        notes: context.notes,
    })
}

/// Reads the session's records and its driver's files (leniently: what cannot be read
/// becomes a note).
fn context<'a>(
    store: &'a StateDir,
    session: &'a Session,
    scrub: &'a Scrub,
    info: &refinery_core::SessionInfo,
) -> Result<Context<'a>> {
    let dir = session.dir();
    let mut notes = Vec::new();
    let mut lenient = |name: &str| -> Option<Value> {
        read_lenient::<Value>(&dir.join(name)).unwrap_or_else(|problem| {
            notes.push(scrub.text(&problem));
            None
        })
    };
    let run: Option<RunFile> =
        lenient("run.json").map(|value| serde_json::from_value(value).unwrap_or_default());
    let evaluation: Option<EvaluationFile> =
        lenient("evaluation.json").map(|value| serde_json::from_value(value).unwrap_or_default());
    let baseline = lenient("baseline.json").and_then(|value| serde_json::from_value(value).ok());
    let driver = driver_of(info, run.as_ref(), evaluation.as_ref());
    let max_rounds = run
        .as_ref()
        .and_then(|run| run.limits.max_rounds)
        .or(info.settings.max_rounds);
    Ok(Context {
        store,
        session,
        scrub,
        driver,
        journal: Journal::read(session)?,
        submissions: session.submissions()?,
        timeline: Timeline::from_entries(&progress::read(dir)),
        run,
        evaluation,
        baseline,
        max_rounds,
        notes,
        diff_budget: DIFF_BUDGET,
    })
}

/// The chart's criteria: the stored ones in order, then ids only earlier rounds scored.
fn series(
    criteria: Option<&refinery_core::CriteriaSet>,
    rounds: &[RoundView],
    scrub: &Scrub,
) -> Vec<Series> {
    let mut ids: Vec<String> = criteria
        .map(refinery_core::CriteriaSet::ids)
        .unwrap_or_default();
    for round in rounds {
        for id in round.scores.keys() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    ids.into_iter()
        .map(|key| Series {
            shown: scrub.text(&key),
            key,
        })
        .collect()
}

/// Who drives a session, from the files it has.
pub(crate) fn driver_of(
    info: &refinery_core::SessionInfo,
    run: Option<&RunFile>,
    evaluation: Option<&EvaluationFile>,
) -> Driver {
    match (run, evaluation) {
        (Some(_), _) => Driver::Refine,
        (None, Some(_)) => Driver::Evaluate,
        // `refinery evaluate` writes evaluation.json only at the end; until then its session
        // is the one labelled `evaluate` with a one-round cap.
        (None, None) if info.label == "evaluate" && info.settings.max_rounds == Some(1) => {
            Driver::Evaluate
        }
        (None, None) => Driver::Plugin,
    }
}

/// Every round any record mentions, in order.
fn round_numbers(context: &Context<'_>) -> Vec<u32> {
    let mut numbers: BTreeSet<u32> = context
        .journal
        .records
        .iter()
        .map(|record| record.outcome.round)
        .collect();
    numbers.extend(context.journal.unscored.keys());
    numbers.extend(context.submissions.keys());
    if let Some(run) = &context.run {
        numbers.extend(run.rounds.iter().map(|round| round.round));
    }
    numbers.remove(&0);
    numbers.into_iter().collect()
}

fn criterion_view(criterion: &refinery_core::Criterion, scrub: &Scrub) -> CriterionView {
    let optional = |text: &str| (!text.trim().is_empty()).then(|| scrub.text(text));
    CriterionView {
        id: scrub.text(&criterion.id),
        tier: criterion.category.as_str(),
        text: scrub.text(&criterion.text),
        rationale: optional(&criterion.rationale),
        anti_patterns: criterion
            .anti_patterns
            .iter()
            .map(|text| scrub.text(text))
            .collect(),
        verify_by: criterion.verify_by.as_deref().and_then(optional),
        anchors: criterion
            .score_anchors
            .iter()
            .map(|(score, text)| (scrub.text(score), scrub.text(text)))
            .collect(),
    }
}

fn task(context: &Context<'_>) -> Option<Text> {
    match context.driver {
        Driver::Refine => context
            .run
            .as_ref()
            .map(|run| run.task.as_str())
            .filter(|task| !task.trim().is_empty())
            .map(|task| context.scrub.text(task)),
        Driver::Evaluate => context.submissions.get(&1).map(|submission| {
            context.scrub.text(&format!(
                "Evaluate {} as it is.",
                submission
                    .original_paths
                    .iter()
                    .map(|path| format!("`{path}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }),
        Driver::Plugin => None,
    }
}

fn criteria_source(context: &Context<'_>) -> Option<&'static str> {
    let source = match context.driver {
        Driver::Refine => context.run.as_ref()?.criteria_source.clone()?,
        Driver::Evaluate => context.evaluation.as_ref()?.criteria_source.clone()?,
        Driver::Plugin => return None,
    };
    Some(match source.as_str() {
        "user" => "given by the user",
        "writer" => "written by the criteria writer",
        _ => "recorded",
    })
}

fn settings(context: &Context<'_>) -> Vec<(&'static str, Text)> {
    let scrub = context.scrub;
    let mut settings = Vec::new();
    if let Some(max) = context.max_rounds {
        settings.push(("max rounds", scrub.text(&max.to_string())));
    }
    let Some(run) = &context.run else {
        return settings;
    };
    if let Some(min) = run.limits.min_rounds.filter(|min| *min > 1) {
        settings.push(("min rounds", scrub.text(&min.to_string())));
    }
    if let Some(budget) = run.limits.cost_budget_usd {
        settings.push(("cost budget", scrub.text(&format!("${budget:.2}"))));
    }
    if let Some(budget) = run.limits.time_budget {
        settings.push((
            "time budget",
            scrub.text(&crate::format::duration_ms(
                i64::try_from(budget.secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            )),
        ));
    }
    settings.push(("builder", scrub.text(&run.builder)));
    let judges: Vec<&str> = std::iter::once(run.evaluator.as_str())
        .chain(run.panel.iter().map(String::as_str))
        .collect();
    settings.push((
        if judges.len() > 1 {
            "judges (panel)"
        } else {
            "evaluator"
        },
        scrub.text(&judges.join(", ")),
    ));
    for command in &run.verify {
        settings.push(("verify", scrub.text(command)));
    }
    if let Some(prior) = &run.prior_answer {
        settings.push(("prior answer", scrub.text(prior)));
    }
    settings
}

fn stop_reason(reason: &str) -> &'static str {
    match reason {
        "max_rounds" => "the round cap was reached",
        "cost_budget" => "the next call could have exceeded the cost budget",
        "time_budget" => "the time budget ran out",
        "plateau" => {
            "the failing criteria stopped improving, even after a forced change of approach"
        }
        _ => "a limit was reached",
    }
}

/// What the outcome of a session depends on.
pub(crate) struct StatusInput<'a> {
    pub(crate) driver: Driver,
    pub(crate) run: Option<&'a RunFile>,
    pub(crate) evaluation: Option<&'a EvaluationFile>,
    pub(crate) max_rounds: Option<u32>,
    pub(crate) session_id: &'a str,
    /// The last round with a verdict (scored or unscored).
    pub(crate) last_closed: Option<(u32, RoundVerdict)>,
    pub(crate) rounds: usize,
}

/// Where a session stands, from what its driver recorded.
pub(crate) fn status(input: &StatusInput<'_>, scrub: &Scrub) -> StatusView {
    let view = |tone, headline: String, detail: Option<Text>, ended| StatusView {
        tone,
        headline,
        detail,
        ended,
    };
    match input.driver {
        Driver::Refine => {
            let status = input.run.map(|run| run.status.clone()).unwrap_or_default();
            refine_status(input, &status, scrub)
        }
        Driver::Evaluate => match input.evaluation {
            None => view(Tone::Neutral, "Evaluating".to_owned(), None, false),
            Some(evaluation) => match (&evaluation.unscored_reason, evaluation.passed) {
                (Some(reason), _) => view(
                    Tone::Bad,
                    "Not scored: the evaluator's output stayed unusable".to_owned(),
                    Some(scrub.text(reason)),
                    true,
                ),
                (None, true) => view(
                    Tone::Good,
                    "Meets the bar: every criterion passed".to_owned(),
                    None,
                    true,
                ),
                (None, false) => view(Tone::Warn, "Below the bar".to_owned(), None, true),
            },
        },
        Driver::Plugin => match &input.last_closed {
            None => view(Tone::Neutral, "No round scored yet".to_owned(), None, false),
            Some((round, RoundVerdict::Converge)) => view(
                Tone::Good,
                format!("Converged in round {round}"),
                None,
                true,
            ),
            Some((round, _)) if input.max_rounds.is_some_and(|max| *round >= max) => view(
                Tone::Warn,
                format!("Stopped at the round cap ({round}) without converging"),
                None,
                true,
            ),
            Some((round, verdict)) => view(
                Tone::Neutral,
                format!(
                    "Round {round} → {}; no end recorded (the loop may still be running)",
                    verdict.label()
                ),
                None,
                false,
            ),
        },
    }
}

fn refine_status(input: &StatusInput<'_>, status: &StatusFile, scrub: &Scrub) -> StatusView {
    // Rounds the run finished (a round cut short is not one).
    let rounds = input.run.map_or(input.rounds, |run| run.rounds.len());
    let plural = if rounds == 1 { "" } else { "s" };
    let id = input.session_id;
    let in_progress = input.run.and_then(|run| run.in_progress);
    let (tone, headline, detail, ended) = match status.status.as_str() {
        "converged" => (
            Tone::Good,
            format!("Converged after {rounds} round{plural}"),
            None,
            true,
        ),
        "stopped" => {
            let mut headline = format!(
                "Stopped after {rounds} round{plural}: {}",
                stop_reason(status.reason.as_deref().unwrap_or_default())
            );
            if let Some(cut) = status.interrupted_round {
                let _ = write!(headline, " (round {cut} was cut short)");
            }
            (Tone::Warn, headline, None, true)
        }
        "interrupted" => (
            Tone::Warn,
            format!(
                "Interrupted{}; `refinery refine --resume {id}` continues",
                status
                    .round
                    .map(|round| format!(" in round {round}"))
                    .unwrap_or_default()
            ),
            None,
            true,
        ),
        "failed" => (
            Tone::Bad,
            format!("Failed; `refinery refine --resume {id}` retries from the last finished round"),
            status.error.as_deref().map(|error| scrub.text(error)),
            true,
        ),
        _ => (
            Tone::Neutral,
            match in_progress {
                Some(round) => format!("Running: round {round}"),
                None => "Running".to_owned(),
            },
            None,
            false,
        ),
    };
    StatusView {
        tone,
        headline,
        detail,
        ended,
    }
}

fn round_view(context: &mut Context<'_>, round: u32) -> RoundView {
    let path = context.session.round_dir(round).join("round.json");
    let file = read_lenient::<RoundFile>(&path).unwrap_or_else(|problem| {
        context.notes.push(context.scrub.text(&problem));
        None
    });
    let scrub = context.scrub;
    let record = context.journal.record(round).cloned();
    let mut view = RoundView::new(
        round,
        verdict(context, round, record.as_ref(), file.as_ref()),
    );
    if let Some(record) = &record {
        add_record(scrub, &mut view, record);
        view.report_file = report_file(context, record);
    }
    view.decision = decision(context, round, record.as_ref());
    view.cost = round_cost(context, round);
    view.submitted = context
        .submissions
        .get(&round)
        .map(|submission| (submission.files.len(), submission.total_bytes));
    (view.changes, view.changes_against) = round_changes(context, round);
    add_plan(context, &mut view);
    if let Some(file) = &file {
        add_round_file(scrub, &mut view, file);
    } else if context.driver == Driver::Evaluate
        && let Some(evaluation) = &context.evaluation
    {
        add_evaluation_file(scrub, &mut view, evaluation);
    }
    view
}

/// What the core recorded about a scored round: scores, reasoning, the computed verdict's
/// explanation, failing and plateaued criteria.
fn add_record(scrub: &Scrub, view: &mut RoundView, record: &ChecklistRecord) {
    let outcome = &record.outcome;
    view.scores = outcome
        .items
        .iter()
        .map(|item| (item.id.clone(), item.score))
        .collect();
    view.reasoning = outcome
        .items
        .iter()
        .filter(|item| !item.reasoning.trim().is_empty())
        .map(|item| (item.id.clone(), scrub.text(&item.reasoning)))
        .collect();
    // The core's explanation ends with advice for an agent; the report keeps the finding.
    let explanation = &outcome.explanation;
    view.explanation = Some(
        scrub.text(
            explanation
                .split(" NEXT STEP:")
                .next()
                .unwrap_or(explanation),
        ),
    );
    view.failing = outcome
        .failed_criteria
        .iter()
        .map(|id| scrub.text(id))
        .collect();
    view.plateaued = outcome
        .plateaued_criteria
        .iter()
        .map(|plateau| (scrub.text(&plateau.id), plateau.scores.clone()))
        .collect();
}

fn verdict(
    context: &Context<'_>,
    round: u32,
    record: Option<&ChecklistRecord>,
    file: Option<&RoundFile>,
) -> RoundVerdict {
    if let Some(record) = record {
        return match record.outcome.verdict {
            refinery_core::Verdict::Converge => RoundVerdict::Converge,
            refinery_core::Verdict::Iterate => RoundVerdict::Iterate,
        };
    }
    let reason = context
        .journal
        .unscored
        .get(&round)
        .map(|(reason, _)| reason.clone())
        .or_else(|| file.and_then(|file| file.unscored_reason.clone()));
    match reason {
        Some(reason) => RoundVerdict::Unscored(context.scrub.text(&reason)),
        None => RoundVerdict::Pending,
    }
}

fn decision(
    context: &Context<'_>,
    round: u32,
    record: Option<&ChecklistRecord>,
) -> Option<Decision> {
    if let Some(run) = &context.run {
        let next = run
            .rounds
            .iter()
            .find(|summary| summary.round == round)?
            .next
            .clone()?;
        return Some(match next {
            NextStep::Converged => Decision::Converged,
            NextStep::Continue {
                change_approach_for,
            } => Decision::Continue {
                change_approach_for: change_approach_for
                    .iter()
                    .map(|id| context.scrub.text(id))
                    .collect(),
            },
            NextStep::Stop { reason } => Decision::Stop(stop_reason(
                serde_json::to_value(reason)
                    .ok()?
                    .as_str()
                    .unwrap_or_default(),
            )),
        });
    }
    if context.driver == Driver::Evaluate {
        return None;
    }
    // A plugin-driven session records no decision; the core's rules imply these.
    let converged =
        record.is_some_and(|record| record.outcome.verdict == refinery_core::Verdict::Converge);
    if converged {
        Some(Decision::Converged)
    } else if context.max_rounds.is_some_and(|max| round >= max)
        && (record.is_some() || context.journal.unscored.contains_key(&round))
    {
        Some(Decision::Stop(stop_reason("max_rounds")))
    } else if context.journal.plans.contains(&round) {
        Some(Decision::Continue {
            change_approach_for: Vec::new(),
        })
    } else {
        None
    }
}

/// The evaluator's report file when it lies inside the session folder (the plugin's
/// round evaluator writes it there); anything else is only named.
fn report_file(context: &Context<'_>, record: &ChecklistRecord) -> Option<(Text, Option<Text>)> {
    let path = record.report_path.as_deref()?;
    let full = context.store.workspace().join(path);
    let inside = fs_err::canonicalize(&full)
        .ok()
        .zip(fs_err::canonicalize(context.session.dir()).ok())
        .is_some_and(|(real, session)| real.starts_with(session));
    let content = inside.then(|| read_text(&full)).flatten().map(|mut text| {
        if text.len() > REPORT_FILE_LIMIT {
            let mut cut = REPORT_FILE_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[… cut here: the rest is in the file]\n");
        }
        context.scrub.text(&text)
    });
    Some((context.scrub.text(path), content))
}

fn add_plan(context: &Context<'_>, view: &mut RoundView) {
    let path = context.session.round_dir(view.round).join("plan.json");
    let Ok(Some(plan)) = read_lenient::<refinery_core::ImprovementPlan>(&path) else {
        return;
    };
    let scrub = context.scrub;
    for (criterion, entries) in &plan.improvements {
        for entry in entries {
            view.plan.push(StepView {
                criterion: scrub.text(criterion),
                change: scrub.text(&entry.plan),
                impact: scrub.text(&format!("{:?}", entry.impact).to_lowercase()),
            });
        }
    }
    view.plan_vision = plan.vision.as_deref().map(|vision| scrub.text(vision));
}

fn steps(scrub: &Scrub, spec: &[crate::files::SpecFile]) -> Vec<StepView> {
    spec.iter()
        .map(|step| StepView {
            criterion: scrub.text(&step.criterion),
            change: scrub.text(&step.change),
            impact: scrub.text(&step.impact),
        })
        .collect()
}

fn evidence_of(scrub: &Scrub, reply: &EvaluationReply) -> BTreeMap<String, Vec<Text>> {
    reply
        .scores
        .iter()
        .map(|(id, finding)| {
            (
                id.clone(),
                finding
                    .evidence
                    .iter()
                    .map(|item| scrub.text(item))
                    .collect(),
            )
        })
        .collect()
}

fn add_round_file(scrub: &Scrub, view: &mut RoundView, file: &RoundFile) {
    if let Some(reply) = file
        .evaluation
        .as_ref()
        .and_then(EvaluationReply::from_value)
    {
        view.evidence = evidence_of(scrub, &reply);
        view.critique = (!reply.critique.trim().is_empty()).then(|| scrub.text(&reply.critique));
        view.improvement_spec = steps(scrub, &reply.improvement_spec);
        view.preserve = reply.preserve.iter().map(|item| scrub.text(item)).collect();
    }
    if file.panel.len() > 1 {
        view.judges = file
            .panel
            .iter()
            .map(|judge| {
                let reply = judge.reply.as_ref().and_then(EvaluationReply::from_value);
                JudgeView {
                    name: scrub.text(&judge.evaluator),
                    scores: reply
                        .as_ref()
                        .map(EvaluationReply::scores)
                        .unwrap_or_default(),
                    critique: reply
                        .as_ref()
                        .filter(|reply| !reply.critique.trim().is_empty())
                        .map(|reply| scrub.text(&reply.critique)),
                    evidence: reply
                        .as_ref()
                        .map(|reply| evidence_of(scrub, reply))
                        .unwrap_or_default(),
                    problem: judge.problem.as_deref().map(|problem| scrub.text(problem)),
                }
            })
            .collect();
    }
    view.verify = file
        .verify
        .iter()
        .map(|result| VerifyView {
            command: scrub.text(&result.command),
            passed: result.passed,
            exit_code: result.exit_code,
            timed_out: result.timed_out,
            duration_ms: result.duration_ms,
            output: scrub.text(&result.output),
        })
        .collect();
    view.fix_attempted = file.fix_attempted;
    view.regression = file.regression.as_ref().map(|report| RegressionView {
        action: scrub.text(&report.action),
        regressed: report.regressed.iter().map(|id| scrub.text(id)).collect(),
        reasoning: scrub.text(&report.reasoning),
    });
    view.builder_summary =
        (!file.builder_summary.trim().is_empty()).then(|| scrub.text(&file.builder_summary));
    view.lessons = file.lessons.as_ref().map(|lessons| LessonsView {
        keep_doing: lessons
            .keep_doing
            .iter()
            .map(|item| scrub.text(item))
            .collect(),
        stop_doing: lessons
            .stop_doing
            .iter()
            .map(|item| scrub.text(item))
            .collect(),
        critical_errors: lessons
            .critical_errors
            .iter()
            .map(|item| scrub.text(item))
            .collect(),
    });
    view.cost.builder = file
        .trace
        .as_ref()
        .filter(|trace| trace.tool_calls > 0 || trace.duration_ms > 0 || trace.input_tokens > 0)
        .map(|trace| BuilderView {
            tool_calls: trace.tool_calls,
            by_tool: trace
                .by_tool
                .iter()
                .map(|(tool, count)| (scrub.text(tool), *count))
                .collect(),
            tool_errors: trace.tool_errors,
            repeated_calls: trace.repeated_calls,
            input_tokens: trace.input_tokens,
            output_tokens: trace.output_tokens,
            duration_ms: trace.duration_ms,
        });
}

fn add_evaluation_file(scrub: &Scrub, view: &mut RoundView, evaluation: &EvaluationFile) {
    view.evidence = evaluation
        .evidence
        .iter()
        .map(|(id, items)| {
            (
                id.clone(),
                items.iter().map(|item| scrub.text(item)).collect(),
            )
        })
        .collect();
    view.critique =
        (!evaluation.critique.trim().is_empty()).then(|| scrub.text(&evaluation.critique));
    view.improvement_spec = steps(scrub, &evaluation.improvement_spec);
    view.preserve = evaluation
        .preserve
        .iter()
        .map(|item| scrub.text(item))
        .collect();
    view.cost.spend = Some(evaluation.spend);
}

/// The round's files against the previous round's (round 1: the workspace before the run,
/// when the driver kept it).
fn round_changes(context: &mut Context<'_>, round: u32) -> (Vec<diff::FileChange>, &'static str) {
    let Some(current) = context.submissions.get(&round) else {
        return (Vec::new(), "");
    };
    let previous = context
        .submissions
        .range(..round)
        .next_back()
        .map(|(number, submission)| (*number, submission.files.clone()));
    let (before, against) = match (previous, &context.baseline) {
        (Some((_, files)), _) => (files, "the previous round's snapshot"),
        (None, Some(baseline)) => (baseline.clone(), "the workspace before round 1"),
        (None, None) => (Vec::new(), "nothing (the first snapshot)"),
    };
    let changes = diff::changes(
        &context.store.objects(),
        &before,
        &current.files,
        context.scrub,
        &mut context.diff_budget,
    );
    (changes, against)
}

fn round_cost(context: &Context<'_>, round: u32) -> RoundCost {
    let mut cost = RoundCost::default();
    if let Some(run) = &context.run {
        let index = run.rounds.iter().position(|summary| summary.round == round);
        if let Some(index) = index {
            let earlier = index
                .checked_sub(1)
                .map_or_else(SpendFile::default, |previous| run.rounds[previous].spend);
            cost.spend = Some(run.rounds[index].spend.since(earlier));
        }
    }
    if let Some(span) = context.timeline.rounds.get(&round) {
        cost.wall_ms = span
            .started_ms
            .zip(span.ended_ms)
            .map(|(start, end)| end - start);
        cost.phases = span
            .phases
            .iter()
            .map(|phase| PhaseCost {
                label: context.scrub.text(phase_label(&phase.phase)),
                wall_ms: phase.ended_ms.map(|end| end - phase.started_ms),
                spend: phase.ended_ms.map(|_| phase.spend),
            })
            .collect();
        return cost;
    }
    // No progress log (a plugin-driven session, or an older run): the journal's timestamps
    // still bound each round and its submission, to the second.
    let journal = &context.journal;
    let start = round
        .checked_sub(1)
        .filter(|previous| *previous > 0)
        .and_then(|previous| journal.closed_ms(previous))
        .or(journal.criteria_ms)
        .or(journal.init_ms);
    let submitted = journal.answered_ms.get(&round).copied();
    let end = journal.closed_ms(round);
    cost.coarse_times = true;
    cost.wall_ms = start.zip(end).map(|(start, end)| end - start);
    if start.is_some() || submitted.is_some() {
        cost.phases = vec![
            PhaseCost {
                label: context.scrub.text("building, up to the snapshot"),
                wall_ms: start.zip(submitted).map(|(start, end)| end - start),
                spend: None,
            },
            PhaseCost {
                label: context.scrub.text("evaluating, up to the verdict"),
                wall_ms: submitted.zip(end).map(|(start, end)| end - start),
                spend: None,
            },
        ];
    }
    cost
}

fn totals(context: &Context<'_>) -> Totals {
    let setup = context.timeline.rounds.get(&0).and_then(|span| {
        let wall_ms: i64 = span
            .phases
            .iter()
            .filter_map(|phase| phase.ended_ms.map(|end| end - phase.started_ms))
            .sum();
        let spend = span
            .phases
            .iter()
            .fold(SpendFile::default(), |total, phase| SpendFile {
                usd: total.usd + phase.spend.usd,
                unknown_cost_calls: total.unknown_cost_calls + phase.spend.unknown_cost_calls,
                input_tokens: total.input_tokens + phase.spend.input_tokens,
                output_tokens: total.output_tokens + phase.spend.output_tokens,
                calls: total.calls + phase.spend.calls,
            });
        (!span.phases.is_empty()).then(|| PhaseCost {
            label: context.scrub.text("writing criteria"),
            wall_ms: Some(wall_ms),
            spend: Some(spend),
        })
    });
    let wall_ms = context
        .timeline
        .first_ms
        .zip(context.timeline.last_ms)
        .map(|(first, last)| last - first);
    match (&context.run, &context.evaluation) {
        (Some(run), _) => Totals {
            spend: Some(run.spend),
            active_ms: Some(run.elapsed_ms),
            wall_ms,
            setup,
        },
        (None, Some(evaluation)) => Totals {
            spend: Some(evaluation.spend),
            active_ms: None,
            wall_ms,
            setup,
        },
        (None, None) => Totals {
            spend: None,
            active_ms: None,
            wall_ms: context
                .journal
                .init_ms
                .zip(
                    context
                        .journal
                        .records
                        .last()
                        .and_then(|record| unix_ms(&Value::from(record.timestamp.clone()))),
                )
                .map(|(first, last)| last - first),
            setup: None,
        },
    }
}

fn deliverable(context: &Context<'_>) -> DeliverableView {
    let scrub = context.scrub;
    let id = context.session.id();
    let workspace = context.store.workspace().display().to_string();
    let Some((&last, submission)) = context.submissions.iter().next_back() else {
        return DeliverableView {
            location: Some(scrub.text(&format!("in {workspace} (no round was snapshotted)"))),
            ..DeliverableView::default()
        };
    };
    let location = match context.driver {
        Driver::Evaluate => format!(
            "unchanged in {workspace}: {}",
            submission.original_paths.join(", ")
        ),
        Driver::Refine => {
            let cut = context
                .run
                .as_ref()
                .and_then(|run| run.status.interrupted_round.or(run.status.round))
                .filter(|cut| *cut > last);
            match cut {
                Some(cut) => format!(
                    "in {workspace}; round {cut} was cut short and its unevaluated changes are there, round {last}'s evaluated version is in the session"
                ),
                None => format!("in {workspace} (round {last}, also snapshotted in the session)"),
            }
        }
        Driver::Plugin => format!(
            "in {workspace}: {} (round {last}, snapshotted in the session)",
            submission.original_paths.join(", ")
        ),
    };
    DeliverableView {
        location: Some(scrub.text(&location)),
        restore: Some(scrub.text(&format!(
            "refinery session restore {id} --round {last} --to DIR"
        ))),
        files: submission
            .files
            .iter()
            .take(LISTED_FILES)
            .map(|entry| (scrub.text(&entry.path), entry.size))
            .collect(),
        more_files: submission.files.len().saturating_sub(LISTED_FILES),
    }
}
