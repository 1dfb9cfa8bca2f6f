//! `refinery hook session-start` as Claude Code runs it, and the MCP servers it informs: two
//! Claude Code sessions in one folder keep separate loops, and a cleared context continues
//! its own loop only.

use std::io::Write as _;
use std::process::Stdio;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::support::{Project, call, read_json};

/// Runs the hook with `input` on stdin and `CLAUDE_PID`; returns its stdout.
pub(crate) fn run_hook(
    project: &Project,
    input: &Value,
    claude_pid: &str,
    home: &std::path::Path,
) -> String {
    let mut child = project
        .command()
        .args(["hook", "session-start"])
        .env("CLAUDE_PID", claude_pid)
        .env("CLAUDE_PROJECT_DIR", &project.workspace)
        .env("HOME", home)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-NEVER-PRINT-ME")
        // Hermetic: a `.git` above the temporary folder (some machines have one in /tmp)
        // must not count.
        .env(
            "GIT_CEILING_DIRECTORIES",
            project.workspace.parent().unwrap(),
        )
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn start(project: &Project, session: &str, source: &str) -> Value {
    json!({
        "session_id": session,
        "transcript_path": format!("/tmp/transcripts/{session}.jsonl"),
        "cwd": project.workspace,
        "hook_event_name": "SessionStart",
        "source": source,
    })
}

#[tokio::test]
async fn two_claude_sessions_in_one_folder_never_share_a_loop() {
    let project = Project::new();
    let home = project.workspace.parent().unwrap().join("home");
    fs_err::create_dir_all(&home).unwrap();
    fs_err::write(home.join(".env"), "GEMINI_API_KEY=g-NEVER-PRINT-ME\n").unwrap();
    project.write("a.txt", b"alpha");
    project.write("b.txt", b"beta");

    // Not a git repository yet: the hook says so, briefly, and nothing else.
    let out = run_hook(
        &project,
        &start(&project, "claude-a", "startup"),
        "4001",
        &home,
    );
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert!(
        reply["systemMessage"]
            .as_str()
            .unwrap()
            .contains("git init")
    );
    assert!(out.len() < 300, "hook output must stay short: {out}");
    fs_err::create_dir_all(project.workspace.join(".git")).unwrap();
    let out = run_hook(
        &project,
        &start(&project, "claude-b", "startup"),
        "4002",
        &home,
    );
    assert_eq!(out, "", "nothing to say in a git repository");

    // environment.json: key names and where they came from, never values.
    let environment = fs_err::read_to_string(project.state.join("environment.json")).unwrap();
    assert!(!environment.contains("NEVER-PRINT-ME"), "{environment}");
    let environment: Value = serde_json::from_str(&environment).unwrap();
    let key = |name: &str| {
        environment["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        key("ANTHROPIC_API_KEY")["source"],
        json!({"kind": "environment"})
    );
    assert_eq!(
        key("GEMINI_API_KEY")["source"],
        json!({"kind": "dot_env", "path": home.join(".env")})
    );
    assert_eq!(key("OPENAI_API_KEY")["present"], false);
    assert!(
        environment["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|backend| backend["name"] == "anthropic" && backend["usable"] == true)
    );

    let binding_a = read_json(&project.state.join("claude_sessions/claude-a.json"));
    assert_eq!(binding_a["claude_pid"], 4001);
    assert_eq!(
        binding_a["transcript_path"],
        "/tmp/transcripts/claude-a.jsonl"
    );
    assert_eq!(binding_a["refinery_session"], Value::Null);

    let server_a = project.mcp_for_claude("all", Some("claude-a")).await;
    let server_b = project.mcp_for_claude("all", Some("claude-b")).await;

    let (error, a) = call(
        &server_a,
        "init_session",
        json!({"label": "alpha", "max_rounds": 2}),
    )
    .await;
    assert!(!error, "{a}");
    let session_a = a["session_id"].as_str().unwrap().to_owned();

    // B never ran init_session: it must not fall into A's loop through the pointer file.
    let (error, refused) = call(
        &server_b,
        "new_answer",
        json!({"answer": "b", "file_paths": ["b.txt"]}),
    )
    .await;
    assert!(error, "{refused}");
    assert_eq!(refused["code"], "no_session", "{refused}");

    let (error, b) = call(&server_b, "init_session", json!({"label": "beta"})).await;
    assert!(!error, "{b}");
    let session_b = b["session_id"].as_str().unwrap().to_owned();
    assert_ne!(session_a, session_b);

    let (error, answer_a) = call(
        &server_a,
        "new_answer",
        json!({"answer": "a", "file_paths": ["a.txt"]}),
    )
    .await;
    assert!(!error, "{answer_a}");
    assert_eq!(answer_a["session_id"], session_a);
    let (error, answer_b) = call(
        &server_b,
        "new_answer",
        json!({"answer": "b", "file_paths": ["b.txt"]}),
    )
    .await;
    assert!(!error, "{answer_b}");
    assert_eq!(answer_b["session_id"], session_b);
    assert_eq!(answer_b["round"], 1, "B's round counter is its own");

    // "Yes, clear context" in process 4001 starts Claude Code session a2: the hook carries
    // A's loop over, and a server started for a2 continues it.
    let out = run_hook(
        &project,
        &start(&project, "claude-a2", "clear"),
        "4001",
        &home,
    );
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert!(
        reply["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap()
            .contains(&session_a),
        "{reply}"
    );
    let server_a2 = project.mcp_for_claude("all", Some("claude-a2")).await;
    let (error, again) = call(
        &server_a2,
        "new_answer",
        json!({"answer": "a, again", "file_paths": ["a.txt"]}),
    )
    .await;
    assert!(!error, "{again}");
    assert_eq!(again["session_id"], session_a);
    assert_eq!(again["revision"], 2, "a replacement of A's round 1");

    // A fresh Claude Code window in the same process id (pid reuse) starts clean.
    run_hook(
        &project,
        &start(&project, "claude-c", "startup"),
        "4001",
        &home,
    );
    let binding_c = read_json(&project.state.join("claude_sessions/claude-c.json"));
    assert_eq!(binding_c["refinery_session"], Value::Null);

    // After a clear in which the hook did not run, init_session can resume the loop by id.
    let server_d = project.mcp_for_claude("all", Some("claude-d")).await;
    let (error, resumed) = call(&server_d, "init_session", json!({"resume": session_b})).await;
    assert!(!error, "{resumed}");
    assert_eq!(resumed["session_id"], session_b);
    assert_eq!(resumed["max_rounds"], Value::Null);
    let binding_d = read_json(&project.state.join("claude_sessions/claude-d.json"));
    assert_eq!(binding_d["refinery_session"], session_b);

    for server in [server_a, server_b, server_a2, server_d] {
        server.cancel().await.unwrap();
    }
}

#[test]
fn bad_hook_input_is_reported_without_blocking_the_session() {
    let project = Project::new();
    for input in ["not json", "{\"session_id\": \"../escape\"}", "{}"] {
        let mut child = project
            .command()
            .args(["hook", "session-start"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{input}: {output:?}");
        let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
        let message = reply["systemMessage"].as_str().unwrap();
        assert!(message.starts_with("Refinery hook failed:"), "{message}");
        assert!(!project.state.join("claude_sessions").exists() || input != "not json");
    }
}
