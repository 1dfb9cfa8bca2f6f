//! The judge phase: the one panel implementation, and the trace analyzer beside it.
//!
//! A [`Panel`] puts the same kind of question to several judges at once. Each judge gets its
//! own brief (built per judge, so views and, for votes, answer labels can differ), none sees
//! another's reply, and they split the panel's share of the budget equally. The panel returns
//! every judge's reply as it came ([`JudgeVerdict`]); what the replies add up to is decided by
//! the caller's rule. For evaluations that rule is [`PanelEvaluation`]: a panel decides only
//! with a quorum of usable judges (a majority; otherwise the round is unscored), every reply's
//! `path:line` citations are checked against the snapshot, and each criterion is scored by the
//! core's [`judgment::panel_criterion`] (a score whose evidence did not hold up is not
//! accepted as passing). `refine` and `evaluate` both judge through [`evaluate`]; `refine`
//! also runs the trace analyzer alongside ([`round`]), whose lessons that contradict the
//! computed statistics are dropped. A multi-model run's answer judges are a panel too
//! ([`Panel::ask_each`], in `phases::vote`), with one brief and one folder per judge.
//!
//! Judges are blind to the past: their briefs carry the task, the criteria, the deliverable
//! and the checks' output, never an earlier round's scores, verdicts or findings.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use refinery_core::checklist::Score;
use refinery_core::judgment::{self, JudgeScore, Quorum, Spread};
use refinery_core::{CriteriaSet, ManifestEntry, ObjectStore};
use refinery_llm::AgentEvent;
use refinery_prompts::Role;
use serde_json::Value;

use crate::backend::Backend;
use crate::briefs::{self, EvaluatorBrief};
use crate::error::{EngineError, OutputError};
use crate::events::{Phase, RefineEvent};
use crate::outputs::{
    Citation, Evaluation, Finding, SpecItem, TraceLessons, evaluator_schema, parse_evaluator,
    parse_trace_lessons, trace_lessons_schema,
};
use crate::pack::{self, Scrubber};
use crate::phases::Context;
use crate::phases::ask::{Ask, JudgeReply, ask};
use crate::record::PanelVerdict;
use crate::trace::{self, TraceStats};
use crate::verify::VerifyResult;

/// Several judges asked at once, blind to each other.
pub(crate) struct Panel<'a> {
    /// The judges, in a fixed order (the lead evaluator first).
    pub judges: &'a [&'a Backend],
    /// Where agent-CLI judges run: a copy of what they judge ([`deliverable_copy`]).
    pub workdir: &'a Path,
    /// The part of the remaining budget the whole panel may take, split equally.
    pub budget_share: f64,
}

/// One judge's reply to a panel question.
#[derive(Clone, Debug)]
pub(crate) struct JudgeVerdict<T> {
    /// The judge's backend, as named.
    pub judge: String,
    pub reply: JudgeReply<T>,
}

impl From<JudgeVerdict<CheckedEvaluation>> for PanelVerdict {
    fn from(verdict: JudgeVerdict<CheckedEvaluation>) -> Self {
        let problem = verdict.reply.problem().map(str::to_owned);
        let (reply, unverified) = match verdict.reply.into_usable() {
            Some(checked) => {
                let unverified = checked.unverified.iter().map(|(id, citations)| {
                    (
                        id.clone(),
                        citations.iter().map(ToString::to_string).collect(),
                    )
                });
                (Some(checked.evaluation), unverified.collect())
            }
            None => (None, BTreeMap::new()),
        };
        PanelVerdict {
            evaluator: verdict.judge,
            problem,
            reply,
            unverified,
        }
    }
}

impl Panel<'_> {
    /// Asks every judge in parallel. `brief(index, judge)` writes each judge's brief. A halt or
    /// a backend failure of any judge is an error; unusable output is a reply like any other.
    pub(crate) async fn ask<T>(
        &self,
        ctx: &Context<'_>,
        role: Role,
        schema: &Value,
        brief: impl Fn(usize, &Backend) -> String,
        parse: impl Fn(&str) -> Result<T, OutputError>,
    ) -> Result<Vec<JudgeVerdict<T>>, EngineError> {
        self.ask_each(ctx, role, schema, brief, |_| None, parse)
            .await
            .into_iter()
            .collect()
    }

    /// [`Panel::ask`] with each judge's result kept apart: one judge's backend failure (or a
    /// halt) is that judge's `Err`, and the others' replies still arrive. `workdir(index)`
    /// gives a judge a folder of its own (a multi-model run shows each judge the answers
    /// under its own letters); `None` uses the panel's.
    pub(crate) async fn ask_each<T>(
        &self,
        ctx: &Context<'_>,
        role: Role,
        schema: &Value,
        brief: impl Fn(usize, &Backend) -> String,
        workdir: impl Fn(usize) -> Option<PathBuf>,
        parse: impl Fn(&str) -> Result<T, OutputError>,
    ) -> Vec<Result<JudgeVerdict<T>, EngineError>> {
        #[allow(clippy::cast_precision_loss, reason = "a handful of judges")]
        let share = self.budget_share / self.judges.len().max(1) as f64;
        let parse = &parse;
        let replies =
            futures::future::join_all(self.judges.iter().enumerate().map(|(index, judge)| {
                let folder = workdir(index).unwrap_or_else(|| self.workdir.to_path_buf());
                let prompt = brief(index, judge);
                let schema = schema.clone();
                async move {
                    let call = Ask {
                        backend: judge,
                        role,
                        schema,
                        workdir: &folder,
                        budget_share: share,
                    };
                    ask(ctx, &call, prompt, parse).await
                }
            }))
            .await;
        self.judges
            .iter()
            .zip(replies)
            .map(|(judge, reply)| {
                Ok(JudgeVerdict {
                    judge: judge.spec().to_string(),
                    reply: reply?,
                })
            })
            .collect()
    }
}

/// Where judges run. Judges never work in the user's workspace: one that opens files itself
/// (an agent CLI) gets a private copy of the deliverable; when none does, nothing is copied
/// or created, and the system's temporary folder stands in (an API judge reads the
/// deliverable from its brief and never touches a folder).
pub(crate) struct JudgeFolder {
    path: PathBuf,
    /// Removed when dropped.
    _copy: Option<tempfile::TempDir>,
}

impl JudgeFolder {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A copy of `files` for judges that open files themselves; see [`JudgeFolder`].
pub(crate) fn deliverable_copy(
    ctx: &Context<'_>,
    judges: &[&Backend],
    files: &[ManifestEntry],
) -> Result<JudgeFolder, EngineError> {
    if !judges.iter().any(|judge| judge.reads_files()) {
        return Ok(JudgeFolder {
            path: std::env::temp_dir(),
            _copy: None,
        });
    }
    let folder = tempfile::Builder::new()
        .prefix("refinery-judge-")
        .tempdir()?;
    refinery_core::snapshot::restore(&ctx.store.objects(), files, folder.path())?;
    Ok(JudgeFolder {
        path: folder.path().to_path_buf(),
        _copy: Some(folder),
    })
}

/// What an evaluation panel judges. Nothing of earlier rounds is in it: judges score what is
/// there now, blind to what was scored before (scores they see, they anchor on).
pub(crate) struct EvaluationInput<'a> {
    pub task: &'a str,
    pub criteria: &'a CriteriaSet,
    /// The deliverable, as submitted.
    pub files: &'a [ManifestEntry],
    /// The `--verify` results the judges see.
    pub verify: &'a [VerifyResult],
}

/// One judge's evaluation, its evidence checked against the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckedEvaluation {
    pub evaluation: Evaluation,
    /// Per criterion, the citations in its evidence that the snapshot does not hold.
    pub unverified: BTreeMap<String, Vec<Citation>>,
}

/// The deliverable's files, for checking what evidence cites.
pub(crate) struct CitedFiles<'a> {
    objects: &'a ObjectStore,
    files: BTreeMap<&'a str, &'a ManifestEntry>,
}

impl<'a> CitedFiles<'a> {
    pub(crate) fn new(objects: &'a ObjectStore, files: &'a [ManifestEntry]) -> Self {
        let files = files
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        Self { objects, files }
    }

    /// The file a citation names: by its path relative to the deliverable (`./` allowed), or,
    /// for an absolute path inside a judge's copy, by the longest deliverable path it ends
    /// with.
    fn entry(&self, path: &str) -> Option<&'a ManifestEntry> {
        let relative = path.trim_start_matches("./");
        if let Some(entry) = self.files.get(relative) {
            return Some(entry);
        }
        if !path.starts_with('/') {
            return None;
        }
        self.files
            .iter()
            .filter(|(known, _)| path.ends_with(&format!("/{known}")))
            .max_by_key(|(known, _)| known.len())
            .map(|(_, entry)| *entry)
    }

    /// Whether the snapshot holds the cited file and every cited line (lines count from 1). A
    /// file that cannot be read back holds nothing: no evidence, no pass.
    pub(crate) fn holds(&self, citation: &Citation) -> bool {
        let Some(entry) = self.entry(&citation.path) else {
            return false;
        };
        let Ok(bytes) = self.objects.read_object(&entry.hash) else {
            return false;
        };
        let lines = bytes.split(|byte| *byte == b'\n').count()
            - usize::from(bytes.is_empty() || bytes.ends_with(b"\n"));
        let within = |line: u32| (1..=lines).contains(&(line as usize));
        citation.first <= citation.last && within(citation.first) && within(citation.last)
    }

    /// `evaluation` with every citation it makes checked.
    pub(crate) fn check(&self, evaluation: Evaluation) -> CheckedEvaluation {
        let unverified = evaluation
            .findings
            .iter()
            .filter_map(|(id, finding)| {
                let mut missing: Vec<Citation> = finding
                    .citations
                    .iter()
                    .filter(|citation| !self.holds(citation))
                    .cloned()
                    .collect();
                missing.sort();
                missing.dedup();
                (!missing.is_empty()).then(|| (id.clone(), missing))
            })
            .collect();
        CheckedEvaluation {
            evaluation,
            unverified,
        }
    }
}

/// What the panel's scores came to, when enough judges were usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Combined {
    /// The evaluation the deliverable is scored by.
    pub evaluation: Evaluation,
    /// Criterion → why its score is not accepted as passing (evidence that did not hold up).
    pub refused: BTreeMap<String, String>,
    /// Criterion → how far apart the judges were (panels only).
    pub spread: BTreeMap<String, Spread>,
}

/// A panel's evaluation of one deliverable.
#[derive(Clone, Debug)]
pub(crate) struct PanelEvaluation {
    /// Every judge asked, with its reply, in panel order.
    pub judges: Vec<JudgeVerdict<CheckedEvaluation>>,
    /// How many were usable.
    pub quorum: Quorum,
    /// What the deliverable is scored by; `None` (unscored) unless a majority of the judges
    /// gave usable output ([`Quorum::is_met`]).
    pub combined: Option<Combined>,
}

impl PanelEvaluation {
    /// Applies the panel rule: with a quorum of usable replies, those replies combined;
    /// without one, nothing, so a lone judge never decides for a panel.
    pub(crate) fn from_verdicts(judges: Vec<JudgeVerdict<CheckedEvaluation>>) -> Self {
        let usable: Vec<&CheckedEvaluation> = judges
            .iter()
            .filter_map(|verdict| verdict.reply.usable())
            .collect();
        let quorum = Quorum::new(judges.len(), usable.len());
        let combined = if quorum.is_met() {
            combine(judges.len(), &usable)
        } else {
            None
        };
        Self {
            judges,
            quorum,
            combined,
        }
    }

    /// Why the deliverable is unscored (each unusable judge's problem, and for a panel how
    /// many judges were usable), `None` when scored.
    pub(crate) fn unscored_reason(&self) -> Option<String> {
        if self.combined.is_some() {
            return None;
        }
        let several = self.judges.len() > 1;
        let problems: Vec<String> = self
            .judges
            .iter()
            .filter_map(|verdict| {
                let problem = verdict.reply.problem()?;
                Some(if several {
                    format!("{}: {problem}", verdict.judge)
                } else {
                    problem.to_owned()
                })
            })
            .collect();
        Some(if several {
            format!("{} ({})", self.quorum, problems.join("; "))
        } else {
            problems.join("; ")
        })
    }
}

/// Has every judge of `panel` evaluate the deliverable against the criteria, and checks each
/// reply's evidence against the snapshot.
pub(crate) async fn evaluate(
    ctx: &Context<'_>,
    panel: &Panel<'_>,
    input: &EvaluationInput<'_>,
) -> Result<PanelEvaluation, EngineError> {
    let objects = ctx.store.objects();
    let brief = |_: usize, judge: &Backend| {
        evaluator_brief(
            &objects,
            &ctx.env.scrubber,
            (judge.view(), judge.files_note()),
            input,
        )
    };
    let criteria = input.criteria;
    let cited = CitedFiles::new(&objects, input.files);
    let verdicts = panel
        .ask(
            ctx,
            Role::RoundEvaluator,
            &evaluator_schema(criteria),
            brief,
            |text| parse_evaluator(criteria, text).map(|evaluation| cited.check(evaluation)),
        )
        .await?;
    Ok(PanelEvaluation::from_verdicts(verdicts))
}

/// A judge's brief: the task, the criteria, the deliverable as `view` shows it (with
/// `files_note`) and the `--verify` results.
fn evaluator_brief(
    objects: &ObjectStore,
    scrubber: &Scrubber,
    (view, files_note): (pack::View, &str),
    input: &EvaluationInput<'_>,
) -> String {
    let deliverable = pack::render_view_numbered(view, objects, input.files, scrubber);
    briefs::evaluator(&EvaluatorBrief {
        task: input.task,
        criteria: input.criteria,
        deliverable: &deliverable,
        files_note,
        verify: input.verify,
    })
}

/// What [`warm`] renders ahead: the evaluation as it will be asked if the round submits
/// `files` with these `verify` results.
pub(crate) struct Foreseen {
    pub task: String,
    pub criteria: CriteriaSet,
    pub files: Vec<ManifestEntry>,
    pub verify: Vec<VerifyResult>,
}

/// Renders each judge's brief for a submission the round is about to make and scans it for
/// secrets, on a blocking thread, while the submission's writes wait on the disk on this one.
/// (Started before the guard instead, it took CPU the guard's own work needed: slower on a
/// two-core machine, measured.)
///
/// Only the scrubber's memory of clean texts keeps the work: when the evaluation sends a
/// brief equal byte for byte to one scanned here, the scan at the boundary is a lookup
/// (`Scrubber::scrub_cow`), and a brief that differs (the guard repaired the round, a check
/// ran again) is scanned as always. Nothing here can let a text through unscanned.
pub(crate) fn warm(
    ctx: &Context<'_>,
    judges: &[&Backend],
    foreseen: Foreseen,
) -> tokio::task::JoinHandle<()> {
    let objects = ctx.store.objects();
    let scrubber = ctx.env.scrubber.clone();
    let views: Vec<(pack::View, &'static str)> = judges
        .iter()
        .map(|judge| (judge.view(), judge.files_note()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let input = EvaluationInput {
            task: &foreseen.task,
            criteria: &foreseen.criteria,
            files: &foreseen.files,
            verify: &foreseen.verify,
        };
        let mut seen = Vec::new();
        for view in views {
            if seen.contains(&view) {
                continue;
            }
            drop(scrubber.scrub_cow(&evaluator_brief(&objects, &scrubber, view, &input)));
            seen.push(view);
        }
    })
}

/// Combines evaluations that `asked` judges made blind of the same deliverable (the usable
/// ones; at least a quorum of them).
///
/// Each criterion's score is the core's [`judgment::panel_criterion`]: the lower median of the
/// judges whose evidence held up, accepted as passing only when they are a majority of the
/// judges asked. Evidence and reasoning keep every judge's, labelled; critiques are kept side
/// by side; the improvement specs are merged in judge order without repeats; preserve lists
/// are united. One judge's evaluation passes through unchanged; none gives `None`.
fn combine(asked: usize, evaluations: &[&CheckedEvaluation]) -> Option<Combined> {
    let first = evaluations.first()?;
    let several = evaluations.len() > 1;
    let label = |index: usize, text: &str| {
        if several {
            format!("judge {}: {}", index + 1, text.trim())
        } else {
            text.to_owned()
        }
    };
    let mut refused = BTreeMap::new();
    let mut spread = BTreeMap::new();
    let mut findings = BTreeMap::new();
    for id in first.evaluation.findings.keys() {
        let found: Vec<(usize, &Finding, bool)> = evaluations
            .iter()
            .enumerate()
            .filter_map(|(index, checked)| {
                let finding = checked.evaluation.findings.get(id)?;
                Some((index, finding, !checked.unverified.contains_key(id)))
            })
            .collect();
        let scores: Vec<JudgeScore> = found
            .iter()
            .map(|(_, finding, holds)| JudgeScore {
                score: finding.score.get(),
                evidence_holds: *holds,
            })
            .collect();
        let decided = judgment::panel_criterion(asked, &scores)?;
        if !decided.accepted {
            refused.insert(id.clone(), refusal(asked, evaluations, id, &found));
        }
        if asked > 1 {
            spread.insert(id.clone(), decided.spread);
        }
        let evidence = found
            .iter()
            .flat_map(|(index, finding, _)| {
                finding.evidence.iter().map(move |item| label(*index, item))
            })
            .collect();
        let reasoning = if several {
            let each = found.iter().map(|(index, finding, _)| {
                label(
                    *index,
                    &format!("{} ({})", finding.reasoning, finding.score.get()),
                )
            });
            each.collect::<Vec<_>>().join("\n")
        } else {
            first.evaluation.findings[id].reasoning.clone()
        };
        findings.insert(
            id.clone(),
            Finding::new(Score::new(decided.score)?, evidence, reasoning),
        );
    }
    let (improvement_spec, preserve) = merged_lists(evaluations);
    let critique = evaluations
        .iter()
        .enumerate()
        .filter(|(_, checked)| !checked.evaluation.critique.trim().is_empty())
        .map(|(index, checked)| label(index, &checked.evaluation.critique))
        .collect::<Vec<_>>()
        .join("\n\n");
    Some(Combined {
        evaluation: Evaluation {
            findings,
            critique,
            improvement_spec,
            preserve,
        },
        refused,
        spread,
    })
}

/// Every judge's improvement spec and preserve list, in order, each item once.
fn merged_lists(evaluations: &[&CheckedEvaluation]) -> (Vec<SpecItem>, Vec<String>) {
    let mut improvement_spec: Vec<SpecItem> = Vec::new();
    let mut preserve: Vec<String> = Vec::new();
    for checked in evaluations {
        for item in &checked.evaluation.improvement_spec {
            if !improvement_spec.contains(item) {
                improvement_spec.push(item.clone());
            }
        }
        for item in &checked.evaluation.preserve {
            if !preserve.contains(item) {
                preserve.push(item.clone());
            }
        }
    }
    (improvement_spec, preserve)
}

/// Why a criterion's score is not accepted: what its evidence cites that is not there, and,
/// for a panel, how many judges' evidence held up.
fn refusal(
    asked: usize,
    evaluations: &[&CheckedEvaluation],
    id: &str,
    found: &[(usize, &Finding, bool)],
) -> String {
    let mut missing: Vec<String> = evaluations
        .iter()
        .flat_map(|checked| checked.unverified.get(id).into_iter().flatten())
        .map(|citation| format!("`{citation}`"))
        .collect();
    missing.sort();
    missing.dedup();
    let mut reason = format!(
        "its evidence cites {}, which the snapshot does not hold",
        missing.join(", ")
    );
    if asked > 1 {
        let held = found.iter().filter(|(_, _, holds)| *holds).count();
        let _ = write!(reason, " (evidence held up for {held} of {asked} judges)");
    }
    reason
}

/// What a refine round is judged on.
pub(crate) struct RoundInput<'a> {
    pub round: u32,
    /// The lead evaluator first, then the rest of the panel.
    pub judges: &'a [&'a Backend],
    /// Plays the trace analyzer.
    pub analyzer: &'a Backend,
    pub evaluation: EvaluationInput<'a>,
    /// The builder's run, counted.
    pub trace: &'a TraceStats,
    /// The builder's events, condensed for the analyzer.
    pub builder_events: &'a [AgentEvent],
    /// The judges' briefs being rendered ahead ([`warm`]), when the submission was known
    /// before it was made.
    pub warming: Option<tokio::task::JoinHandle<()>>,
}

/// A refine round's judgment: the panel's evaluation and the trace analyzer's lessons.
#[derive(Debug)]
pub(crate) struct RoundJudged {
    pub panel: PanelEvaluation,
    /// `None` when the analyzer's output was unusable or it failed: lessons are advice.
    pub lessons: Option<TraceLessons>,
    /// Lessons dropped because they contradict the computed statistics.
    pub dropped_lessons: Vec<String>,
}

/// Evaluates a round with the panel (60% of the remaining budget) and analyzes the builder's
/// trace (40%), in parallel.
pub(crate) async fn round(
    ctx: &Context<'_>,
    mut input: RoundInput<'_>,
) -> Result<RoundJudged, EngineError> {
    let round = input.round;
    ctx.phase(round, Phase::Evaluate);
    let folder = deliverable_copy(ctx, input.judges, input.evaluation.files)?;
    let panel = Panel {
        judges: input.judges,
        workdir: folder.path(),
        budget_share: 0.6,
    };
    // The trace analyzer's small brief goes out first: the judges' large ones take a while to
    // render, scan and encode, and its model can be answering meanwhile.
    let warming = input.warming.take();
    let (lessons, evaluated) = tokio::join!(lessons(ctx, &input, folder.path()), async {
        // Waited for, so the evaluation finds its briefs scanned rather than scanning them a
        // second time alongside; a panic there only loses the head start.
        if let Some(warming) = warming
            && let Err(error) = warming.await
        {
            tracing::debug!(%error, "rendering the judges' briefs ahead failed");
        }
        evaluate(ctx, &panel, &input.evaluation).await
    });
    ctx.emit_spend();
    let panel = evaluated?;
    let (lessons, dropped_lessons) = match lessons? {
        Some(lessons) => {
            let (kept, dropped) = trace::consistent_lessons(lessons, input.trace);
            (Some(kept), dropped)
        }
        None => (None, Vec::new()),
    };
    if panel.judges.len() > 1 {
        for verdict in &panel.judges {
            ctx.emit(&RefineEvent::Judged {
                round,
                evaluator: verdict.judge.clone(),
                scores: verdict
                    .reply
                    .usable()
                    .map(|checked| checked.evaluation.score_values()),
                problem: verdict.reply.problem().map(str::to_owned),
            });
        }
    }
    Ok(RoundJudged {
        panel,
        lessons,
        dropped_lessons,
    })
}

/// The trace analyzer's lessons from the builder's run. Only a halt is an error.
async fn lessons(
    ctx: &Context<'_>,
    input: &RoundInput<'_>,
    workdir: &Path,
) -> Result<Option<TraceLessons>, EngineError> {
    let stats_json = serde_json::to_string_pretty(input.trace).unwrap_or_default();
    let prompt = briefs::trace_analyzer(
        input.evaluation.task,
        &stats_json,
        &ctx.env
            .scrubber
            .scrub(&trace::condensed(input.builder_events)),
    );
    let call = Ask {
        backend: input.analyzer,
        role: Role::ExecutionTraceAnalyzer,
        schema: trace_lessons_schema(),
        workdir,
        budget_share: 0.4,
    };
    match ask(ctx, &call, prompt, parse_trace_lessons).await {
        Ok(JudgeReply::Usable(lessons)) => Ok(Some(lessons)),
        Ok(JudgeReply::Unusable { .. }) => Ok(None),
        Err(EngineError::Halted(halt)) => Err(halt.into()),
        Err(error) => {
            tracing::warn!(%error, "trace analyzer failed; the round goes on without lessons");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::criteria;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn reply(e1: i64, e2: i64, spec: &str) -> Evaluation {
        let text = json!({
            "scores": {
                "E1": {"score": e1, "evidence": [format!("saw {e1}")], "reasoning": "r"},
                "E2": {"score": e2, "evidence": ["x"], "reasoning": "r"}
            },
            "critique": format!("critique {e1}"),
            "improvement_spec": [{"criterion": "E1", "change": spec, "impact": "structural"}],
            "preserve": ["palette"]
        });
        parse_evaluator(&criteria(), &text.to_string()).unwrap()
    }

    /// A reply whose evidence held up (or, with `missing`, whose E1 evidence cites it).
    fn checked(evaluation: Evaluation, missing: Option<&str>) -> CheckedEvaluation {
        let unverified = missing
            .map(|path| {
                let citation = Citation {
                    path: path.to_owned(),
                    first: 1,
                    last: 1,
                };
                [("E1".to_owned(), vec![citation])].into()
            })
            .unwrap_or_default();
        CheckedEvaluation {
            evaluation,
            unverified,
        }
    }

    fn usable(judge: &str, evaluation: CheckedEvaluation) -> JudgeVerdict<CheckedEvaluation> {
        JudgeVerdict {
            judge: judge.to_owned(),
            reply: JudgeReply::Usable(evaluation),
        }
    }

    fn unusable(judge: &str, problem: &str) -> JudgeVerdict<CheckedEvaluation> {
        JudgeVerdict {
            judge: judge.to_owned(),
            reply: JudgeReply::Unusable {
                problem: problem.to_owned(),
            },
        }
    }

    #[test]
    fn a_panel_is_combined_with_the_lower_median_and_every_judges_evidence() {
        let single = checked(reply(9, 8, "a"), None);
        let alone = combine(1, &[&single]).unwrap();
        assert_eq!(alone.evaluation, single.evaluation);
        assert!(alone.spread.is_empty() && alone.refused.is_empty());
        let (a, b, c) = (
            checked(reply(9, 8, "a"), None),
            checked(reply(5, 9, "a"), None),
            checked(reply(8, 3, "b"), None),
        );
        let combined = combine(3, &[&a, &b, &c]).unwrap();
        let evaluation = &combined.evaluation;
        assert_eq!(evaluation.findings["E1"].score.get(), 8);
        assert_eq!(evaluation.findings["E2"].score.get(), 8);
        assert_eq!(
            evaluation.findings["E1"].evidence,
            vec!["judge 1: saw 9", "judge 2: saw 5", "judge 3: saw 8"]
        );
        assert_eq!(
            evaluation.findings["E1"].reasoning,
            "judge 1: r (9)\njudge 2: r (5)\njudge 3: r (8)"
        );
        assert_eq!(evaluation.improvement_spec.len(), 2);
        assert_eq!(evaluation.preserve, vec!["palette"]);
        assert!(evaluation.critique.starts_with("judge 1: critique 9"));
        assert_eq!(combined.spread["E1"], Spread { low: 5, high: 9 });
        assert_eq!(combined.spread["E2"], Spread { low: 3, high: 9 });
        let (strict, lenient) = (
            checked(reply(9, 9, "a"), None),
            checked(reply(6, 9, "a"), None),
        );
        assert_eq!(
            combine(2, &[&strict, &lenient])
                .unwrap()
                .evaluation
                .findings["E1"]
                .score
                .get(),
            6,
            "an even panel converges only if both would"
        );
        assert_eq!(combine(1, &[]), None);
    }

    #[test]
    fn a_panel_decides_only_with_a_quorum_and_says_how_many_judges_were_usable() {
        let both = PanelEvaluation::from_verdicts(vec![
            unusable("claude", "no JSON"),
            unusable("codex", "missing E2"),
        ]);
        assert!(both.combined.is_none());
        assert_eq!(
            both.unscored_reason().as_deref(),
            Some("0 of 2 judges usable (claude: no JSON; codex: missing E2)")
        );
        let one = PanelEvaluation::from_verdicts(vec![unusable("claude", "no JSON")]);
        assert_eq!(one.unscored_reason().as_deref(), Some("no JSON"));
        // One usable judge of two is no majority: the round is unscored, not decided by it.
        let half = PanelEvaluation::from_verdicts(vec![
            unusable("claude", "no JSON"),
            usable("codex", checked(reply(10, 10, "a"), None)),
        ]);
        assert_eq!(half.quorum, Quorum::new(2, 1));
        assert!(half.combined.is_none());
        assert_eq!(
            half.unscored_reason().as_deref(),
            Some("1 of 2 judges usable (claude: no JSON)")
        );
        // Two of three is a majority.
        let most = PanelEvaluation::from_verdicts(vec![
            unusable("claude", "timed out"),
            usable("codex", checked(reply(7, 7, "a"), None)),
            usable("gemini", checked(reply(9, 8, "a"), None)),
        ]);
        assert_eq!(most.unscored_reason(), None);
        assert_eq!(
            most.combined.unwrap().evaluation.findings["E1"].score.get(),
            7
        );
    }

    #[test]
    fn evidence_that_does_not_hold_up_keeps_a_criterion_from_passing() {
        let alone = PanelEvaluation::from_verdicts(vec![usable(
            "claude",
            checked(reply(10, 10, "a"), Some("haiku.md")),
        )]);
        let combined = alone.combined.unwrap();
        assert_eq!(combined.evaluation.findings["E1"].score.get(), 10);
        assert_eq!(
            combined.refused["E1"],
            "its evidence cites `haiku.md:1`, which the snapshot does not hold"
        );
        assert!(!combined.refused.contains_key("E2"));
        // In a panel of two, one judge's broken evidence leaves the other alone: no majority.
        let pair = PanelEvaluation::from_verdicts(vec![
            usable("claude", checked(reply(10, 10, "a"), Some("haiku.md"))),
            usable("codex", checked(reply(9, 9, "a"), None)),
        ]);
        let combined = pair.combined.unwrap();
        assert_eq!(
            combined.refused["E1"],
            "its evidence cites `haiku.md:1`, which the snapshot does not hold (evidence held up for 1 of 2 judges)"
        );
        // Of three, the two that hold decide.
        let trio = PanelEvaluation::from_verdicts(vec![
            usable("claude", checked(reply(10, 10, "a"), Some("haiku.md"))),
            usable("codex", checked(reply(9, 9, "a"), None)),
            usable("gemini", checked(reply(7, 9, "a"), None)),
        ]);
        let combined = trio.combined.unwrap();
        assert!(combined.refused.is_empty());
        assert_eq!(combined.evaluation.findings["E1"].score.get(), 7);
    }

    #[test]
    fn citations_are_checked_against_the_snapshot_files_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        fs_err::create_dir_all(workspace.join("src")).unwrap();
        fs_err::write(
            workspace.join("index.html"),
            "<h1>a</h1>\n<p>b</p>\n<p>c</p>\n",
        )
        .unwrap();
        fs_err::write(workspace.join("src/app.js"), "one\ntwo").unwrap();
        fs_err::write(workspace.join("empty.txt"), "").unwrap();
        let objects = ObjectStore::new(dir.path().join("objects"));
        let snapshot =
            refinery_core::snapshot::take_snapshot(&objects, &workspace, &[], &[".".to_owned()])
                .unwrap();
        let files = CitedFiles::new(&objects, &snapshot.entries);
        let cases = [
            ("index.html:1", true),
            ("index.html:3", true),
            ("index.html:4", false),
            ("index.html:0", false),
            ("index.html:2-3", true),
            ("index.html:3-2", false),
            ("index.html:2-9", false),
            ("./index.html:2", true),
            ("src/app.js:2", true),
            ("src/app.js:3", false),
            ("app.js:1", false),
            ("/tmp/refinery-judge-x1/src/app.js:1", true),
            ("/etc/passwd:1", false),
            ("haiku.md:1", false),
            ("empty.txt:1", false),
        ];
        for (cited, holds) in cases {
            let citation = crate::outputs::citations(cited).pop().unwrap();
            assert_eq!(files.holds(&citation), holds, "{cited}");
        }
    }
}
