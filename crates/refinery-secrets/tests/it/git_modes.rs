//! Staged, history and pre-push scans against real repositories made with the real `git`.

use std::path::Path;

use refinery_secrets::cli::{OutputFormat, PrePushSource, ScanOptions, ScanStatus, ScanTarget};

use crate::corpus::{self, Rng};
use crate::support::{assert_no_leak, git, init_repo, scan, write};

fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn staged_mode_scans_only_added_lines() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let mut rng = Rng::new(41);
    let old = corpus::secret("github-pat", &mut rng);
    let new = corpus::secret("anthropic-api-key", &mut rng);
    // A secret already committed is not what this commit adds.
    write(dir.path(), "app.env", &format!("OLD={old}\nA=1\n"));
    commit_all(dir.path(), "first");
    write(
        dir.path(),
        "app.env",
        &format!(
            "OLD={old}\nA=1\nNEW={new}\nPLACEHOLDER=sk-ant-api03-{}\n",
            "x".repeat(93)
        ),
    );
    // Unstaged changes are not scanned either.
    write(dir.path(), "unstaged.env", &format!("K={new}\n"));
    git(dir.path(), &["add", "app.env"]);

    let (status, stdout, stderr) = scan(&ScanOptions::new(ScanTarget::Staged, dir.path()));
    assert_eq!(status, ScanStatus::Findings, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("app.env:3:5: anthropic-api-key "),
        "{stdout}"
    );
    assert_no_leak(&stdout, &new);
    assert_no_leak(&stderr, &new);
}

#[test]
fn staged_mode_works_before_the_first_commit_and_when_clean() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let (status, _, stderr) = scan(&ScanOptions::new(ScanTarget::Staged, dir.path()));
    assert_eq!(status, ScanStatus::Clean, "{stderr}");
    let mut rng = Rng::new(42);
    let key = corpus::secret("private-key", &mut rng);
    write(dir.path(), "keys/deploy_key", &key);
    fs_err::write(
        dir.path().join("logo.png"),
        b"\x89PNG\r\n\x1a\n\0\0\0binary",
    )
    .unwrap();
    git(dir.path(), &["add", "-A"]);
    let (status, stdout, stderr) = scan(&ScanOptions::new(ScanTarget::Staged, dir.path()));
    assert_eq!(status, ScanStatus::Findings, "{stderr}");
    assert!(
        stdout.starts_with("keys/deploy_key:1:1: private-key "),
        "{stdout}"
    );
    assert!(stderr.contains("skipped 1 binary"), "{stderr}");
}

#[test]
fn git_modes_outside_a_repository_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = scan(&ScanOptions::new(ScanTarget::Staged, dir.path()));
    assert_eq!(status, ScanStatus::Failed);
    assert!(stderr.contains("git rev-parse --show-toplevel"), "{stderr}");
}

#[test]
fn since_mode_scans_the_commits_after_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let mut rng = Rng::new(43);
    let before = corpus::secret("npm-token", &mut rng);
    let after = corpus::secret("huggingface-token", &mut rng);
    write(dir.path(), "a.txt", &format!("T={before}\n"));
    let base = commit_all(dir.path(), "base");
    write(dir.path(), "b.txt", &format!("x\nHF={after}\n"));
    let added = commit_all(dir.path(), "add");
    // Removing it later does not undo the leak: history still has it.
    fs_err::remove_file(dir.path().join("b.txt")).unwrap();
    commit_all(dir.path(), "remove");

    let mut options = ScanOptions::new(ScanTarget::Since(base), dir.path());
    options.format = OutputFormat::Json;
    let (status, stdout, _) = scan(&options);
    assert_eq!(status, ScanStatus::Findings);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{stdout}");
    assert_eq!(findings[0]["rule_id"], "huggingface-token");
    assert_eq!(findings[0]["commit"], added.as_str());
    assert_eq!(findings[0]["line"], 2);
    assert_eq!(report["stats"]["commits_scanned"], 2);
    assert_no_leak(&stdout, &after);

    let bad = ScanOptions::new(ScanTarget::Since("no-such-revision".to_owned()), dir.path());
    let (status, _, stderr) = scan(&bad);
    assert_eq!(status, ScanStatus::Failed);
    assert!(stderr.contains("no-such-revision"), "{stderr}");
}

#[test]
fn pre_push_mode_reads_git_push_input() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let remote = dir.path().join("remote.git");
    fs_err::create_dir_all(&work).unwrap();
    git(
        dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    init_repo(&work);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    let mut rng = Rng::new(44);
    let pushed_before = corpus::secret("gitlab-token", &mut rng);
    write(&work, "old.txt", &format!("GL={pushed_before}\n"));
    let first = commit_all(&work, "first");
    git(&work, &["push", "-q", "origin", "main"]);

    let key = corpus::secret("sendgrid-api-key", &mut rng);
    write(&work, "mail.env", &format!("SENDGRID={key}\n"));
    let second = commit_all(&work, "second");
    let zero = "0".repeat(40);

    let update = |input: String, remote: Option<&str>| {
        ScanOptions::new(
            ScanTarget::PrePush(PrePushSource::Stdin {
                input,
                remote: remote.map(str::to_owned),
            }),
            &work,
        )
    };
    // An existing branch: only what the remote lacks.
    let (status, stdout, stderr) = scan(&update(
        format!("refs/heads/main {second} refs/heads/main {first}\n"),
        Some("origin"),
    ));
    assert_eq!(status, ScanStatus::Findings, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("mail.env:1:10: sendgrid-api-key"),
        "{stdout}"
    );
    assert_no_leak(&stdout, &key);

    // A new branch: everything no ref of the remote has.
    let (status, stdout, _) = scan(&update(
        format!("refs/heads/topic {second} refs/heads/topic {zero}\n"),
        Some("origin"),
    ));
    assert_eq!(status, ScanStatus::Findings);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    // Deleting a remote branch pushes no content.
    let (status, _, _) = scan(&update(
        format!("(delete) {zero} refs/heads/old {first}\n"),
        Some("origin"),
    ));
    assert_eq!(status, ScanStatus::Clean);

    // The pre-commit framework's range.
    let range = ScanOptions::new(
        ScanTarget::PrePush(PrePushSource::Range {
            from: first.clone(),
            to: second.clone(),
        }),
        &work,
    );
    assert_eq!(scan(&range).0, ScanStatus::Findings);

    // Garbage on stdin is a failure, not "nothing to push".
    let (status, _, stderr) = scan(&update("what is this\n".to_owned(), None));
    assert_eq!(status, ScanStatus::Failed);
    assert!(stderr.contains("pre-push input line 1"), "{stderr}");
}
