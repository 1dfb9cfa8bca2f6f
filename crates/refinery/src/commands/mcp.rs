//! `refinery mcp quality|workflow|all`: serve MCP tools on stdio.

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use refinery_core::{ClaudeSessionId, SessionId};
use refinery_mcp::{ServerConfig, ToolSet};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::settings::resolve_store;

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Which tools to serve.
    #[arg(value_enum)]
    server: ServerKind,
    /// Serve this session instead of the one `session_metadata.json` names.
    #[arg(long, env = "REFINERY_SESSION", value_name = "ID")]
    session: Option<String>,
    /// The Claude Code session this server serves; Claude Code sets it for every MCP server
    /// it starts, so two Claude Code sessions in one folder never share loop state.
    #[arg(long, env = "CLAUDE_CODE_SESSION_ID", value_name = "ID", hide = true)]
    claude_session: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ServerKind {
    /// init_session, generate_eval_criteria, submit_checklist, propose_improvements (draft_approach), reset_evaluation.
    Quality,
    /// new_answer, vote.
    Workflow,
    /// Both tool sets on one connection.
    All,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &McpArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    let session = args
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .context("--session / REFINERY_SESSION")?;
    let claude_session = args
        .claude_session
        .as_deref()
        .filter(|raw| !raw.is_empty())
        .map(ClaudeSessionId::parse)
        .transpose()
        .context("CLAUDE_CODE_SESSION_ID")?;
    let tools = match args.server {
        ServerKind::Quality => ToolSet::Quality,
        ServerKind::Workflow => ToolSet::Workflow,
        ServerKind::All => ToolSet::All,
    };
    // One thread is plenty for one client and keeps start-up and memory small; store calls
    // run on tokio's blocking pool so a lock wait never stalls the protocol loop.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(refinery_mcp::run_stdio(
        tools,
        ServerConfig {
            store,
            session,
            claude_session,
        },
    ))?;
    Ok(ExitStatus::Success)
}
