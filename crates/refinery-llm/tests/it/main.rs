//! Integration tests of refinery-llm: real HTTP against the testkit fakes on 127.0.0.1, and
//! the real agent CLIs against the same fakes.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] fns panic on setup failure by design"
)]

mod agent_parsers;
mod agents;
mod faults;
mod providers;
mod support;
