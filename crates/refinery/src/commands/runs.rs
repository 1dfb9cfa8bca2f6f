//! `refinery runs list|show|diff|discard|prune`: the worktree runs of a repository
//! (`refinery refine --worktree`), found through `git worktree list` and each run's own state.
//!
//! Whether a run is in progress comes from its session's run lock, never from the status its
//! record says (a killed run leaves "running" behind). Nothing here touches a run that holds
//! its lock, and uncommitted work in a worktree is only thrown away with `--force`.

use std::path::Path;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use refinery_core::StateDir;
use refinery_engine::{
    ConsensusRecord, ConsensusStatus, RunRecord, RunStatus, load_consensus, load_run,
    run_in_progress,
};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::resolve_workspace;
use crate::worktree::{self, RunWorktree};

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Every worktree run of this repository: status, branch, rounds, scores, cost.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run: its worktree, branch, base commit, status and scores.
    Show {
        /// The run's session id (see `refinery runs list`).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The run's branch against the commit it started from.
    Diff {
        /// The run's session id.
        id: String,
    },
    /// Remove a run's worktree and branch (refused while it runs; uncommitted work in it only
    /// with --force).
    Discard {
        /// The run's session id.
        id: String,
        /// Throw away uncommitted work in the worktree too.
        #[arg(long)]
        force: bool,
    },
    /// Remove the worktrees and branches of finished runs whose branch is merged into the
    /// current HEAD.
    Prune,
}

/// A run as `runs` sees it.
struct RunView {
    worktree: RunWorktree,
    running: bool,
    record: Option<RunRecord>,
    /// The record of a `refinery run --worktree` (several models), when it is one.
    consensus: Option<ConsensusRecord>,
    base: Option<String>,
}

impl RunView {
    fn load(worktree: RunWorktree) -> Self {
        let state_dir = worktree::state_dir(&worktree.path);
        let store = StateDir::new(&state_dir, &worktree.path);
        let base = worktree::origin(&state_dir)
            .ok()
            .flatten()
            .map(|origin| origin.base);
        // The session's run lock says whether it runs, whichever command runs it.
        let running = store
            .existing_session(&worktree.session)
            .is_ok_and(|session| run_in_progress(&session).unwrap_or(false));
        let record = load_run(&store, &worktree.session)
            .ok()
            .map(|(_, record)| record);
        let consensus = if record.is_none() {
            load_consensus(&store, &worktree.session)
                .ok()
                .map(|(_, record)| record)
        } else {
            None
        };
        Self {
            worktree,
            running,
            record,
            consensus,
            base,
        }
    }

    fn status(&self) -> String {
        if self.running {
            return "running".to_owned();
        }
        // Running per the record but nobody holds the lock: killed; `--resume` continues.
        let status = match (&self.record, &self.consensus) {
            (Some(record), _) if record.status == RunStatus::Running => return "killed".to_owned(),
            (_, Some(record)) if record.status == ConsensusStatus::Running => {
                return "killed".to_owned();
            }
            (Some(record), _) => serde_json::to_value(&record.status).ok(),
            (None, Some(record)) => serde_json::to_value(&record.status).ok(),
            (None, None) => return "no record".to_owned(),
        };
        status
            .and_then(|value| {
                value
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    fn rounds(&self) -> usize {
        match (&self.record, &self.consensus) {
            (Some(record), _) => record.rounds.len(),
            (None, Some(record)) => record.rounds.len(),
            (None, None) => 0,
        }
    }

    fn cost_usd(&self) -> Option<f64> {
        match (&self.record, &self.consensus) {
            (Some(record), _) => Some(record.spend.usd),
            (None, Some(record)) => Some(record.spend.usd),
            (None, None) => None,
        }
    }

    /// Ended on its own (a cap, a plateau, convergence or a winner), so `prune` may take it.
    fn finished(&self) -> bool {
        matches!(
            self.record.as_ref().map(|record| &record.status),
            Some(RunStatus::Converged | RunStatus::Stopped { .. })
        ) || matches!(
            self.consensus.as_ref().map(|record| &record.status),
            Some(
                ConsensusStatus::Consensus
                    | ConsensusStatus::NoConsensus { .. }
                    | ConsensusStatus::Stopped { .. }
            )
        )
    }

    fn to_json(&self) -> Value {
        let record = self.record.as_ref();
        json!({
            "session": self.worktree.session,
            "branch": self.worktree.branch,
            "worktree": self.worktree.path,
            "base": self.base,
            "status": self.status(),
            "running": self.running,
            "rounds": self.rounds(),
            "scores": record.and_then(|record| record.rounds.last()).map(|round| &round.scores),
            "best_round": record.and_then(|record| record.best_round),
            "cost_usd": self.cost_usd(),
        })
    }
}

pub(crate) fn run_main(global: &GlobalArgs, args: &RunsArgs) -> anyhow::Result<ExitStatus> {
    let repo = resolve_workspace(global)?;
    match &args.command {
        RunsCommand::List { json } => list(&repo, *json),
        RunsCommand::Show { id, json } => show(&repo, id, *json),
        RunsCommand::Diff { id } => {
            let view = find(&repo, id)?;
            let Some(base) = &view.base else {
                bail!("run `{id}` has no recorded base commit; compare its branch by hand");
            };
            let range = format!("{base}..{}", view.worktree.branch);
            output::chunk(&worktree::git(&repo, &["diff", &range])?)?;
            Ok(ExitStatus::Success)
        }
        RunsCommand::Discard { id, force } => {
            let view = find(&repo, id)?;
            discard(&repo, &view, *force)?;
            output::line(&format!(
                "discarded run {id}: removed its worktree and branch {}",
                view.worktree.branch
            ))?;
            Ok(ExitStatus::Success)
        }
        RunsCommand::Prune => prune(&repo),
    }
}

fn all(repo: &Path) -> anyhow::Result<Vec<RunView>> {
    Ok(worktree::list(repo)?
        .into_iter()
        .map(RunView::load)
        .collect())
}

fn find(repo: &Path, id: &str) -> anyhow::Result<RunView> {
    let mut runs = all(repo)?;
    match runs.iter().position(|view| view.worktree.session == id) {
        Some(index) => Ok(runs.swap_remove(index)),
        None => bail!("no worktree run `{id}` in this repository; `refinery runs list` shows them"),
    }
}

fn list(repo: &Path, as_json: bool) -> anyhow::Result<ExitStatus> {
    let runs = all(repo)?;
    if as_json {
        output::json(&Value::Array(runs.iter().map(RunView::to_json).collect()))?;
        return Ok(ExitStatus::Success);
    }
    if runs.is_empty() {
        output::line("no worktree runs (start one with `refinery refine --worktree`)")?;
        return Ok(ExitStatus::Success);
    }
    output::line("SESSION  STATUS  ROUNDS  SCORES  COST  BRANCH")?;
    for view in &runs {
        let record = view.record.as_ref();
        let scores = record.and_then(|record| record.rounds.last()).map_or_else(
            || "-".to_owned(),
            |round| {
                let values: Vec<String> = round.scores.values().map(u8::to_string).collect();
                values.join("/")
            },
        );
        output::line(&format!(
            "{}  {}  {}  {}  ${:.4}  {}",
            view.worktree.session,
            view.status(),
            view.rounds(),
            scores,
            view.cost_usd().unwrap_or_default(),
            view.worktree.branch
        ))?;
    }
    Ok(ExitStatus::Success)
}

fn show(repo: &Path, id: &str, as_json: bool) -> anyhow::Result<ExitStatus> {
    let view = find(repo, id)?;
    let value = view.to_json();
    if as_json {
        output::json(&value)?;
    } else {
        let fields = [
            "session",
            "status",
            "branch",
            "worktree",
            "base",
            "rounds",
            "scores",
            "best_round",
            "cost_usd",
        ];
        for field in fields {
            output::line(&format!("{field}: {}", value[field]))?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Refuses a run in progress always, and uncommitted work without `force`.
fn discard(repo: &Path, view: &RunView, force: bool) -> anyhow::Result<()> {
    let id = &view.worktree.session;
    if view.running {
        bail!("run `{id}` is in progress; stop it (Ctrl-C in its terminal) before discarding it");
    }
    if !force && worktree::has_uncommitted(&view.worktree.path)? {
        bail!(
            "run `{id}` has uncommitted work in {}; commit it there, or pass --force to throw it away",
            view.worktree.path.display()
        );
    }
    worktree::remove(repo, &view.worktree)
}

fn prune(repo: &Path) -> anyhow::Result<ExitStatus> {
    let mut pruned = 0;
    for view in all(repo)? {
        let finished = view.finished();
        let merged = worktree::git(
            repo,
            &["merge-base", "--is-ancestor", &view.worktree.branch, "HEAD"],
        )
        .is_ok();
        if view.running || !finished || !merged || worktree::has_uncommitted(&view.worktree.path)? {
            continue;
        }
        worktree::remove(repo, &view.worktree)?;
        output::line(&format!("pruned run {} (merged)", view.worktree.session))?;
        pruned += 1;
    }
    worktree::git(repo, &["worktree", "prune"])?;
    output::line(&format!("{pruned} run(s) pruned"))?;
    Ok(ExitStatus::Success)
}
