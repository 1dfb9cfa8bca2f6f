//! `refinery batch`: many tasks, each in its own worktree, under one shared cost budget, and
//! resumable as a whole.

use std::collections::BTreeMap;

use refinery_testkit::FakeModelServer;
use serde_json::Value;

use crate::llm_support::text;
use crate::refine::{CRITERIA, MODEL, Run, Script, content_by_round, json_lines, score_by_content};
use crate::runs::{git, repository};

/// Five tasks, each with its own text so the fake's requests tell them apart.
fn batch_file(run: &Run) -> std::path::PathBuf {
    let mut lines = vec![
        serde_json::json!({"defaults": {"builder": MODEL, "evaluator": [MODEL], "criteria": CRITERIA, "max_rounds": 3}})
            .to_string(),
    ];
    for n in 1..=5 {
        lines.push(serde_json::json!({"id": format!("page-{n}"), "task": format!("Build page number {n}")}).to_string());
    }
    // Outside the repository, so the user's checkout stays clean.
    let path = run.context.home().join("tasks.jsonl");
    fs_err::write(&path, lines.join("\n")).unwrap();
    path
}

async fn batch(
    run: &Run,
    file: &std::path::Path,
    budget: &str,
) -> (std::process::Output, Vec<Value>) {
    let output = run
        .refinery(&[
            "batch",
            file.to_str().unwrap(),
            "--jobs",
            "3",
            "--cost-budget",
            budget,
            "--json",
        ])
        .await;
    let events = json_lines(&output.stdout);
    (output, events)
}

/// `refinery batch FILE --jobs N --json` in the background: the child, its JSON lines as they
/// come, and the thread reading them (it ends when the child's stdout closes).
fn batch_in_background(
    run: &Run,
    file: &std::path::Path,
    jobs: &str,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<Value>,
    std::thread::JoinHandle<()>,
) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(crate::support::BIN)
        .env_clear()
        .envs(&run.env)
        .current_dir(run.project())
        .args(["batch", file.to_str().unwrap(), "--jobs", jobs, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = lines_tx.send(value);
            }
        }
    });
    (child, lines_rx, reader)
}

fn final_states(events: &[Value]) -> BTreeMap<String, Value> {
    let summary = events
        .iter()
        .rev()
        .find(|event| event["event"] == "batch_summary")
        .expect("a batch summary");
    summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["id"].as_str().unwrap().to_owned(),
                task["state"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_budget_stops_the_batch_and_a_resumed_batch_finishes_the_rest() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let file = batch_file(&run);

    // The task list for a CI matrix.
    let listed = run
        .refinery(&["batch", file.to_str().unwrap(), "--list-json"])
        .await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(list[0]["id"], "page-1");

    // One task first, alone (a CI matrix job does this with --only): it converges, and its
    // spend counts against the batch's total from now on. Alone it surely finishes; five tasks
    // racing for the pool from the start might all be stopped before any finished.
    let first = run
        .refinery(&[
            "batch",
            file.to_str().unwrap(),
            "--only",
            "page-1",
            "--cost-budget",
            "1",
            "--json",
        ])
        .await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(
        final_states(&json_lines(&first.stdout))["page-1"]["status"],
        "converged"
    );

    // Each call holds its upper bound (~$0.25 a turn) in the shared pool before it starts and
    // costs ~$0.0135: a call waits for others in flight to settle, and is refused once what
    // was spent leaves less than its bound. $0.50 cannot carry five tasks of two rounds each.
    let budget = 0.5;
    let (output, events) = batch(&run, &file, "0.5").await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = events
        .iter()
        .rev()
        .find(|e| e["event"] == "batch_summary")
        .unwrap();
    let spent = summary["spent_usd"].as_f64().unwrap();
    assert!(spent <= budget, "spent {spent} of {budget}");
    assert!(spent > 0.0);
    // The fake saw exactly the calls the pool paid for: nothing ran outside the budget.
    let per_call = 2_000.0 * 3.0 / 1e6 + 500.0 * 15.0 / 1e6;
    let first_calls = server.model_requests().len();
    assert!(
        (spent - per_call * first_calls as f64).abs() < 1e-6,
        "{spent} vs {first_calls} calls"
    );
    let states = final_states(&events);
    let converged: Vec<&String> = states
        .iter()
        .filter(|(_, s)| s["status"] == "converged")
        .map(|(id, _)| id)
        .collect();
    let stopped: Vec<&String> = states
        .iter()
        .filter(|(_, s)| s["status"] == "out_of_budget")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(converged.len() + stopped.len(), 5, "{states:?}");
    assert!(!converged.is_empty(), "{states:?}");
    assert!(!stopped.is_empty(), "{states:?}");
    for id in &stopped {
        assert!(
            states[*id]["reason"]
                .as_str()
                .unwrap()
                .contains("shared --cost-budget"),
            "{states:?}"
        );
    }
    // Every task had its own branch; converged ones carry their commit.
    let commits: BTreeMap<String, String> = converged
        .iter()
        .map(|id| {
            let branch = states[*id]["branch"].as_str().unwrap();
            (
                (*id).clone(),
                git(&run, &run.project(), &["rev-parse", branch]),
            )
        })
        .collect();

    // Run again with more budget: the finished tasks are skipped, the rest finish.
    let before = server.model_requests().len();
    let (output, events) = batch(&run, &file, "5").await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let states = final_states(&events);
    assert!(
        states.values().all(|s| s["status"] == "converged"),
        "{states:?}"
    );
    for id in &converged {
        assert!(
            events.iter().any(|e| e["event"] == "task"
                && e["task"] == id.as_str()
                && e["what"] == "skipped")
        );
        let branch = states[*id]["branch"].as_str().unwrap();
        assert_eq!(
            git(&run, &run.project(), &["rev-parse", branch]),
            commits[*id]
        );
    }
    // No request of the second batch is for a task the first one finished.
    for request in &server.model_requests()[before..] {
        let body = request.body_text();
        for id in &converged {
            let number = id.trim_start_matches("page-");
            assert!(
                !body.contains(&format!("Build page number {number}")),
                "{id} was redone"
            );
        }
    }
    let summary = events
        .iter()
        .rev()
        .find(|e| e["event"] == "batch_summary")
        .unwrap();
    assert!(summary["spent_usd"].as_f64().unwrap() <= 5.0);
    // The user's checkout stayed as it was.
    assert_eq!(git(&run, &run.project(), &["status", "--porcelain"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_file_is_refused_before_anything_starts() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let cases = [
        (
            "dupes.jsonl",
            "{\"id\": \"a\", \"task\": \"x\"}\n{\"id\": \"a\", \"task\": \"y\"}",
            "appears twice",
        ),
        (
            "typo.toml",
            "[[task]]\nid = \"a\"\ntask = \"x\"\nmax_round = 2\n",
            "max_round",
        ),
        (
            "empty.toml",
            "[defaults]\nmax_rounds = 2\n",
            "holds no task",
        ),
    ];
    for (name, body, says) in cases {
        let path = run.context.home().join(name);
        fs_err::write(&path, body).unwrap();
        let output = run.refinery(&["batch", path.to_str().unwrap()]).await;
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(
            text(&output.stderr).contains(says),
            "{name}: {}",
            text(&output.stderr)
        );
    }
    // Nothing was started: no branch, no worktree, no state, no model call.
    assert_eq!(
        git(&run, &run.project(), &["branch", "--list", "refinery/*"]),
        ""
    );
    assert!(!run.project().join(".refinery").exists());
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stopped_by_ctrl_c_resumes_the_same_sessions() {
    let server = FakeModelServer::start().await.unwrap();
    // Judges answer slowly so Ctrl-C surely lands while tasks are mid-round.
    Script::simple(content_by_round, score_by_content)
        .install_with_judge_delay(&server, std::time::Duration::from_millis(400));
    let run = Run::new(&server);
    repository(&run);
    let file = batch_file(&run);
    // --only and --list-json pick tasks for a matrix job.
    let listed = run
        .refinery(&[
            "batch",
            file.to_str().unwrap(),
            "--list-json",
            "--only",
            "page-2",
        ])
        .await;
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"id": "page-2", "task": "Build page number 2"}])
    );
    let unknown = run
        .refinery(&["batch", file.to_str().unwrap(), "--only", "nope"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("--only nope"));

    let (mut child, lines_rx, reader) = batch_in_background(&run, &file, "3");
    // Wait (at most 60 s) until some task has started a round, then press Ctrl-C.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    let mut first_events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = lines_rx
            .recv_timeout(left)
            .expect("a task event within 60 s");
        let started_round = event["event"] == "task_event";
        first_events.push(event);
        if started_round {
            break;
        }
    }
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    // Its stdout closes when it exits: read to the end, at most 60 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(event) => first_events.push(event),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the batch did not stop within 60 s")
            }
        }
    }
    reader.join().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let interrupted = final_states(&first_events);
    let sessions: BTreeMap<String, String> = interrupted
        .iter()
        .filter_map(|(id, s)| Some((id.clone(), s["session"].as_str()?.to_owned())))
        .collect();
    assert!(!sessions.is_empty(), "{interrupted:?}");
    assert!(
        interrupted.values().any(|s| s["status"] == "interrupted"),
        "{interrupted:?}"
    );

    // The same command again: every task ends converged, in the session it started in.
    let output = run
        .refinery(&["batch", file.to_str().unwrap(), "--jobs", "3", "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let states = final_states(&json_lines(&output.stdout));
    assert!(
        states.values().all(|s| s["status"] == "converged"),
        "{states:?}"
    );
    for (id, session) in &sessions {
        assert_eq!(states[id]["session"].as_str().unwrap(), session, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_with_sigkill_resumes_without_redoing_finished_tasks() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content)
        .install_with_judge_delay(&server, std::time::Duration::from_millis(300));
    let run = Run::new(&server);
    repository(&run);
    let file = batch_file(&run);
    let (mut child, lines_rx, reader) = batch_in_background(&run, &file, "2");
    // Wait (at most 2 minutes) until one task has converged, while others are mid-round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    let finished = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = lines_rx
            .recv_timeout(left)
            .expect("a task converged within 2 minutes");
        if event["event"] == "task" && event["what"] == "converged" {
            break event["task"].as_str().unwrap().to_owned();
        }
    };

    // The same batch started again while it runs is refused and changes nothing.
    let second = run
        .refinery(&["batch", file.to_str().unwrap(), "--jobs", "2", "--json"])
        .await;
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("already running"),
        "{}",
        text(&second.stderr)
    );

    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();

    // Make one unfinished task look killed while it was starting: its worktree and session
    // exist, its run record does not. It must start again in that same worktree.
    let ledger: Value = serde_json::from_slice(
        &fs_err::read(run.project().join(".refinery/batches/tasks.json")).unwrap(),
    )
    .unwrap();
    let (cut_id, cut) = ledger["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, task)| task["status"] != "converged" && task["session"].is_string())
        .expect("a task that was started and not finished");
    let cut_worktree = cut["worktree"].as_str().unwrap().to_owned();
    // A start cut short before its first save of the run's record.
    let session_dir = std::path::Path::new(&cut_worktree)
        .join(".refinery/sessions")
        .join(cut["session"].as_str().unwrap());
    for record in ["run.json", "run.jsonl"] {
        fs_err::remove_file(session_dir.join(record)).unwrap();
    }

    // Run again: the finished task is skipped, every other one ends converged, and each task
    // has exactly one branch (no orphan from a start the kill cut short).
    let output = run
        .refinery(&["batch", file.to_str().unwrap(), "--jobs", "2", "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    assert!(
        events.iter().any(|e| e["event"] == "task"
            && e["task"] == finished.as_str()
            && e["what"] == "skipped"),
        "{events:?}"
    );
    let states = final_states(&events);
    assert_eq!(states.len(), 5);
    for (id, state) in &states {
        assert_eq!(state["status"], "converged", "{id}: {state:?}");
        let branch = state["branch"].as_str().unwrap();
        let committed = git(&run, &run.project(), &["rev-parse", "--verify", branch]);
        assert_eq!(committed, state["commit"].as_str().unwrap(), "{id}");
    }
    assert_eq!(states[cut_id]["worktree"], cut_worktree.as_str());
    let branches = git(&run, &run.project(), &["branch", "--list", "refinery/*"]);
    assert_eq!(branches.lines().count(), 5, "{branches}");
}

/// A batch killed after a task committed its round and before the batch recorded that commit:
/// run again, the task's run ends at once with nothing new to commit, and the commit its
/// branch already has is the one recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_committed_just_before_a_kill_keeps_its_commit() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let file = batch_file(&run);
    let args = ["batch", file.to_str().unwrap(), "--jobs", "2", "--json"];
    let first = run.refinery(&args).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let committed = final_states(&json_lines(&first.stdout))["page-1"]["commit"]
        .as_str()
        .unwrap()
        .to_owned();
    // The batch's state as that kill leaves it: the task still running, no commit recorded.
    let ledger_path = run.project().join(".refinery/batches/tasks.json");
    let mut ledger: Value = serde_json::from_slice(&fs_err::read(&ledger_path).unwrap()).unwrap();
    let task = &mut ledger["tasks"]["page-1"];
    task["status"] = Value::from("running");
    task.as_object_mut().unwrap().remove("commit");
    fs_err::write(&ledger_path, serde_json::to_vec(&ledger).unwrap()).unwrap();

    let again = run.refinery(&args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let state = &final_states(&json_lines(&again.stdout))["page-1"];
    assert_eq!(state["status"], "converged", "{state:?}");
    assert_eq!(
        state["commit"].as_str(),
        Some(committed.as_str()),
        "{state:?}"
    );
    let branch = state["branch"].as_str().unwrap();
    assert_eq!(
        git(&run, &run.project(), &["rev-parse", "--verify", branch]),
        committed
    );
}

/// A batch killed after making a task's branch and before its worktree was ready (the ledger
/// names both, the worktree has no origin yet, no run was recorded): run again, that start is
/// given back and the task runs on one new branch, so no branch is left without a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_short_before_its_worktree_was_ready_leaves_no_orphan_branch() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    repository(&run);
    let file = batch_file(&run);
    let project = run.project();
    let common = git(
        &run,
        &project,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    );
    let id = "20261203_000000_page-1";
    let branch = format!("refinery/{id}");
    let worktree = std::path::Path::new(&common)
        .join("refinery/worktrees")
        .join(id);
    git(&run, &project, &["branch", "--quiet", &branch, "HEAD"]);
    git(
        &run,
        &project,
        &[
            "worktree",
            "add",
            "--quiet",
            worktree.to_str().unwrap(),
            &branch,
        ],
    );
    let ledger = serde_json::json!({
        "file": file,
        "tasks": {"page-1": {
            "status": "running",
            "session": id,
            "branch": branch,
            "worktree": worktree,
            "workspace": worktree,
        }},
    });
    let ledger_path = project.join(".refinery/batches/tasks.json");
    fs_err::create_dir_all(ledger_path.parent().unwrap()).unwrap();
    // As Refinery leaves its state folder: ignored by git, so the checkout stays clean.
    fs_err::write(project.join(".refinery/.gitignore"), "*\n").unwrap();
    fs_err::write(&ledger_path, ledger.to_string()).unwrap();

    let output = run
        .refinery(&["batch", file.to_str().unwrap(), "--jobs", "2", "--json"])
        .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stderr),
        text(&output.stdout)
    );
    let states = final_states(&json_lines(&output.stdout));
    assert_eq!(states["page-1"]["status"], "converged", "{states:?}");
    assert_ne!(states["page-1"]["branch"], branch.as_str());
    assert!(!worktree.exists(), "the cut-short worktree is given back");
    let branches = git(&run, &project, &["branch", "--list", "refinery/*"]);
    assert_eq!(branches.lines().count(), 5, "{branches}");
    assert!(!branches.contains(&branch), "{branches}");
}
