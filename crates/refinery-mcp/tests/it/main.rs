//! MCP tests: a real rmcp client talks to the real server over an in-process duplex pipe.
//!
//! `reference` replays MassGen's behaviour-compatibility checks (shared/reference,
//! massgen-behavior.md §8) against our tools, including one test per documented deviation;
//! `tools` covers the remaining success and error paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod reference;
mod support;
mod tools;
