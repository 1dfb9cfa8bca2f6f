//! Every paid attempt counts: calls that fail (replies that never match the schema, the judge
//! retry that follows them) are settled at the usage the provider reported, so a run whose
//! judges keep answering garbage still reaches its `--cost-budget` and stops at or under it.

use refinery_testkit::{FakeModelServer, Reply};
use serde_json::json;

use crate::llm_support::text;
use crate::refine::{CRITERIA, Run, content_by_round, role, summary};

/// Sonnet's price ($3/M in, $15/M out) for the 2,000 + 500 tokens every fake reply reports.
const PER_REQUEST: f64 = 2_000.0 * 3.0 / 1e6 + 500.0 * 15.0 / 1e6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_that_only_answer_garbage_are_paid_for_and_the_budget_stops_the_run() {
    let server = FakeModelServer::start().await.unwrap();
    server.route(|request| {
        let reply = match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ),
            "builder" => Reply::text("Wrote index.html"),
            // Evaluator, guard and trace analyzer: never one usable reply, each one billed.
            _ => Reply::text("Looks great to me! 10/10 across the board."),
        };
        Some(reply.with_usage(2_000, 0, 500))
    });
    let run = Run::new(&server);
    let budget = 1.0;
    let (output, events) = run
        .refine(&[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--cost-budget",
            "1",
            "--max-rounds",
            "8",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    // Only the failed judge calls can bring a run of cheap builder turns to its budget: had
    // they been free, it would have run its eight rounds.
    assert_eq!(summary["status"]["reason"], "cost_budget", "{summary}");
    let rounds = summary["rounds"].as_array().unwrap();
    assert!(rounds.len() < 8, "{} rounds", rounds.len());
    for round in rounds {
        assert_eq!(round["verdict"], "unscored", "{round}");
    }
    let spent = summary["spend"]["usd"].as_f64().unwrap();
    assert!(spent <= budget, "spent {spent} of {budget}");
    // Every request the fake answered was counted at the usage it reported, the schema
    // re-asks and the judge retries included.
    let requests = server.model_requests().len();
    let judged = server
        .model_requests()
        .iter()
        .filter(|request| role(request) != "builder")
        .count();
    assert!(judged >= 8, "{judged} judge requests");
    let expected = PER_REQUEST * requests as f64;
    assert!(
        (spent - expected).abs() < 1e-6,
        "spent {spent}, but {requests} requests cost {expected}"
    );
    assert_eq!(
        summary["spend"]["input_tokens"].as_u64().unwrap(),
        2_000 * requests as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_agent_run_is_counted_at_the_cap_it_was_given() {
    let server = FakeModelServer::start().await.unwrap();
    let mut run = Run::new(&server);
    // A `claude` that reads its brief, says it started, and dies: it may have spent anything
    // up to the `--max-budget-usd` it was given, and reports nothing.
    let bin = run.context.root().join("fake-bin");
    fs_err::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    fs_err::write(
        &claude,
        "#!/bin/sh\ncat >/dev/null\necho '{\"type\":\"system\",\"subtype\":\"init\"}'\necho 'upstream connection lost' >&2\nexit 1\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), run.env["PATH"]);
    run.env.insert("PATH".to_owned(), path);
    let output = run
        .refinery(&[
            "refine",
            "Build a page",
            "--criteria",
            CRITERIA,
            "--builder",
            "claude",
            "--evaluator",
            crate::refine::MODEL,
            "--cost-budget",
            "2",
            "--yes",
            "--json",
        ])
        .await;
    let stderr = text(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    let events = crate::refine::json_lines(&output.stdout);
    let spend = events
        .iter()
        .rev()
        .find_map(|event| event.get("spend").filter(|spend| spend.is_object()))
        .cloned()
        .or_else(|| {
            let sessions = run.project().join(".refinery/sessions");
            let session = fs_err::read_dir(&sessions).ok()?.next()?.ok()?.path();
            let record: serde_json::Value =
                serde_json::from_str(&fs_err::read_to_string(session.join("run.json")).ok()?)
                    .ok()?;
            record.get("spend").cloned()
        })
        .unwrap_or_else(|| panic!("no spend recorded; stderr: {stderr}"));
    // The builder was given the whole budget as its cap; that is what it is counted at.
    let usd = spend["usd"].as_f64().unwrap();
    assert!(usd > 1.99 && usd <= 2.0, "{spend}");
    assert_eq!(spend["unknown_cost_calls"], 0, "{spend}");
}
