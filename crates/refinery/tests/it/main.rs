//! End-to-end tests of the `refinery` binary: MCP over real stdio with a real rmcp client,
//! several server processes writing one session at once, the `session` commands,
//! snapshots of a large tree, and the secret scanner with its git hooks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod action;
mod ask;
mod batch;
mod bench_harness;
mod budget;
mod claude_code;
mod concurrency;
mod doctor;
mod fail_closed;
mod fake_roles;
mod hook;
mod key_leaks;
mod llm_support;
mod local_models;
mod mcp_stdio;
mod media;
mod media_cli;
mod planted;
mod plugin_caps;
mod plugin_e2e;
mod plugin_media;
mod plugin_panels;
mod real_model;
mod refine;
mod report;
mod restore;
mod run;
mod runs;
mod secrets;
mod session_cli;
mod skill_model;
mod snapshots;
mod support;
mod tmux_watch;
mod trace;
mod trust_edges;
mod trust_secrets;
mod user_files;
mod watch;
