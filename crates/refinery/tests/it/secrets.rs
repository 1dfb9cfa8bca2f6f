//! `refinery secrets` through the real binary: exit codes and output, our own repository
//! being clean (for our scanner and pre-commit's `detect-private-key`), the real pre-commit
//! framework running our `.pre-commit-hooks.yaml`, and real `git commit` / `git push` through
//! hooks written by `refinery secrets install`.
//!
//! Isolation: every test works in its own temporary directory; git runs without global or
//! system config (`GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`) and a fixed identity;
//! pre-commit gets its own `PRE_COMMIT_HOME`. Test secrets are generated at run time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::cargo_bin;

/// A seeded generator, so the committed source holds no secret-shaped literal.
struct Rng(u64);

impl Rng {
    fn string(&mut self, alphabet: &[u8], length: usize) -> String {
        (0..length)
            .map(|_| {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                char::from(alphabet[(z % alphabet.len() as u64) as usize])
            })
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn anthropic_key(seed: u64) -> String {
    format!("sk-ant-api03-{}AA", Rng(seed).string(URLSAFE, 93))
}

fn github_token(seed: u64) -> String {
    format!("ghp_{}", Rng(seed).string(ALNUM, 36))
}

/// The output must not contain the value nor any 12-character piece of it past the public
/// prefix.
fn assert_no_leak(output: &str, secret: &str) {
    assert!(
        !output.contains(secret),
        "output contains the secret:\n{output}"
    );
    for window in secret.as_bytes()[16..].windows(12) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !output.contains(piece),
            "output contains `{piece}`:\n{output}"
        );
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn refinery(dir: &Path) -> Command {
    let mut command = Command::new(cargo_bin("refinery"));
    command.current_dir(dir);
    isolate_git(&mut command);
    command
}

fn isolate_git(command: &mut Command) {
    command
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .env_remove("PRE_COMMIT_FROM_REF")
        .env_remove("PRE_COMMIT_TO_REF")
        .env_remove("PRE_COMMIT_REMOTE_NAME")
        .env_remove("PRE_COMMIT_LOCAL_BRANCH");
}

fn git_output(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new("git");
    command.current_dir(dir).args(args);
    isolate_git(&mut command);
    command.output().unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_output(dir, args);
    assert!(output.status.success(), "git {args:?}: {}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, content).unwrap();
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// An optional external tool: `Some(path)` when installed; otherwise the test prints why it
/// skips, and under `CI=true` fails (CI installs it, see `.ci/run`).
fn tool(name: &str) -> Option<PathBuf> {
    refinery_testkit::skip::require_program(
        name,
        &[],
        "pip install pre-commit==4.7.0 pre-commit-hooks==6.0.0",
    )
}

#[test]
fn scan_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/lib.rs", "pub fn add() {}\n");
    let clean = refinery(dir.path())
        .args(["secrets", "scan"])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    let key = anthropic_key(1);
    write(dir.path(), ".env", &format!("ANTHROPIC_API_KEY={key}\n"));
    let found = refinery(dir.path())
        .args(["secrets", "scan", "."])
        .output()
        .unwrap();
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert!(
        stdout.starts_with(".env:1:19: anthropic-api-key fingerprint="),
        "{stdout}"
    );
    assert!(
        stdout.contains("preview=`sk-ant-api03-\u{2026} (108 chars)`"),
        "{stdout}"
    );
    assert_no_leak(&text(&found), &key);

    let json = refinery(dir.path())
        .args(["secrets", "scan", "--json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["status"], "findings");
    assert_eq!(report["findings"][0]["rule_id"], "anthropic-api-key");
    assert_no_leak(&text(&json), &key);

    let sarif = refinery(dir.path())
        .args(["secrets", "scan", "--sarif"])
        .output()
        .unwrap();
    let log: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["runs"][0]["results"][0]["ruleId"], "anthropic-api-key");
    assert_no_leak(&text(&sarif), &key);
}

#[test]
fn a_scan_that_cannot_run_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    // Not a repository: the staged mode cannot run, and must not say "clean".
    let staged = refinery(dir.path())
        .args(["secrets", "scan", "--staged"])
        .output()
        .unwrap();
    assert_eq!(staged.status.code(), Some(2), "{}", text(&staged));
    assert!(
        text(&staged).contains("did not complete"),
        "{}",
        text(&staged)
    );

    let repo = new_repo();
    let since = refinery(repo.path())
        .args(["secrets", "scan", "--since", "nope"])
        .output()
        .unwrap();
    assert_eq!(since.status.code(), Some(2), "{}", text(&since));

    let usage = refinery(repo.path())
        .args(["secrets", "scan", "--staged", "x.txt"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

#[test]
fn our_own_repository_is_clean() {
    let root = workspace_root();
    let output = refinery(&root).args(["secrets", "scan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // The scan looked at the repository (the summary names how many files it read).
    assert!(
        !text(&output).contains(" 0 files scanned"),
        "{}",
        text(&output)
    );
}

#[test]
fn detect_private_key_does_not_trip_on_our_repository() {
    let Some(detect) = tool("detect-private-key") else {
        return;
    };
    let root = workspace_root();
    let files = git(
        &root,
        &[
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ],
    );
    let files: Vec<&str> = files.split('\0').filter(|name| !name.is_empty()).collect();
    assert!(files.len() > 10, "{files:?}");
    let output = Command::new(detect)
        .current_dir(&root)
        .args(&files)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

/// A pre-commit run of our `.pre-commit-hooks.yaml`, with our binary on PATH.
fn pre_commit(repo: &Path, home: &Path, args: &[&str]) -> Output {
    let binary_dir = cargo_bin("refinery").parent().unwrap().to_owned();
    let path = std::env::join_paths(
        std::iter::once(binary_dir)
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut command = Command::new("pre-commit");
    command
        .current_dir(repo)
        .args(args)
        .env("PATH", path)
        .env("PRE_COMMIT_HOME", home)
        .env("PRE_COMMIT_COLOR", "never");
    isolate_git(&mut command);
    command.output().unwrap()
}

#[test]
fn pre_commit_try_repo_blocks_a_staged_key_and_passes_a_placeholder() {
    if tool("pre-commit").is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let root = root.to_str().unwrap();

    let repo = new_repo();
    let key = github_token(2);
    write(
        repo.path(),
        "deploy.sh",
        &format!("export GITHUB_TOKEN={key}\n"),
    );
    git(repo.path(), &["add", "deploy.sh"]);
    let blocked = pre_commit(
        repo.path(),
        home.path(),
        &["try-repo", root, "refinery-secrets", "--verbose"],
    );
    let output = text(&blocked);
    assert_eq!(blocked.status.code(), Some(1), "{output}");
    assert!(
        output.contains("refinery secrets (staged changes)"),
        "{output}"
    );
    assert!(output.contains("deploy.sh:1:21: github-pat"), "{output}");
    assert_no_leak(&output, &key);

    let clean = new_repo();
    write(
        clean.path(),
        "deploy.sh",
        &format!("export GITHUB_TOKEN=ghp_{}\n", "x".repeat(36)),
    );
    git(clean.path(), &["add", "deploy.sh"]);
    let passed = pre_commit(
        clean.path(),
        home.path(),
        &["try-repo", root, "refinery-secrets"],
    );
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed));
    assert!(text(&passed).contains("Passed"), "{}", text(&passed));

    // The pre-push hook through pre-commit's PRE_COMMIT_FROM_REF/TO_REF.
    git(clean.path(), &["commit", "-q", "-m", "placeholder"]);
    let from = git(clean.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    write(clean.path(), "later.env", &format!("TOKEN={key}\n"));
    git(clean.path(), &["add", "later.env"]);
    git(clean.path(), &["commit", "-q", "-m", "oops"]);
    let to = git(clean.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    let push = pre_commit(
        clean.path(),
        home.path(),
        &[
            "try-repo",
            root,
            "refinery-secrets-pre-push",
            "--hook-stage",
            "pre-push",
            "--from-ref",
            &from,
            "--to-ref",
            &to,
            "--verbose",
        ],
    );
    let output = text(&push);
    assert_eq!(push.status.code(), Some(1), "{output}");
    assert!(output.contains("later.env:1:7: github-pat"), "{output}");
    assert_no_leak(&output, &key);
}

#[test]
fn pre_commit_installed_hook_blocks_git_commit() {
    if tool("pre-commit").is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // A hook repository holding exactly our `.pre-commit-hooks.yaml`, committed.
    let hooks = new_repo();
    fs_err::copy(
        workspace_root().join(".pre-commit-hooks.yaml"),
        hooks.path().join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    git(hooks.path(), &["add", "-A"]);
    git(hooks.path(), &["commit", "-q", "-m", "hooks"]);
    let rev = git(hooks.path(), &["rev-parse", "HEAD"]).trim().to_owned();

    let repo = new_repo();
    write(
        repo.path(),
        ".pre-commit-config.yaml",
        &format!(
            "repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: refinery-secrets\n",
            hooks.path().display()
        ),
    );
    let install = pre_commit(repo.path(), home.path(), &["install"]);
    assert!(install.status.success(), "{}", text(&install));

    let key = anthropic_key(3);
    write(repo.path(), "app.py", &format!("KEY = \"{key}\"\n"));
    git(repo.path(), &["add", "-A"]);
    let mut commit = Command::new("git");
    commit
        .current_dir(repo.path())
        .args(["commit", "-m", "add app"])
        .env("PATH", pre_commit_path())
        .env("PRE_COMMIT_HOME", home.path());
    isolate_git(&mut commit);
    let blocked = commit.output().unwrap();
    assert!(!blocked.status.success(), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("anthropic-api-key"),
        "{}",
        text(&blocked)
    );
    assert_no_leak(&text(&blocked), &key);
    assert!(
        !git_output(repo.path(), &["rev-parse", "--verify", "HEAD"])
            .status
            .success()
    );
}

fn pre_commit_path() -> std::ffi::OsString {
    let binary_dir = cargo_bin("refinery").parent().unwrap().to_owned();
    std::env::join_paths(
        std::iter::once(binary_dir)
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap()
}

#[test]
fn installed_hooks_block_commit_and_push_with_real_git() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    let work = dir.path().join("work");
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
    git(&work, &["init", "-q", "-b", "main"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );

    let install = refinery(&work)
        .args(["secrets", "install"])
        .output()
        .unwrap();
    assert_eq!(install.status.code(), Some(0), "{}", text(&install));
    let hooks = work.join(".git/hooks");
    assert!(
        fs_err::read_to_string(hooks.join("pre-commit"))
            .unwrap()
            .contains("--staged")
    );
    assert!(
        fs_err::read_to_string(hooks.join("pre-push"))
            .unwrap()
            .contains("--pre-push")
    );

    write(&work, "README.md", "hello\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "clean"]);
    git(&work, &["push", "-q", "origin", "main"]);

    // The pre-commit hook blocks a staged key.
    let key = github_token(4);
    write(&work, "ci.env", &format!("GITHUB_TOKEN={key}\n"));
    git(&work, &["add", "-A"]);
    let blocked = git_output(&work, &["commit", "-m", "add token"]);
    assert!(!blocked.status.success(), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("ci.env:1:14: github-pat"),
        "{}",
        text(&blocked)
    );
    assert_no_leak(&text(&blocked), &key);

    // A key that slipped past (--no-verify) and was removed again is still in the history:
    // the push is blocked.
    git(&work, &["commit", "-q", "--no-verify", "-m", "add token"]);
    fs_err::remove_file(work.join("ci.env")).unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "remove token"]);
    let pushed = git_output(&work, &["push", "origin", "main"]);
    assert!(!pushed.status.success(), "{}", text(&pushed));
    assert!(
        text(&pushed).contains("ci.env:1:14: github-pat"),
        "{}",
        text(&pushed)
    );
    assert_no_leak(&text(&pushed), &key);
    let remote_head = git(&remote, &["rev-parse", "main"]);
    let local_clean = git(&work, &["rev-parse", "HEAD~2"]);
    assert_eq!(
        remote_head, local_clean,
        "the remote must not have received the commits"
    );

    // Pushing a new branch without the secret goes through.
    git(&work, &["checkout", "-q", "-b", "topic", "HEAD~2"]);
    write(&work, "notes.md", "nothing secret\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "notes"]);
    let topic = git_output(&work, &["push", "origin", "topic"]);
    assert!(topic.status.success(), "{}", text(&topic));
}

#[test]
fn install_refuses_a_foreign_hook_unless_forced() {
    let repo = new_repo();
    let hook = repo.path().join(".git/hooks/pre-commit");
    fs_err::create_dir_all(hook.parent().unwrap()).unwrap();
    fs_err::write(&hook, "#!/bin/sh\necho mine\n").unwrap();

    let refused = refinery(repo.path())
        .args(["secrets", "install"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    assert_eq!(
        fs_err::read_to_string(&hook).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    assert!(
        !repo.path().join(".git/hooks/pre-push").exists(),
        "nothing is half-installed"
    );

    let forced = refinery(repo.path())
        .args(["secrets", "install", "--force"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert!(
        fs_err::read_to_string(&hook)
            .unwrap()
            .contains("refinery-secrets hook")
    );
    let backup = repo.path().join(".git/hooks/pre-commit.refinery-backup");
    assert_eq!(
        fs_err::read_to_string(backup).unwrap(),
        "#!/bin/sh\necho mine\n"
    );

    // Our own hook is replaced without --force.
    let again = refinery(repo.path())
        .args(["secrets", "install"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

#[test]
fn pre_push_reads_the_pre_commit_frameworks_environment() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    let work = dir.path().join("work");
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
    git(&work, &["init", "-q", "-b", "main"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    write(&work, "a.txt", "first\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let key = anthropic_key(5);
    write(&work, "b.env", &format!("KEY={key}\n"));
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "second"]);
    let second = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();

    // PRE_COMMIT_FROM_REF..PRE_COMMIT_TO_REF: an existing branch.
    let range = refinery(&work)
        .args(["secrets", "scan", "--pre-push"])
        .env("PRE_COMMIT_FROM_REF", &first)
        .env("PRE_COMMIT_TO_REF", &second)
        .output()
        .unwrap();
    assert_eq!(range.status.code(), Some(1), "{}", text(&range));
    assert!(
        text(&range).contains("b.env:1:5: anthropic-api-key"),
        "{}",
        text(&range)
    );
    assert_no_leak(&text(&range), &key);

    // A new branch with its root commit: pre-commit sets only the branch and the remote.
    let new_branch = refinery(&work)
        .args(["secrets", "scan", "--pre-push"])
        .env("PRE_COMMIT_REMOTE_NAME", "origin")
        .env("PRE_COMMIT_LOCAL_BRANCH", "refs/heads/main")
        .output()
        .unwrap();
    assert_eq!(new_branch.status.code(), Some(1), "{}", text(&new_branch));
    assert!(
        text(&new_branch).contains("2 commits"),
        "{}",
        text(&new_branch)
    );

    // Nothing new relative to the remote: clean.
    let clean = refinery(&work)
        .args(["secrets", "scan", "--pre-push"])
        .env("PRE_COMMIT_FROM_REF", &second)
        .env("PRE_COMMIT_TO_REF", &second)
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}
