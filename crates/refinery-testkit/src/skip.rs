//! Tests that need a tool installed on the machine (an agent CLI, tmux, Chromium, strace,
//! pre-commit, `script`) go through here when it is missing: under `CI=true` the test fails,
//! since CI installs every tool (`.ci/run`); elsewhere it skips and says why, visibly.
//!
//! "Visibly" needs care: libtest captures `println!` and `eprintln!` of passing tests and
//! throws that output away, so a skip printed with them is silent under plain `cargo test`.
//! Writing to the process's stderr handle directly is not captured, so the line shows up in
//! the test run's output (checked: `eprintln!` is swallowed, `writeln!(std::io::stderr())`
//! is not).

use std::io::Write as _;
use std::path::PathBuf;

/// Whether this run is CI, where a missing tool is a defect and never a reason to skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Records that the current test skips because of `reason` (what is missing and how to
/// install it). Panics under `CI=true` instead.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        !is_ci(),
        "{test}: {reason}; under CI=true a missing tool is a failure (.ci/run installs it)"
    );
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "SKIPPED {test}: {reason}");
}

/// The path of `program` on `PATH` (or at one of `also`), or `None` after [`skip`]ping with
/// `install` as the hint.
pub fn require_program(program: &str, also: &[&str], install: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    let found = on_path.or_else(|| {
        also.iter()
            .map(PathBuf::from)
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        skip(&format!("`{program}` is not installed ({install})"));
    }
    found
}
