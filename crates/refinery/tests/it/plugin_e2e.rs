//! The real Claude Code CLI loading `plugin/` against `refinery-testkit`'s fake model server:
//! its SessionStart hook, its MCP servers (this build of `refinery`), and `/refinery:refine`
//! driven by a scripted model that calls our tools in the order the refine skill prescribes.
//! Assertions are on the files our servers wrote.

use std::path::Path;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::claude_code::{ClaudeHarness, Step, plugin_dir, record_transcript, run, text, tool};
use crate::support::read_json;

const QUALITY: &str = "mcp__plugin_refinery_quality__";
const WORKFLOW: &str = "mcp__plugin_refinery_workflow__";
/// Real CLI start-up plus a dozen model turns; generous for a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_mins(4);

fn git_init(dir: &Path) {
    let status = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The tool calls of `/refinery:refine`, round by round, as the skill lays them out.
fn refine_script(workspace: &Path) -> impl Fn(usize, &Value) -> Step + Send + Sync + use<> {
    let poem = workspace.join("poem.md").display().to_string();
    move |turn, _body| match turn {
        0 => tool(
            &format!("{QUALITY}init_session"),
            json!({"label": "rust haiku", "max_rounds": 2}),
        ),
        1 => tool(
            &format!("{QUALITY}generate_eval_criteria"),
            json!({"criteria": [
                {"id": "E1", "text": "It is a real haiku: three lines of 5, 7 and 5 syllables", "category": "primary", "verify_by": "count syllables per line"},
                {"id": "E2", "text": "It is about Rust and says something specific about it", "verify_by": "read it"},
                {"id": "E3", "text": "The imagery is fresh, not a cliché", "category": "stretch", "verify_by": "read it aloud"}
            ]}),
        ),
        2 => tool(
            "Write",
            json!({"file_path": poem, "content": "Rust is very safe\nThe borrow checker is strict\nI like it a lot\n"}),
        ),
        3 => tool(
            &format!("{WORKFLOW}new_answer"),
            json!({"answer": "first draft", "file_paths": ["poem.md"]}),
        ),
        4 => tool(
            &format!("{QUALITY}submit_checklist"),
            json!({"scores": {"E1": {"score": 8, "reasoning": "5-7-5"}, "E2": {"score": 5, "reasoning": "generic"}, "E3": {"score": 3, "reasoning": "flat"}}}),
        ),
        5 => tool(
            &format!("{QUALITY}propose_improvements"),
            json!({"improvements": {
                "E2": [{"plan": "anchor the poem in one concrete Rust moment: a lifetime error at night", "impact": "structural"}],
                "E3": [{"plan": "replace statements with one image", "impact": "transformative"}]
            }, "preserve": {"E1": "keep the 5-7-5 form"}}),
        ),
        6 => tool(
            "Write",
            json!({"file_path": poem, "content": "Midnight, the compiler\nrefuses my borrowed promise\nthe lifetime outlives\n"}),
        ),
        7 => tool(
            &format!("{WORKFLOW}new_answer"),
            json!({"answer": "concrete image", "file_paths": ["poem.md"]}),
        ),
        8 => tool(
            &format!("{QUALITY}submit_checklist"),
            json!({"scores": {"E1": {"score": 7, "reasoning": "6-7-5, close"}, "E2": {"score": 8, "reasoning": "specific"}, "E3": {"score": 8, "reasoning": "fresh"}}}),
        ),
        // A model that ignores the verdict and tries a third round is stopped by the tools.
        9 => tool(
            &format!("{WORKFLOW}new_answer"),
            json!({"answer": "one more", "file_paths": ["poem.md"]}),
        ),
        _ => text("Converged after round 2; the round cap stopped a third round."),
    }
}

fn allowed_tools() -> String {
    [
        "Write",
        "Read",
        &format!("{QUALITY}init_session"),
        &format!("{QUALITY}generate_eval_criteria"),
        &format!("{QUALITY}submit_checklist"),
        &format!("{QUALITY}propose_improvements"),
        &format!("{WORKFLOW}new_answer"),
    ]
    .join(",")
}

/// The tool results the model received, in order: (tool_use_id, is_error, text).
fn tool_results(body: &Value) -> Vec<(bool, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| {
            let text = match &block["content"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (block["is_error"] == true, text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn refine_skill_runs_the_loop_on_our_mcp_servers() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    git_init(&project);
    harness.script(refine_script(&project));
    let claude_session = "5d9c1c6e-0000-4000-8000-00000000e2e1";
    let prompt = "/refinery:refine \"Write a haiku about Rust in poem.md\" --max-rounds 2";
    let allowed = allowed_tools();
    let command = harness.claude(&[
        "-p",
        prompt,
        "--output-format",
        "json",
        "--session-id",
        claude_session,
        "--allowedTools",
        &allowed,
    ]);
    let output = run(command, RUN_TIMEOUT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "claude failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).unwrap();
    record_transcript(&harness.transcript(claude_session), "refine-loop");
    assert_eq!(
        result["result"], "Converged after round 2; the round cap stopped a third round.",
        "{result}"
    );

    // The model saw the skill body and our plugin's tools.
    let requests = harness.server.model_requests();
    let main = &requests
        .iter()
        .rfind(|request| !request.tool_names().is_empty())
        .unwrap()
        .body;
    let text = main["messages"].to_string();
    assert!(
        text.contains("Refinery: refine"),
        "the refine skill body reached the model"
    );
    let tool_names: Vec<&str> = main["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "init_session",
        "generate_eval_criteria",
        "submit_checklist",
        "propose_improvements",
    ] {
        assert!(
            tool_names.contains(&format!("{QUALITY}{name}").as_str()),
            "{tool_names:?}"
        );
    }
    assert!(
        tool_names.contains(&format!("{WORKFLOW}new_answer").as_str()),
        "{tool_names:?}"
    );

    // Every call but the last new_answer succeeded; that one hit the round cap.
    let results = tool_results(main);
    assert_eq!(results.len(), 10, "{results:#?}");
    for (index, (is_error, text)) in results.iter().enumerate() {
        if index == 9 {
            assert!(*is_error || text.contains("\"status\":\"error\""), "{text}");
            assert!(text.contains("max_rounds_reached"), "{text}");
        } else {
            assert!(!is_error, "call {index} failed: {text}");
        }
    }

    // The files our servers wrote.
    let state = harness.context.state_dir();
    let binding = read_json(&state.join(format!("claude_sessions/{claude_session}.json")));
    let session_id = binding["refinery_session"].as_str().unwrap().to_owned();
    assert!(session_id.ends_with("_rust-haiku"), "{session_id}");
    assert!(
        binding["transcript_path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{claude_session}.jsonl"))
    );
    let session = state.join("sessions").join(&session_id);
    assert_eq!(
        read_json(&session.join("session.json"))["settings"]["max_rounds"],
        2
    );
    assert_eq!(
        read_json(&session.join("criteria.json"))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let round_1 = read_json(&session.join("round_001/submission.json"));
    let round_2 = read_json(&session.join("round_002/submission.json"));
    assert_eq!(round_1["snapshot_paths"], json!(["poem.md"]));
    assert_ne!(
        round_1["files"][0]["hash"], round_2["files"][0]["hash"],
        "round 2 changed the poem"
    );
    assert!(session.join("round_001/plan.json").is_file());
    assert!(
        !session.join("round_003").exists(),
        "the cap refused round 3"
    );
    let state_json = read_json(&session.join("state.json"));
    assert_eq!(state_json["round"], 2);
    assert_eq!(state_json["last_result"]["verdict"], "converge");
    let ops: Vec<String> = fs_err::read_to_string(session.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["op"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ops,
        [
            "init_session",
            "generate_eval_criteria",
            "new_answer",
            "submit_checklist",
            "propose_improvements",
            "new_answer",
            "submit_checklist"
        ]
    );
    // environment.json from the hook: the fake key by name, never its value.
    let environment_text = fs_err::read_to_string(state.join("environment.json")).unwrap();
    assert!(
        !environment_text.contains(refinery_testkit::agent_cli::FAKE_KEY),
        "{environment_text}"
    );
    let environment: Value = serde_json::from_str(&environment_text).unwrap();
    let anthropic = environment["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "ANTHROPIC_API_KEY")
        .unwrap();
    assert_eq!(anthropic["present"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_claude_sessions_in_one_folder_get_separate_loops() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    git_init(&project);
    // Each run: init_session, then new_answer of its own file, then stop. The prompt's marker
    // tells the runs apart (the folder listing in the context names both files).
    harness.script(|turn, body| {
        let label = if body["messages"].to_string().contains("marker-7f3a") {
            "alpha"
        } else {
            "beta"
        };
        match turn {
            0 => tool(&format!("{QUALITY}init_session"), json!({"label": label})),
            1 => tool(
                &format!("{WORKFLOW}new_answer"),
                json!({"answer": label, "file_paths": [format!("{label}.txt")]}),
            ),
            _ => text("done"),
        }
    });
    fs_err::write(project.join("alpha.txt"), "a").unwrap();
    fs_err::write(project.join("beta.txt"), "b").unwrap();
    let sessions = [
        ("alpha", "5d9c1c6e-0000-4000-8000-0000000000a1", "7f3a"),
        ("beta", "5d9c1c6e-0000-4000-8000-0000000000b2", "9c1b"),
    ];
    let allowed = allowed_tools();
    // Both Claude Code processes run at the same time in the same folder.
    let runs: Vec<_> = sessions
        .iter()
        .map(|(label, id, marker)| {
            let prompt = format!("work on {label}, marker-{marker}");
            let command = harness.claude(&[
                "-p",
                &prompt,
                "--output-format",
                "json",
                "--session-id",
                id,
                "--allowedTools",
                &allowed,
            ]);
            tokio::spawn(run(command, RUN_TIMEOUT))
        })
        .collect();
    for handle in runs {
        let output = handle.await.unwrap();
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let state = harness.context.state_dir();
    let mut bound = Vec::new();
    for (label, id, _) in sessions {
        let binding = read_json(&state.join(format!("claude_sessions/{id}.json")));
        let session_id = binding["refinery_session"].as_str().unwrap().to_owned();
        assert!(session_id.ends_with(label), "{id} → {session_id}");
        let submission = read_json(
            &state
                .join("sessions")
                .join(&session_id)
                .join("round_001/submission.json"),
        );
        assert_eq!(
            submission["snapshot_paths"],
            json!([format!("{label}.txt")]),
            "{label}'s answer stayed in its own session"
        );
        assert_eq!(binding["source"], "startup");
        bound.push(session_id);
    }
    assert_ne!(bound[0], bound[1]);
}

/// The README's install path: register this checkout as a local marketplace and install the
/// plugin from it, offline, with a throwaway HOME.
#[tokio::test(flavor = "multi_thread")]
async fn the_checkout_installs_as_a_local_marketplace() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let repository_root = fs_err::canonicalize(plugin_dir())
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let root = repository_root.display().to_string();
    let added = harness
        .command(&harness.claude, &["plugin", "marketplace", "add", &root])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let installed = harness
        .command(&harness.claude, &["plugin", "install", "refinery@refinery"])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    let listed = harness
        .command(&harness.claude, &["plugin", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.contains("refinery@refinery"), "{listing}");
    assert!(listing.contains("enabled"), "{listing}");
}
