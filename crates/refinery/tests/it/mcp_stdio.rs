//! The spawned binary as an MCP server over real stdio.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::support::{BIN, Project, call, read_json};

#[tokio::test]
async fn a_whole_round_over_stdio() {
    let project = Project::new();
    project.write("site/index.html", b"<h1>draft</h1>");
    let client = project.mcp("all").await;
    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("refinery")
    );

    let (error, session) = call(
        &client,
        "init_session",
        json!({"label": "landing page", "max_rounds": 3}),
    )
    .await;
    assert!(!error, "{session}");
    let id = session["session_id"].as_str().unwrap().to_owned();
    assert!(id.ends_with("_landing-page"), "{id}");

    let criteria = json!({"criteria": [
        {"id": "E1", "text": "The page states what the product does in one sentence", "category": "primary",
         "anti_patterns": ["buzzwords"], "verify_by": "read the hero"},
        {"id": "E2", "text": "It renders without errors"},
        {"id": "E3", "text": "Copy is specific", "category": "stretch"},
    ]});
    let (error, stored) = call(&client, "generate_eval_criteria", criteria).await;
    assert!(!error, "{stored}");
    assert_eq!(stored["warnings"], json!([]));

    let (error, answer) = call(
        &client,
        "new_answer",
        json!({"answer": "first draft", "file_paths": ["site"]}),
    )
    .await;
    assert!(!error, "{answer}");
    assert_eq!(answer["snapshots"], json!(["site/index.html"]));

    let (error, verdict) = call(
        &client,
        "submit_checklist",
        json!({"scores": {"E1": 4, "E2": 9, "E3": {"score": 6, "reasoning": "generic"}}}),
    )
    .await;
    assert!(!error, "{verdict}");
    assert_eq!(verdict["verdict"], "iterate");
    assert_eq!(verdict["failed_criteria"], json!(["E1", "E3"]));

    let (error, refused) = call(
        &client,
        "propose_improvements",
        json!({"improvements": {"E1": ["reword"]}}),
    )
    .await;
    assert!(error);
    assert_eq!(refused["missing_criteria"], json!(["E3"]));

    let (error, plan) = call(
        &client,
        "propose_improvements",
        json!({"improvements": {"E1": [{"plan": "lead with the outcome", "impact": "structural"}], "E3": ["name real customers"]}}),
    )
    .await;
    assert!(!error, "{plan}");

    project.write("site/index.html", b"<h1>Ship reviewed code in a day</h1>");
    let (_, second) = call(
        &client,
        "new_answer",
        json!({"answer": "second", "file_paths": ["site"]}),
    )
    .await;
    assert_eq!(second["round"], 2);
    let (_, done) = call(
        &client,
        "submit_checklist",
        json!({"scores": {"E1": 8, "E2": 9, "E3": 7}}),
    )
    .await;
    assert_eq!(done["verdict"], "converge");
    assert_eq!(done["submission"], json!({"round": 2, "revision": 1}));

    let (error, vote) = call(
        &client,
        "vote",
        json!({"choice": "round_002", "reasoning": "converged"}),
    )
    .await;
    assert!(!error, "{vote}");
    client.cancel().await.unwrap();

    let session_dir = project.state.join("sessions").join(&id);
    let state = read_json(&session_dir.join("state.json"));
    assert_eq!(state["round"], 2);
    let events = fs_err::read_to_string(session_dir.join("events.jsonl")).unwrap();
    // init_session (with the scope), then one record per write call.
    assert_eq!(events.lines().count(), 8);
}

#[tokio::test]
async fn each_server_offers_only_its_tools() {
    let project = Project::new();
    for (server, expected) in [
        (
            "quality",
            vec![
                "draft_approach",
                "generate_eval_criteria",
                "init_session",
                "propose_improvements",
                "reset_evaluation",
                "submit_checklist",
            ],
        ),
        ("workflow", vec!["new_answer", "vote"]),
        ("media", vec!["generate_media", "read_media"]),
        (
            "all",
            vec![
                "draft_approach",
                "generate_eval_criteria",
                "generate_media",
                "init_session",
                "new_answer",
                "propose_improvements",
                "read_media",
                "reset_evaluation",
                "submit_checklist",
                "vote",
            ],
        ),
    ] {
        let client = project.mcp(server).await;
        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        assert_eq!(names, expected);
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn tool_errors_over_stdio_carry_codes_and_next_steps() {
    let project = Project::new();
    let client = project.mcp("quality").await;
    let (error, body) = call(&client, "submit_checklist", json!({"scores": {"E1": 7}})).await;
    assert!(error);
    assert_eq!(body["code"], "no_criteria");
    call(
        &client,
        "generate_eval_criteria",
        json!({"criteria": [{"id": "E1", "text": "a"}]}),
    )
    .await;
    let (error, body) = call(
        &client,
        "submit_checklist",
        json!({"scores": {"E1": "high"}}),
    )
    .await;
    assert!(error);
    assert_eq!(body["code"], "invalid_scores");
    assert!(body["error"].as_str().unwrap().contains("whole number"));
    client.cancel().await.unwrap();
}

/// Claude Code falls back to the 2025-11-25 `initialize` handshake for servers that do not
/// answer `server/discover`; speak it by hand, line by line, as a legacy client would.
#[test]
fn legacy_initialize_handshake_over_raw_stdio() {
    let project = Project::new();
    let mut child = std::process::Command::new(BIN)
        .args(["mcp", "all"])
        .current_dir(&project.workspace)
        .env_remove("REFINERY_STATE_DIR")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let send = |stdin: &mut std::process::ChildStdin, message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };
    let receive = |stdout: &mut BufReader<std::process::ChildStdout>| {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "legacy", "version": "1"}}}),
    );
    let init = receive(&mut stdout);
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "refinery");
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "vote", "arguments": {"choice": "agent2", "reasoning": "best"}}}),
    );
    let vote = receive(&mut stdout);
    assert_eq!(vote["id"], 2);
    assert_eq!(
        vote["result"]["structuredContent"]["arguments"],
        json!({"choice": "agent2", "reasoning": "best"})
    );
    drop(stdin);
    // The server exits on its own once stdin closes.
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn state_dir_flag_and_session_pin_are_honoured() {
    let project = Project::new();
    let elsewhere = project.workspace.parent().unwrap().join("elsewhere");
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["mcp", "quality", "--state-dir"])
        .arg(&elsewhere)
        .args(["--session", "pinned-1"])
        .current_dir(&project.workspace)
        .env_remove("REFINERY_STATE_DIR")
        .env_remove("REFINERY_SESSION")
        .env_remove("CLAUDE_CODE_SESSION_ID");
    let transport = rmcp::transport::TokioChildProcess::new(command).unwrap();
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();
    let (error, body) = call(
        &client,
        "generate_eval_criteria",
        json!({"criteria": [{"id": "E1", "text": "a"}]}),
    )
    .await;
    assert!(!error, "{body}");
    assert!(elsewhere.join("sessions/pinned-1/criteria.json").exists());
    assert!(!project.state.exists());
    client.cancel().await.unwrap();

    let bad = project
        .command()
        .args(["mcp", "quality", "--session", "../x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid session id"), "{stderr}");
}

/// Claude Code 2.1.330 probes with `server/discover` (MCP 2026-07-28) and then stays
/// stateless; make sure that path works end to end too.
#[tokio::test]
async fn modern_discover_lifecycle_over_stdio() {
    use rmcp::model::ProtocolVersion;
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};

    let project = Project::new();
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["mcp", "all"])
        .current_dir(&project.workspace)
        .env_remove("REFINERY_STATE_DIR")
        .env_remove("REFINERY_SESSION")
        .env_remove("CLAUDE_CODE_SESSION_ID");
    let transport = rmcp::transport::TokioChildProcess::new(command).unwrap();
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let (error, body) = call(&client, "init_session", json!({"label": "modern"})).await;
    assert!(!error, "{body}");
    assert!(body["session_id"].as_str().unwrap().ends_with("_modern"));
    client.cancel().await.unwrap();
}
