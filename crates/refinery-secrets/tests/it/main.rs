//! Integration tests of the scanner crate: every rule against generated secrets and decoys,
//! redaction, file scans with the ignore file / allow comments / TOML rules, and the git modes
//! against real repositories made with the real `git`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod corpus;
mod git_modes;
mod labelled;
mod redact;
mod rules;
mod scan_files;
mod support;
