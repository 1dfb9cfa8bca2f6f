//! What a benchmark run prints about where it ran: when, on which commit, how busy the
//! machine was, and which filesystem holds the state (on tmpfs a sync costs nothing, so a
//! durable write's cost only shows on a disk).

use std::path::Path;
use std::process::Command;

/// `run: <UTC time>, commit <describe>, load average <1 5 15 min>`.
pub(crate) fn run_line() -> String {
    format!(
        "run: {} UTC, commit {}, load average {}",
        command_text("date", &["-u", "+%Y-%m-%d %H:%M"]),
        command_text("git", &["describe", "--always", "--dirty", "--abbrev=8"]),
        fs_err::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `stat -f -c %T`: `ext2/ext3`, `tmpfs`, …
pub(crate) fn filesystem_type(dir: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
}

/// Whether a sync there is free (so numbers measured there say nothing about durability).
pub(crate) fn is_memory_filesystem(kind: &str) -> bool {
    kind == "tmpfs" || kind == "ramfs"
}

fn command_text(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}
