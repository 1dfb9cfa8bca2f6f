//! End-to-end tests of the `refinery` binary: MCP over real stdio with a real rmcp client,
//! several server processes writing one session at once, the `session` commands, and
//! snapshots of a large tree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod concurrency;
mod mcp_stdio;
mod session_cli;
mod snapshots;
mod support;
