//! `refinery ci summarize`: what a CI job keeps of a `refine`, `evaluate` or `batch` run.
//!
//! The GitHub Action (`action.yml` and `action/run.sh`) runs the command with `--json` and
//! hands its output here, which turns it into a Markdown summary (the job's summary page),
//! `name=value` step outputs and a folder of artifacts (each session's folder and its HTML
//! report). The logic lives here rather than in shell so it is typed and tested, and the YAML
//! stays thin. Every text written passes the process scrubber, so a key's value reaches no
//! summary, output or artifact name even if a run's output held one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use refinery_engine::RunStatus;
use serde::Deserialize;
use serde_json::Value;

use crate::ExitStatus;
use crate::commands::batch::{TaskState, task_table};
use crate::commands::refine::score_table;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct CiArgs {
    #[command(subcommand)]
    command: CiCommand,
}

#[derive(Debug, Subcommand)]
enum CiCommand {
    /// Turn a `--json` run's output into a Markdown summary, `name=value` outputs and a
    /// folder of artifacts (used by the GitHub Action; works for any CI).
    Summarize(SummarizeArgs),
}

#[derive(Debug, Args)]
struct SummarizeArgs {
    /// The command that produced the output.
    #[arg(long, value_enum)]
    command: Kind,
    /// The command's standard output, as written with `--json`.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// The command's exit code.
    #[arg(long, value_name = "CODE", allow_negative_numbers = true)]
    exit_code: i32,
    /// Append the Markdown summary to this file (GitHub: `$GITHUB_STEP_SUMMARY`) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    step_summary: Option<PathBuf>,
    /// Append `name=value` outputs to this file (GitHub: `$GITHUB_OUTPUT`).
    #[arg(long, value_name = "FILE")]
    outputs: Option<PathBuf>,
    /// Copy each session's folder to DIR/sessions/<id>/ and its HTML report to
    /// DIR/reports/<id>.html.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// The name the artifacts are uploaded under [default: refinery-<first session>].
    #[arg(long, value_name = "NAME")]
    artifact_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Refine,
    Evaluate,
    Batch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Refine => "refine",
            Self::Evaluate => "evaluate",
            Self::Batch => "batch",
        }
    }
}

/// One session a run left: its id, folder and (for a worktree run) branch.
#[derive(Debug)]
struct SessionRef {
    id: String,
    dir: Option<PathBuf>,
    branch: Option<String>,
}

impl SessionRef {
    fn report(&self) -> Option<PathBuf> {
        let path = self.dir.as_ref()?.join("report.html");
        path.is_file().then_some(path)
    }
}

/// What a run came to, read from its output.
#[derive(Debug)]
struct Outcome {
    verdict: String,
    headline: String,
    body: Vec<String>,
    sessions: Vec<SessionRef>,
}

pub(crate) fn run_main(args: &CiArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        CiCommand::Summarize(args) => summarize(args),
    }
}

fn summarize(args: &SummarizeArgs) -> anyhow::Result<ExitStatus> {
    let text = fs_err::read_to_string(&args.events)
        .with_context(|| format!("reading the run's output {}", args.events.display()))?;
    let outcome = match args.command {
        Kind::Refine => refine_outcome(&text, args.exit_code),
        Kind::Evaluate => evaluate_outcome(&text, args.exit_code),
        Kind::Batch => batch_outcome(&text, args.exit_code),
    };
    let artifact_name = args.artifact_name.clone().or_else(|| {
        outcome
            .sessions
            .first()
            .map(|session| format!("refinery-{}", session.id))
    });
    let copied = match &args.artifacts {
        Some(dir) => collect_artifacts(&outcome.sessions, dir)?,
        None => false,
    };
    let markdown = markdown(args, &outcome, artifact_name.as_deref().filter(|_| copied));
    let scrubber = refinery_secrets::process_scrubber();
    let markdown = scrubber.scrub(&markdown);
    match &args.step_summary {
        Some(path) => append(path, &markdown)?,
        None => output::line(markdown.trim_end())?,
    }
    if let Some(path) = &args.outputs {
        let mut lines = String::new();
        for (name, value) in outputs(args, &outcome, artifact_name.as_deref(), copied) {
            // One line per output: a newline in a value would start a forged one.
            let value = scrubber.scrub(&value).replace(['\n', '\r'], " ");
            let _ = writeln!(lines, "{name}={value}");
        }
        append(path, &lines)?;
    }
    Ok(ExitStatus::Success)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(())
}

fn outputs(
    args: &SummarizeArgs,
    outcome: &Outcome,
    artifact_name: Option<&str>,
    copied: bool,
) -> Vec<(&'static str, String)> {
    let joined = |pick: &dyn Fn(&SessionRef) -> Option<String>| {
        outcome
            .sessions
            .iter()
            .filter_map(pick)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Paths may hold spaces, so they are given only for a run with one session.
    let single = |pick: &dyn Fn(&SessionRef) -> Option<PathBuf>| match outcome.sessions.as_slice() {
        [one] => pick(one).map_or_else(String::new, |path| path.display().to_string()),
        _ => String::new(),
    };
    let mut list = vec![
        ("exit-code", args.exit_code.to_string()),
        ("verdict", outcome.verdict.clone()),
        ("session", joined(&|session| Some(session.id.clone()))),
        ("session-dir", single(&|session| session.dir.clone())),
        ("report", single(&SessionRef::report)),
        ("branch", joined(&|session| session.branch.clone())),
        (
            "artifact-name",
            artifact_name
                .filter(|_| copied)
                .unwrap_or_default()
                .to_owned(),
        ),
    ];
    if let (Some(dir), true) = (&args.artifacts, copied) {
        list.push(("artifacts-dir", dir.display().to_string()));
    }
    list
}

fn markdown(args: &SummarizeArgs, outcome: &Outcome, artifact_name: Option<&str>) -> String {
    let mut lines = vec![
        format!(
            "### Refinery {}: {}",
            args.command.name(),
            cell(&outcome.headline)
        ),
        String::new(),
    ];
    lines.extend(outcome.body.iter().cloned());
    lines.push(String::new());
    let mut facts = vec![format!("exit code {}", args.exit_code)];
    for session in &outcome.sessions {
        let mut fact = format!("session `{}`", cell(&session.id));
        if let Some(branch) = &session.branch {
            let _ = write!(fact, " on branch `{}`", cell(branch));
        }
        facts.push(fact);
    }
    if let Some(name) = artifact_name {
        facts.push(format!(
            "session folders in the artifact `{name}`, HTML reports in `{name}-report`"
        ));
    }
    lines.push(facts.join(" · "));
    lines.push(String::new());
    lines.join("\n")
}

/// A table cell or heading: one line, no markup of its own, at most 120 characters.
fn cell(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut short: String = flat.chars().take(120).collect();
    if flat.chars().count() > 120 {
        short.push('…');
    }
    short
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('`', "'")
}

fn json_lines(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
}

/// The verdict of a run that ended without a summary, from its exit code alone.
fn verdict_of_code(code: i32) -> &'static str {
    match code {
        130 => "interrupted",
        _ => "error",
    }
}

impl Outcome {
    /// A `what` (run, batch) that ended before its summary: the verdict comes from the exit
    /// code, and the log has the rest.
    fn unfinished(code: i32, what: &str, sessions: Vec<SessionRef>) -> Self {
        let verdict = verdict_of_code(code);
        Self {
            verdict: verdict.to_owned(),
            headline: format!("{verdict}, no summary"),
            body: vec![format!(
                "The {what} ended before its summary; the step's log says why."
            )],
            sessions,
        }
    }
}

#[derive(Deserialize)]
struct CriterionView {
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct RoundView {
    round: u32,
}

#[derive(Deserialize)]
struct SpendView {
    usd: f64,
    #[serde(default)]
    calls: u64,
    #[serde(default)]
    unknown_cost_calls: u64,
}

impl SpendView {
    fn text(&self) -> String {
        let unknown = if self.unknown_cost_calls > 0 {
            format!(", {} of unknown cost", self.unknown_cost_calls)
        } else {
            String::new()
        };
        format!("Cost: ${:.4} ({} calls{unknown})", self.usd, self.calls)
    }
}

/// The part of `refine`'s summary event the CI summary shows.
#[derive(Deserialize)]
struct RefineSummary {
    session: String,
    session_dir: PathBuf,
    status: RunStatus,
    criteria: Vec<CriterionView>,
    rounds: Vec<RoundView>,
    score_history: BTreeMap<String, Vec<Option<u8>>>,
    spend: SpendView,
}

fn refine_outcome(text: &str, code: i32) -> Outcome {
    let mut session: Option<SessionRef> = None;
    let mut summary: Option<RefineSummary> = None;
    let mut branch = None;
    for event in json_lines(text) {
        match event["event"].as_str() {
            Some("session") => {
                session = event["session"].as_str().map(|id| SessionRef {
                    id: id.to_owned(),
                    dir: event["dir"].as_str().map(PathBuf::from),
                    branch: None,
                });
            }
            Some("summary") => summary = serde_json::from_value(event).ok(),
            Some("worktree") => branch = event["branch"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    let Some(summary) = summary else {
        return Outcome::unfinished(code, "run", session.into_iter().collect());
    };
    let (verdict, detail) = match &summary.status {
        RunStatus::Converged => ("converged", String::new()),
        RunStatus::Stopped { reason, .. } => (
            "stopped",
            format!(
                " ({})",
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ),
        RunStatus::Interrupted { .. } => ("interrupted", String::new()),
        RunStatus::Running | RunStatus::Failed { .. } => ("failed", String::new()),
    };
    let texts: BTreeMap<&str, &str> = summary
        .criteria
        .iter()
        .map(|criterion| (criterion.id.as_str(), criterion.text.as_str()))
        .collect();
    let label = |id: &str| {
        texts
            .get(id)
            .map_or_else(|| cell(id), |text| format!("{} {}", cell(id), cell(text)))
    };
    let numbers: Vec<u32> = summary.rounds.iter().map(|round| round.round).collect();
    let mut body = score_table(&numbers, &summary.score_history, &label);
    body.push(String::new());
    body.push(summary.spend.text());
    Outcome {
        verdict: verdict.to_owned(),
        headline: format!("{verdict}{detail} after {} round(s)", summary.rounds.len()),
        body,
        sessions: vec![SessionRef {
            id: summary.session,
            dir: Some(summary.session_dir),
            branch,
        }],
    }
}

/// The part of `evaluate --json`'s report the CI summary shows.
#[derive(Deserialize)]
struct EvaluateView {
    session: String,
    session_dir: PathBuf,
    criteria: Vec<CriterionView>,
    passed: bool,
    scores: BTreeMap<String, u8>,
    unscored_reason: Option<String>,
    spend: SpendView,
}

fn evaluate_outcome(text: &str, code: i32) -> Outcome {
    let Ok(report) = serde_json::from_str::<EvaluateView>(text) else {
        let verdict = if code == 2 {
            "stopped"
        } else {
            verdict_of_code(code)
        };
        return Outcome {
            verdict: verdict.to_owned(),
            headline: format!("{verdict}, nothing scored"),
            body: vec![
                "The evaluation ended before its report; the step's log says why.".to_owned(),
            ],
            sessions: Vec::new(),
        };
    };
    let verdict = match (&report.unscored_reason, report.passed) {
        (Some(_), _) => "unscored",
        (None, true) => "passed",
        (None, false) => "below_bar",
    };
    let mut body = vec!["| criterion | score |".to_owned(), "|---|---|".to_owned()];
    for criterion in &report.criteria {
        let score = report
            .scores
            .get(&criterion.id)
            .map_or_else(|| "-".to_owned(), u8::to_string);
        body.push(format!(
            "| {} {} | {score} |",
            cell(&criterion.id),
            cell(&criterion.text)
        ));
    }
    body.push(String::new());
    if let Some(reason) = &report.unscored_reason {
        body.push(format!("Not scored: {}", cell(reason)));
        body.push(String::new());
    }
    body.push(report.spend.text());
    Outcome {
        verdict: verdict.to_owned(),
        headline: verdict.replace('_', " "),
        body,
        sessions: vec![SessionRef {
            id: report.session,
            dir: Some(report.session_dir),
            branch: None,
        }],
    }
}

/// What a batch's `task_event` lines say about one task: its session and its scores.
#[derive(Default)]
struct TaskTrail {
    dir: Option<PathBuf>,
    scores: BTreeMap<u32, Option<BTreeMap<String, u8>>>,
}

/// Each task's trail from the `task_event` lines, and the `batch_summary` event.
fn read_batch(text: &str) -> (BTreeMap<String, TaskTrail>, Option<Value>) {
    let mut trails: BTreeMap<String, TaskTrail> = BTreeMap::new();
    let mut summary = None;
    for event in json_lines(text) {
        match event["event"].as_str() {
            Some("task_event") => {
                let Some(task) = event["task"].as_str() else {
                    continue;
                };
                let trail = trails.entry(task.to_owned()).or_default();
                let data = &event["data"];
                let round = data["round"].as_u64().and_then(|n| u32::try_from(n).ok());
                match (data["event"].as_str(), round) {
                    (Some("session"), _) => trail.dir = data["dir"].as_str().map(PathBuf::from),
                    (Some("scored"), Some(round)) => {
                        let scores = serde_json::from_value(data["scores"].clone()).ok();
                        trail.scores.insert(round, scores);
                    }
                    (Some("unscored"), Some(round)) => {
                        trail.scores.insert(round, None);
                    }
                    _ => {}
                }
            }
            Some("batch_summary") => summary = Some(event),
            _ => {}
        }
    }
    (trails, summary)
}

fn batch_outcome(text: &str, code: i32) -> Outcome {
    let (mut trails, summary) = read_batch(text);
    let Some(summary) = summary else {
        return Outcome::unfinished(code, "batch", Vec::new());
    };
    let states: Vec<(String, TaskState)> = summary["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|task| {
            let id = task["id"].as_str()?.to_owned();
            let state = serde_json::from_value(task["state"].clone()).ok()?;
            Some((id, state))
        })
        .collect();
    let verdict = match code {
        0 => "converged",
        2 => "stopped",
        1 => "failed",
        other => verdict_of_code(other),
    };
    let mut body = task_table(&states, &cell);
    body.push(String::new());
    let budget = summary["budget_usd"]
        .as_f64()
        .map_or_else(String::new, |budget| format!(" of ${budget:.4}"));
    body.push(format!(
        "Spent ${:.4}{budget}.",
        summary["spent_usd"].as_f64().unwrap_or_default()
    ));
    let mut sessions = Vec::new();
    for (id, state) in &states {
        let trail = trails.remove(id).unwrap_or_default();
        if !trail.scores.is_empty() {
            body.push(String::new());
            body.push(format!("#### {}", cell(id)));
            body.push(String::new());
            body.extend(trail_table(&trail));
        }
        if let Some(session) = &state.session {
            let dir = trail.dir.or_else(|| {
                let worktree = state.worktree.as_ref()?;
                Some(
                    crate::worktree::state_dir(worktree)
                        .join("sessions")
                        .join(session),
                )
            });
            sessions.push(SessionRef {
                id: session.clone(),
                dir: dir.filter(|dir| dir.is_dir()),
                branch: state.branch.clone(),
            });
        }
    }
    let counts = states
        .iter()
        .fold(BTreeMap::new(), |mut counts, (_, state)| {
            *counts.entry(state.status.name()).or_insert(0usize) += 1;
            counts
        });
    let counts: Vec<String> = counts
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    Outcome {
        verdict: verdict.to_owned(),
        headline: format!("{verdict}: {} task(s), {}", states.len(), counts.join(", ")),
        body,
        sessions,
    }
}

/// A task's score table from its `scored` and `unscored` events.
fn trail_table(trail: &TaskTrail) -> Vec<String> {
    let rounds: Vec<u32> = trail.scores.keys().copied().collect();
    let mut history: BTreeMap<String, Vec<Option<u8>>> = BTreeMap::new();
    for scores in trail.scores.values().flatten() {
        for id in scores.keys() {
            history.entry(id.clone()).or_default();
        }
    }
    for (id, row) in &mut history {
        *row = trail
            .scores
            .values()
            .map(|scores| scores.as_ref().and_then(|scores| scores.get(id).copied()))
            .collect();
    }
    score_table(&rounds, &history, &cell)
}

/// Copies each session's folder and HTML report under `dir`; whether anything was copied.
/// Only regular files are copied (a link is never followed), so nothing outside a session's
/// folder can end up in an artifact.
fn collect_artifacts(sessions: &[SessionRef], dir: &Path) -> anyhow::Result<bool> {
    let mut copied = false;
    for session in sessions {
        let Some(source) = session.dir.as_ref().filter(|dir| dir.is_dir()) else {
            continue;
        };
        copy_tree(source, &dir.join("sessions").join(&session.id))?;
        if let Some(report) = session.report() {
            let reports = dir.join("reports");
            fs_err::create_dir_all(&reports)?;
            fs_err::copy(&report, reports.join(format!("{}.html", session.id)))?;
        }
        copied = true;
    }
    Ok(copied)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let kind = fs_err::symlink_metadata(entry.path())?.file_type();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs_err::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_hold_no_markup_and_stay_on_one_line() {
        assert_eq!(
            cell("a | b\n<img src=x>`c`"),
            "a \\| b &lt;img src=x&gt;'c'"
        );
        assert_eq!(cell(&"x".repeat(130)).chars().count(), 121);
    }

    #[test]
    fn a_run_without_a_summary_is_an_error_or_an_interruption() {
        let outcome = refine_outcome("not json\n", 1);
        assert_eq!(outcome.verdict, "error");
        assert!(outcome.sessions.is_empty());
        assert_eq!(refine_outcome("", 130).verdict, "interrupted");
        assert_eq!(evaluate_outcome("", 2).verdict, "stopped");
        assert_eq!(batch_outcome("", 1).verdict, "error");
    }
}
