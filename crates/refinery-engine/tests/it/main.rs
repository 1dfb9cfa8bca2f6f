//! Integration tests of refinery-engine through its public API, against real tools.
//!
//! `schemas`: the output schemas against our parsers. `user_files`: a session's scope fixed
//! from real git (`git_view`), then the steps of issue 10's scenario played through the
//! scope's own calls — a builder un-ignores `.env.local` and `private/`, a revert, a resumed
//! session's restore — with every user file intact byte for byte and none of them stored.
//! (The same scenario through a real `refinery refine` run, with a SIGKILL, is the binary's
//! `user_files::unignoring_files_then_revert_kill_and_resume_…`.)
//!
//! Isolation: temporary folders, each repository created by the test itself with global and
//! system git configuration switched off; git must be installed (CI and every machine that
//! runs the engine have it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod schemas;
mod user_files;
