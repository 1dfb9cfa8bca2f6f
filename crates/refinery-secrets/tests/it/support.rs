//! Helpers shared by the test modules. Each test gets its own temporary directory; git runs
//! with a throwaway identity and no global or system config (`GIT_CONFIG_GLOBAL=/dev/null`).

use std::path::Path;
use std::process::Command;

use refinery_secrets::cli::{ScanOptions, ScanStatus, run_scan};

pub(crate) fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).unwrap();
    }
    fs_err::write(path, content).unwrap();
}

/// Runs `git` in `dir` with an isolated configuration and fails the test on error.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub(crate) fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost");
    command
}

pub(crate) fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
}

/// Runs a scan through the same entry point the CLI uses; returns status, stdout, stderr.
pub(crate) fn scan(options: &ScanOptions) -> (ScanStatus, String, String) {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = run_scan(options, &mut stdout, &mut stderr);
    (
        status,
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// Asserts that `output` contains no piece of `secret` long enough to matter: the whole value
/// and every 12-character window after the first 16 characters (a public prefix such as
/// `sk-ant-api03-` may be shown).
pub(crate) fn assert_no_leak(output: &str, secret: &str) {
    if secret.is_empty() {
        return;
    }
    assert!(
        !output.contains(secret),
        "output contains the secret:\n{output}"
    );
    let bytes = secret.as_bytes();
    if bytes.len() > 28 {
        for window in bytes[16..].windows(12) {
            let piece = String::from_utf8_lossy(window);
            assert!(
                !output.contains(piece.as_ref()),
                "output contains a piece of the secret ({piece}):\n{output}"
            );
        }
    }
}
