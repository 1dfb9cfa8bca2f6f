//! Refinery's secret scanner: finds API keys, tokens, private keys and passwords in files, in
//! git's staged changes and in outgoing commits; and the one [`Scrubber`] that every place
//! where text leaves a running Refinery applies (model requests, agent CLIs, state files,
//! output, logs, ids): the credential values the process loaded, and anything the rules
//! recognise, are masked.
//!
//! It must never print, log or store a matched value. A [`Finding`] carries the rule id, the
//! location, a [`Fingerprint`] and a redacted [`Preview`] (a short public prefix and the
//! length), nothing more; errors carry paths and line numbers only. The crate stands alone: it
//! depends on no other refinery crate.
//!
//! How a match is found: an Aho-Corasick pass finds the rules' keywords, each rule's regex runs
//! on the lines around its keywords, and the captured value must pass the rule's check (the
//! placeholder filter, an entropy gate for the generic rule, structure checks for JWTs and key
//! blocks). Findings on a line with a `refinery:allow` comment are dropped; findings whose
//! fingerprint is listed in `.refinery-secrets-ignore` are dropped by the scan driver.
//!
//! # Redacting text before it leaves the machine
//!
//! ```
//! let key = format!("sk-ant-api03-{}AA", "q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaK".repeat(3));
//! let prompt = format!("Use ANTHROPIC_API_KEY={key} to call the API.");
//! let (clean, findings) = refinery_secrets::redact(&prompt);
//! assert_eq!(clean, "Use ANTHROPIC_API_KEY=[REDACTED:anthropic-api-key] to call the API.");
//! assert_eq!(findings[0].rule_id, "anthropic-api-key");
//! assert!(!clean.contains(&key));
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod checks;
pub mod cli;
mod config;
mod error;
mod finding;
mod git;
mod hooks;
mod ignore_file;
mod report;
mod rules;
mod scanner;
mod scrub;
mod walk;

#[cfg(test)]
mod testutil;

pub use config::{CONFIG_FILE_NAME, Config};
pub use error::{Error, Result};
pub use finding::{Finding, Fingerprint, Preview};
pub use ignore_file::{IGNORE_FILE_NAME, IgnoreList};
pub use scanner::{ALLOW_MARKER, RuleDefinition, RuleInfo, Scanner, ScannerBuilder};
pub use scrub::{
    JsonStyle, PLACEHOLDER, PLACEHOLDER_PREFIX, Scrubber, is_secret_name, process_scrubber,
    remember_secret_vars, remember_secrets, scrub,
};

/// Redacts every secret the built-in rules (and the redaction-only ones, such as a bare AWS
/// secret access key) find in `text`, replacing each value with
/// `[REDACTED:<rule-id>]`, and returns the cleaned text with the findings (which hold no
/// value).
///
/// This is the check the engine runs on everything it sends to a model: prompts, files,
/// diffs, transcripts. It ignores `refinery:allow` comments and the ignore file on purpose (see
/// [`Scanner::redact`]). Use a configured [`Scanner`] to apply extra TOML rules too.
pub fn redact(text: &str) -> (String, Vec<Finding>) {
    Scanner::for_redaction().redact(text)
}

/// Whether `text` contains anything the redaction rules flag (same rules as [`redact`]).
pub fn contains_secret(text: &str) -> bool {
    !Scanner::for_redaction().redact(text).1.is_empty()
}
