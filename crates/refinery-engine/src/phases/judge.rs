//! The judge phase: the one panel implementation, and the trace analyzer beside it.
//!
//! A [`Panel`] puts the same kind of question to several judges at once. Each judge gets its
//! own brief (built per judge, so views and, for votes, answer labels can differ), none sees
//! another's reply, and they split the panel's share of the budget equally. The panel returns
//! every judge's reply as it came ([`JudgeVerdict`]); what the replies add up to is decided by
//! the caller's rule. For evaluations that rule is [`PanelEvaluation`]: each criterion scored
//! by the core's [`checklist::panel_score`] over the usable replies. `refine` and `evaluate`
//! both judge through [`evaluate`]; `refine` also runs the trace analyzer alongside
//! ([`round`]). A multi-model run's answer judges are a panel too ([`Panel::ask_each`], in
//! `phases::vote`), with one brief and one folder per judge.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use refinery_core::checklist::{self, Score};
use refinery_core::{CriteriaSet, ManifestEntry};
use refinery_llm::AgentEvent;
use refinery_prompts::Role;
use serde_json::Value;

use crate::backend::Backend;
use crate::briefs::{self, EvaluatorBrief};
use crate::error::{EngineError, OutputError};
use crate::events::{Phase, RefineEvent};
use crate::outputs::{
    Evaluation, EvaluatorOutput, Finding, SpecItem, TraceLessons, parse_evaluator,
    parse_trace_lessons, schema_for,
};
use crate::pack;
use crate::phases::Context;
use crate::phases::ask::{Ask, JudgeReply, ask};
use crate::record::{PanelVerdict, RoundSummary};
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

impl From<JudgeVerdict<Evaluation>> for PanelVerdict {
    fn from(verdict: JudgeVerdict<Evaluation>) -> Self {
        PanelVerdict {
            evaluator: verdict.judge,
            problem: verdict.reply.problem().map(str::to_owned),
            reply: verdict.reply.into_usable(),
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

/// A copy of `files` for judges that open files themselves (agent CLIs); empty when none
/// does. Judges never work in the user's workspace.
pub(crate) fn deliverable_copy(
    ctx: &Context<'_>,
    judges: &[&Backend],
    files: &[ManifestEntry],
) -> Result<tempfile::TempDir, EngineError> {
    let folder = tempfile::Builder::new()
        .prefix("refinery-judge-")
        .tempdir()?;
    if judges.iter().any(|judge| judge.reads_files()) {
        refinery_core::snapshot::restore(&ctx.store.objects(), files, folder.path())?;
    }
    Ok(folder)
}

/// What an evaluation panel judges.
pub(crate) struct EvaluationInput<'a> {
    pub task: &'a str,
    pub criteria: &'a CriteriaSet,
    pub round: u32,
    /// The deliverable, as submitted.
    pub files: &'a [ManifestEntry],
    /// The `--verify` results the judges see.
    pub verify: &'a [VerifyResult],
    /// Earlier rounds' scores, for context.
    pub previous: Option<&'a str>,
}

/// A panel's evaluation of one deliverable.
#[derive(Clone, Debug)]
pub(crate) struct PanelEvaluation {
    /// Every judge asked, with its reply, in panel order.
    pub judges: Vec<JudgeVerdict<Evaluation>>,
    /// The evaluation the deliverable is scored by; `None` leaves it unscored.
    pub combined: Option<Evaluation>,
}

impl PanelEvaluation {
    /// Applies the panel rule: the usable replies combined, if there are any.
    pub(crate) fn from_verdicts(judges: Vec<JudgeVerdict<Evaluation>>) -> Self {
        let usable: Vec<&Evaluation> = judges
            .iter()
            .filter_map(|verdict| verdict.reply.usable())
            .collect();
        let combined = combine(&usable);
        Self { judges, combined }
    }

    /// How many judges were asked.
    pub(crate) fn asked(&self) -> usize {
        self.judges.len()
    }

    /// Why the deliverable is unscored (each unusable judge's problem), `None` when scored.
    pub(crate) fn unscored_reason(&self) -> Option<String> {
        if self.combined.is_some() {
            return None;
        }
        let several = self.asked() > 1;
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
        Some(problems.join("; "))
    }
}

/// Has every judge of `panel` evaluate the deliverable against the criteria.
pub(crate) async fn evaluate(
    ctx: &Context<'_>,
    panel: &Panel<'_>,
    input: &EvaluationInput<'_>,
) -> Result<PanelEvaluation, EngineError> {
    let objects = ctx.store.objects();
    let brief = |_: usize, judge: &Backend| {
        let deliverable = pack::render_view(judge.view(), &objects, input.files, &ctx.env.scrubber);
        briefs::evaluator(&EvaluatorBrief {
            task: input.task,
            criteria: input.criteria,
            round: input.round,
            deliverable: &deliverable,
            files_note: judge.files_note(),
            verify: input.verify,
            previous: input.previous,
        })
    };
    let criteria = input.criteria;
    let verdicts = panel
        .ask(
            ctx,
            Role::RoundEvaluator,
            &schema_for::<EvaluatorOutput>(),
            brief,
            |text| parse_evaluator(criteria, text),
        )
        .await?;
    Ok(PanelEvaluation::from_verdicts(verdicts))
}

/// Combines evaluations that judges made blind of the same deliverable.
///
/// Each criterion's score is the core's [`checklist::panel_score`] (the lower median); evidence
/// and reasoning keep every judge's, labelled; critiques are kept side by side; the improvement
/// specs are merged in judge order without repeats; preserve lists are united. One evaluation
/// passes through unchanged; none gives `None`.
fn combine(evaluations: &[&Evaluation]) -> Option<Evaluation> {
    match evaluations {
        [] => return None,
        [single] => return Some((*single).clone()),
        _ => {}
    }
    let label = |index: usize, text: &str| format!("judge {}: {}", index + 1, text.trim());
    let findings = evaluations[0]
        .findings
        .keys()
        .filter_map(|id| {
            let found: Vec<(usize, &Finding)> = evaluations
                .iter()
                .enumerate()
                .filter_map(|(index, evaluation)| {
                    evaluation.findings.get(id).map(|finding| (index, finding))
                })
                .collect();
            let scores: Vec<u8> = found
                .iter()
                .map(|(_, finding)| finding.score.get())
                .collect();
            let score = Score::new(checklist::panel_score(&scores)?)?;
            let evidence = found
                .iter()
                .flat_map(|(index, finding)| {
                    finding.evidence.iter().map(move |item| label(*index, item))
                })
                .collect();
            let reasoning = found
                .iter()
                .map(|(index, finding)| {
                    let text = format!("{} ({})", finding.reasoning, finding.score.get());
                    label(*index, &text)
                })
                .collect::<Vec<_>>()
                .join("\n");
            Some((
                id.clone(),
                Finding {
                    score,
                    evidence,
                    reasoning,
                },
            ))
        })
        .collect();
    let mut improvement_spec: Vec<SpecItem> = Vec::new();
    let mut preserve: Vec<String> = Vec::new();
    for evaluation in evaluations {
        for item in &evaluation.improvement_spec {
            if !improvement_spec.contains(item) {
                improvement_spec.push(item.clone());
            }
        }
        for item in &evaluation.preserve {
            if !preserve.contains(item) {
                preserve.push(item.clone());
            }
        }
    }
    let critique = evaluations
        .iter()
        .enumerate()
        .filter(|(_, evaluation)| !evaluation.critique.trim().is_empty())
        .map(|(index, evaluation)| label(index, &evaluation.critique))
        .collect::<Vec<_>>()
        .join("\n\n");
    Some(Evaluation {
        findings,
        critique,
        improvement_spec,
        preserve,
    })
}

/// What a refine round is judged on.
pub(crate) struct RoundInput<'a> {
    /// The lead evaluator first, then the rest of the panel.
    pub judges: &'a [&'a Backend],
    /// Plays the trace analyzer.
    pub analyzer: &'a Backend,
    pub evaluation: EvaluationInput<'a>,
    /// The builder's run, counted.
    pub trace: &'a TraceStats,
    /// The builder's events, condensed for the analyzer.
    pub builder_events: &'a [AgentEvent],
}

/// A refine round's judgment: the panel's evaluation and the trace analyzer's lessons.
#[derive(Debug)]
pub(crate) struct RoundJudged {
    pub panel: PanelEvaluation,
    /// `None` when the analyzer's output was unusable or it failed: lessons are advice.
    pub lessons: Option<TraceLessons>,
}

/// Evaluates a round with the panel (60% of the remaining budget) and analyzes the builder's
/// trace (40%), in parallel.
pub(crate) async fn round(
    ctx: &Context<'_>,
    input: RoundInput<'_>,
) -> Result<RoundJudged, EngineError> {
    let round = input.evaluation.round;
    ctx.phase(round, Phase::Evaluate);
    let folder = deliverable_copy(ctx, input.judges, input.evaluation.files)?;
    let panel = Panel {
        judges: input.judges,
        workdir: folder.path(),
        budget_share: 0.6,
    };
    let (evaluated, lessons) = tokio::join!(
        evaluate(ctx, &panel, &input.evaluation),
        lessons(ctx, &input, folder.path()),
    );
    ctx.emit_spend();
    let panel = evaluated?;
    let lessons = lessons?;
    if panel.asked() > 1 {
        for verdict in &panel.judges {
            ctx.emit(&RefineEvent::Judged {
                round,
                evaluator: verdict.judge.clone(),
                scores: verdict.reply.usable().map(Evaluation::score_values),
                problem: verdict.reply.problem().map(str::to_owned),
            });
        }
    }
    Ok(RoundJudged { panel, lessons })
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
        schema: schema_for::<TraceLessons>(),
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

/// Earlier rounds' verdicts and scores, oldest first, as the evaluator is shown them.
pub(crate) fn previous_scores(rounds: &[RoundSummary]) -> Option<String> {
    if rounds.is_empty() {
        return None;
    }
    let mut out = String::new();
    for summary in rounds {
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
    out.push_str("\nScore what is there now, not the trend: earlier scores are context only.\n");
    Some(out)
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

    #[test]
    fn a_panel_is_combined_with_the_lower_median_and_every_judges_evidence() {
        let single = reply(9, 8, "a");
        assert_eq!(combine(&[&single]), Some(single.clone()));
        let (a, b, c) = (reply(9, 8, "a"), reply(5, 9, "a"), reply(8, 3, "b"));
        let combined = combine(&[&a, &b, &c]).unwrap();
        assert_eq!(combined.findings["E1"].score.get(), 8);
        assert_eq!(combined.findings["E2"].score.get(), 8);
        assert_eq!(
            combined.findings["E1"].evidence,
            vec!["judge 1: saw 9", "judge 2: saw 5", "judge 3: saw 8"]
        );
        assert_eq!(
            combined.findings["E1"].reasoning,
            "judge 1: r (9)\njudge 2: r (5)\njudge 3: r (8)"
        );
        assert_eq!(combined.improvement_spec.len(), 2);
        assert_eq!(combined.preserve, vec!["palette"]);
        assert!(combined.critique.starts_with("judge 1: critique 9"));
        let (strict, lenient) = (reply(9, 9, "a"), reply(6, 9, "a"));
        assert_eq!(
            combine(&[&strict, &lenient]).unwrap().findings["E1"]
                .score
                .get(),
            6,
            "an even panel converges only if both would"
        );
        assert_eq!(combine(&[]), None);
    }

    #[test]
    fn a_panel_result_names_every_unusable_judge_when_nothing_is_usable() {
        let unusable = |judge: &str, problem: &str| JudgeVerdict {
            judge: judge.to_owned(),
            reply: JudgeReply::Unusable {
                problem: problem.to_owned(),
            },
        };
        let both = PanelEvaluation::from_verdicts(vec![
            unusable("claude", "no JSON"),
            unusable("codex", "missing E2"),
        ]);
        assert_eq!(both.asked(), 2);
        assert!(both.combined.is_none());
        assert_eq!(
            both.unscored_reason().as_deref(),
            Some("claude: no JSON; codex: missing E2")
        );
        let one = PanelEvaluation::from_verdicts(vec![unusable("claude", "no JSON")]);
        assert_eq!(one.unscored_reason().as_deref(), Some("no JSON"));
        let mixed = PanelEvaluation::from_verdicts(vec![
            unusable("claude", "no JSON"),
            JudgeVerdict {
                judge: "codex".to_owned(),
                reply: JudgeReply::Usable(reply(7, 7, "a")),
            },
        ]);
        assert_eq!(mixed.combined, Some(reply(7, 7, "a")));
        assert_eq!(mixed.unscored_reason(), None);
    }
}
