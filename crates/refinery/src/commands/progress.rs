//! How `refinery refine` shows a run: a live status line on a terminal (indicatif), plain
//! lines otherwise, one JSON object per event with `--json`. All three render the same
//! engine events; progress goes to stderr and the final summary to stdout, so
//! `refinery refine … > summary.txt` keeps only the outcome.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use refinery_core::rounds::{NextStep, StopReason};
use refinery_engine::meter::Spend;
use refinery_engine::{
    CriteriaSource, EvaluateReport, GuardAction, Phase, RefineEvent, RunStatus, RunSummary,
};
use refinery_report::format::{money, tokens};

use crate::output;

enum Mode {
    Json,
    Bar(ProgressBar),
    Lines,
}

pub(crate) struct Progress {
    mode: Mode,
    max_rounds: u32,
    round: u32,
    phase: &'static str,
    activity: String,
    spend: Spend,
    elapsed_ms: u64,
    /// A multi-model run's backends, for its progress lines.
    models: Vec<String>,
}

pub(crate) fn clock(ms: u64) -> String {
    let seconds = ms / 1000;
    if seconds >= 3600 {
        format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
    } else if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

pub(crate) fn spend_text(spend: &Spend) -> String {
    let mut text = format!(
        "{} ({} in / {} out tokens, {} calls",
        money(spend.usd),
        tokens(spend.input_tokens),
        tokens(spend.output_tokens),
        spend.calls
    );
    if spend.unknown_cost_calls > 0 {
        let _ = write!(text, "; {} of unknown cost", spend.unknown_cost_calls);
    }
    text.push(')');
    text
}

pub(crate) fn stop_text(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxRounds => "the maximum number of rounds was reached",
        StopReason::CostBudget => "the cost budget would have been exceeded",
        StopReason::TimeBudget => "the time budget ran out",
        StopReason::Plateau => {
            "the failing criteria stopped improving, even after a forced change of approach"
        }
    }
}

impl Progress {
    pub(crate) fn new(json: bool, max_rounds: u32) -> Self {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} · {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Self {
            mode,
            max_rounds,
            round: 0,
            phase: "starting",
            activity: String::new(),
            spend: Spend::default(),
            elapsed_ms: 0,
            models: Vec::new(),
        }
    }

    fn say(&self, text: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.println(crate::redact::text(text)),
            Mode::Lines => output::note(text),
            Mode::Json => {}
        }
    }

    fn refresh(&self) {
        if let Mode::Bar(bar) = &self.mode {
            let mut message = if self.round == 0 {
                self.phase.to_owned()
            } else {
                format!("round {}/{} · {}", self.round, self.max_rounds, self.phase)
            };
            if !self.activity.is_empty() {
                let _ = write!(message, " ({})", self.activity);
            }
            let _ = write!(
                message,
                " · {} tokens · {}",
                tokens(self.spend.input_tokens + self.spend.output_tokens),
                money(self.spend.usd)
            );
            bar.set_message(message);
        }
    }

    pub(crate) fn event(&mut self, event: &RefineEvent) {
        if let Mode::Json = self.mode {
            if let Ok(line) = serde_json::to_string(event) {
                // A closed stdout ends the output, not the run: state is saved either way.
                let _ = output::line(&line);
            }
            return;
        }
        match event {
            RefineEvent::Session {
                session,
                dir,
                resumed,
                builder,
                evaluator,
                panel,
            } => {
                let judges = if panel.is_empty() {
                    format!("evaluator {evaluator}")
                } else {
                    format!("evaluators {evaluator}, {}", panel.join(", "))
                };
                self.say(&format!(
                    "{} session {session} in {} (builder {builder}, {judges})",
                    if *resumed { "resuming" } else { "new" },
                    dir.display()
                ));
            }
            RefineEvent::Judged {
                evaluator,
                scores,
                problem,
                ..
            } => self.say(&match (scores, problem) {
                (Some(scores), _) => format!(
                    "  judge {evaluator}: {}",
                    scores
                        .iter()
                        .map(|(id, score)| format!("{id} {score}"))
                        .collect::<Vec<_>>()
                        .join(" · ")
                ),
                (None, problem) => format!(
                    "  judge {evaluator}: unusable ({})",
                    problem.as_deref().unwrap_or("no reason given")
                ),
            }),
            RefineEvent::Criteria {
                source,
                criteria,
                warnings,
            } => {
                let mut text = format!(
                    "criteria ({}):",
                    match source {
                        CriteriaSource::User => "given",
                        CriteriaSource::Writer => "written by the criteria writer",
                    }
                );
                for criterion in criteria {
                    let _ = write!(
                        text,
                        "\n  {} [{}] {}",
                        criterion.id, criterion.category, criterion.text
                    );
                }
                for warning in warnings {
                    let _ = write!(text, "\n  note: {warning}");
                }
                self.say(&text);
            }
            RefineEvent::RoundStarted { round, max_rounds } => {
                self.round = *round;
                self.max_rounds = *max_rounds;
                self.say(&format!("round {round}/{max_rounds}"));
            }
            RefineEvent::Phase { round, phase } => {
                self.round = *round;
                self.phase = phase.label();
                self.activity.clear();
                // Phases that end in their own result line are not announced twice.
                let quiet = matches!(
                    phase,
                    Phase::Verify | Phase::Submit | Phase::RegressionGuard
                );
                if matches!(self.mode, Mode::Lines) && !quiet {
                    output::note(&format!("  {}", phase.label()));
                }
            }
            RefineEvent::Activity { tool, .. } => tool.clone_into(&mut self.activity),
            RefineEvent::Verify {
                command,
                passed,
                exit_code,
                ..
            } => self.say(&format!(
                "  verify `{command}`: {}",
                if *passed {
                    "passed".to_owned()
                } else {
                    format!(
                        "failed (exit code {})",
                        exit_code.map_or_else(|| "none".to_owned(), |code| code.to_string())
                    )
                }
            )),
            RefineEvent::Regression { report, .. } => self.say(&match report.action {
                GuardAction::Accepted => "  regression guard: no criterion got worse".to_owned(),
                GuardAction::Repaired => format!(
                    "  regression guard: {} got worse; repaired",
                    report.regressed.join(", ")
                ),
                GuardAction::Reverted => format!(
                    "  regression guard: {} still worse after a repair; reverted to the previous round's version",
                    report.regressed.join(", ")
                ),
                GuardAction::Unchecked => {
                    "  regression guard: output unusable; the round is unchecked and cannot converge".to_owned()
                }
            }),
            RefineEvent::BuilderChangedNothing { .. } => {
                self.say("  builder changed nothing (no file was written or deleted)");
            }
            RefineEvent::Submitted { files, bytes, .. } => {
                let plural = if *files == 1 { "" } else { "s" };
                self.say(&format!("  snapshot: {files} file{plural}, {bytes} bytes"));
            }
            RefineEvent::Scored {
                scores,
                verdict,
                blocked_by,
                refused,
                spread,
                ..
            } => {
                let list: Vec<String> = scores
                    .iter()
                    .map(|(id, score)| match spread.get(id) {
                        Some(spread) if spread.width() > 0 => {
                            format!("{id} {score} (judges {}–{})", spread.low, spread.high)
                        }
                        _ => format!("{id} {score}"),
                    })
                    .collect();
                let mut text = format!("  scores: {} → {}", list.join(" · "), verdict.as_str());
                for (id, reason) in refused {
                    let _ = write!(text, "\n  {id} not accepted: {reason}");
                }
                for block in blocked_by {
                    let _ = write!(text, "\n  cannot converge: {block}");
                }
                self.say(&text);
            }
            RefineEvent::Unscored { reason, .. } => self.say(&format!(
                "  unscored ({reason}) → counts as iterate"
            )),
            RefineEvent::Decision { next, .. } => self.say(&format!("{}  [{} so far, {}]", match next {
                NextStep::Converged => "  converged".to_owned(),
                NextStep::Continue {
                    change_approach_for,
                } if change_approach_for.is_empty() => "  next: another round".to_owned(),
                NextStep::Continue {
                    change_approach_for,
                } => format!(
                    "  next: another round, with a change of approach for {} (plateau)",
                    change_approach_for.join(", ")
                ),
                NextStep::Stop { reason } => format!("  stop: {}", stop_text(*reason)),
            }, money(self.spend.usd), clock(self.elapsed_ms))),
            RefineEvent::Spend { spend, elapsed_ms } => {
                self.spend = *spend;
                self.elapsed_ms = *elapsed_ms;
            }
            RefineEvent::Finished { .. } | RefineEvent::RunFinished { .. } => {}
            RefineEvent::RunSession { models, .. } => {
                models.clone_into(&mut self.models);
                self.run_line(event);
            }
            RefineEvent::Answered { .. }
            | RefineEvent::Voted { .. }
            | RefineEvent::Improving { .. }
            | RefineEvent::Dropped { .. }
            | RefineEvent::Tally { .. }
            | RefineEvent::Winner { .. } => self.run_line(event),
        }
        self.refresh();
    }

    fn run_line(&self, event: &RefineEvent) {
        if let Some(line) = crate::commands::run::progress_line(event, &self.models) {
            self.say(&line);
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }

    /// The final summary; `report` is the HTML report written for the run, if any.
    pub(crate) fn summary(
        &self,
        summary: &RunSummary,
        report: Option<&Path>,
    ) -> anyhow::Result<()> {
        if let Mode::Json = self.mode {
            if let Some(path) = report {
                output::line(&serde_json::json!({"event": "report", "path": path}).to_string())?;
            }
            let mut value = serde_json::to_value(summary)?;
            if let serde_json::Value::Object(map) = &mut value {
                map.insert("event".to_owned(), "summary".into());
            }
            return output::line(&serde_json::to_string(&value)?);
        }
        let mut text = render_summary(summary);
        if let Some(path) = report {
            let _ = write!(text, "\nReport: {}", path.display());
        }
        output::line(&text)
    }
}

fn render_summary(summary: &RunSummary) -> String {
    let rounds = summary.rounds.len();
    let plural = if rounds == 1 { "" } else { "s" };
    let mut out = match &summary.status {
        RunStatus::Converged => format!("Converged after {rounds} round{plural}."),
        RunStatus::Stopped {
            reason,
            interrupted_round,
        } => {
            let mut text = format!(
                "Stopped after {rounds} finished round{plural}: {}.",
                stop_text(*reason)
            );
            if let Some(round) = interrupted_round {
                let _ = write!(text, " Round {round} was cut short before its evaluation.");
            }
            text
        }
        RunStatus::Interrupted { round } => format!(
            "Interrupted{}. Continue with: refinery refine --resume {}",
            round.map_or_else(String::new, |round| format!(" in round {round}")),
            summary.session
        ),
        RunStatus::Failed { error } => format!("Failed: {error}"),
        RunStatus::Running => "Still running.".to_owned(),
    };
    if !summary.criteria.is_empty() {
        out.push_str("\n\nScores by round (7 or more passes):");
        let width = summary
            .criteria
            .iter()
            .map(|criterion| criterion.text.chars().count().min(48))
            .max()
            .unwrap_or(0);
        for criterion in &summary.criteria {
            let history = summary
                .score_history
                .get(&criterion.id)
                .map(|scores| {
                    scores
                        .iter()
                        .map(|score| {
                            score.map_or_else(|| "–".to_owned(), |score| score.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(" → ")
                })
                .unwrap_or_default();
            let text: String = criterion.text.chars().take(48).collect();
            let _ = write!(out, "\n  {:<4} {text:<width$}  {history}", criterion.id);
        }
    }
    let guard_did = |action: GuardAction| {
        let rounds = summary.rounds.iter().filter(move |round| {
            round
                .regression
                .as_ref()
                .is_some_and(|report| report.action == action)
        });
        rounds
            .map(|round| round.round.to_string())
            .collect::<Vec<_>>()
    };
    let reverted = guard_did(GuardAction::Reverted);
    if !reverted.is_empty() {
        let _ = write!(
            out,
            "\n\nReverted by the regression guard: round {} (the previous version was kept).",
            reverted.join(", ")
        );
    }
    let unchecked = guard_did(GuardAction::Unchecked);
    if !unchecked.is_empty() {
        let _ = write!(
            out,
            "\n\nUnchecked by the regression guard (its output stayed unusable): round {}; an unchecked round cannot converge.",
            unchecked.join(", ")
        );
    }
    out.push_str(&judgment_notes(summary));
    let _ = write!(
        out,
        "\n\nCost: {}\nTime: {}\nDeliverable: {}\nSession: {} ({})",
        spend_text(&summary.spend),
        clock(summary.elapsed_ms),
        summary.deliverable,
        summary.session,
        summary.session_dir.display()
    );
    out
}

/// What the checks made in code and the judges' agreement add to the scores: builders that
/// changed nothing, scores not accepted, blocked rounds, panels short of a quorum, and gains
/// within the judges' own disagreement.
fn judgment_notes(summary: &RunSummary) -> String {
    let mut out = String::new();
    let idle: Vec<String> = summary
        .rounds
        .iter()
        .filter(|round| round.builder_changed_nothing)
        .map(|round| round.round.to_string())
        .collect();
    if !idle.is_empty() {
        let _ = write!(
            out,
            "\n\nBuilder changed nothing in round {}.",
            idle.join(", ")
        );
    }
    for round in &summary.rounds {
        for (id, reason) in &round.refused {
            let _ = write!(
                out,
                "\n\nRound {}: {id} not accepted as passing: {reason}.",
                round.round
            );
        }
        if !round.blocked_by.is_empty() {
            let blocks: Vec<String> = round.blocked_by.iter().map(ToString::to_string).collect();
            let _ = write!(
                out,
                "\n\nRound {} cannot converge: {}.",
                round.round,
                blocks.join("; ")
            );
        }
        if let Some(quorum) = round.quorum.filter(|quorum| !quorum.is_met()) {
            let _ = write!(
                out,
                "\n\nRound {} unscored: {quorum} (a panel needs a majority).",
                round.round
            );
        }
        for id in &round.within_disagreement {
            let _ = write!(
                out,
                "\n\nRound {}: {id}'s gain is within judge disagreement (smaller than the judges' spread).",
                round.round
            );
        }
    }
    out
}

/// `html` is the HTML report written for the evaluation, if any.
pub(crate) fn print_evaluation(report: &EvaluateReport, html: Option<&Path>) -> anyhow::Result<()> {
    let mut out = match &report.unscored_reason {
        Some(reason) => format!("Not scored: {reason}."),
        None if report.passed => "Meets the bar: every criterion scored 7 or more.".to_owned(),
        None => "Below the bar.".to_owned(),
    };
    out.push_str("\n\nScores:");
    for criterion in &report.criteria {
        let score = report
            .scores
            .get(&criterion.id)
            .map_or_else(|| "–".to_owned(), ToString::to_string);
        let _ = write!(
            out,
            "\n  {:<4} {:>2}  {}",
            criterion.id, score, criterion.text
        );
    }
    if !report.critique.trim().is_empty() {
        let _ = write!(out, "\n\nCritique: {}", report.critique.trim());
    }
    if !report.improvement_spec.is_empty() {
        out.push_str("\n\nNext steps:");
        for (index, item) in report.improvement_spec.iter().take(5).enumerate() {
            let _ = write!(
                out,
                "\n  {}. [{}] {}",
                index + 1,
                item.criterion,
                item.change
            );
        }
    }
    let _ = write!(
        out,
        "\n\nCost: {}\nReport: {}\nSession: {}",
        spend_text(&report.spend),
        report.report_path.display(),
        report.session
    );
    if let Some(path) = html {
        let _ = write!(out, "\nHTML report: {}", path.display());
    }
    output::line(&out)
}
