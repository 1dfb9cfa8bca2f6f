//! Refinery's MCP servers: the quality tools (criteria, checklist, plans, reset), the
//! workflow tools (answers, votes) and the media tools (`generate_media`, `read_media`, one
//! call each into `refinery-media`), over stdio, with MassGen-compatible names and arguments.
//!
//! This crate holds no business logic: each tool is one call into `refinery-core`, whose
//! result it renders as structured content (with an output schema) or as a tool error whose
//! message says what to do next. It never writes to stdout itself — stdout is the JSON-RPC
//! stream — and logs only through `tracing` (to stderr).

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod error;
mod media;
mod panel;
pub mod protocol;
mod server;
mod stdio;

pub use server::{RefineryServer, ServerConfig, ToolSet};
pub use stdio::MAX_LINE;

/// Errors from running a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MCP handshake or transport failed.
    #[error("MCP server failed: {0}")]
    Transport(String),
}

/// Serves `tools` on stdin/stdout until the client disconnects. Every request line that
/// cannot be parsed gets a JSON-RPC error reply (see the `stdio` module).
pub async fn run_stdio(tools: ToolSet, config: ServerConfig) -> Result<(), Error> {
    serve_stdio(RefineryServer::new(tools, config)).await
}

/// Serves a prepared server (e.g. one with media tools attached) on stdin/stdout, with the
/// same error replies for unusable request lines.
pub async fn serve_stdio(server: RefineryServer) -> Result<(), Error> {
    stdio::serve_guarded(server, tokio::io::stdin(), tokio::io::stdout()).await
}
