//! MCP tests: a real rmcp client talks to the real server over an in-process duplex pipe.
//!
//! `reference` replays MassGen's behaviour-compatibility checks (shared/reference,
//! massgen-behavior.md §8) against our tools, including one test per documented deviation;
//! `tools` covers the remaining success and error paths; `plugin_caps` the caps the tools
//! enforce on their own (rounds across resets, no checklist without an answer, the cost
//! budget).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod plugin_caps;
mod reference;
mod support;
mod tools;
