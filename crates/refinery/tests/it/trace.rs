//! `refinery trace` on transcripts the real Claude Code wrote while running against the
//! loopback fake: committed recordings (exact numbers) and a live run (when `claude` is
//! installed) that also proves the plugin's agent files reach the model as subagents.
//!
//! The fixtures in `tests/fixtures/transcripts/` were recorded with
//! `REFINERY_RECORD_TRANSCRIPTS=<dir> cargo test -p refinery --test it -- plugin_e2e trace`
//! (against `refinery-testkit`'s fake model server since it landed; the first recordings were
//! made against this crate's earlier minimal fake, with the same Claude Code 2.1.330)
//! and then shrunk: records that only carry the full system prompt, tool schemas and skill
//! listings (`attachment` of type `prompt_snapshot`, `skill_listing`, `agent_listing_delta`;
//! `api-request-shape`; `api-request-blob`) were removed. They hold no secrets: the key was
//! a fake and paths are temporary folders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::claude_code::{ClaudeHarness, record_transcript, run, text, tool};
use crate::support::Project;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transcripts")
        .join(name)
}

fn trace_json(project: &Project, path: &Path) -> Value {
    let output = project
        .command()
        .arg("trace")
        .arg(path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn recorded_refine_loop_transcript() {
    let project = Project::new();
    let report = trace_json(&project, &fixture("refine-loop.jsonl"));
    assert_eq!(report["malformed_lines"], 0);
    assert_eq!(report["prompts"], 1);
    assert_eq!(report["tool_calls"], 10);
    assert_eq!(
        report["tool_errors"], 1,
        "the round cap refused a third new_answer"
    );
    assert_eq!(
        report["tools"]["mcp__plugin_refinery_workflow__new_answer"],
        json!({"calls": 3, "errors": 1, "repeated": 0})
    );
    assert_eq!(report["tools"]["Write"]["calls"], 2);
    assert_eq!(report["api_messages"], 11);
    assert_eq!(
        report["tokens"]["output"], 220,
        "20 per message, each message once"
    );
    assert_eq!(report["subagents"], json!([]));
    assert!(report["duration_ms"].as_u64().is_some());
}

#[test]
fn recorded_subagent_transcript_with_failures() {
    let project = Project::new();
    let report = trace_json(&project, &fixture("subagent-and-failures.jsonl"));
    assert_eq!(
        report["tools"]["Bash"],
        json!({"calls": 2, "errors": 2, "repeated": 1})
    );
    assert_eq!(report["repeated_calls"], 1);
    assert_eq!(
        report["prompts"], 1,
        "the task notification is not a prompt"
    );
    assert_eq!(
        report["subagents"][0]["subagent_type"],
        "refinery:round-evaluator"
    );
    assert_eq!(report["subagents"][0]["failed"], false);
    let subs = report["subagent_transcripts"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{report}");
    assert_eq!(subs[0]["tools"]["Write"]["calls"], 1);
    assert!(subs[0]["sidechain_records"].as_u64().unwrap() > 0);
}

#[test]
fn malformed_lines_are_counted_not_fatal_and_missing_files_are_explained() {
    let project = Project::new();
    let mut text = fs_err::read_to_string(fixture("refine-loop.jsonl")).unwrap();
    text.push_str("{\"type\": \"assistant\", truncated\nnot json at all\n");
    project.write("damaged.jsonl", text.as_bytes());
    let report = trace_json(&project, &project.workspace.join("damaged.jsonl"));
    assert_eq!(report["malformed_lines"], 2);
    assert_eq!(report["tool_calls"], 10);
    let output = project
        .command()
        .args(["trace", "missing.jsonl"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("missing.jsonl") && stderr.contains("transcript_path"),
        "{stderr}"
    );
    let human = project
        .command()
        .arg("trace")
        .arg(fixture("refine-loop.jsonl"))
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("tool calls  10 (1 failed, 0 repeated unchanged)"),
        "{human}"
    );
}

/// A live run: two identical failing Bash calls, then the plugin's round-evaluator as a
/// subagent, which writes one file.
#[tokio::test(flavor = "multi_thread")]
async fn live_transcript_with_a_plugin_subagent() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    let verdict = project.join("verdict.json").display().to_string();
    harness.script(move |turn, body| {
        if body["system"].to_string().contains("# Role: round evaluator") {
            return match turn {
                0 => tool("Write", json!({"file_path": verdict, "content": "{\"verdict\": \"iterate\"}\n"})),
                _ => text("iterate; scores E1=5"),
            };
        }
        match turn {
            0 | 1 => tool("Bash", json!({"command": "ls /refinery-definitely-missing", "description": "look"})),
            2 => tool(
                "Agent",
                json!({"subagent_type": "refinery:round-evaluator", "description": "judge the round",
                       "prompt": "Judge the deliverable and write verdict.json"}),
            ),
            _ => text("done"),
        }
    });
    let claude_session = "5d9c1c6e-0000-4000-8000-00000000ace5";
    let command = harness.claude(&[
        "-p",
        "evaluate the work",
        "--output-format",
        "json",
        "--session-id",
        claude_session,
        "--allowedTools",
        "Bash,Agent,Write",
    ]);
    let output = run(command, Duration::from_mins(4)).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        project.join("verdict.json").is_file(),
        "the subagent ran with our role prompt"
    );

    let transcript = harness.transcript(claude_session);
    record_transcript(&transcript, "subagent-and-failures");
    let report = trace_json(&Project::new(), &transcript);
    assert_eq!(
        report["tools"]["Bash"],
        json!({"calls": 2, "errors": 2, "repeated": 1}),
        "{report}"
    );
    assert_eq!(report["tools"]["Agent"]["calls"], 1);
    assert_eq!(
        report["subagents"][0]["subagent_type"],
        "refinery:round-evaluator"
    );
    let subs = report["subagent_transcripts"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{report}");
    assert_eq!(subs[0]["tools"]["Write"]["calls"], 1);
}
