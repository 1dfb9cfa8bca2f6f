//! `refinery run "<task>" --models A B [C …]`: several models answer, judge each other's
//! answers anonymously and converge on a winner, which is written into the workspace.
//!
//! This module turns flags into an engine configuration and renders the engine's events and
//! summary (the same progress modes as `refine`: a status line on a terminal, plain lines
//! otherwise, one JSON object per event with `--json`). It decides nothing: the engine
//! sequences the rounds and the core picks the winner.
//!
//! Exit codes: 0 consensus, 2 no consensus (the plurality winner was written) or stopped by a
//! budget, 1 error (or no answer at all), 130 interrupted by Ctrl-C.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use refinery_core::StateDir;
use refinery_core::rounds::LoopLimits;
use refinery_core::votes::{AnswerId, NoConsensus, RunStep, Tally, TieBreak, WinBy};
use refinery_engine::{
    ConsensusRun, ConsensusStatus, ConsensusSummary, Environment, MODELS, RefineEvent, RunConfig,
};
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::commands::progress::{Progress, clock, spend_text};
use crate::commands::refine::{
    CriteriaArgs, Machine, cancel_on_ctrl_c, checked_limits, ensure_git, finish_worktree,
    label_for, open_worktree, parse_duration, runtime, store_for,
};
use crate::commands::report;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The task every model answers.
    #[arg(required_unless_present = "resume", value_name = "TASK")]
    task: Option<String>,
    /// The models, 2 to 8: claude, codex, gemini, copilot (optionally cli:model) or
    /// provider/model, as for `refine --builder`. The first also writes the criteria when none
    /// are given; the order breaks the last tie.
    #[arg(long, num_args = 1.., value_name = "BACKEND", required_unless_present = "resume")]
    models: Vec<String>,
    #[command(flatten)]
    criteria: CriteriaArgs,
    /// Never run more rounds than this; round 1 answers and judges, later rounds only ask
    /// the agents whose vote is missing or stale [default: 5].
    #[arg(long, value_name = "N")]
    max_rounds: Option<u32>,
    /// Stop before a call could take the total past this many US dollars.
    #[arg(long, value_name = "USD")]
    cost_budget: Option<f64>,
    /// Stop once this much time has passed (`90s`, `20m`, `1h30m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    time_budget: Option<Duration>,
    /// Continue a stopped or interrupted run (its session id; see `refinery session list`).
    #[arg(long, value_name = "SESSION", conflicts_with_all = ["task", "models", "criteria", "criteria_file", "worktree"])]
    resume: Option<String>,
    /// Run in a new git worktree on a new branch `refinery/<session>` started from HEAD
    /// (uncommitted changes are refused); the winner's files are committed on that branch.
    /// Your working tree, index and branch are not touched; see `refinery runs`.
    #[arg(long)]
    worktree: bool,
    /// One JSON object per event on stdout, and the summary as the last one.
    #[arg(long)]
    json: bool,
    /// Answer yes to questions (run `git init` when the workspace is not a repository).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Longest one model call or agent process may take, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    call_timeout: u64,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &RunArgs) -> ExitStatus {
    match run_inner(global, args) {
        Ok(status) => status,
        Err(err) if err.is::<output::BrokenPipe>() => ExitStatus::Success,
        Err(err) => {
            output::error(&err);
            ExitStatus::Failed
        }
    }
}

fn limits_from(args: &RunArgs, stored: Option<LoopLimits>) -> anyhow::Result<LoopLimits> {
    let base = stored.unwrap_or_default();
    checked_limits(LoopLimits {
        max_rounds: args.max_rounds.unwrap_or(base.max_rounds),
        min_rounds: 1,
        cost_budget_usd: args.cost_budget.or(base.cost_budget_usd),
        time_budget: args.time_budget.or(base.time_budget),
    })
}

fn run_inner(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let (run, store) = open_run(global, args)?;
    let session = run.session().clone();
    let session_id = session.id().to_string();
    let mut progress = Progress::new(args.json, 0);
    let mut log = report::open_progress_log(&session, "run");
    let summary = runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        cancel_on_ctrl_c(&cancel);
        let mut on_event = |event: &RefineEvent| {
            progress.event(event);
            if let Some(log) = &mut log {
                log.append(event);
            }
        };
        run.run(&cancel, &mut on_event).await
    });
    progress.finish();
    let summary = summary.with_context(|| {
        format!(
            "the run stopped on an error; its state is saved, continue with `refinery run --resume {session_id}`"
        )
    })?;
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("event".to_owned(), "summary".into());
        }
        output::line(&serde_json::to_string(&value)?)?;
    } else {
        output::line(&render_summary(&summary))?;
    }
    let written = summary.winner.as_ref().is_some_and(|winner| winner.written);
    finish_worktree(&store, written, &commit_message(&summary), args.json)?;
    Ok(match summary.status {
        ConsensusStatus::Consensus => ExitStatus::Success,
        ConsensusStatus::NoConsensus { .. } | ConsensusStatus::Stopped { .. } => {
            ExitStatus::Stopped
        }
        ConsensusStatus::Interrupted { .. } => ExitStatus::Interrupted,
        ConsensusStatus::NoAnswer | ConsensusStatus::Running | ConsensusStatus::Failed { .. } => {
            ExitStatus::Failed
        }
    })
}

/// The commit message of a worktree run's winner: the outcome, the session id and the votes
/// after each round.
fn commit_message(summary: &ConsensusSummary) -> String {
    let mut lines = vec![
        format!("refinery run: {}", headline(summary)),
        String::new(),
        format!("Session: {}", summary.session),
        String::new(),
    ];
    for round in &summary.rounds {
        lines.push(format!(
            "round {}: {}",
            round.round,
            tally_text(&round.tally, &summary.models)
        ));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// A new run (in a new worktree with `--worktree`), or the session named by `--resume`; and
/// the state folder it lives in.
fn open_run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<(ConsensusRun, StateDir)> {
    let store = store_for(global, None)?;
    let environment = |machine: &Machine| Environment {
        env: machine.env.clone(),
        scrubber: Machine::scrubber(),
        call_timeout: Duration::from_secs(args.call_timeout),
        verify_timeout: Duration::from_mins(10),
    };
    if let Some(session_id) = &args.resume {
        let (_, record) = refinery_engine::load_consensus(&store, session_id)?;
        let machine = Machine::load(store.workspace(), global)?;
        let models = open_all(&machine, &record.models)?;
        let limits = limits_from(args, Some(record.limits))?;
        let env = environment(&machine);
        let run = ConsensusRun::resume(store.clone(), session_id, limits, models, env)?;
        return Ok((run, store));
    }
    if !MODELS.contains(&args.models.len()) {
        bail!(
            "{} model(s) given; `refinery run` takes {} to {}: --models A B [C …]",
            args.models.len(),
            MODELS.start(),
            MODELS.end()
        );
    }
    if !args.worktree {
        ensure_git(store.workspace(), args.yes)?;
    }
    let machine = Machine::load(store.workspace(), global)?;
    let models = open_all(&machine, &args.models)?;
    let task = args.task.clone().unwrap_or_default();
    let config = RunConfig {
        label: label_for(&task),
        task,
        criteria: args.criteria.load()?,
        limits: limits_from(args, None)?,
    };
    let env = environment(&machine);
    if args.worktree {
        let (store, id) = open_worktree(store.workspace(), &config.label)?;
        let run = ConsensusRun::start_as(store.clone(), &id, &config, models, env)?;
        return Ok((run, store));
    }
    let run = ConsensusRun::start(store.clone(), &config, models, env)?;
    Ok((run, store))
}

fn open_all(machine: &Machine, names: &[String]) -> anyhow::Result<Vec<refinery_engine::Backend>> {
    let opener = machine.opener();
    names
        .iter()
        .map(|name| machine.open(&opener, name))
        .collect()
}

/// An answer as people read it: `model 2's answer 1 (anthropic/claude-haiku-4-5)`.
fn answer_text(answer: AnswerId, models: &[String]) -> String {
    match models.get(answer.agent.0) {
        Some(model) => format!("{answer} ({model})"),
        None => answer.to_string(),
    }
}

fn tally_text(tally: &Tally, models: &[String]) -> String {
    let mut text = tally
        .answers
        .iter()
        .map(|count| {
            let answer = count.answer;
            let model = models.get(answer.agent.0).map_or("", String::as_str);
            format!(
                "{}'s answer {} ({model}) {}/{}",
                answer.agent, answer.revision, count.votes, count.eligible
            )
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let list = |agents: &[refinery_core::votes::Agent]| {
        agents
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, agents) in [
        ("own-answer votes, not counted", &tally.self_votes),
        ("stale", &tally.stale),
        ("no vote yet", &tally.waiting),
    ] {
        if !agents.is_empty() {
            let _ = write!(text, "; {name}: {}", list(agents));
        }
    }
    text
}

fn no_consensus_text(reason: NoConsensus) -> &'static str {
    match reason {
        NoConsensus::MaxRounds => "the round cap was reached",
        NoConsensus::TooFewAgents => "fewer than two agents were left to vote",
        NoConsensus::Split => {
            "every vote was fresh and still split, so another round would ask no one"
        }
        NoConsensus::Budget => "a budget stopped the run",
    }
}

fn next_text(next: &RunStep, models: &[String]) -> String {
    match next {
        RunStep::Continue { to_act } => format!(
            "next: another round ({} to act)",
            to_act
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RunStep::Decided {
            winner,
            without_consensus: None,
        } => format!("consensus on {}", answer_text(winner.answer, models)),
        RunStep::Decided {
            winner,
            without_consensus: Some(reason),
        } => format!(
            "no consensus ({}): the plurality decides, {}",
            no_consensus_text(*reason),
            answer_text(winner.answer, models)
        ),
        RunStep::NoAnswer => "no answer to choose from".to_owned(),
    }
}

/// The progress line of a multi-model run's event (`None` for the refine loop's events).
pub(crate) fn progress_line(event: &RefineEvent, models: &[String]) -> Option<String> {
    Some(match event {
        RefineEvent::RunSession {
            session,
            dir,
            resumed,
            models,
        } => format!(
            "{} session {session} in {} ({})",
            if *resumed { "resuming" } else { "new" },
            dir.display(),
            models
                .iter()
                .enumerate()
                .map(|(index, model)| format!("model {}: {model}", index + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RefineEvent::Answered {
            answer,
            based_on,
            files,
            bytes,
            ..
        } => {
            let plural = if *files == 1 { "" } else { "s" };
            let improving =
                based_on.map_or_else(String::new, |base| format!(", improving on {base}"));
            format!(
                "  {}{improving}: {files} file{plural}, {bytes} bytes",
                answer_text(*answer, models)
            )
        }
        RefineEvent::Voted {
            agent,
            choice,
            self_vote,
            ..
        } => format!(
            "  {agent} votes for {}{}",
            choice,
            if *self_vote {
                " (its own: not counted)"
            } else {
                ""
            }
        ),
        RefineEvent::Improving { agent, base, .. } => {
            format!("  {agent} will improve on {base}")
        }
        RefineEvent::Dropped {
            agent,
            model,
            reason,
            ..
        } => format!("  {agent} ({model}) dropped out: {reason}"),
        RefineEvent::Tally { tally, next, .. } => format!(
            "  votes: {}\n  {}",
            tally_text(tally, models),
            next_text(next, models)
        ),
        RefineEvent::Winner { winner, backup, .. } => format!(
            "winner: {} — written into the workspace (what it replaced is listed in {})",
            answer_text(winner.answer, models),
            backup.display()
        ),
        _ => return None,
    })
}

fn headline(summary: &ConsensusSummary) -> String {
    let rounds = summary.rounds.len();
    let plural = if rounds == 1 { "" } else { "s" };
    let winner = summary.winner.as_ref().map(|winner| {
        let by = match winner.winner.by {
            WinBy::Consensus => String::new(),
            WinBy::Plurality { tie_break: None } => " by plurality".to_owned(),
            WinBy::Plurality {
                tie_break: Some(TieBreak::CriteriaScore),
            } => " by plurality (a tie, broken by the higher criteria score)".to_owned(),
            WinBy::Plurality {
                tie_break: Some(TieBreak::ModelOrder),
            } => {
                " by plurality (a tie in votes and criteria score, broken by the order of --models)"
                    .to_owned()
            }
        };
        format!(
            "{} won{by} with {} of {} possible votes",
            answer_text(winner.winner.answer, &summary.models),
            winner.winner.votes,
            winner.winner.eligible
        )
    });
    let winner = winner.unwrap_or_else(|| "no answer won".to_owned());
    match &summary.status {
        ConsensusStatus::Consensus => format!("Consensus after {rounds} round{plural}: {winner}."),
        ConsensusStatus::NoConsensus { reason } => format!(
            "No consensus after {rounds} round{plural} ({}): {winner}.",
            no_consensus_text(*reason)
        ),
        ConsensusStatus::Stopped {
            reason,
            interrupted_round,
        } => {
            let cut =
                interrupted_round.map_or_else(String::new, |round| format!(" in round {round}"));
            format!(
                "Stopped{cut} after {rounds} finished round{plural} ({}): {winner}.",
                crate::commands::progress::stop_text(*reason)
            )
        }
        ConsensusStatus::NoAnswer => "No answer: every model failed before answering.".to_owned(),
        ConsensusStatus::Interrupted { round } => format!(
            "Interrupted{}. Continue with: refinery run --resume {}",
            round.map_or_else(String::new, |round| format!(" in round {round}")),
            summary.session
        ),
        ConsensusStatus::Failed { error } => format!("Failed: {error}"),
        ConsensusStatus::Running => "Still running.".to_owned(),
    }
}

/// The final summary, as text.
fn render_summary(summary: &ConsensusSummary) -> String {
    let mut out = headline(summary);
    if !summary.rounds.is_empty() {
        out.push_str("\n\nVotes after each round (counted votes / votes possible):");
        for round in &summary.rounds {
            let _ = write!(
                out,
                "\n  round {}: {}",
                round.round,
                tally_text(&round.tally, &summary.models)
            );
        }
    }
    if !summary.dropped.is_empty() {
        out.push_str("\n\nDropped out:");
        for (agent, reason) in &summary.dropped {
            let model = summary.models.get(agent.0).map_or("", String::as_str);
            let _ = write!(out, "\n  {agent} ({model}): {reason}");
        }
    }
    let deliverable = match &summary.winner {
        Some(winner) if winner.written => format!(
            "in {} (what the winner replaced is listed in {})",
            summary.workspace.display(),
            summary.session_dir.join(&winner.backup).display()
        ),
        _ => format!("nothing was written into {}", summary.workspace.display()),
    };
    let _ = write!(
        out,
        "\n\nCost: {}\nTime: {}\nWinner's files: {deliverable}\nSession: {} ({})",
        spend_text(&summary.spend),
        clock(summary.elapsed_ms),
        summary.session,
        summary.session_dir.display()
    );
    out
}
