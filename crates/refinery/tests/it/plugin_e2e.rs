//! The real Claude Code CLI loading `plugin/` against `refinery-testkit`'s fake model server:
//! its SessionStart hook, its MCP servers (this build of `refinery`), and `/refinery:refine`
//! driven by `skill_model`, a model that takes each step only when the skill or a subagent
//! prompt asks for it. Assertions are on the files our servers and the subagents wrote.

use std::path::Path;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::claude_code::{ClaudeHarness, plugin_dir, record_transcript, run, text, tool};
use crate::skill_model;
use crate::support::read_json;

const QUALITY: &str = "mcp__plugin_refinery_quality__";
const WORKFLOW: &str = "mcp__plugin_refinery_workflow__";
/// Real CLI start-up plus about sixty model turns over six subagents; generous for a loaded
/// 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_mins(6);

fn git_init(dir: &Path) {
    let status = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
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

/// The ops our servers journalled, in order.
fn journal_ops(session: &Path) -> Vec<String> {
    fs_err::read_to_string(session.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["op"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Which role prompt a request carries, if any.
fn role_of(request: &refinery_testkit::RecordedRequest) -> Option<&'static str> {
    let system = request.body["system"].to_string();
    [
        "criteria writer",
        "builder",
        "regression guard",
        "round evaluator",
        "execution trace analyzer",
    ]
    .into_iter()
    .find(|role| system.contains(&format!("# Role: {role}")))
}

/// Tool results that came back as errors, anywhere in the run: (tool_use_id, text).
fn failed_calls(requests: &[refinery_testkit::RecordedRequest]) -> Vec<(String, String)> {
    let mut failed: Vec<(String, String)> = requests
        .iter()
        .filter_map(|request| request.body["messages"].as_array())
        .flatten()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result" && block["is_error"] == true)
        .map(|block| {
            (
                block["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                block["content"].to_string(),
            )
        })
        .collect();
    failed.sort();
    failed.dedup();
    failed
}

/// `/refinery:refine` in one `claude -p` run, with the skill's own `allowed-tools`, against a
/// model that takes each step only when the skill or subagent prompt asks for it
/// (`skill_model`): criteria from the criteria-writer subagent, a builder subagent, output
/// verification, `new_answer`, round-evaluator and execution-trace-analyzer launched in one
/// message, `submit_checklist`, `propose_improvements`, learnings, the handoff, plan mode
/// (refused in a non-interactive run, so round 2 continues in this context from the handoff
/// alone), the regression guard, convergence computed by the tools, and the final report.
#[tokio::test(flavor = "multi_thread")]
async fn refine_skill_drives_two_rounds_through_its_subagents() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    git_init(&project);
    let claude_session = "5d9c1c6e-0000-4000-8000-00000000e2e1";
    let violations = skill_model::install(&harness.server, &project);
    let prompt = format!("/refinery:refine \"{}\" --max-rounds 3", skill_model::TASK);
    let command = harness.claude(&[
        "-p",
        &prompt,
        "--output-format",
        "json",
        "--session-id",
        claude_session,
    ]);
    let output = run(command, RUN_TIMEOUT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        violations.list(),
        Vec::<String>::new(),
        "a step was taken without the instruction that asks for it\nstdout: {stdout}"
    );
    assert!(
        output.status.success(),
        "claude failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).unwrap();
    record_transcript(&harness.transcript(claude_session), "refine-loop");
    let report = result["result"].as_str().unwrap_or_default();
    assert!(
        report.starts_with(&format!("{} 2", skill_model::FINAL_REPORT)),
        "{result}"
    );
    let requests = harness.server.model_requests();
    check_run_files(&harness, claude_session, report);
    check_subagents(&requests);
    let failed = failed_calls(&requests);
    assert!(
        failed.iter().all(|(id, _)| id.starts_with("toolu_plan_mode_") || id.starts_with("toolu_exit_plan_")),
        "only plan mode may be refused in a non-interactive run: {failed:#?}"
    );
}

/// What the loop left on disk: the journal, criteria, both rounds' reviews, the handoff, the
/// restored previous round, and the final poem.
fn check_run_files(harness: &ClaudeHarness, claude_session: &str, report: &str) {
    let state = harness.context.state_dir();
    let binding = read_json(&state.join(format!("claude_sessions/{claude_session}.json")));
    let session_id = binding["refinery_session"].as_str().unwrap().to_owned();
    assert!(session_id.ends_with("_rust-haiku"), "{session_id}");
    assert!(
        report.contains(&format!("refinery session show {session_id}")),
        "{report}"
    );
    let session = state.join("sessions").join(&session_id);
    assert_eq!(
        journal_ops(&session),
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
    assert_eq!(
        read_json(&session.join("session.json"))["settings"]["max_rounds"],
        3
    );
    let criteria = read_json(&session.join("criteria.json"));
    let criteria = criteria.as_array().unwrap();
    assert_eq!(criteria.len(), 3, "the criteria-writer's three criteria");
    assert!(
        criteria[0]["text"].as_str().unwrap().contains("5, 7 and 5"),
        "{criteria:?}"
    );
    let round_1 = session.join("round_001");
    let round_2 = session.join("round_002");
    for file in [
        "critique_packet.md",
        "verdict.json",
        "next_tasks.json",
        "trace_analysis.md",
    ] {
        assert!(
            round_1.join("evaluation").join(file).is_file(),
            "round 1 {file}"
        );
    }
    for file in ["critique_packet.md", "verdict.json", "trace_analysis.md"] {
        assert!(
            round_2.join("evaluation").join(file).is_file(),
            "round 2 {file}"
        );
    }
    assert!(round_1.join("plan.json").is_file());
    assert!(round_1.join(".scratch/verification/notes.md").is_file());
    let handoff = fs_err::read_to_string(round_1.join("handoff.md")).unwrap();
    assert!(
        handoff.contains(&format!("Session id: {session_id}")),
        "{handoff}"
    );
    assert!(
        fs_err::read_to_string(session.join("learnings.md"))
            .unwrap()
            .contains("DON'T")
    );
    assert_eq!(
        fs_err::read_to_string(session.join("guard/previous/poem.md")).unwrap(),
        skill_model::DRAFT,
        "the regression guard compared against the restored round 1"
    );
    assert!(session.join("guard/scratch/verdict.json").is_file());
    assert_eq!(
        fs_err::read_to_string(skill_model::poem(&harness.project())).unwrap(),
        skill_model::REVISION,
        "round 2 carried out the handoff's plan"
    );
    assert!(
        !session.join("round_003").exists(),
        "converged, no third round"
    );
    let state_json = read_json(&session.join("state.json"));
    assert_eq!(state_json["round"], 2);
    assert_eq!(state_json["last_result"]["verdict"], "converge");
    // environment.json from the hook: the fake key by name, never its value.
    let environment_text = fs_err::read_to_string(state.join("environment.json")).unwrap();
    assert!(
        !environment_text.contains(refinery_testkit::agent_cli::FAKE_KEY),
        "{environment_text}"
    );
}

/// Each subagent ran with its own role prompt, and the two reviewers of a round ran at once.
fn check_subagents(requests: &[refinery_testkit::RecordedRequest]) {
    let roles: Vec<Option<&str>> = requests.iter().map(role_of).collect();
    for role in [
        "criteria writer",
        "builder",
        "regression guard",
        "round evaluator",
        "execution trace analyzer",
    ] {
        assert!(roles.contains(&Some(role)), "no {role} subagent ran");
    }
    // Round 1's reviewers: each one's first request came before the other's last.
    let positions = |role: &str| -> Vec<usize> {
        roles
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == Some(role))
            .map(|(i, _)| i)
            .take(3)
            .collect()
    };
    let evaluator = positions("round evaluator");
    let analyzer = positions("execution trace analyzer");
    assert!(
        evaluator[0] < *analyzer.last().unwrap() && analyzer[0] < *evaluator.last().unwrap(),
        "the reviewers ran one after the other: evaluator {evaluator:?}, analyzer {analyzer:?}"
    );
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

/// The same loop as an interactive session started by `refinery tmux launch`, in Claude
/// Code's own default permission mode ("auto"): round 1 ends in plan mode with the skill's
/// continuation plan, the watcher chooses "Yes, clear context", and round 2 starts in a
/// fresh context that holds only that plan: the model runs the skill with `--continue`,
/// resumes the session, reads the handoff the plan names, and converges.
///
/// In auto mode each tool call that is not a read or a working-folder edit waits for the
/// API's server-side review (`safeguard_results`), which the fake serves as the real API
/// does (`refinery_testkit::safeguard`). Interactive Claude Code 2.1.330 also runs every
/// subagent in the background: the model ends its turn until each one reports, and subagents
/// report through `SubagentHandback` when told to, which reaches the main conversation as a
/// message from their agent id (`skill_model`).
#[tokio::test(flavor = "multi_thread")]
async fn refine_skill_crosses_a_cleared_context_under_tmux() {
    use crate::tmux_watch::{Server, has_tmux, skip_first_run_screens, wait_for};

    if !has_tmux() {
        return;
    }
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    git_init(&project);
    skip_first_run_screens(&harness);
    let violations = skill_model::install(&harness.server, &project);
    let server = Server(
        project
            .parent()
            .unwrap()
            .join("tmux.sock")
            .display()
            .to_string(),
    );
    let claude_session = "5d9c1c6e-0000-4000-8000-00000000e2e2";
    let prompt = format!("/refinery:refine \"{}\" --max-rounds 3", skill_model::TASK);
    let plugin = plugin_dir().display().to_string();
    let mut launch = harness.command(
        Path::new(crate::support::BIN),
        &[
            "tmux",
            "launch",
            "--no-attach",
            "--socket",
            &server.0,
            "--session",
            "loop",
            "--",
            "--session-id",
            claude_session,
            "--plugin-dir",
            &plugin,
            &prompt,
        ],
    );
    launch.env("REFINERY_CLAUDE_BIN", &harness.claude);
    let output = run(launch, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{output:?}");
    let pane = server
        .tmux(&["list-panes", "-t", "=loop:0", "-F", "#{pane_id}"])
        .trim()
        .to_owned();
    let screen = || server.tmux(&["capture-pane", "-p", "-J", "-t", &pane]);
    let state = harness.context.state_dir();
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while !screen().contains(skill_model::FINAL_REPORT) {
        let shown = screen();
        assert!(
            std::time::Instant::now() < deadline
                && violations.list().is_empty()
                && !shown.contains("Do you want to proceed?")
                && !shown.contains("Auto mode can't check actions"),
            "no final report within {RUN_TIMEOUT:?}; violations: {:#?}\nthe pane shows:\n{}",
            violations.list(),
            screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(violations.list(), Vec::<String>::new());
    wait_for("the watcher's report", || {
        server
            .tmux(&["capture-pane", "-p", "-J", "-t", "=loop:refinery-watch"])
            .contains("dialog 1: chose \"Yes, clear context\" (press 1)")
    });
    let bindings: Vec<Value> = fs_err::read_dir(state.join("claude_sessions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| read_json(&path))
        .collect();
    let cleared = bindings.iter().find(|b| b["source"] == "clear").unwrap();
    assert_eq!(cleared["inherited_from"], claude_session, "{bindings:#?}");
    // The report as Claude Code recorded it (the pane may wrap it around a side panel).
    let transcript = std::path::PathBuf::from(cleared["transcript_path"].as_str().unwrap());
    let mut report = String::new();
    wait_for(
        "the final report in the cleared session's transcript",
        || {
            report = final_report(&transcript).unwrap_or_default();
            !report.is_empty()
        },
    );
    let requests = harness.server.model_requests();
    check_run_files(&harness, claude_session, &report);
    check_subagents(&requests);
    assert!(
        requests.iter().any(|request| {
            request.body["safeguards"][0]["classifier_context"]["permission_mode"] == "auto"
        }),
        "round 2 ran in auto mode, its tool calls reviewed by the (fake) API"
    );
    server.tmux(&["kill-server"]);
}

/// The assistant's text that starts with the final report's words, from a transcript.
fn final_report(transcript: &Path) -> Option<String> {
    let text = fs_err::read_to_string(transcript).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["type"] == "assistant")
        .flat_map(|record| {
            record["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|block| block["text"].as_str().map(str::to_owned))
        .find(|text| text.starts_with(skill_model::FINAL_REPORT))
}
