//! The command line as clap sees it. These types only parse and validate; `settings` turns
//! them into resolved paths, and the commands never see clap types beyond their own `Args`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    ask::AskArgs,
    batch::BatchArgs,
    ci::CiArgs,
    doctor::DoctorArgs,
    hook::HookArgs,
    local::LocalArgs,
    mcp::McpArgs,
    media::MediaArgs,
    refine::{EvaluateArgs, RefineArgs},
    report::ReportArgs,
    run::RunArgs,
    runs::RunsArgs,
    secrets::SecretsArgs,
    session::SessionArgs,
    tmux::TmuxArgs,
    trace::TraceArgs,
    watch::WatchArgs,
};

/// Refinery: make AI-produced work genuinely good, one fresh-context round at a time.
#[derive(Debug, Parser)]
#[command(name = "refinery", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Where Refinery keeps its state [default: <workspace>/.refinery].
    #[arg(long, global = true, env = "REFINERY_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// The project folder [default: the current folder].
    #[arg(long, global = true, env = "REFINERY_WORKSPACE", value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// The server of `local/…` models, e.g. http://127.0.0.1:8080/v1 [default:
    /// REFINERY_LOCAL_BASE_URL, else the first local server that answers]. For `ask`, the
    /// server of the model asked, whatever its provider.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) base_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Refine a deliverable until it meets its criteria: fresh-context rounds of build,
    /// verify, regression guard, evaluation.
    Refine(Box<RefineArgs>),
    /// Run many refine tasks from a TOML or JSONL file, each in its own worktree and branch,
    /// up to --jobs at once, under one shared --cost-budget; run it again to resume.
    Batch(Box<BatchArgs>),
    /// What a CI job keeps of a `--json` run: a Markdown summary, step outputs, artifacts
    /// (used by the GitHub Action).
    Ci(CiArgs),
    /// Evaluate a deliverable once against criteria (no rounds, no changes).
    Evaluate(EvaluateArgs),
    /// Several models answer a task, judge each other's answers anonymously and converge on
    /// a winner, which is written into the workspace.
    Run(Box<RunArgs>),
    /// Write a session's report: one self-contained HTML file (scores chart, verdicts,
    /// evidence, costs, diffs between rounds).
    Report(ReportArgs),
    /// Follow a running session live until it ends (any driver: refine or the plugin).
    Watch(WatchArgs),
    /// Serve Refinery's MCP tools over stdio (used by the Claude Code plugin).
    Mcp(McpArgs),
    /// Generate images, video and speech, or look at media with a vision model.
    Media(MediaArgs),
    /// Inspect sessions: criteria, checklist history, rounds.
    Session(SessionArgs),
    /// Worktree runs of this repository (`refine --worktree`): list, show, diff, discard, prune.
    Runs(RunsArgs),
    /// Find API keys and other secrets in files, staged changes or pushes; install git hooks.
    Secrets(SecretsArgs),
    /// Check which agent CLIs, API keys and local model servers this machine has.
    Doctor(DoctorArgs),
    /// Send one prompt to a model (`provider/model`) to check a backend.
    Ask(AskArgs),
    /// A model on this machine, offline: install llama.cpp's server and a small model
    /// (`setup`), start it (`serve`), `stop` it, see its `status`.
    Local(LocalArgs),
    /// Claude Code hooks (run by the plugin, not by hand).
    Hook(HookArgs),
    /// Statistics of a Claude Code transcript: tool calls, errors, repeats, tokens, subagents.
    Trace(TraceArgs),
    /// Run Claude Code in tmux so each refine round starts with a fresh context.
    Tmux(TmuxArgs),
}
