//! The real Claude Code CLI with `plugin/` against the fake, for the multi-model skills:
//! `/refinery:refine … --eval-backends A B` judges a round with a blind panel through
//! `refinery evaluate` (our panel and quorum code), and `/refinery:massgen-run` gets a winner
//! from `refinery run`. Claude Code is scripted to do what each skill's text says, with only
//! the skill's own `allowed-tools`; the models our commands start are played by the same fake,
//! told apart from Claude Code by their role prompt. Assertions are on what our code recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pretty_assertions::assert_eq;
use refinery_testkit::{RecordedRequest, Reply};
use serde_json::{Value, json};

use crate::claude_code::{
    ClaudeHarness, Step, plugin_dir, run, text, tool, tool_result_texts as tool_results,
};
use crate::support::read_json;

const QUALITY: &str = "mcp__plugin_refinery_quality__";
const WORKFLOW: &str = "mcp__plugin_refinery_workflow__";
const RUN_TIMEOUT: Duration = Duration::from_mins(5);
/// The two panel judges and what each scores E1–E3.
const JUDGES: [(&str, [u8; 3]); 2] = [
    ("anthropic/claude-haiku-4-5", [9, 8, 4]),
    ("anthropic/claude-opus-4-5", [6, 9, 8]),
];

/// The `allowed-tools` of a skill's front matter, as `--allowedTools` takes them.
fn skill_allowed_tools(skill: &str) -> String {
    let path = plugin_dir().join(format!("skills/{skill}/SKILL.md"));
    let text = fs_err::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("allowed-tools:"))
        .unwrap_or_else(|| panic!("{skill} has no allowed-tools"));
    line.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

/// The JSON object in a tool result (our tools answer with one; Bash output may carry lines
/// around it).
fn object_in(text: &str) -> Value {
    let start = text.find('{').unwrap_or(0);
    let end = text.rfind('}').map_or(text.len(), |end| end + 1);
    serde_json::from_str(&text[start..end]).unwrap_or(Value::Null)
}

/// Whether a request is one of Claude Code's own turns (not a model `refinery` started: those
/// open their system prompt with our role heading).
fn is_claude_code(request: &RecordedRequest) -> bool {
    !crate::run::system_text(request).starts_with("# Role: ")
}

/// A panel judge's reply: the scores `JUDGES` gives it, by the model the request names.
fn judge_reply(request: &RecordedRequest) -> Reply {
    let model = request.model();
    let (_, scores) = JUDGES
        .iter()
        .find(|(name, _)| name.rsplit('/').next() == Some(model.as_str()))
        .unwrap_or_else(|| panic!("an unexpected judge {model}"));
    Reply::text(crate::refine::evaluation(
        *scores,
        &format!("{model} read index.html"),
    ))
}

/// Claude Code following `/refinery:refine … --eval-backends`: one round, judged by the panel.
fn panel_script(project: &Path) -> impl Fn(usize, &Value) -> Step + Send + Sync + use<> {
    let page = project.join("index.html").display().to_string();
    move |turn, body| {
        let results = tool_results(body);
        match turn {
            0 => tool(
                &format!("{QUALITY}init_session"),
                json!({"label": "landing page", "max_rounds": 1}),
            ),
            1 => tool(
                &format!("{QUALITY}generate_eval_criteria"),
                json!({"criteria": [
                    {"id": "E1", "text": "The first heading states the outcome", "category": "primary", "verify_by": "read the h1"},
                    {"id": "E2", "text": "Every claim carries a number", "verify_by": "read each claim"},
                    {"id": "E3", "text": "The page loads without errors", "category": "stretch", "verify_by": "open it"}
                ]}),
            ),
            2 => tool(
                "Write",
                json!({"file_path": page, "content": "<h1>Ship in half the time</h1>\n<p>40% fewer bugs.</p>\n"}),
            ),
            3 => tool(
                &format!("{WORKFLOW}new_answer"),
                json!({"answer": "first page", "file_paths": ["index.html"]}),
            ),
            4 => {
                let session_dir = object_in(&results[0])["session_dir"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let command = format!(
                    "refinery evaluate index.html --task \"A landing page\" --criteria-file {session_dir}/criteria.json --evaluator {} --evaluator {} --yes --json",
                    JUDGES[0].0, JUDGES[1].0
                );
                tool("Bash", json!({"command": command, "timeout": 240_000}))
            }
            5 => {
                let panel = object_in(&results[4]);
                tool(
                    &format!("{QUALITY}submit_checklist"),
                    json!({"panel_session": panel["session"]}),
                )
            }
            _ => {
                let verdict = object_in(results.last().map_or("", String::as_str));
                Step::Text(format!(
                    "Verdict {} in round {}.",
                    verdict["verdict"].as_str().unwrap_or("none"),
                    verdict["round"]
                ))
            }
        }
    }
}

async fn claude_skill(harness: &ClaudeHarness, prompt: &str, skill: &str) -> Value {
    let allowed = skill_allowed_tools(skill);
    let command = harness.claude(&[
        "-p",
        prompt,
        "--output-format",
        "json",
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
    serde_json::from_str(&stdout).unwrap()
}

/// The newest main-conversation request (the one holding every tool result).
fn last_claude_request(harness: &ClaudeHarness) -> RecordedRequest {
    harness
        .server
        .model_requests()
        .into_iter()
        .rfind(|request| is_claude_code(request) && !request.tool_names().is_empty())
        .unwrap()
}

fn sessions_dir(harness: &ClaudeHarness) -> PathBuf {
    harness.context.state_dir().join("sessions")
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_backends_judges_the_round_with_our_blind_panel() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    let claude = panel_script(&project);
    harness.script_requests(move |turn, request| {
        if is_claude_code(request) {
            claude(turn, &request.body)
        } else {
            Step::Reply(judge_reply(request))
        }
    });
    let prompt = format!(
        "/refinery:refine \"A landing page in index.html\" --max-rounds 1 --eval-backends {} {}",
        JUDGES[0].0, JUDGES[1].0
    );
    let result = claude_skill(&harness, &prompt, "refine").await;
    let main = last_claude_request(&harness);
    let results = tool_results(&main.body);
    assert_eq!(results.len(), 6, "{results:#?}");
    assert!(
        main.body["messages"]
            .to_string()
            .contains("refinery evaluate <deliverable paths>"),
        "the skill's panel step reached the model"
    );

    // Both judges were asked, each once, blind: neither request holds the other's scores.
    let judges: Vec<RecordedRequest> = harness
        .server
        .model_requests()
        .into_iter()
        .filter(|request| crate::run::system_text(request).starts_with("# Role: round evaluator"))
        .collect();
    let mut models: Vec<String> = judges.iter().map(RecordedRequest::model).collect();
    models.sort();
    assert_eq!(models, ["claude-haiku-4-5", "claude-opus-4-5"]);
    for judge in &judges {
        assert!(!judge.body_text().contains("read index.html"), "blind");
    }

    // The panel's combined scores: per criterion the lower of the two (the CLI's rule).
    let panel = object_in(&results[4]);
    let combined = json!({"E1": 6, "E2": 8, "E3": 4});
    assert_eq!(panel["scores"], combined, "{panel}");

    // What our code recorded in the plugin's session: those scores, that report, our verdict.
    let verdict = object_in(&results[5]);
    assert_eq!(verdict["verdict"], "iterate", "{verdict}");
    let session =
        sessions_dir(&harness).join(object_in(&results[0])["session_id"].as_str().unwrap());
    let record = fs_err::read_to_string(session.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| event["op"] == "submit_checklist")
        .expect("submit_checklist was recorded");
    assert!(
        record["items"][0]["reasoning"]
            .as_str()
            .unwrap()
            .contains("index.html: observed for E1"),
        "{record}"
    );
    let recorded: Vec<(String, u64)> = record["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{record}"))
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_owned(),
                item["score"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("E1".to_owned(), 6),
            ("E2".to_owned(), 8),
            ("E3".to_owned(), 4)
        ],
        "{record}"
    );
    let report = record["report_path"].as_str().unwrap();
    assert!(report.ends_with("evaluation.md"), "{report}");
    assert!(
        fs_err::read_to_string(project.join(report))
            .unwrap()
            .contains("claude-")
    );
    assert_eq!(result["result"], "Verdict iterate in round 1.", "{result}");
}

/// Claude Code following `/refinery:massgen-run`: one Bash call, then the summary's winner.
fn massgen_script(turn: usize, body: &Value) -> Step {
    if turn == 0 {
        let models: Vec<&str> = crate::run::MODELS.iter().map(|(model, _)| *model).collect();
        let command = format!(
            "refinery run \"Write a one-page plan\" --models {} --criteria \"{}\" --yes --json",
            models.join(" "),
            crate::refine::CRITERIA
        );
        return tool("Bash", json!({"command": command, "timeout": 240_000}));
    }
    let output = tool_results(body).pop().unwrap_or_default();
    let summary = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "summary")
        .unwrap_or(Value::Null);
    let winner = &summary["winner"];
    text(&format!(
        "{}: agent {} revision {} ({}), {} of {} votes.",
        summary["status"]["status"].as_str().unwrap_or("no summary"),
        winner["winner"]["answer"]["agent"],
        winner["winner"]["answer"]["revision"],
        winner["model"].as_str().unwrap_or("?"),
        winner["winner"]["votes"],
        winner["winner"]["eligible"],
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn massgen_run_skill_gets_a_winner_from_refinery_run() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let script = crate::run::Script::three(crate::run::improve_then_agree, crate::run::flat_scores);
    harness.script_requests(move |turn, request| {
        if is_claude_code(request) {
            massgen_script(turn, &request.body)
        } else {
            Step::Reply(script.reply(request))
        }
    });
    let models: Vec<&str> = crate::run::MODELS.iter().map(|(model, _)| *model).collect();
    let prompt = format!(
        "/refinery:massgen-run \"Write a one-page plan\" --models {}",
        models.join(" ")
    );
    let result = claude_skill(&harness, &prompt, "massgen-run").await;
    assert_eq!(
        result["result"],
        "consensus: agent 2 revision 2 (anthropic/claude-haiku-4-5), 2 of 2 votes.",
        "{result}"
    );
    // The winner is in the project and the session's consensus file names it.
    assert_eq!(
        fs_err::read_to_string(harness.project().join("answer.md")).unwrap(),
        "# Plan\n\nPLAN-DELTA\n"
    );
    let sessions: Vec<PathBuf> = fs_err::read_dir(sessions_dir(&harness))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("consensus.json").is_file())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let consensus = read_json(&sessions[0].join("consensus.json"));
    assert_eq!(consensus["status"]["status"], "consensus", "{consensus}");
    assert_eq!(
        consensus["winner"]["winner"]["answer"],
        json!({"agent": 2, "revision": 2}),
        "{consensus}"
    );
    assert_eq!(consensus["rounds"].as_array().unwrap().len(), 2);
    // All three models answered and judged on the fake.
    let judged: std::collections::BTreeSet<String> = harness
        .server
        .model_requests()
        .iter()
        .filter(|request| crate::run::role(request) == "judge")
        .map(RecordedRequest::model)
        .collect();
    assert_eq!(judged.len(), 3, "{judged:?}");
}

/// The skill's fallback rests on this: a panel backend that cannot be used is an error that
/// names it and says what to do, before any model is asked or any session is written, so
/// the skill can drop it (or, with none left, fall back to the subagent) with nothing to undo.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_panel_backend_is_a_clear_error_that_leaves_no_session() {
    let server = refinery_testkit::FakeModelServer::start().await.unwrap();
    let run = crate::refine::Run::new(&server);
    run.context
        .write("project/index.html", "<h1>Ship in half the time</h1>\n")
        .unwrap();
    let output = run
        .refinery(&[
            "evaluate",
            "index.html",
            "--criteria",
            crate::refine::CRITERIA,
            "--evaluator",
            JUDGES[0].0,
            "--evaluator",
            "openai/gpt-5",
            "--yes",
            "--json",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(server.model_requests().is_empty(), "no judge was asked");
    let sessions = run.context.state_dir().join("sessions");
    let written = fs_err::read_dir(&sessions).map_or(0, Iterator::count);
    assert_eq!(written, 0, "no session under {}", sessions.display());
}

/// `refinery evaluate` with the two judges of `JUDGES` on the fake, in `project`.
fn evaluate_panel(
    project: &crate::support::Project,
    server: &refinery_testkit::FakeModelServer,
    criteria: &[&str],
) -> Value {
    let mut command = project.command();
    command
        .env("ANTHROPIC_BASE_URL", server.url())
        .env(
            "ANTHROPIC_API_KEY",
            ["sk-ant-", "panel-test-", "0001"].concat(),
        )
        .env("HOME", project.workspace.parent().unwrap())
        .args(["evaluate", "index.html", "--task", "A landing page"])
        .args(criteria)
        .args(["--evaluator", JUDGES[0].0, "--evaluator", JUDGES[1].0])
        .args(["--yes", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = crate::claude_code::run_with_timeout(command, Duration::from_mins(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Exit 2: the panel found the work below the bar, which is still a finished evaluation.
    assert_eq!(
        output.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    object_in(&stdout)
}

/// `submit_checklist` with `panel_session` records only a panel that judged this loop's
/// criteria and exactly its submitted bytes; every refusal leaves the loop's round unscored.
#[tokio::test(flavor = "multi_thread")]
async fn submit_checklist_takes_a_panel_only_for_this_rounds_criteria_and_files() {
    use crate::support::{Project, call};
    let server = refinery_testkit::FakeModelServer::start().await.unwrap();
    server.route(|request| Some(judge_reply(request)));
    let project = Project::new();
    project.write("index.html", b"<h1>Ship in half the time</h1>\n");
    let client = project
        .mcp_for_claude("all", Some("5d9c1c6e-0000-4000-8000-0000000a11e1"))
        .await;
    let (_, session) = call(
        &client,
        "init_session",
        json!({"label": "panel", "max_rounds": 2}),
    )
    .await;
    let session_dir = PathBuf::from(session["session_dir"].as_str().unwrap());
    let criteria = json!({"criteria": [
        {"id": "E1", "text": "The first heading states the outcome", "category": "primary"},
        {"id": "E2", "text": "Every claim carries a number"},
        {"id": "E3", "text": "The page loads without errors", "category": "stretch"}
    ]});
    assert!(!call(&client, "generate_eval_criteria", criteria).await.0);
    let (error, answer) = call(
        &client,
        "new_answer",
        json!({"answer": "first page", "file_paths": ["index.html"]}),
    )
    .await;
    assert!(!error, "{answer}");
    let criteria_file = session_dir.join("criteria.json").display().to_string();
    let ours = ["--criteria-file", criteria_file.as_str()];
    let refused = |reply: &(bool, Value), wanted: &str| {
        assert!(reply.0, "{}", reply.1);
        assert!(reply.1.to_string().contains(wanted), "{}", reply.1);
        let state = read_json(&session_dir.join("state.json"));
        assert_eq!(state["round"], 0, "a refusal scores nothing: {state}");
    };

    // Other criteria than the loop's.
    let other = evaluate_panel(&project, &server, &["--criteria", crate::refine::CRITERIA]);
    let reply = call(
        &client,
        "submit_checklist",
        json!({"panel_session": other["session"]}),
    )
    .await;
    refused(&reply, "other criteria");
    // Other bytes than the submission's.
    project.write("index.html", b"<h1>Changed after new_answer</h1>\n");
    let changed = evaluate_panel(&project, &server, &ours);
    let reply = call(
        &client,
        "submit_checklist",
        json!({"panel_session": changed["session"]}),
    )
    .await;
    refused(&reply, "other files");
    // Scores typed in next to a panel.
    project.write("index.html", b"<h1>Ship in half the time</h1>\n");
    let panel = evaluate_panel(&project, &server, &ours);
    let both = json!({"panel_session": panel["session"], "scores": {"E1": 10, "E2": 10, "E3": 10}});
    refused(
        &call(&client, "submit_checklist", both).await,
        "leave scores out",
    );
    // No such panel.
    let missing = json!({"panel_session": "20990101_000000_nothing"});
    refused(
        &call(&client, "submit_checklist", missing).await,
        "20990101_000000_nothing",
    );

    // The panel of exactly this submission and criteria: its combined scores, recorded.
    let (error, verdict) = call(
        &client,
        "submit_checklist",
        json!({"panel_session": panel["session"]}),
    )
    .await;
    assert!(!error, "{verdict}");
    let scores: Vec<u64> = verdict["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["score"].as_u64().unwrap())
        .collect();
    assert_eq!(scores, [6, 8, 4]);
    assert_eq!(panel["scores"], json!({"E1": 6, "E2": 8, "E3": 4}));
    assert!(
        verdict["report_path"]
            .as_str()
            .unwrap()
            .ends_with("evaluation.md"),
        "{verdict}"
    );
    client.cancel().await.unwrap();
}
