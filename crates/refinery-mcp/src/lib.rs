//! Refinery's MCP servers: the quality tools (criteria, checklist, plans, reset) and the
//! workflow tools (answers, votes), over stdio, with MassGen-compatible names and arguments.
//!
//! This crate holds no business logic: each tool is one call into `refinery-core`, whose
//! result it renders as structured content (with an output schema) or as a tool error whose
//! message says what to do next. It never writes to stdout itself — stdout is the JSON-RPC
//! stream — and logs only through `tracing` (to stderr).

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod error;
pub mod protocol;
mod server;

pub use server::{RefineryServer, ServerConfig, ToolSet};

use rmcp::ServiceExt as _;

/// Errors from running a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MCP handshake or transport failed.
    #[error("MCP server failed: {0}")]
    Transport(String),
}

/// Serves `tools` on stdin/stdout until the client disconnects.
pub async fn run_stdio(tools: ToolSet, config: ServerConfig) -> Result<(), Error> {
    let service = RefineryServer::new(tools, config)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|err| Error::Transport(err.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|err| Error::Transport(err.to_string()))?;
    Ok(())
}
