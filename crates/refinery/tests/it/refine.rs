//! `refinery refine` and `refinery evaluate` end to end: the built binary, a real git
//! workspace, and API-model backends pointed at the fake model server on 127.0.0.1.
//!
//! The fake plays every role from what it is sent, not from a fixed queue: it tells roles
//! apart by their shared role prompt (`# Role: builder`, …), the builder writes files through
//! the workspace tools, and the scripted evaluator scores what the submitted files say. So a
//! test shows the loop reacting to the work, and the recorded requests show exactly what each
//! fresh call was given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, TestContext};
use serde_json::{Value, json};

pub(crate) use crate::fake_roles::role;
use crate::llm_support::text;

pub(crate) const MODEL: &str = "anthropic/claude-sonnet-4-5";
pub(crate) const CRITERIA: &str = "E1: The page states the product's outcome in its first heading, E2: Every claim is backed by a concrete number, E3: The page loads without errors";

/// The first user message of a request (the brief).
pub(crate) fn brief(request: &RecordedRequest) -> String {
    request
        .body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.first())
        .map(|message| match &message["content"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// The system prompt of an Anthropic Messages request (a string or text blocks).
fn system_text(request: &RecordedRequest) -> String {
    match &request.body["system"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn message_count(request: &RecordedRequest) -> usize {
    request
        .body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The round a builder brief is for (`# Round N of a Refinery loop`), 0 for fix/repair briefs.
pub(crate) fn builder_round(request: &RecordedRequest) -> u32 {
    let text = brief(request);
    text.split("# Round ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn evaluation(scores: [u8; 3], critique: &str) -> String {
    let mut map = serde_json::Map::new();
    for (index, score) in scores.iter().enumerate() {
        map.insert(
            format!("E{}", index + 1),
            json!({"score": score, "evidence": [format!("index.html: observed for E{}", index + 1)], "reasoning": format!("scored {score}")}),
        );
    }
    json!({
        "scores": map,
        "critique": critique,
        "improvement_spec": [{"criterion": "E1", "change": "lead with the measured outcome", "impact": "structural"}],
        "preserve": ["the colour palette"]
    })
    .to_string()
}

pub(crate) fn lessons() -> String {
    json!({"do": ["wrote the page in one pass"], "dont": [], "critical_errors": []}).to_string()
}

pub(crate) fn criteria_writer_reply() -> String {
    json!({"criteria": [
        {"text": "The first heading states the outcome", "category": "primary", "anti_patterns": ["a generic welcome"], "verify_by": "open index.html and read the h1"},
        {"text": "Claims carry numbers", "category": "standard", "anti_patterns": ["adjectives instead of figures"], "verify_by": "grep for digits in each claim"},
        {"text": "Loads without errors", "category": "stretch", "anti_patterns": ["broken markup"], "verify_by": "open it in a browser console"}
    ]})
    .to_string()
}

pub(crate) fn guard_tie() -> String {
    json!({"preferences": {"E1": "tie", "E2": "tie", "E3": "tie"}, "reasoning": "no real difference"}).to_string()
}

/// What the fake does for each role; `builder` maps a builder request to the content of
/// `index.html` it writes (or `None` to answer with a summary and stop).
pub(crate) struct Script {
    builder_content: Box<dyn Fn(&RecordedRequest) -> String + Send + Sync>,
    evaluator: Box<dyn Fn(&RecordedRequest) -> String + Send + Sync>,
    guard: Box<dyn Fn(&RecordedRequest) -> String + Send + Sync>,
    file: &'static str,
}

impl Script {
    pub(crate) fn simple(
        builder_content: impl Fn(&RecordedRequest) -> String + Send + Sync + 'static,
        evaluator: impl Fn(&RecordedRequest) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            builder_content: Box::new(builder_content),
            evaluator: Box::new(evaluator),
            guard: Box::new(|_| guard_tie()),
            file: "index.html",
        }
    }

    pub(crate) fn install(self, server: &FakeModelServer) {
        self.install_with_judge_delay(server, Duration::ZERO);
    }

    /// Like [`Script::install`], with every judge's reply (evaluator, guard, trace analyzer)
    /// held back by `delay`, so calls the loop makes in parallel are surely in flight together.
    pub(crate) fn install_with_judge_delay(self, server: &FakeModelServer, delay: Duration) {
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        let judge = move |reply: Reply| {
            if delay.is_zero() {
                usage(reply)
            } else {
                usage(reply).delayed(delay)
            }
        };
        server.route(move |request| {
            Some(match role(request) {
                "criteria" => usage(Reply::text(criteria_writer_reply())),
                "builder" if request.tool_results().is_empty() => usage(Reply::tool_call(
                    "write_file",
                    json!({"path": self.file, "content": (self.builder_content)(request)}),
                )),
                "builder" => usage(Reply::text(format!("Wrote {}", self.file))),
                "evaluator" => judge(Reply::text((self.evaluator)(request))),
                "guard" => judge(Reply::text((self.guard)(request))),
                "trace" => judge(Reply::text(lessons())),
                _ => Reply::status(400),
            })
        });
    }
}

pub(crate) struct Run {
    pub(crate) context: TestContext,
    pub(crate) env: BTreeMap<String, String>,
}

impl Run {
    pub(crate) fn new(server: &FakeModelServer) -> Self {
        let context = TestContext::new().unwrap();
        let mut env = context.env_with_path(&[]);
        env.insert("ANTHROPIC_BASE_URL".to_owned(), server.url());
        env.insert(
            "ANTHROPIC_API_KEY".to_owned(),
            "sk-ant-refine-test-0001".to_owned(),
        );
        Self { context, env }
    }

    pub(crate) fn project(&self) -> std::path::PathBuf {
        self.context.project()
    }

    pub(crate) async fn refinery(&self, args: &[&str]) -> Output {
        let env = self.env.clone();
        let project = self.project();
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::support::BIN)
                .env_clear()
                .envs(&env)
                .current_dir(project)
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// `refinery refine "Build a page"` with the standard criteria, in the background, its
    /// output piped.
    pub(crate) fn spawn_refine(&self) -> std::process::Child {
        std::process::Command::new(crate::support::BIN)
            .env_clear()
            .envs(&self.env)
            .current_dir(self.project())
            .args([
                "refine",
                "Build a page",
                "--criteria",
                CRITERIA,
                "--builder",
                MODEL,
                "--evaluator",
                MODEL,
                "--yes",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) async fn refine(&self, extra: &[&str]) -> (Output, Vec<Value>) {
        let mut args = vec![
            "refine",
            "--builder",
            MODEL,
            "--evaluator",
            MODEL,
            "--yes",
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = self.refinery(&args).await;
        let events = json_lines(&output.stdout);
        (output, events)
    }
}

pub(crate) fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

pub(crate) fn summary(events: &[Value]) -> &Value {
    events
        .iter()
        .rev()
        .find(|event| event["event"] == "summary")
        .expect("a summary event")
}

pub(crate) fn requests_of(server: &FakeModelServer, wanted: &str) -> Vec<RecordedRequest> {
    server
        .model_requests()
        .into_iter()
        .filter(|request| role(request) == wanted)
        .collect()
}

/// `index.html` of the run's round `round`, restored with `refinery session restore` into
/// `dest`.
async fn restored_page(run: &Run, summary: &Value, round: u32, dest: &Path) -> String {
    let round = round.to_string();
    let restored = run
        .refinery(&[
            "session",
            "restore",
            summary["session"].as_str().unwrap(),
            "--round",
            &round,
            "--to",
            dest.to_str().unwrap(),
        ])
        .await;
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    read(&dest.join("index.html"))
}

pub(crate) fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap()
}

/// The evaluator passes the page once it carries the improved content.
pub(crate) fn score_by_content(request: &RecordedRequest) -> String {
    if request.body_text().contains("VERSION-2") {
        evaluation([9, 8, 9], "Strong now.")
    } else {
        evaluation([4, 6, 8], "The hero says nothing about the outcome.")
    }
}

pub(crate) fn content_by_round(request: &RecordedRequest) -> String {
    format!("<h1>VERSION-{}</h1>", builder_round(request).max(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_in_round_two_with_fresh_builders_that_get_only_the_handoff() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    let (output, events) = run.refine(&["Build a landing page for Acme"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "converged");
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(summary["score_history"]["E1"], json!([4, 9]));
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
    // The criteria came from the criteria writer, tiered and numbered.
    let criteria = events
        .iter()
        .find(|event| event["event"] == "criteria")
        .unwrap();
    assert_eq!(criteria["source"], "writer");
    assert_eq!(criteria["criteria"][0]["category"], "primary");

    // Each round's builder is a new conversation: one user message, holding the handoff.
    let builders: Vec<RecordedRequest> = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| request.tool_results().is_empty())
        .collect();
    assert_eq!(builders.len(), 2);
    assert_eq!(message_count(&builders[0]), 1);
    assert_eq!(message_count(&builders[1]), 1);
    let first = brief(&builders[0]);
    let second = brief(&builders[1]);
    assert!(first.contains("This is the first round"), "{first}");
    assert!(!first.contains("Handoff"), "{first}");
    for needle in [
        "## Handoff from the previous round",
        "# Handoff after round 1",
        "The hero says nothing about the outcome.",
        "lead with the measured outcome",
        "the colour palette",
        "- Do: wrote the page in one pass",
    ] {
        assert!(second.contains(needle), "missing {needle:?} in\n{second}");
    }
    // Nothing of round 1's conversation: not its tool call, not its tool result, not its
    // final message.
    for leaked in ["wrote 18 bytes", "Wrote index.html", "\"write_file\""] {
        assert!(!second.contains(leaked), "round 2 saw {leaked:?}");
    }
    // The regression guard ran blind in both orders from round 2.
    let guards = requests_of(&server, "guard");
    assert_eq!(guards.len(), 2);
    let shown_first: Vec<bool> = guards
        .iter()
        .map(|request| {
            let body = brief(request);
            body.find("VERSION-1").unwrap() < body.find("VERSION-2").unwrap()
        })
        .collect();
    assert!(shown_first.contains(&true) && shown_first.contains(&false));
    // Every role's system prompt is exactly the body of its plugin agent file, read from disk
    // here: the CLI and the Claude Code plugin share one text per role.
    for (wanted, file) in [
        ("criteria", "criteria-writer"),
        ("builder", "builder"),
        ("evaluator", "round-evaluator"),
        ("guard", "regression-guard"),
        ("trace", "execution-trace-analyzer"),
    ] {
        let on_disk = read(
            &crate::claude_code::plugin_dir()
                .join("agents")
                .join(format!("{file}.md")),
        );
        let body = on_disk
            .strip_prefix("---\n")
            .and_then(|rest| rest.split_once("\n---\n"))
            .map(|(_, body)| body.trim())
            .unwrap();
        for request in requests_of(&server, wanted) {
            assert_eq!(system_text(&request), body, "{wanted}");
        }
    }
    // State on disk: handoff, learnings, two submissions.
    let session_dir = Path::new(summary["session_dir"].as_str().unwrap());
    assert!(read(&session_dir.join("handoff.md")).contains("# Handoff after round 2"));
    assert!(read(&session_dir.join("learnings.md")).contains("### Round 2"));
    assert!(session_dir.join("round_002/submission.json").exists());
    // Git was initialised for the user, and nothing was staged or committed.
    assert!(run.project().join(".git").is_dir());
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(run.project())
        .output()
        .unwrap();
    assert_eq!(text(&status.stdout), "?? index.html\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rounds_stops_with_exit_two_and_keeps_the_deliverable() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| evaluation([5, 5, 5], "Weak.")).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "2"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(
        summary["status"],
        json!({"status": "stopped", "reason": "max_rounds"})
    );
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
    assert_eq!(requests_of(&server, "criteria").len(), 0);
}

/// Round 2 passes two criteria, rounds 1 and 3 only one.
fn peak_in_round_two(request: &RecordedRequest) -> String {
    let body = request.body_text();
    if body.contains("VERSION-3") {
        evaluation([9, 5, 5], "Worse again.")
    } else if body.contains("VERSION-2") {
        evaluation([8, 8, 5], "Better.")
    } else {
        evaluation([4, 8, 6], "Weak.")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_peaks_in_round_two_delivers_round_two() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, peak_in_round_two).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "3"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "stopped");
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 3);
    // The workspace holds round 2's files, not the latest round's.
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
    assert_eq!(summary["best_round"], json!({"round": 2, "replaced": 3}));
    let deliverable = summary["deliverable"].as_str().unwrap();
    assert!(
        deliverable.contains("round 2, the best-scoring round"),
        "{deliverable}"
    );
    assert!(deliverable.contains("round 3's files"), "{deliverable}");
    // Round 3's files are kept in the session and can be restored byte for byte.
    let session_dir = Path::new(summary["session_dir"].as_str().unwrap());
    assert!(session_dir.join("round_003/replaced.json").exists());
    let out = run.context.home().join("round3");
    assert_eq!(
        restored_page(&run, summary, 3, &out).await,
        "<h1>VERSION-3</h1>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_run_that_delivered_its_best_round_goes_on_from_its_latest_round() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, peak_in_round_two).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "3"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let first = summary(&events);
    assert_eq!(first["best_round"], json!({"round": 2, "replaced": 3}));
    let session = first["session"].as_str().unwrap().to_owned();
    // Round 4's builder reads the page before anything else and writes nothing: what it
    // finds is what the loop goes on from. Its handoff speaks of round 3 ("Worse again."),
    // so the files must be round 3's, not the best round's put back when the run stopped.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = Arc::clone(&seen);
    server.route(move |request| {
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => {
                usage(Reply::tool_call("read_file", json!({"path": "index.html"})))
            }
            "builder" => {
                let mut seen = record.lock().unwrap();
                seen.extend(request.tool_results().into_iter().map(|(_, text)| text));
                usage(Reply::text("Read index.html; left it as it was."))
            }
            "evaluator" => usage(Reply::text(peak_in_round_two(request))),
            "guard" => usage(Reply::text(guard_tie())),
            "trace" => usage(Reply::text(lessons())),
            _ => Reply::status(400),
        })
    });
    let output = run
        .refinery(&[
            "refine",
            "--resume",
            &session,
            "--max-rounds",
            "4",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("VERSION-3"), "{seen:?}");
    let resumed = json_lines(&output.stdout);
    let resumed = summary(&resumed);
    assert_eq!(resumed["rounds"].as_array().unwrap().len(), 4);
    // Round 2 is still the best of all four: it is put back again at the end.
    assert_eq!(resumed["best_round"]["round"], 2);
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_budget_stops_before_a_call_could_overspend() {
    let server = FakeModelServer::start().await.unwrap();
    // The judges' replies are held back so the parallel calls overlap even on a loaded
    // machine: without it, a reply can arrive before the loop has started the call beside it,
    // and the two never hold their reservations at the same time.
    Script::simple(content_by_round, |_| evaluation([5, 5, 5], "Weak."))
        .install_with_judge_delay(&server, Duration::from_millis(300));
    let run = Run::new(&server);
    // Each call is reserved at its token cap before it starts: ~$0.25 for a builder turn and
    // ~$0.26 per judge (two schema attempts). Round 1 fits (its judges reserve ~$0.52 on top
    // of ~$0.03 spent); in round 2 the judges running in parallel no longer fit, so the run
    // stops there, before the call, with round 1 delivered.
    let budget = 0.6;
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--cost-budget",
            "0.6",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "cost_budget");
    assert_eq!(summary["status"]["interrupted_round"], 2);
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 1);
    // Round 2 was cut short unevaluated: the workspace goes back to round 1, the best scored
    // round, and round 2's leftovers are kept in the session.
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-1</h1>"
    );
    assert_eq!(summary["best_round"], json!({"round": 1, "replaced": 2}));
    let deliverable = summary["deliverable"].as_str().unwrap();
    assert!(
        deliverable.contains("round 2 was cut short"),
        "{deliverable}"
    );
    let session_dir = Path::new(summary["session_dir"].as_str().unwrap());
    assert!(session_dir.join("round_002/replaced.json").exists());
    let spent = summary["spend"]["usd"].as_f64().unwrap();
    assert!(spent <= budget, "spent {spent} of {budget}");
    assert!(spent > 0.0);
    // Every call the fake answered was paid for: the meter saw all of them.
    assert_eq!(
        summary["spend"]["calls"].as_u64().unwrap(),
        server.model_requests().len() as u64
    );
    // Known prices: sonnet at $3/M in and $15/M out, 2000 + 500 tokens a call.
    let per_call = 2_000.0 * 3.0 / 1e6 + 500.0 * 15.0 / 1e6;
    let expected = per_call * server.model_requests().len() as f64;
    assert!((spent - expected).abs() < 1e-6, "{spent} vs {expected}");
    // A cost budget with a backend whose cost is unknown is refused up front.
    let output = run
        .refinery(&[
            "refine",
            "Build a page",
            "--criteria",
            CRITERIA,
            "--cost-budget",
            "1",
            "--builder",
            "anthropic/unlisted-model",
            "--yes",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("has no price"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plateau_forces_one_change_of_approach_then_stops() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| {
        evaluation([5, 6, 8], "Still generic.")
    })
    .install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "6"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "plateau");
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 4, "{rounds:?}");
    assert_eq!(
        rounds[2]["next"],
        json!({"next": "continue", "change_approach_for": ["E1", "E2"]})
    );
    let builders: Vec<RecordedRequest> = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| request.tool_results().is_empty())
        .collect();
    assert_eq!(builders.len(), 4);
    assert!(!brief(&builders[2]).contains("Change of approach required"));
    assert!(brief(&builders[3]).contains("Change of approach required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regression_guard_repairs_once_then_reverts() {
    let server = FakeModelServer::start().await.unwrap();
    let script = Script {
        builder_content: Box::new(|request| match builder_round(request) {
            1 => "<h1>GOOD-1</h1>".to_owned(),
            0 => "<h1>BROKEN-AFTER-REPAIR</h1>".to_owned(),
            _ => "<h1>BROKEN</h1>".to_owned(),
        }),
        evaluator: Box::new(|_| evaluation([8, 5, 8], "E2 needs numbers.")),
        // Whichever answer holds GOOD-1 is better on E1, in both orders.
        guard: Box::new(|request| {
            let body = brief(request);
            let a_is_good = body.split("## Answer B").next().unwrap().contains("GOOD-1");
            json!({"preferences": {"E1": if a_is_good { "A" } else { "B" }, "E2": "tie", "E3": "tie"}, "reasoning": "the heading lost its outcome"}).to_string()
        }),
        file: "index.html",
    };
    script.install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "2"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(read(&run.project().join("index.html")), "<h1>GOOD-1</h1>");
    let summary = summary(&events);
    let regression = &summary["rounds"][1]["regression"];
    assert_eq!(regression["action"], "reverted");
    assert_eq!(regression["regressed"], json!(["E1"]));
    // One repair attempt, then two more blind comparisons.
    let repairs = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| brief(request).starts_with("# Repair a regression"))
        .filter(|request| request.tool_results().is_empty())
        .count();
    assert_eq!(repairs, 1);
    assert_eq!(requests_of(&server, "guard").len(), 4);
    // The discarded version is kept in the session, and the human summary says so.
    let session_dir = Path::new(summary["session_dir"].as_str().unwrap());
    assert!(session_dir.join("round_002/discarded.json").exists());
    // Round 2 submitted what the revert left, not what the build wrote before the guard.
    let restored = run.project().join("restored-round-2");
    assert_eq!(
        restored_page(&run, summary, 2, &restored).await,
        "<h1>GOOD-1</h1>"
    );
    let shown = run
        .refinery(&["session", "show", summary["session"].as_str().unwrap()])
        .await;
    assert!(shown.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_evaluator_output_fails_closed() {
    let server = FakeModelServer::start().await.unwrap();
    // Claims perfection but leaves out two criteria: unusable, so it can never converge.
    Script::simple(content_by_round, |_| {
        json!({"scores": {"E1": {"score": 10, "evidence": ["x"], "reasoning": "perfect"}}, "critique": "", "improvement_spec": [], "preserve": []}).to_string()
    })
    .install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "2"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let first = summary(&events);
    assert_eq!(first["status"]["reason"], "max_rounds");
    for round in first["rounds"].as_array().unwrap() {
        assert_eq!(round["verdict"], "unscored");
        assert!(
            round["unscored_reason"].as_str().unwrap().contains("E2"),
            "{round}"
        );
    }
    // Each round asked twice (one retry with the complaint), then gave up; each ask is two
    // requests, since the reply already breaks the run's schema (E2 is a required property)
    // and the model layer asks once more with the validation error.
    let evaluator_requests = requests_of(&server, "evaluator");
    assert_eq!(evaluator_requests.len(), 8);
    assert!(brief(&evaluator_requests[2]).contains("Your previous reply could not be used"));
    // The handoff says the evaluation was unusable; the core recorded no scores.
    let session_dir = Path::new(first["session_dir"].as_str().unwrap());
    assert!(read(&session_dir.join("handoff.md")).contains("unusable"));
    assert!(!read(&session_dir.join("events.jsonl")).contains("\"submit_checklist\""));

    // Plain garbage (not JSON at all) is refused the same way.
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| "Looks great to me!".to_owned()).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "1"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(summary(&events)["rounds"][0]["verdict"], "unscored");
}

/// A fake that answers every role normally but holds round 2's builder call (for two
/// minutes) until released: the moment a test interrupts a run.
struct RoundTwoGate {
    hang: Arc<Mutex<bool>>,
    reached: Arc<Mutex<bool>>,
}

impl RoundTwoGate {
    fn install(server: &FakeModelServer) -> Self {
        let gate = Self {
            hang: Arc::new(Mutex::new(true)),
            reached: Arc::new(Mutex::new(false)),
        };
        let (hang, reached) = (gate.hang.clone(), gate.reached.clone());
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        server.route(move |request| {
            Some(match role(request) {
                "builder" if request.tool_results().is_empty() => {
                    if builder_round(request) == 2 && *hang.lock().unwrap() {
                        *reached.lock().unwrap() = true;
                        return Some(Reply::text("never").delayed(Duration::from_mins(2)));
                    }
                    usage(Reply::tool_call(
                        "write_file",
                        json!({"path": "index.html", "content": content_by_round(request)}),
                    ))
                }
                "builder" => usage(Reply::text("Wrote index.html")),
                "evaluator" => usage(Reply::text(score_by_content(request))),
                "guard" => usage(Reply::text(guard_tie())),
                "trace" => usage(Reply::text(lessons())),
                _ => Reply::status(400),
            })
        });
        gate
    }

    /// Waits until round 2's builder call is being held.
    async fn reached(&self) {
        let deadline = std::time::Instant::now() + Duration::from_mins(1);
        while !*self.reached.lock().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "round 2 never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lets round 2 through from now on.
    fn release(&self) {
        *self.hang.lock().unwrap() = false;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_round_then_resume_without_redoing_finished_rounds() {
    let server = FakeModelServer::start().await.unwrap();
    let gate = RoundTwoGate::install(&server);
    let run = Run::new(&server);
    let mut child = run.spawn_refine();
    gate.reached().await;
    // The round-2 builder has started: half-write the page, then SIGKILL.
    fs_err::write(run.project().join("index.html"), "<h1>HALF-WRITTEN").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    gate.release();
    let sessions = fs_err::read_dir(run.project().join(".refinery/sessions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(sessions.len(), 1);
    let record: Value = serde_json::from_str(&read(
        &run.project()
            .join(".refinery/sessions")
            .join(&sessions[0])
            .join("run.json"),
    ))
    .unwrap();
    assert_eq!(record["in_progress"], 2);
    assert_eq!(record["status"]["status"], "running");

    let output = run
        .refinery(&["refine", "--resume", &sessions[0], "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "converged");
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
    // Round 1 was built and evaluated exactly once across both processes.
    let round_one_builds = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| request.tool_results().is_empty() && builder_round(request) == 1)
        .count();
    assert_eq!(round_one_builds, 1);
    let evaluations = requests_of(&server, "evaluator");
    assert_eq!(evaluations.len(), 2);
    // The half-written file was set aside before round 2 restarted from round 1's version.
    let session_dir = run.project().join(".refinery/sessions").join(&sessions[0]);
    assert!(session_dir.join("round_002/discarded.json").exists());
    assert!(
        events
            .iter()
            .any(|event| event["event"] == "session" && event["resumed"] == true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prior_answer_is_improved_in_place() {
    let server = FakeModelServer::start().await.unwrap();
    let script = Script {
        builder_content: Box::new(|request| {
            let text = brief(request);
            assert!(
                text.contains("An earlier version of the deliverable is at `draft.md`"),
                "{text}"
            );
            "# Draft\n\nVERSION-2: improved from the old draft\n".to_owned()
        }),
        evaluator: Box::new(score_by_content),
        guard: Box::new(|_| guard_tie()),
        file: "draft.md",
    };
    script.install(&server);
    let run = Run::new(&server);
    let outside = run.context.root().join("draft.md");
    fs_err::write(&outside, "# Draft\n\nOLD DRAFT\n").unwrap();
    let (output, events) = run
        .refine(&[
            "Tighten this draft",
            "--criteria",
            CRITERIA,
            "--prior-answer",
            outside.to_str().unwrap(),
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(summary(&events)["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(
        read(&run.project().join("draft.md")),
        "# Draft\n\nVERSION-2: improved from the old draft\n"
    );
    // The original outside the workspace is untouched.
    assert_eq!(read(&outside), "# Draft\n\nOLD DRAFT\n");
    assert_eq!(requests_of(&server, "criteria").len(), 0);

    // `refinery refine <path>`: the path is the deliverable, improved where it is.
    let server = FakeModelServer::start().await.unwrap();
    let script = Script {
        builder_content: Box::new(|request| {
            let text = brief(request);
            assert!(
                text.contains("Improve the existing deliverable at `draft.md`"),
                "{text}"
            );
            "# Draft\n\nVERSION-2 in place\n".to_owned()
        }),
        evaluator: Box::new(score_by_content),
        guard: Box::new(|_| guard_tie()),
        file: "draft.md",
    };
    script.install(&server);
    let run = Run::new(&server);
    fs_err::write(run.project().join("draft.md"), "# Draft\n\nOLD\n").unwrap();
    let (output, _) = run.refine(&["draft.md", "--criteria", CRITERIA]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        read(&run.project().join("draft.md")),
        "# Draft\n\nVERSION-2 in place\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_scores_once_and_changes_nothing() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    fs_err::write(run.project().join("page.html"), "<h1>VERSION-2</h1>\n").unwrap();
    let output = run
        .refinery(&[
            "evaluate",
            "page.html",
            "--criteria",
            CRITERIA,
            "--evaluator",
            MODEL,
            "--yes",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verdict"], "converge");
    assert_eq!(report["scores"], json!({"E1": 9, "E2": 8, "E3": 9}));
    assert!(Path::new(report["report_path"].as_str().unwrap()).exists());
    assert_eq!(
        read(&run.project().join("page.html")),
        "<h1>VERSION-2</h1>\n"
    );
    assert_eq!(requests_of(&server, "builder").len(), 0);
    assert_eq!(requests_of(&server, "evaluator").len(), 1);
    // The evaluator saw the file's contents.
    assert!(brief(&requests_of(&server, "evaluator")[0]).contains("===== page.html ====="));

    // Secrets in the deliverable never reach a model: neither this run's own key nor a key
    // the scanner recognises.
    // Assembled at run time so this file does not trip the repository's own secret scan.
    let aws_key = format!("AKIA{}", "IOSFODNN7EXAMPLF");
    fs_err::write(
        run.project().join("notes.txt"),
        format!("key: sk-ant-refine-test-0001\naws: {aws_key}\n"),
    )
    .unwrap();
    let output = run
        .refinery(&[
            "evaluate",
            "notes.txt",
            "page.html",
            "--criteria",
            CRITERIA,
            "--evaluator",
            MODEL,
        ])
        .await;
    assert!(
        output.status.code().is_some_and(|code| code != 1),
        "{}",
        text(&output.stderr)
    );
    let sent = requests_of(&server, "evaluator")
        .last()
        .unwrap()
        .body_text();
    assert!(sent.contains("===== notes.txt ====="), "{sent}");
    assert!(!sent.contains("sk-ant-refine-test-0001") && !sent.contains(&aws_key));
    fs_err::remove_file(run.project().join("notes.txt")).unwrap();

    // A panel: two judges, one evaluation each, combined.
    let before = requests_of(&server, "evaluator").len();
    let output = run
        .refinery(&[
            "evaluate",
            "page.html",
            "--criteria",
            CRITERIA,
            "--evaluator",
            MODEL,
            "--evaluator",
            "anthropic/claude-haiku-4-5",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["scores"], json!({"E1": 9, "E2": 8, "E3": 9}));
    let panel: Vec<String> = requests_of(&server, "evaluator")[before..]
        .iter()
        .map(RecordedRequest::model)
        .collect();
    assert_eq!(panel.len(), 2, "{panel:?}");
    assert!(panel.contains(&"claude-haiku-4-5".to_owned()), "{panel:?}");

    // Below the bar: exit 2, and the text report lists what to do next.
    fs_err::write(run.project().join("page.html"), "<h1>Welcome</h1>\n").unwrap();
    let output = run
        .refinery(&[
            "evaluate",
            "page.html",
            "--criteria",
            CRITERIA,
            "--evaluator",
            MODEL,
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let report = text(&output.stdout);
    assert!(report.starts_with("Below the bar."), "{report}");
    assert!(
        report.contains("1. [E1] lead with the measured outcome"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_failures_get_one_fix_attempt_and_reach_the_evaluator() {
    let server = FakeModelServer::start().await.unwrap();
    let script = Script {
        builder_content: Box::new(|request| {
            if brief(request).starts_with("# Fix failing checks") {
                "<h1>VERSION-2</h1><!-- FIXED -->".to_owned()
            } else {
                "<h1>VERSION-1</h1>".to_owned()
            }
        }),
        evaluator: Box::new(score_by_content),
        guard: Box::new(|_| guard_tie()),
        file: "index.html",
    };
    script.install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--verify",
            "grep -q FIXED index.html && echo check-passed",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let verify: Vec<&Value> = events
        .iter()
        .filter(|event| event["event"] == "verify")
        .collect();
    assert_eq!(verify.len(), 2);
    assert_eq!(verify[0]["passed"], false);
    assert_eq!(verify[1]["passed"], true);
    let fix = requests_of(&server, "builder")
        .into_iter()
        .find(|request| brief(request).starts_with("# Fix failing checks"))
        .unwrap();
    assert!(brief(&fix).contains("grep -q FIXED index.html"));
    assert!(brief(&requests_of(&server, "evaluator")[0]).contains("check-passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_setups_are_clear_errors() {
    let server = FakeModelServer::start().await.unwrap();
    let run = Run::new(&server);
    // Not a git repository and no --yes: refused, nothing created.
    let output = run
        .refinery(&["refine", "Build a page", "--builder", MODEL])
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not a git repository"),
        "{}",
        text(&output.stderr)
    );
    assert!(!run.project().join(".refinery").exists());
    // No usable backend at all (no CLI, no key, no local server answering): it stops before
    // touching anything — not even the `git init` that --yes allows — and says how to get one.
    let mut bare = crate::llm_support::doctor_env(&run.context);
    bare.insert("PATH".to_owned(), "/usr/bin:/bin".to_owned());
    let output = std::process::Command::new(crate::support::BIN)
        .env_clear()
        .envs(&bare)
        .current_dir(run.project())
        .args(["refine", "Build a page", "--yes"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no usable backend"), "{stderr}");
    assert!(stderr.contains("refinery local setup"), "{stderr}");
    assert!(!run.project().join(".git").exists());
    assert!(!run.project().join(".refinery").exists());
    // A bad backend name, bad criteria, and an unknown session.
    for (args, needle) in [
        (
            vec!["refine", "x", "--yes", "--builder", "gpt"],
            "not a backend",
        ),
        (
            vec![
                "refine",
                "x",
                "--yes",
                "--builder",
                MODEL,
                "--criteria",
                "nice",
            ],
            "--criteria needs ids",
        ),
        (vec!["refine", "--resume", "nope"], "nope"),
        (
            vec![
                "refine",
                "x",
                "--yes",
                "--builder",
                MODEL,
                "--max-rounds",
                "0",
            ],
            "max-rounds",
        ),
    ] {
        let output = run.refinery(&args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            text(&output.stderr).contains(needle),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_saves_and_resume_continues() {
    let server = FakeModelServer::start().await.unwrap();
    let gate = RoundTwoGate::install(&server);
    let run = Run::new(&server);
    let child = run.spawn_refine();
    gate.reached().await;
    let started = std::time::Instant::now();
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "Ctrl-C took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("Interrupted in round 2. Continue with: refinery refine --resume "),
        "{stdout}"
    );
    let session = stdout
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let record: Value = serde_json::from_str(&read(
        &run.project()
            .join(".refinery/sessions")
            .join(&session)
            .join("run.json"),
    ))
    .unwrap();
    assert_eq!(
        record["status"],
        json!({"status": "interrupted", "round": 2})
    );
    // The report is written on an interruption too.
    let report = read(
        &run.project()
            .join(".refinery/sessions")
            .join(&session)
            .join("report.html"),
    );
    assert!(report.contains("Interrupted in round 2"), "{report}");
    assert!(stdout.contains("\nReport: "), "{stdout}");

    gate.release();
    let output = run.refinery(&["refine", "--resume", &session]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("Converged after 2 rounds."));
}

/// The plain-text output of a whole run (no terminal, no --json). With
/// `REFINERY_USAGE_TRANSCRIPT=FILE` set, the output is also written there: that is how the
/// example in docs/USAGE.md is produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_output_tells_the_story_of_the_run() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    let output = run
        .refinery(&[
            "refine",
            "Build a landing page for Acme's invoicing app",
            "--builder",
            MODEL,
            "--evaluator",
            MODEL,
            "--verify",
            "test -s index.html && echo page-present",
            "--yes",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    for needle in [
        "initialised a git repository in",
        "new session ",
        "criteria (written by the criteria writer):\n  E1 [primary] The first heading states the outcome",
        "round 1/5",
        "  building",
        "  verify `test -s index.html && echo page-present`: passed",
        "  scores: E1 4 · E2 6 · E3 8 → iterate",
        "  next: another round  [$0.07 so far, 0s]",
        "round 2/5",
        "  regression guard: no criterion got worse",
        "  scores: E1 9 · E2 8 · E3 9 → converge",
        "  converged  [$0.15 so far, 0s]",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    for needle in [
        "Converged after 2 rounds.",
        "Scores by round (7 or more passes):",
        "E1   The first heading states the outcome  4 → 9",
        "Cost: $0.15 (22.0k in / 5.5k out tokens, 11 calls)",
        "Deliverable: in ",
        "Session: ",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    assert!(
        !stderr.contains("sk-ant-refine-test-0001") && !stdout.contains("sk-ant-refine-test-0001")
    );
    if let Some(path) = std::env::var_os("REFINERY_USAGE_TRANSCRIPT") {
        let root = run.context.root().display().to_string();
        let tidy = |text: &str| text.replace(&root, "/tmp/demo");
        fs_err::write(
            path,
            format!("$ refinery refine \"Build a landing page for Acme's invoicing app\" --builder {MODEL} --evaluator {MODEL} --verify \"test -s index.html && echo page-present\" --yes\n{}{}", tidy(&stderr), tidy(&stdout)),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_cli_builds_and_judges_against_the_fake() {
    let Some(harness) = crate::claude_code::ClaudeHarness::start().await else {
        return;
    };
    harness.script(|turn, body| {
        let text = body.to_string();
        let file = "index.html";
        if text.contains("# Role: builder") {
            let round2 = text.contains("# Round 2 of a Refinery loop");
            return match turn {
                0 => crate::claude_code::tool("Read", json!({"file_path": file})),
                1 => crate::claude_code::tool(
                    "Write",
                    json!({"file_path": file, "content": if round2 { "<h1>VERSION-2</h1>" } else { "<h1>VERSION-1</h1>" }}),
                ),
                _ => crate::claude_code::text("Wrote index.html"),
            };
        }
        if text.contains("# Role: round evaluator") {
            // An agent-CLI judge gets the file list and opens the files itself, in its copy.
            if turn == 0 {
                return crate::claude_code::tool(
                    "Bash",
                    json!({"command": "cat index.html", "description": "read the page"}),
                );
            }
            let scores = if text.contains("VERSION-2") { [9, 8, 9] } else { [4, 6, 8] };
            return crate::claude_code::text(&evaluation(scores, "The hero is generic."));
        }
        if text.contains("# Role: regression guard") {
            return crate::claude_code::text(&guard_tie());
        }
        if text.contains("# Role: execution trace analyzer") {
            return crate::claude_code::text(&lessons());
        }
        crate::claude_code::text("ok")
    });
    let command = harness.command(
        Path::new(crate::support::BIN),
        &[
            "refine",
            "Build a page",
            "--criteria",
            CRITERIA,
            "--builder",
            "claude:claude-sonnet-4-5-refinery",
            "--evaluator",
            "claude",
            "--yes",
            "--json",
            "--max-rounds",
            "3",
        ],
    );
    let output = crate::claude_code::run(command, Duration::from_mins(5)).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(summary["score_history"]["E1"], json!([4, 9]));
    assert_eq!(
        read(&harness.project().join("index.html")),
        "<h1>VERSION-2</h1>"
    );
    // Claude Code got our builder role prompt as its appended system prompt, and a fresh
    // session each round: round 2's first request carries the handoff and no earlier turn.
    let round_two: Vec<RecordedRequest> = harness
        .server
        .model_requests()
        .into_iter()
        .filter(|request| request.body_text().contains("# Round 2 of a Refinery loop"))
        .collect();
    assert!(!round_two.is_empty());
    let first = &round_two[0];
    assert!(
        first
            .body_text()
            .contains("Handoff from the previous round")
    );
    assert!(
        !first.body_text().contains("VERSION-1</h1>\\\"}"),
        "round 1's tool call leaked"
    );
    let assistant_turns = first.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "assistant")
        .count();
    assert_eq!(assistant_turns, 0);
    // `claude:<model>` reached Claude Code as its model; the judge used the CLI's default.
    let models: std::collections::BTreeSet<String> = harness
        .server
        .model_requests()
        .iter()
        .filter(|request| request.body_text().contains("# Role: builder"))
        .map(RecordedRequest::model)
        .collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        ["claude-sonnet-4-5-refinery"]
    );
    // The claude judge was given the file list, not the files: it opened them in its copy.
    let judge_first = harness
        .server
        .model_requests()
        .into_iter()
        .find(|request| request.body_text().contains("# Role: round evaluator"))
        .unwrap();
    assert!(judge_first.body_text().contains("- index.html ("));
    assert!(!judge_first.body_text().contains("===== index.html ====="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_budget_stops_a_slow_round_and_a_backend_error_says_how_to_resume() {
    let server = FakeModelServer::start().await.unwrap();
    server.route(|request| {
        Some(match role(request) {
            "builder" if builder_round(request) == 2 => {
                Reply::text("slow").delayed(Duration::from_secs(30))
            }
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ),
            "builder" => Reply::text("Wrote index.html"),
            "evaluator" => Reply::text(score_by_content(request)),
            "trace" => Reply::text(lessons()),
            _ => Reply::text(guard_tie()),
        })
    });
    let run = Run::new(&server);
    let started = std::time::Instant::now();
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--time-budget",
            "3s",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "time_budget");
    assert_eq!(summary["status"]["interrupted_round"], 2);
    assert_eq!(
        read(&run.project().join("index.html")),
        "<h1>VERSION-1</h1>"
    );

    // A backend that keeps failing is an error (exit 1) that names the way back.
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::status(401));
    let run = Run::new(&server);
    let (output, _) = run.refine(&["Build a page", "--criteria", CRITERIA]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("refinery refine --resume "), "{stderr}");
    assert!(stderr.contains("builder"), "{stderr}");
    // Even then the report of what there is gets written, and the error says where.
    let report = stderr
        .split("the report so far is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(read(Path::new(report.trim_end_matches([':', ',', ';']))).contains("Failed;"));
}

/// `refinery refine` with codex, gemini or copilot as the builder (each a fresh process,
/// pointed at the fake through its own settings) and an API model as the evaluator.
async fn refine_with_cli_builder(name: refinery_testkit::agent_cli::AgentCliName) {
    use refinery_testkit::agent_cli::{self, AgentCliName};
    let Some(program) = agent_cli::require_agent_cli(name) else {
        return;
    };
    let server = FakeModelServer::start().await.unwrap();
    let context = TestContext::new().unwrap();
    let mut env = match name {
        AgentCliName::Codex => agent_cli::codex_env(&context, &server, &program).unwrap(),
        AgentCliName::Gemini => agent_cli::gemini_env(&context, &server, &program).unwrap(),
        AgentCliName::Copilot => agent_cli::copilot_env(&context, &server, &program),
        AgentCliName::Claude => agent_cli::claude_env(&context, &server, &program),
    };
    env.insert("ANTHROPIC_BASE_URL".to_owned(), server.url());
    env.insert(
        "ANTHROPIC_API_KEY".to_owned(),
        "sk-ant-refine-test-0001".to_owned(),
    );
    env.insert(
        "GIT_CEILING_DIRECTORIES".to_owned(),
        context.root().display().to_string(),
    );
    let page = context.project().join("index.html");
    let (tool, input) = match name {
        AgentCliName::Codex => (
            "exec_command",
            json!({"cmd": "printf '<h1>VERSION-2</h1>' > index.html"}),
        ),
        AgentCliName::Copilot => (
            "create",
            json!({"path": page, "file_text": "<h1>VERSION-2</h1>"}),
        ),
        AgentCliName::Gemini | AgentCliName::Claude => (
            "write_file",
            json!({"file_path": page, "content": "<h1>VERSION-2</h1>"}),
        ),
    };
    server.route(move |request| {
        Some(match role(request) {
            "builder" if !request.tool_names().iter().any(|offered| offered == tool) => {
                // The CLI's own side calls (routing, titles, summaries).
                Reply::text(r#"{"reasoning":"fake","next_speaker":"user","model_choice":"flash"}"#)
            }
            "builder" if request.tool_results().is_empty() => Reply::tool_call(tool, input.clone()),
            "builder" => Reply::text("Wrote index.html"),
            "evaluator" => Reply::text(score_by_content(request)),
            "trace" => Reply::text(lessons()),
            _ => {
                Reply::text(r#"{"reasoning":"fake","next_speaker":"user","model_choice":"flash"}"#)
            }
        })
    });
    let builder = match name {
        AgentCliName::Codex => "codex",
        AgentCliName::Gemini => "gemini",
        AgentCliName::Copilot => "copilot",
        AgentCliName::Claude => "claude",
    };
    let project = context.project();
    let args: Vec<String> = [
        "refine",
        "Build a page",
        "--criteria",
        CRITERIA,
        "--builder",
        builder,
        "--evaluator",
        MODEL,
        "--yes",
        "--json",
        "--max-rounds",
        "1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::support::BIN)
            .env_clear()
            .envs(&env)
            .current_dir(project)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{builder}: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(read(&page), "<h1>VERSION-2</h1>", "{builder}");
    let events = json_lines(&output.stdout);
    assert!(
        events.iter().any(|event| event["event"] == "activity"),
        "{builder}: no tool activity reported"
    );
    // The builder brief reached the CLI with the role prompt in front of it.
    let builder_requests = requests_of(&server, "builder");
    assert!(
        builder_requests
            .iter()
            .any(|request| request.body_text().contains("This is the first round")),
        "{builder}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_codex_cli_builds_against_the_fake() {
    refine_with_cli_builder(refinery_testkit::agent_cli::AgentCliName::Codex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_gemini_cli_builds_against_the_fake() {
    refine_with_cli_builder(refinery_testkit::agent_cli::AgentCliName::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_copilot_cli_builds_against_the_fake() {
    refine_with_cli_builder(refinery_testkit::agent_cli::AgentCliName::Copilot).await;
}

/// On a terminal the run shows a live status line (indicatif) above which the round's lines
/// scroll. `script` gives the process a pseudo-terminal, as a user's shell would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_live_status_line() {
    let Some(script) =
        refinery_testkit::skip::require_program("script", &["/usr/bin/script"], "util-linux")
    else {
        return;
    };
    let server = FakeModelServer::start().await.unwrap();
    // A slow evaluator keeps the status line on screen long enough to be drawn.
    server.route(|request| {
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ),
            "builder" => Reply::text("Wrote index.html"),
            "evaluator" => Reply::text(score_by_content(request))
                .with_usage(2_000, 0, 500)
                .delayed(Duration::from_millis(600)),
            "trace" => Reply::text(lessons()),
            _ => Reply::text(guard_tie()),
        })
    });
    let run = Run::new(&server);
    let typescript = run.context.tmp().join("typescript");
    let command = format!(
        "{} refine 'Build a page' --criteria \"{CRITERIA}\" --builder {MODEL} --evaluator {MODEL} --yes",
        crate::support::BIN
    );
    let mut env = run.env.clone();
    env.insert("TERM".to_owned(), "xterm".to_owned());
    env.remove("NO_COLOR");
    let project = run.project();
    let typescript_path = typescript.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script)
            .args(["-q", "-e", "-c", &command])
            .arg(&typescript_path)
            .env_clear()
            .envs(&env)
            .current_dir(project)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = fs_err::read_to_string(&typescript).unwrap_or_default();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}\n{screen}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(screen.contains("round 1/5"), "{screen}");
    assert!(
        screen.contains("scores: E1 9 · E2 8 · E3 9 → converge") || screen.contains("scores: E1 4"),
        "{screen}"
    );
    assert!(screen.contains("Converged after 2 rounds."), "{screen}");
    // indicatif redraws its line with carriage returns / erase sequences; plain output never
    // does.
    assert!(
        screen.contains("\u{1b}[2K") || screen.contains('\r'),
        "{screen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_of_evaluators_scores_blind_and_the_lower_median_decides() {
    const STRICT: &str = "anthropic/claude-haiku-4-5";
    let server = FakeModelServer::start().await.unwrap();
    server.route(|request| {
        let body = request.body_text();
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ),
            "builder" => Reply::text("Wrote index.html"),
            // The lenient judge passes the page from version 2; the strict one wants version 3
            // for E2.
            "evaluator" if request.model() == "claude-haiku-4-5" => {
                Reply::text(if body.contains("VERSION-3") {
                    evaluation([9, 9, 9], "Strict judge: fine now.")
                } else {
                    evaluation([8, 6, 9], "Strict judge: E2 lacks numbers.")
                })
            }
            "evaluator" => Reply::text(if body.contains("VERSION-1") {
                evaluation([4, 6, 8], "Lenient judge: weak hero.")
            } else {
                evaluation([9, 8, 9], "Lenient judge: strong now.")
            }),
            "trace" => Reply::text(lessons()),
            _ => Reply::text(guard_tie()),
        })
    });
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--evaluator",
            STRICT,
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 3);
    // Per criterion the lower median of the two: E1 4→8→9, E2 6→6→8.
    assert_eq!(summary["score_history"]["E1"], json!([4, 8, 9]));
    assert_eq!(summary["score_history"]["E2"], json!([6, 6, 8]));
    let judged: Vec<&Value> = events
        .iter()
        .filter(|event| event["event"] == "judged")
        .collect();
    assert_eq!(judged.len(), 6);
    assert_eq!(judged[0]["evaluator"], MODEL);
    assert_eq!(judged[1]["evaluator"], STRICT);
    // Blind: neither judge ever saw the other's reply.
    for request in requests_of(&server, "evaluator") {
        let body = request.body_text();
        let other = if request.model() == "claude-haiku-4-5" {
            "Lenient judge"
        } else {
            "Strict judge"
        };
        assert!(!body.contains(other), "a judge saw the other's critique");
    }
    // Both critiques reach the next builder, labelled.
    let builders: Vec<RecordedRequest> = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| request.tool_results().is_empty())
        .collect();
    let second = brief(&builders[1]);
    assert!(
        second.contains("judge 1: Lenient judge: weak hero."),
        "{second}"
    );
    assert!(
        second.contains("judge 2: Strict judge: E2 lacks numbers."),
        "{second}"
    );
    // The panel is remembered for --resume.
    let session_dir = Path::new(summary["session_dir"].as_str().unwrap());
    let record: Value = serde_json::from_str(&read(&session_dir.join("run.json"))).unwrap();
    assert_eq!(record["panel"], json!([STRICT]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pasted_into_the_task_reaches_no_model_and_no_file() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| evaluation([5, 5, 5], "Weak.")).install(&server);
    let run = Run::new(&server);
    let key = "sk-ant-refine-test-0001";
    let (output, _) = run
        .refine(&[
            &format!("Build a page; our key is {key}"),
            "--criteria",
            CRITERIA,
            "--max-rounds",
            "1",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    for request in server.model_requests() {
        assert!(!request.body_text().contains(key), "a model saw the key");
    }
    assert!(!text(&output.stdout).contains(key) && !text(&output.stderr).contains(key));
    let mut stack = vec![run.project().join(".refinery")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = fs_err::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(key),
                    "{} holds the key",
                    path.display()
                );
            }
        }
    }
    assert!(files > 10, "only {files} state files were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteria_files_in_json_or_text_and_their_mistakes() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let run = Run::new(&server);
    let json_file = run.context.root().join("criteria.json");
    fs_err::write(
        &json_file,
        json!({"criteria": [
            {"id": "E1", "text": "States the outcome", "category": "primary", "verify_by": "read the h1"},
            {"id": "E2", "text": "Numbers back claims"},
            {"id": "E3", "text": "Loads cleanly", "category": "stretch"}
        ]})
        .to_string(),
    )
    .unwrap();
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria-file",
            json_file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let criteria = events
        .iter()
        .find(|event| event["event"] == "criteria")
        .unwrap();
    assert_eq!(criteria["source"], "user");
    assert_eq!(criteria["criteria"][0]["category"], "primary");
    assert_eq!(criteria["criteria"][2]["category"], "stretch");
    // The verify_by hint reaches the judge.
    assert!(brief(&requests_of(&server, "evaluator")[0]).contains("Verify by: read the h1"));

    // Text lines; two criteria is allowed but earns a note.
    let text_file = run.context.root().join("criteria.txt");
    fs_err::write(
        &text_file,
        "E1: States the outcome\nE2: Numbers back claims\n",
    )
    .unwrap();
    let output = run
        .refinery(&[
            "refine",
            "Build a page",
            "--criteria-file",
            text_file.to_str().unwrap(),
            "--builder",
            MODEL,
            "--max-rounds",
            "1",
        ])
        .await;
    assert!(
        output.status.code().is_some_and(|code| code != 1),
        "{}",
        text(&output.stderr)
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("  E2 [standard] Numbers back claims"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: 2 criteria given; 3 to 7 usually work best"),
        "{stderr}"
    );

    // Mistakes are named, and nothing runs.
    let before = server.model_requests().len();
    let bad_json = run.context.root().join("bad.json");
    fs_err::write(
        &bad_json,
        r#"[{"id": "E1", "text": "a"}, {"id": "E1", "text": "b"}]"#,
    )
    .unwrap();
    for (file, needle) in [
        (bad_json.to_str().unwrap().to_owned(), "bad.json"),
        (
            "/nonexistent/criteria.txt".to_owned(),
            "reading --criteria-file",
        ),
    ] {
        let output = run
            .refinery(&[
                "refine",
                "Build a page",
                "--criteria-file",
                &file,
                "--builder",
                MODEL,
            ])
            .await;
        assert_eq!(output.status.code(), Some(1));
        assert!(
            text(&output.stderr).contains(needle),
            "{}",
            text(&output.stderr)
        );
    }
    let output = run
        .refinery(&[
            "refine",
            "x",
            "--criteria",
            "E1: a",
            "--criteria-file",
            text_file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "clap refuses both at once");
    assert_eq!(server.model_requests().len(), before);
}

/// A power loss right after the core recorded a round, before the run concluded it: the run's
/// record is as the save before the core's record left it (the round's file inside), and the
/// unsynced `round.json` and `run.json` copies are gone. The resume concludes the round from
/// the record, with its scores, not as an unscored round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_the_core_recorded_is_concluded_from_the_runs_record_after_a_power_loss() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| evaluation([5, 6, 4], "Weak.")).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "1"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let finished = summary(&events)["rounds"][0].clone();
    assert_eq!(finished["verdict"], "iterate");
    let session = summary(&events)["session"].as_str().unwrap().to_owned();
    let session_dir = PathBuf::from(summary(&events)["session_dir"].as_str().unwrap());

    let log_path = session_dir.join("run.jsonl");
    let log = read(&log_path);
    let end = log
        .split_inclusive('\n')
        .scan(0, |offset, line| {
            *offset += line.len();
            Some((*offset, line))
        })
        .find(|(_, line)| line.contains("\"judged\""))
        .map(|(offset, _)| offset)
        .expect("the round's file was saved in the run's record");
    fs_err::write(&log_path, &log[..end]).unwrap();
    for copy in ["run.json", "round_001/round.json"] {
        fs_err::remove_file(session_dir.join(copy)).unwrap();
    }

    let output = run
        .refinery(&["refine", "--resume", &session, "--json"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let resumed = summary(&json_lines(&output.stdout)).clone();
    let rounds = resumed["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 1, "round 1 is concluded, not run again");
    assert_eq!(rounds[0]["verdict"], "iterate");
    assert_eq!(rounds[0]["scores"], finished["scores"]);
    assert_eq!(resumed["status"]["reason"], "max_rounds");
    assert_eq!(
        requests_of(&server, "builder")
            .iter()
            .filter(|request| request.tool_results().is_empty())
            .count(),
        1
    );
}

/// The copies for people are written off the run's thread; one that cannot be written still
/// fails the run, naming the file, as a failed write did when it was made in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_cannot_be_written_fails_the_run() {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| evaluation([5, 6, 4], "Weak.")).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "1"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let session = summary(&events)["session"].as_str().unwrap().to_owned();
    let session_dir = PathBuf::from(summary(&events)["session_dir"].as_str().unwrap());
    // A folder that is not empty where round 2's handoff goes: no rename can replace it.
    let handoff = session_dir.join("handoff.md");
    fs_err::remove_file(&handoff).unwrap();
    fs_err::create_dir_all(handoff.join("blocked")).unwrap();

    let output = run
        .refinery(&[
            "refine",
            "--resume",
            &session,
            "--max-rounds",
            "2",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("handoff.md"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_rounds_holds_back_convergence_and_resume_can_raise_max_rounds() {
    let server = FakeModelServer::start().await.unwrap();
    // Every version passes.
    Script::simple(content_by_round, |_| evaluation([9, 9, 9], "Good.")).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--min-rounds", "2"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let rounds = summary(&events)["rounds"].as_array().unwrap().clone();
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0]["verdict"], "converge");
    assert_eq!(
        rounds[0]["next"],
        json!({"next": "continue", "change_approach_for": []})
    );

    // Stopped by --max-rounds 1; resumed with --max-rounds 2, round 2 runs and round 1 does not
    // run again.
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, |_| evaluation([5, 5, 5], "Weak.")).install(&server);
    let run = Run::new(&server);
    let (output, events) = run
        .refine(&["Build a page", "--criteria", CRITERIA, "--max-rounds", "1"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let session = summary(&events)["session"].as_str().unwrap().to_owned();
    let session_dir = PathBuf::from(summary(&events)["session_dir"].as_str().unwrap());
    // The session's scope rides in its first journal record.
    let journal = fs_err::read_to_string(session_dir.join("events.jsonl")).unwrap();
    let first: Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(first["op"], "init_session");
    assert!(first["scope"].is_object(), "{first}");
    // The records kept for people (unsynced) are not what a resume reads: the handoff and the
    // lessons so far come from `run.json`, written durably once per round.
    for record in [
        "round_001/builder_prompt.md",
        "round_001/builder_events.jsonl",
        "round_001/handoff.md",
        "progress.jsonl",
        "handoff.md",
        "learnings.md",
    ] {
        fs_err::remove_file(session_dir.join(record)).unwrap();
    }
    let output = run
        .refinery(&[
            "refine",
            "--resume",
            &session,
            "--max-rounds",
            "2",
            "--json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let resumed = summary(&events);
    assert_eq!(resumed["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(resumed["status"]["reason"], "max_rounds");
    let builds: Vec<u32> = requests_of(&server, "builder")
        .iter()
        .filter(|request| request.tool_results().is_empty())
        .map(builder_round)
        .collect();
    assert_eq!(builds, [1, 2]);
    let round_two = requests_of(&server, "builder")
        .into_iter()
        .find(|request| request.tool_results().is_empty() && builder_round(request) == 2)
        .unwrap();
    assert!(
        round_two.body_text().contains("Handoff after round 1"),
        "round 2's builder got round 1's handoff"
    );
    let learnings = fs_err::read_to_string(session_dir.join("learnings.md")).unwrap();
    assert!(
        learnings.contains("### Round 1\n") && learnings.contains("### Round 2\n"),
        "{learnings}"
    );
    // Resuming a finished run again does nothing and says how it ended.
    let output = run.refinery(&["refine", "--resume", &session]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stdout).starts_with("Stopped after 2 finished rounds"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(requests_of(&server, "builder").len(), 4);
}
