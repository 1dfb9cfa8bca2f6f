//! `refinery refine --worktree` and `refinery runs`: runs in their own git worktrees, on their
//! own branches, never touching the user's checkout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use refinery_testkit::FakeModelServer;
use serde_json::Value;

use crate::llm_support::text;
use crate::refine::{CRITERIA, Run, Script, content_by_round, score_by_content, summary};

pub(crate) fn git(run: &Run, dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .env_clear()
        .envs(&run.env)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

/// Every file of the checkout outside `.git`, with its bytes, plus the index, HEAD and the
/// current branch: what "byte-identical" means for the user's side.
fn user_side(run: &Run) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if relative == ".git" {
                continue;
            }
            if path.is_dir() {
                out.insert(format!("{relative}/"), Vec::new());
                walk(root, &path, out);
            } else {
                out.insert(relative, fs_err::read(&path).unwrap());
            }
        }
    }
    let project = run.project();
    let mut out = BTreeMap::new();
    walk(&project, &project, &mut out);
    for file in ["index", "HEAD"] {
        out.insert(
            format!(".git/{file}"),
            fs_err::read(project.join(".git").join(file)).unwrap(),
        );
    }
    out.insert(
        "branch".to_owned(),
        git(run, &project, &["rev-parse", "HEAD"]).into_bytes(),
    );
    out
}

pub(crate) fn repository(run: &Run) {
    let project = run.project();
    fs_err::write(project.join("index.html"), "<h1>START</h1>").unwrap();
    fs_err::write(project.join("notes.txt"), "the user's own notes\n").unwrap();
    git(run, &project, &["init", "--quiet", "--initial-branch=main"]);
    git(run, &project, &["add", "--all"]);
    git(run, &project, &["commit", "--quiet", "-m", "start"]);
}

async fn refine_in_worktree(run: &Run) -> (std::process::Output, Vec<Value>) {
    run.refine(&["Build a page", "--criteria", CRITERIA, "--worktree"])
        .await
}

fn worktree_event(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|event| event["event"] == "worktree")
        .expect("a worktree event")
}

/// A fake, a repository with one commit, and one worktree run of it that converged.
async fn one_finished_run() -> (FakeModelServer, Run, Vec<Value>) {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let (output, events) = refine_in_worktree(&run).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    (server, run, events)
}

/// `runs show ID --json`'s status.
async fn shown_status(run: &Run, session: &str) -> Value {
    let shown = run.refinery(&["runs", "show", session, "--json"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    shown["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worktree_runs_at_once_each_get_their_own_branch() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let before = user_side(&run);
    let base = git(&run, &run.project(), &["rev-parse", "HEAD"]);

    // Same task, same second: the two runs must still get two sessions and two branches.
    let ((first, first_events), (second, second_events)) =
        tokio::join!(refine_in_worktree(&run), refine_in_worktree(&run));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let mut branches = Vec::new();
    for events in [&first_events, &second_events] {
        let event = worktree_event(events);
        let session = summary(events)["session"].as_str().unwrap();
        let branch = event["branch"].as_str().unwrap();
        assert_eq!(branch, format!("refinery/{session}"));
        assert_eq!(event["base"], base.as_str());
        // The delivered round is committed on the run's branch, on top of the base, with the
        // verdict, the score table and the session id in the message.
        let worktree = PathBuf::from(event["worktree"].as_str().unwrap());
        let commit = event["commit"].as_str().unwrap();
        assert_eq!(git(&run, &run.project(), &["rev-parse", branch]), commit);
        assert_eq!(
            git(&run, &run.project(), &["rev-parse", &format!("{commit}^")]),
            base
        );
        let message = git(&run, &run.project(), &["log", "-1", "--format=%B", branch]);
        assert!(
            message.starts_with("refinery: converged after 2 round(s), round 2 delivered"),
            "{message}"
        );
        assert!(
            message.contains(&format!("Session: {session}")),
            "{message}"
        );
        assert!(message.contains("| E1 | 4 | 9 |"), "{message}");
        let committed = git(
            &run,
            &run.project(),
            &["show", &format!("{branch}:index.html")],
        );
        assert_eq!(committed, "<h1>VERSION-2</h1>");
        // The run's state stays in its worktree and out of its commits.
        let files = git(&run, &worktree, &["ls-tree", "-r", "--name-only", "HEAD"]);
        assert!(!files.contains(".refinery"), "{files}");
        assert!(
            worktree
                .join(".refinery/sessions")
                .join(session)
                .join("run.json")
                .exists()
        );
        branches.push(branch.to_owned());
    }
    assert_ne!(branches[0], branches[1]);
    // The user's working tree, index and branch are byte-identical to before.
    assert_eq!(user_side(&run), before);

    // `runs list` shows both, finished.
    let listed = run.refinery(&["runs", "list", "--json"]).await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for entry in listed {
        assert_eq!(entry["status"], "converged");
        assert_eq!(entry["running"], false);
        assert_eq!(entry["rounds"], 2);
        assert!(entry["cost_usd"].as_f64().unwrap() > 0.0);
    }
    let plain = run.refinery(&["runs", "list"]).await;
    for branch in &branches {
        assert!(text(&plain.stdout).contains(branch.as_str()));
    }

    // `runs diff` shows the branch against its base.
    let id = branches[0].trim_start_matches("refinery/");
    let diff = run.refinery(&["runs", "diff", id]).await;
    assert!(diff.status.success(), "{}", text(&diff.stderr));
    assert!(
        text(&diff.stdout).contains("+<h1>VERSION-2</h1>"),
        "{}",
        text(&diff.stdout)
    );

    // Unsaved work is refused without --force; `discard` then removes one run cleanly.
    let worktree = PathBuf::from(worktree_event(&first_events)["worktree"].as_str().unwrap());
    let first_id = summary(&first_events)["session"]
        .as_str()
        .unwrap()
        .to_owned();
    fs_err::write(worktree.join("scratch.txt"), "unsaved").unwrap();
    let refused = run.refinery(&["runs", "discard", &first_id]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("uncommitted work"),
        "{}",
        text(&refused.stderr)
    );
    assert!(worktree.exists());
    let discarded = run
        .refinery(&["runs", "discard", &first_id, "--force"])
        .await;
    assert!(discarded.status.success(), "{}", text(&discarded.stderr));
    assert!(!worktree.exists());
    let gone = format!("refs/heads/refinery/{first_id}");
    let branches_left = git(
        &run,
        &run.project(),
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads/refinery/",
        ],
    );
    assert!(
        !branches_left.lines().any(|line| line == gone),
        "{branches_left}"
    );
    assert_eq!(branches_left.lines().count(), 1, "{branches_left}");
    let listed = run.refinery(&["runs", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(user_side(&run), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_run_refuses_uncommitted_changes_and_touches_nothing() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    fs_err::write(run.project().join("notes.txt"), "edited, not committed\n").unwrap();
    let before = user_side(&run);
    let (output, _) = refine_in_worktree(&run).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("uncommitted changes"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(user_side(&run), before);
    let branches = git(&run, &run.project(), &["branch", "--list", "refinery/*"]);
    assert!(branches.is_empty(), "{branches}");
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_that_cannot_be_checked_out_leaves_no_branch_behind() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    // The user's own post-checkout hook refuses every checkout, so `git worktree add` fails
    // after the run has created its branch.
    let hook = run.project().join(".git/hooks/post-checkout");
    fs_err::create_dir_all(hook.parent().unwrap()).unwrap();
    fs_err::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let before = user_side(&run);
    let (output, _) = refine_in_worktree(&run).await;
    assert_ne!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("worktree add"),
        "{}",
        text(&output.stderr)
    );
    // No orphan branch and no half-made worktree: one attempt, given back.
    let branches = git(&run, &run.project(), &["branch", "--list", "refinery/*"]);
    assert!(branches.is_empty(), "{branches}");
    let worktrees = git(&run, &run.project(), &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");
    assert_eq!(user_side(&run), before);
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_cannot_be_discarded() {
    let (_server, run, events) = one_finished_run().await;
    let session = summary(&events)["session"].as_str().unwrap().to_owned();
    let worktree = PathBuf::from(worktree_event(&events)["worktree"].as_str().unwrap());
    // Hold the run's lock the way a running `refinery refine` does.
    let lock = worktree
        .join(".refinery/sessions")
        .join(&session)
        .join(".run.lock");
    let held = refinery_core::fsutil::LockGuard::try_acquire(&lock)
        .unwrap()
        .unwrap();
    assert_eq!(shown_status(&run, &session).await, "running");
    let refused = run
        .refinery(&["runs", "discard", &session, "--force"])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("in progress"),
        "{}",
        text(&refused.stderr)
    );
    assert!(worktree.exists());
    drop(held);
    assert_eq!(shown_status(&run, &session).await, "converged");
    // A record left at "running" with nobody holding the lock is a killed run. The record's
    // durable log is what is read; its last line is the latest save.
    let log_path = lock.with_file_name("run.jsonl");
    let log = fs_err::read_to_string(&log_path).unwrap();
    let mut record: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    record["status"] = serde_json::json!({"status": "running"});
    fs_err::write(&log_path, format!("{log}{record}\n")).unwrap();
    assert_eq!(shown_status(&run, &session).await, "killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_finished_runs_whose_branch_is_merged() {
    let (_server, run, events) = one_finished_run().await;
    let branch = worktree_event(&events)["branch"]
        .as_str()
        .unwrap()
        .to_owned();
    let worktree = PathBuf::from(worktree_event(&events)["worktree"].as_str().unwrap());
    // Not merged yet: prune keeps it.
    let pruned = run.refinery(&["runs", "prune"]).await;
    assert!(pruned.status.success(), "{}", text(&pruned.stderr));
    assert!(text(&pruned.stdout).contains("0 run(s) pruned"));
    assert!(worktree.exists());
    // Merged into the user's branch: prune removes the worktree and the branch.
    git(
        &run,
        &run.project(),
        &["merge", "--quiet", "--ff-only", &branch],
    );
    let pruned = run.refinery(&["runs", "prune"]).await;
    assert!(pruned.status.success(), "{}", text(&pruned.stderr));
    assert!(text(&pruned.stdout).contains("1 run(s) pruned"));
    assert!(!worktree.exists());
    let left = git(
        &run,
        &run.project(),
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads/refinery/",
        ],
    );
    assert!(left.is_empty(), "{left}");
    assert_eq!(
        fs_err::read_to_string(run.project().join("index.html")).unwrap(),
        "<h1>VERSION-2</h1>"
    );
}
