//! `refinery mcp quality|workflow|media|all`: serve MCP tools on stdio.

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use refinery_core::{ClaudeSessionId, SessionId};
use refinery_mcp::{RefineryServer, ServerConfig, ToolSet};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::settings::{load_credentials, process_env, resolve_store};

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
    /// generate_media, read_media.
    Media,
    /// Every tool set on one connection.
    All,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &McpArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    // The servers use no key, but what they store (criteria, reports, answers) is masked
    // with the values of the `.env` files too; an unreadable `.env` must not stop them.
    let _ = load_credentials(&process_env(), store.workspace());
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
        ServerKind::Media => ToolSet::Media,
        ServerKind::All => ToolSet::All,
    };
    let media = match args.server {
        ServerKind::Media | ServerKind::All => Some(super::media::open_media(store.workspace())?),
        ServerKind::Quality | ServerKind::Workflow => None,
    };
    // One thread is plenty for one client and keeps start-up and memory small; store calls
    // run on tokio's blocking pool so a lock wait never stalls the protocol loop.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let mut server = RefineryServer::new(
        tools,
        ServerConfig {
            store,
            session,
            claude_session,
        },
    );
    if let Some(media) = media {
        server = server.with_media(media);
    }
    let served = runtime.block_on(refinery_mcp::serve_stdio(server));
    // A read of stdin cannot be cancelled; when the client went away with stdin still open,
    // waiting for that read would keep the process alive for nothing.
    runtime.shutdown_background();
    served?;
    Ok(ExitStatus::Success)
}
