//! Integration tests of the scanner crate: every rule against generated secrets and decoys,
//! redaction, file scans with the ignore file / allow comments / TOML rules, and the git modes
//! against real repositories made with the real `git`.

mod corpus;
mod git_modes;
mod labelled;
mod redact;
mod rules;
mod scan_files;
mod support;
