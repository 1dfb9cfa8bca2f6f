//! The plugin's cost budget, measured and enforced by the tools: the SessionStart hook
//! records the Claude Code transcript, `init_session` takes `cost_budget`, and `new_answer`
//! refuses a new round once the transcripts' usage, priced with the price table, reaches it.
//!
//! `the_real_claude_cli_is_stopped_by_the_cost_budget` drives the real Claude Code against
//! the fake model server; its transcript is the `cost-budget.jsonl` fixture the other tests
//! replay (refresh it with `REFINERY_RECORD_TRANSCRIPTS=<dir>`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use refinery_testkit::{RecordedRequest, Reply, ToolCallSpec};
use serde_json::{Value, json};

use crate::claude_code::{ClaudeHarness, record_transcript, run, tool_results};
use crate::hook::run_hook;
use crate::support::{Project, call};

const QUALITY: &str = "mcp__plugin_refinery_quality__";
const WORKFLOW: &str = "mcp__plugin_refinery_workflow__";
/// A model the price table knows ($3 in, $15 out per million tokens).
const PRICED_MODEL: &str = "claude-sonnet-4-5-20250929";
// Every scripted turn reports 200k uncached input and 2k output tokens: $0.63 at that price,
// so three turns stay under a $3 budget and five do not, whether or not the turn that called
// init_session is counted.
const CLAUDE_SESSION: &str = "5d9c1c6e-0000-4000-8000-00000000c057";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transcripts")
        .join(name)
}

/// `refinery hook session-start` as Claude Code runs it, for `transcript`.
fn session_start(project: &Project, transcript: &Path) {
    let input = json!({
        "session_id": CLAUDE_SESSION,
        "transcript_path": transcript,
        "cwd": project.workspace,
        "hook_event_name": "SessionStart",
        "source": "startup",
    });
    run_hook(project, &input, "7100", project.workspace.parent().unwrap());
}

/// The lines of a transcript fixture, split after the assistant message that called
/// `init_session` (what a transcript holds when the loop begins) and the rest.
fn split_at_init(text: &str) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .position(|line| line.contains("init_session") && line.contains("\"type\":\"assistant\""))
        .map_or(0, |index| index + 1);
    let join = |part: &[&str]| {
        part.iter()
            .flat_map(|line| [*line, "\n"])
            .collect::<String>()
    };
    (join(&lines[..cut]), join(&lines[cut..]))
}

fn append(path: &Path, text: &str) {
    fs_err::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[tokio::test]
async fn the_budget_is_measured_from_the_transcript_and_refuses_a_new_round() {
    let project = Project::new();
    project.write("poem.md", b"a poem\n");
    let recorded = fs_err::read_to_string(fixture("cost-budget.jsonl")).unwrap();
    let (before, during) = split_at_init(&recorded);
    assert!(!before.is_empty() && !during.is_empty());
    let transcript = project
        .workspace
        .parent()
        .unwrap()
        .join("claude/session.jsonl");
    fs_err::create_dir_all(transcript.parent().unwrap()).unwrap();
    fs_err::write(&transcript, &before).unwrap();
    session_start(&project, &transcript);

    let client = project.mcp_for_claude("all", Some(CLAUDE_SESSION)).await;
    let (error, session) = call(
        &client,
        "init_session",
        json!({"label": "budget", "cost_budget": 2.5}),
    )
    .await;
    assert!(!error, "{session}");
    assert_eq!(session["cost_budget"], 2.5);
    call(
        &client,
        "generate_eval_criteria",
        json!({"criteria": [{"id": "E1", "text": "a real poem"}]}),
    )
    .await;
    // What was spent before init_session is not the loop's.
    let (error, first) = call(
        &client,
        "new_answer",
        json!({"answer": "draft", "file_paths": ["poem.md"]}),
    )
    .await;
    assert!(!error, "{first}");
    assert_eq!(first["spent_usd"], 0.0);
    let (error, _) = call(&client, "submit_checklist", json!({"scores": {"E1": 5}})).await;
    assert!(!error);

    // The loop goes on in Claude Code; its transcript grows past the budget.
    append(&transcript, &during);
    let (error, refused) = call(
        &client,
        "new_answer",
        json!({"answer": "second", "file_paths": ["poem.md"]}),
    )
    .await;
    assert!(error, "{refused}");
    assert_eq!(refused["code"], "cost_budget_reached", "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(message.contains("of its $2.5000 cost budget"), "{message}");
    let session_dir = project
        .state
        .join("sessions")
        .join(session["session_id"].as_str().unwrap());
    assert!(
        !session_dir.join("round_002").exists(),
        "no round 2 snapshot"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_model_with_no_price_stops_the_loop_rather_than_count_as_free() {
    let project = Project::new();
    project.write("poem.md", b"a poem\n");
    // Recorded from the real CLI with its default model, which the price table lacks.
    let transcript = project
        .workspace
        .parent()
        .unwrap()
        .join("claude/session.jsonl");
    fs_err::create_dir_all(transcript.parent().unwrap()).unwrap();
    fs_err::write(&transcript, "").unwrap();
    session_start(&project, &transcript);
    let client = project.mcp_for_claude("all", Some(CLAUDE_SESSION)).await;
    let (error, _) = call(
        &client,
        "init_session",
        json!({"label": "unpriced", "cost_budget": 100}),
    )
    .await;
    assert!(!error);
    fs_err::copy(fixture("refine-loop.jsonl"), &transcript).unwrap();
    let (error, refused) = call(
        &client,
        "new_answer",
        json!({"answer": "draft", "file_paths": ["poem.md"]}),
    )
    .await;
    assert!(error, "{refused}");
    assert_eq!(refused["code"], "cost_unmeasured", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("claude-opus-5-5"),
        "{refused}"
    );
    // A transcript that disappeared is just as unmeasurable.
    fs_err::remove_file(&transcript).unwrap();
    let (error, refused) = call(
        &client,
        "new_answer",
        json!({"answer": "draft", "file_paths": ["poem.md"]}),
    )
    .await;
    assert!(error);
    assert_eq!(refused["code"], "cost_unmeasured", "{refused}");
    client.cancel().await.unwrap();
}

/// The refine skill's opening moves, then a second round the budget must refuse.
fn budget_script(poem: String) -> impl Fn(usize) -> (String, Value) + Send + Sync {
    move |turn| match turn {
        0 => (
            format!("{QUALITY}init_session"),
            json!({"label": "budget", "max_rounds": 5, "cost_budget": 3.0}),
        ),
        1 => (
            format!("{QUALITY}generate_eval_criteria"),
            json!({"criteria": [{"id": "E1", "text": "a real haiku"}, {"id": "E2", "text": "about Rust"}]}),
        ),
        2 => (
            "Write".to_owned(),
            json!({"file_path": poem, "content": "ownership moves on\nthe borrow checker waits up\nlifetimes end at dawn\n"}),
        ),
        3 => (
            format!("{WORKFLOW}new_answer"),
            json!({"answer": "first draft", "file_paths": ["poem.md"]}),
        ),
        4 => (
            format!("{QUALITY}submit_checklist"),
            json!({"scores": {"E1": 6, "E2": 5}}),
        ),
        5 => (
            format!("{WORKFLOW}new_answer"),
            json!({"answer": "second draft", "file_paths": ["poem.md"]}),
        ),
        _ => (String::new(), Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_claude_cli_is_stopped_by_the_cost_budget() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    let script = budget_script(project.join("poem.md").display().to_string());
    let ids = AtomicUsize::new(0);
    harness.server.route(move |request: &RecordedRequest| {
        let turn = request.body["messages"].as_array().map_or(0, |messages| {
            messages.iter().filter(|m| m["role"] == "assistant").count()
        });
        // Claude Code appends a turn to its transcript asynchronously, so under load the
        // spend a tool measures can lag a turn behind: the model keeps asking for a new round
        // (at most twice more) until one is refused.
        let refused = tool_results(&request.body)
            .last()
            .is_some_and(|(is_error, text)| *is_error && text.contains("cost_budget_reached"));
        let (name, arguments) = match turn {
            6 | 7 if !refused => script(5),
            6.. => (String::new(), Value::Null),
            _ => script(turn),
        };
        let reply = if name.is_empty() {
            Reply::text("Stopped: the cost budget is spent.")
        } else {
            Reply::tool_calls(vec![ToolCallSpec {
                id: format!("toolu_budget_{:04}", ids.fetch_add(1, Ordering::Relaxed)),
                name,
                arguments,
            }])
        };
        Some(reply.with_usage(200_000, 0, 2_000))
    });
    let allowed = [
        "Write".to_owned(),
        format!("{QUALITY}init_session"),
        format!("{QUALITY}generate_eval_criteria"),
        format!("{QUALITY}submit_checklist"),
        format!("{WORKFLOW}new_answer"),
    ]
    .join(",");
    let command = harness.claude(&[
        "-p",
        "Write a haiku about Rust in poem.md, refining it within a $3 budget",
        "--model",
        PRICED_MODEL,
        "--output-format",
        "json",
        "--session-id",
        CLAUDE_SESSION,
        "--allowedTools",
        &allowed,
    ]);
    let output = run(command, Duration::from_mins(4)).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    record_transcript(&harness.transcript(CLAUDE_SESSION), "cost-budget");
    let requests = harness.server.model_requests();
    let last = &requests
        .iter()
        .rfind(|request| !request.tool_names().is_empty())
        .unwrap()
        .body;
    let results = tool_results(last);
    assert!((6..=8).contains(&results.len()), "{results:#?}");
    // Turns 1–3 after init_session cost about $1.9: the first answer is taken.
    assert!(!results[3].0, "first new_answer: {}", results[3].1);
    // By turn 5 the loop has spent about $3.2 of $3: a new round is refused, at once or (when
    // the transcript lags) within two more turns.
    let last = results.last().unwrap();
    assert!(last.0, "the last new_answer was taken: {}", last.1);
    assert!(last.1.contains("cost_budget_reached"), "{}", last.1);
    assert!(last.1.contains("$3.0000 cost budget"), "{}", last.1);
}
