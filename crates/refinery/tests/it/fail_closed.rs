//! Fail-closed judgment, end to end: a round converges only on usable output from a majority
//! of its judges, a checked regression guard and evidence that holds up; judges time out into
//! an unscored round instead of a failed run; judges never see earlier rounds' scores; and a
//! panel's disagreement is shown next to the gains it makes doubtful.
//!
//! Each fake here is unkind in one way a real model can be: garbage, silence, citations of
//! files that do not exist, lessons about tool calls that never happened.

use std::time::Duration;

use refinery_testkit::{FakeModelServer, RecordedRequest, Reply};
use serde_json::{Value, json};

use crate::llm_support::text;
use crate::refine::{
    CRITERIA, MODEL, Run, Script, brief, content_by_round, evaluation, guard_tie, lessons,
    requests_of, role, summary,
};

const SECOND_JUDGE: &str = "anthropic/claude-haiku-4-5";

/// An answer every judge of a panel or the guard could give, but none can use.
const GARBAGE: &str = "Looks great to me! 10/10 across the board.";

fn passing() -> String {
    evaluation([9, 9, 9], "Strong.")
}

/// A fake where the builder writes the page of its round, the trace analyzer answers
/// normally, and `judge` answers the evaluator and the guard.
fn route_judges(
    server: &FakeModelServer,
    judge: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
) {
    server.route(move |request| {
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ),
            "builder" => Reply::text("Wrote index.html"),
            "trace" => Reply::text(lessons()),
            _ => judge(request),
        })
    });
}

/// `refinery refine "Build a page"` with the standard criteria, `--json`, and `extra`.
async fn refine(run: &Run, extra: &[&str]) -> (std::process::Output, Vec<Value>) {
    let mut args = vec!["Build a page", "--criteria", CRITERIA];
    args.extend_from_slice(extra);
    run.refine(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_without_a_majority_of_usable_judges_does_not_converge() {
    let server = FakeModelServer::start().await.unwrap();
    // One judge passes everything; the other never gives usable output. One of two is not a
    // majority: the passing judge alone must not decide.
    route_judges(&server, |request| match role(request) {
        "evaluator" if request.model() == "claude-haiku-4-5" => Reply::text(GARBAGE),
        "evaluator" => Reply::text(passing()),
        _ => Reply::text(guard_tie()),
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--evaluator", SECOND_JUDGE, "--max-rounds", "1"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "max_rounds");
    let round = &summary["rounds"][0];
    assert_eq!(round["verdict"], "unscored", "{round}");
    assert_eq!(round["quorum"], json!({"asked": 2, "usable": 1}), "{round}");
    assert!(
        round["unscored_reason"]
            .as_str()
            .unwrap()
            .contains("1 of 2 judges usable"),
        "{round}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_guard_is_asked_again_then_the_round_is_unchecked_and_cannot_converge() {
    let server = FakeModelServer::start().await.unwrap();
    // Round 2 passes every criterion, but the guard comparing it with round 1 answers garbage.
    route_judges(&server, |request| match role(request) {
        "evaluator" if request.body_text().contains("VERSION-1") => {
            Reply::text(evaluation([4, 6, 8], "Weak hero."))
        }
        "evaluator" => Reply::text(passing()),
        _ => Reply::text(GARBAGE),
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "max_rounds", "{summary}");
    let second = &summary["rounds"][1];
    assert_eq!(second["regression"]["action"], "unchecked", "{second}");
    assert_ne!(second["verdict"], "converged", "{second}");
    // Asked, then asked once more, before giving up (each ask may re-ask for the schema).
    let guard_asks = requests_of(&server, "guard")
        .iter()
        .filter(|request| brief(request).contains("Your previous reply could not be used"))
        .count();
    assert!(guard_asks >= 1, "the guard was not asked again");
    let plain = run
        .refinery(&["session", "show", summary["session"].as_str().unwrap()])
        .await;
    assert!(plain.status.success(), "{}", text(&plain.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_that_times_out_leaves_the_round_unscored_and_the_run_going() {
    let server = FakeModelServer::start().await.unwrap();
    // The evaluator never answers within the per-request timeout of one second.
    route_judges(&server, |request| match role(request) {
        "evaluator" => Reply::text(passing()).delayed(Duration::from_secs(4)),
        _ => Reply::text(guard_tie()),
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "1", "--call-timeout", "1"]).await;
    // Not exit 1 (a failed run): the round is unscored and the run ends at its cap.
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["reason"], "max_rounds");
    assert_eq!(summary["rounds"][0]["verdict"], "unscored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_a_round_cannot_hold_up_keeps_it_from_converging() {
    // A judge that cites a file the deliverable does not have.
    let server = FakeModelServer::start().await.unwrap();
    route_judges(&server, |request| match role(request) {
        "evaluator" => {
            let mut reply: Value = serde_json::from_str(&passing()).unwrap();
            reply["scores"]["E1"]["evidence"] = json!(["haiku.md:1 states the outcome"]);
            Reply::text(reply.to_string())
        }
        _ => Reply::text(guard_tie()),
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "1"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let round = &summary(&events)["rounds"][0];
    assert_ne!(round["verdict"], "converged", "{round}");
    assert!(
        round["refused"]["E1"]
            .as_str()
            .unwrap_or_default()
            .contains("haiku.md"),
        "{round}"
    );

    // A verify command that fails, under judges that pass everything.
    let server = FakeModelServer::start().await.unwrap();
    route_judges(&server, |_| Reply::text(passing()));
    let run = Run::new(&server);
    let (output, events) = refine(
        &run,
        &["--max-rounds", "1", "--verify", "test -e never-built.txt"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let round = &summary(&events)["rounds"][0];
    assert_ne!(round["verdict"], "converged", "{round}");
    assert!(
        !round["blocked_by"].as_array().unwrap().is_empty(),
        "{round}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_that_only_claims_its_work_is_reported_and_cannot_converge() {
    let server = FakeModelServer::start().await.unwrap();
    // The builder says it wrote the file but makes no tool call; judges pass everything; the
    // trace analyzer reports failed tool calls that never happened.
    server.route(|request| {
        Some(match role(request) {
            "builder" => Reply::text("I wrote index.html with a strong hero."),
            "trace" => Reply::text(
                json!({"do": [], "dont": ["3 failed Bash calls: npm test kept failing"], "critical_errors": []})
                    .to_string(),
            ),
            "evaluator" => Reply::text(passing()),
            _ => Reply::text(guard_tie()),
        })
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        events
            .iter()
            .any(|event| event["event"] == "builder_changed_nothing"),
        "no builder_changed_nothing event"
    );
    let summary = summary(&events);
    for round in summary["rounds"].as_array().unwrap() {
        assert_eq!(round["builder_changed_nothing"], true, "{round}");
        assert_ne!(round["verdict"], "converged", "{round}");
    }
    // The invented lesson never reaches the next builder.
    let builders = requests_of(&server, "builder");
    let second = builders
        .iter()
        .find(|request| crate::refine::builder_round(request) == 2);
    let second = second.map(brief).unwrap_or_default();
    assert!(!second.is_empty(), "no round 2 builder brief");
    assert!(!second.contains("npm test kept failing"), "{second}");
    let plain = run
        .refinery(&["session", "show", summary["session"].as_str().unwrap()])
        .await;
    assert!(plain.status.success(), "{}", text(&plain.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_of_later_rounds_never_see_earlier_scores_but_builders_do() {
    let server = FakeModelServer::start().await.unwrap();
    // Round 1 scores carry a marker in their reasoning and critique; later rounds' judges
    // must not see them (nor the scores as the handoff shows them), while the builder does.
    Script::simple(content_by_round, |request| {
        if request.body_text().contains("VERSION-1") {
            json!({
                "scores": {
                    "E1": {"score": 3, "evidence": ["index.html:1 generic"], "reasoning": "PAST-REASONING-E1"},
                    "E2": {"score": 4, "evidence": ["index.html:1 no numbers"], "reasoning": "PAST-REASONING-E2"},
                    "E3": {"score": 6, "evidence": ["index.html:1 loads"], "reasoning": "PAST-REASONING-E3"}
                },
                "critique": "PAST-CRITIQUE: the hero is generic.",
                "improvement_spec": [{"criterion": "E1", "change": "state the outcome", "impact": "structural"}],
                "preserve": []
            })
            .to_string()
        } else {
            evaluation([5, 5, 7], "Better, still short.")
        }
    })
    .install(&server);
    let run = Run::new(&server);
    let (output, _events) = refine(&run, &["--max-rounds", "3"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let past = ["PAST-REASONING", "PAST-CRITIQUE", "3/10", "4/10", "6/10"];
    // A judge request of round 2 or 3 is one whose deliverable is that round's page.
    let later: Vec<RecordedRequest> = server
        .model_requests()
        .into_iter()
        .filter(|request| matches!(role(request), "evaluator" | "guard"))
        .filter(|request| {
            let body = request.body_text();
            body.contains("VERSION-2") || body.contains("VERSION-3")
        })
        .collect();
    assert!(
        later.len() >= 4,
        "{} judge requests of rounds 2+",
        later.len()
    );
    for request in &later {
        let body = request.body_text();
        for marker in past {
            assert!(
                !body.contains(marker),
                "a {} request of a later round contains `{marker}`",
                role(request)
            );
        }
        assert!(!body.contains("Previous rounds"), "{}", role(request));
    }
    // The builder keeps the trajectory.
    let builders = requests_of(&server, "builder");
    let second = builders
        .iter()
        .find(|request| crate::refine::builder_round(request) == 2)
        .map(brief)
        .unwrap();
    assert!(second.contains("PAST-CRITIQUE"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gain_smaller_than_the_judges_spread_is_marked_within_their_disagreement() {
    let server = FakeModelServer::start().await.unwrap();
    // Two judges four points apart on E1; between rounds the lower median gains one point.
    route_judges(&server, |request| {
        let round_one = request.body_text().contains("VERSION-1");
        match role(request) {
            "evaluator" if request.model() == "claude-haiku-4-5" => Reply::text(evaluation(
                if round_one { [4, 5, 5] } else { [5, 5, 5] },
                "Strict judge.",
            )),
            "evaluator" => Reply::text(evaluation(
                if round_one { [8, 5, 5] } else { [9, 5, 5] },
                "Lenient judge.",
            )),
            _ => Reply::text(guard_tie()),
        }
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--evaluator", SECOND_JUDGE, "--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    let second = &summary["rounds"][1];
    assert_eq!(
        second["spread"]["E1"],
        json!({"low": 5, "high": 9}),
        "{second}"
    );
    assert_eq!(second["within_disagreement"], json!(["E1"]), "{second}");
    // And in words, in the plain summary of a run like it.
    let plain = run
        .refinery(&[
            "refine",
            "Build a page",
            "--criteria",
            CRITERIA,
            "--builder",
            MODEL,
            "--evaluator",
            MODEL,
            "--evaluator",
            SECOND_JUDGE,
            "--max-rounds",
            "2",
            "--yes",
        ])
        .await;
    let shown = format!("{}{}", text(&plain.stdout), text(&plain.stderr));
    assert!(shown.contains("within judge disagreement"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_the_guard_cannot_check_again_is_unchecked_never_repaired() {
    let server = FakeModelServer::start().await.unwrap();
    server.route(|request| {
        let body = request.body_text();
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => {
                let content = match crate::refine::builder_round(request) {
                    1 => "<h1>GOOD-1</h1>",
                    0 => "<h1>REPAIRED</h1>",
                    _ => "<h1>BROKEN</h1>",
                };
                Reply::tool_call(
                    "write_file",
                    json!({"path": "index.html", "content": content}),
                )
            }
            "builder" => Reply::text("Wrote index.html"),
            "trace" => Reply::text(lessons()),
            "evaluator" if body.contains("GOOD-1") => {
                Reply::text(evaluation([4, 6, 8], "Weak hero."))
            }
            "evaluator" => Reply::text(passing()),
            // The guard sees the regression, then cannot say anything usable about the repair.
            _ if body.contains("REPAIRED") => Reply::text(GARBAGE),
            _ => {
                let text = brief(request);
                let a_is_good = text.split("## Answer B").next().unwrap().contains("GOOD-1");
                Reply::text(
                    json!({"preferences": {"E1": if a_is_good { "A" } else { "B" }, "E2": "tie", "E3": "tie"}, "reasoning": "the heading lost its outcome"})
                        .to_string(),
                )
            }
        })
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    let second = &summary["rounds"][1];
    assert_eq!(second["regression"]["action"], "unchecked", "{second}");
    assert_ne!(second["verdict"], "converged", "{second}");
}

/// A builder that writes the page in round 1 and, from round 2 on, only says it changed it.
fn writes_in_round_one_then_only_talks(request: &RecordedRequest) -> Reply {
    if crate::refine::builder_round(request) != 1 {
        Reply::text("Rewrote the hero around the measured outcome.")
    } else if request.tool_results().is_empty() {
        Reply::tool_call(
            "write_file",
            json!({"path": "index.html", "content": "<h1>Welcome</h1>"}),
        )
    } else {
        Reply::text("Wrote index.html")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deliverable_left_as_a_failing_round_had_it_cannot_converge() {
    let server = FakeModelServer::start().await.unwrap();
    // Round 1's builder writes the page and the judge asks for changes; round 2's builder only
    // says it made them, and the judge (fooled) passes everything. The files are the ones a
    // failing round delivered, so the passing scores must not converge the run.
    let evaluations = std::sync::atomic::AtomicUsize::new(0);
    server.route(move |request| {
        Some(match role(request) {
            "builder" => writes_in_round_one_then_only_talks(request),
            "trace" => Reply::text(lessons()),
            "evaluator" => {
                let seen = evaluations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Reply::text(if seen == 0 {
                    evaluation([3, 4, 4], "The hero says nothing about the outcome.")
                } else {
                    passing()
                })
            }
            _ => Reply::text(guard_tie()),
        })
    });
    let run = Run::new(&server);
    let (output, events) = refine(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{summary}");
    let second = &rounds[1];
    assert_eq!(second["builder_changed_nothing"], true, "{second}");
    assert_ne!(second["verdict"], "converged", "{second}");
    assert!(
        second["blocked_by"]
            .as_array()
            .unwrap()
            .contains(&json!({"block": "unchanged", "since_round": 1})),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_between_rounds_counts_as_the_next_builders() {
    // From round 2 on, "builder changed nothing" compares the workspace after the build with
    // what the previous round submitted (USAGE.md says so): a file a person adds while round 1
    // is being judged is counted as round 2's change, even when round 2's builder only talks.
    let server = FakeModelServer::start().await.unwrap();
    let run = Run::new(&server);
    let project = run.project();
    server.route(move |request| {
        Some(match role(request) {
            "builder" => writes_in_round_one_then_only_talks(request),
            "trace" => Reply::text(lessons()),
            "evaluator" => {
                let notes = project.join("notes.txt");
                if !notes.exists() {
                    fs_err::write(&notes, "a person's note\n").unwrap();
                }
                Reply::text(evaluation([3, 4, 4], "The hero says nothing."))
            }
            _ => Reply::text(guard_tie()),
        })
    });
    let (output, events) = refine(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let rounds = summary(&events)["rounds"].as_array().unwrap().clone();
    assert_eq!(rounds.len(), 2);
    assert_ne!(rounds[1]["builder_changed_nothing"], true, "{}", rounds[1]);
    assert!(
        !events
            .iter()
            .any(|event| event["event"] == "builder_changed_nothing"),
        "round 2 was reported as changing nothing"
    );
}
