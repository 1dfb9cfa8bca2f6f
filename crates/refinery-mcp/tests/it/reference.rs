//! MassGen's behaviour-compatibility checks 1–20 (massgen-behavior.md §8), replayed against our
//! tools. Where we deliberately differ, the test is named `deviation_…` and `docs/compat.md`
//! explains why. Check 30 (winner choice) is a pure rule and is tested in
//! `refinery_core::votes`.

use pretty_assertions::assert_eq;
use refinery_mcp::ToolSet;
use serde_json::json;

use crate::support::{criteria, harness, read_json};

#[tokio::test]
async fn check_01_checklist_before_criteria_is_an_error() {
    let h = harness(ToolSet::All).await;
    let body = h
        .call("submit_checklist", json!({"scores": {"E1": 8}}))
        .await
        .err();
    assert_eq!(body["code"], "no_criteria");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("generate_eval_criteria")
    );
    assert!(!h.session_dir("default").join("state.json").exists());
}

#[tokio::test]
async fn check_02_empty_or_textless_criteria_are_refused_and_nothing_is_written() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", json!({"criteria": []}))
        .await
        .err();
    let body = h
        .call(
            "generate_eval_criteria",
            json!({"criteria": [{"id": "E1"}]}),
        )
        .await
        .err();
    assert_eq!(body["code"], "invalid_criteria");
    assert!(!h.session_dir("default").join("criteria.json").exists());
}

#[tokio::test]
async fn check_03_criteria_are_stored_with_every_field() {
    let h = harness(ToolSet::Quality).await;
    let body = h
        .call(
            "generate_eval_criteria",
            json!({"criteria": [{"id": "E1", "text": "A", "category": "must"}, {"id": "E2", "text": "B"}]}),
        )
        .await
        .ok();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["criteria_count"], 2);
    let path = body["path"].as_str().unwrap();
    assert!(
        path.ends_with(".refinery/sessions/default/criteria.json"),
        "{path}"
    );
    let stored = read_json(std::path::Path::new(path));
    assert_eq!(stored[0]["id"], "E1");
    assert_eq!(stored[0]["text"], "A");
    assert_eq!(stored[0]["rationale"], "");
    assert_eq!(stored[1]["category"], "standard");
}

#[tokio::test]
async fn deviation_categories_are_normalized_must_to_primary() {
    // MassGen stored `must` as given; we normalize the MoSCoW aliases.
    let h = harness(ToolSet::Quality).await;
    let body = h
        .call(
            "generate_eval_criteria",
            json!({"criteria": [{"id": "E1", "text": "A", "category": "must"}, {"id": "E2", "text": "B", "category": "could"}, {"id": "E3", "text": "C", "category": "Should"}]}),
        )
        .await
        .ok();
    let stored = read_json(std::path::Path::new(body["path"].as_str().unwrap()));
    assert_eq!(stored[0]["category"], "primary");
    assert_eq!(stored[1]["category"], "stretch");
    assert_eq!(stored[2]["category"], "standard");
}

#[tokio::test]
async fn deviation_rich_criteria_fields_are_kept() {
    // MassGen dropped anti_patterns, score_anchors and verify_by (its schema even rejected them).
    let h = harness(ToolSet::Quality).await;
    let body = h
        .call(
            "generate_eval_criteria",
            json!({"criteria": [{"id": "E1", "text": "A", "anti_patterns": ["p1", "p2"], "score_anchors": {"3": "weak", "9": "superb"}, "verify_by": "open it in a browser"}]}),
        )
        .await
        .ok();
    let stored = read_json(std::path::Path::new(body["path"].as_str().unwrap()));
    assert_eq!(stored[0]["anti_patterns"], json!(["p1", "p2"]));
    assert_eq!(stored[0]["score_anchors"]["9"], "superb");
    assert_eq!(stored[0]["verify_by"], "open it in a browser");
}

#[tokio::test]
async fn deviation_duplicate_ids_are_refused() {
    let h = harness(ToolSet::Quality).await;
    let body = h
        .call(
            "generate_eval_criteria",
            json!({"criteria": [{"id": "E1", "text": "A"}, {"id": "E1", "text": "B"}]}),
        )
        .await
        .err();
    assert!(body["error"].as_str().unwrap().contains("more than once"));
}

#[tokio::test]
async fn checks_04_05_iterate_then_converge() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    let first = h
        .call("submit_checklist", json!({"scores": {"E1": 5, "E2": 8}}))
        .await
        .ok();
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["verdict"], "iterate");
    assert_eq!(first["round"], 1);
    assert_eq!(first["failed_criteria"], json!(["E1"]));
    assert_eq!(first["items"][0]["passed"], false);
    assert_eq!(first["items"][1]["passed"], true);
    assert_eq!(
        first["failing_criteria_detail"],
        json!([{"id": "E1", "text": "A", "score": 5}])
    );
    let explanation = first["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("1 of 2 criteria passed (required: 2"),
        "{explanation}"
    );
    assert!(explanation.contains("NEXT STEP"), "{explanation}");
    assert!(explanation.contains("draft_approach"), "{explanation}");

    h.answer();
    let second = h
        .call(
            "submit_checklist",
            json!({"scores": {"E1": {"score": 7, "reasoning": "ok"}, "E2": 7}}),
        )
        .await
        .ok();
    assert_eq!(second["verdict"], "converge");
    assert_eq!(second["round"], 2);
    assert_eq!(second["items"][0]["reasoning"], "ok");
}

#[tokio::test]
async fn deviation_06_scores_must_be_whole_numbers_from_0_to_10() {
    // MassGen truncated 6.99 to 6, counted true/"high"/{"reasoning"} as 0 and accepted 80 and -1.
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let state_path = h.session_dir("default").join("state.json");
    let before = fs_err::read(&state_path).unwrap();
    for bad in [
        json!(6.99),
        json!(true),
        json!("high"),
        json!({"reasoning": "x"}),
        json!(80),
        json!(-1),
    ] {
        let body = h
            .call("submit_checklist", json!({"scores": {"E1": bad.clone()}}))
            .await
            .err();
        assert_eq!(body["code"], "invalid_scores", "{bad}");
        assert!(
            body["error"].as_str().unwrap().contains("E1"),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        fs_err::read(&state_path).unwrap(),
        before,
        "state must be untouched"
    );
    h.answer();
    let ok = h
        .call("submit_checklist", json!({"scores": {"E1": 10}}))
        .await
        .ok();
    assert_eq!(ok["round"], 1);
}

#[tokio::test]
async fn deviation_unknown_score_ids_are_errors() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let body = h
        .call("submit_checklist", json!({"scores": {"E1": 8, "E9": 8}}))
        .await
        .err();
    assert!(body["error"].as_str().unwrap().contains("E9"));
    assert_eq!(body["criteria_ids"], json!(["E1"]));
}

#[tokio::test]
async fn deviation_scores_sent_as_a_json_string_are_accepted() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    let body = h
        .call(
            "submit_checklist",
            json!({"scores": "{\"E1\": 8, \"E2\": 9}"}),
        )
        .await
        .ok();
    assert_eq!(body["verdict"], "converge");
}

#[tokio::test]
async fn check_07_missing_score_leaves_state_unchanged() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 5, "E2": 5}}))
        .await
        .ok();
    let state_path = h.session_dir("default").join("state.json");
    let before = fs_err::read(&state_path).unwrap();
    let body = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(body["criteria_ids"], json!(["E1", "E2"]));
    assert_eq!(body["missing"], json!(["E2"]));
    assert!(body["error"].as_str().unwrap().contains("E2"));
    assert_eq!(fs_err::read(&state_path).unwrap(), before);
}

#[tokio::test]
async fn deviation_08_plateau_reports_failing_criteria_only() {
    // MassGen also reported the passing E1 (9 -> 9 -> 9) as plateaued.
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 9, "E2": 5}}))
        .await
        .ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 9, "E2": 5}}))
        .await
        .ok();
    h.answer();
    let third = h
        .call("submit_checklist", json!({"scores": {"E1": 9, "E2": 6}}))
        .await
        .ok();
    assert_eq!(third["verdict"], "iterate");
    let explanation = third["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("Plateaued criteria: E2 (scores: 5 -> 5 -> 6)"),
        "{explanation}"
    );
    assert!(!explanation.contains("E1 (scores"), "{explanation}");
    assert_eq!(
        third["plateaued_criteria"],
        json!([{"id": "E2", "scores": [5, 5, 6]}])
    );
}

#[tokio::test]
async fn check_09_plan_before_any_checklist() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "p", "impact": "structural"}]}}),
        )
        .await
        .err();
    assert!(body["error"].as_str().unwrap().contains("submit_checklist"));
    assert_eq!(body["valid"], false);
}

#[tokio::test]
async fn check_10_plan_after_converge_is_refused() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "p", "impact": "structural"}]}}),
        )
        .await
        .err();
    assert!(body["error"].as_str().unwrap().contains("iterate"));
}

#[tokio::test]
async fn check_11_every_failed_criterion_needs_a_plan() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3, "E2": 4}}))
        .await
        .ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "p", "impact": "structural"}]}}),
        )
        .await
        .err();
    assert_eq!(body["valid"], false);
    assert_eq!(body["missing_criteria"], json!(["E2"]));
    assert_eq!(body["empty_criteria"], json!([]));
    assert_eq!(body["failed_criteria"], json!(["E1", "E2"]));
}

#[tokio::test]
async fn check_12_all_incremental_is_refused() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "tweak", "impact": "incremental"}]}}),
        )
        .await
        .err();
    assert_eq!(body["valid"], false);
    assert!(body["error"].as_str().unwrap().contains("incremental"));
}

#[tokio::test]
async fn deviation_13_impact_is_case_insensitive() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "rebuild", "impact": "Structural"}]}}),
        )
        .await
        .ok();
    assert_eq!(body["valid"], true);
    assert_eq!(body["non_incremental_count"], 1);
}

#[tokio::test]
async fn deviation_14_unknown_criteria_cannot_carry_the_impact_gate() {
    // MassGen accepted {"E1": [incremental], "E99": [transformative]} as valid.
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    let body = h
        .call(
            "draft_approach",
            json!({"improvements": {"E1": [{"plan": "x", "impact": "incremental"}], "E99": [{"plan": "y", "impact": "transformative"}]}}),
        )
        .await
        .err();
    assert_eq!(body["valid"], false);
    assert_eq!(body["unknown_criteria"], json!(["E99"]));
}

#[tokio::test]
async fn check_15_reset_keeps_criteria_and_restarts_rounds() {
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "a");
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.call(
        "new_answer",
        json!({"answer": "v1", "file_paths": ["a.txt"]}),
    )
    .await
    .ok();
    h.call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    let criteria_path = h.session_dir("default").join("criteria.json");
    let criteria_before = fs_err::read(&criteria_path).unwrap();
    let reset = h.call("reset_evaluation", json!({})).await.ok();
    assert_eq!(reset["status"], "ok");
    assert!(reset["message"].as_str().unwrap().contains("criteria kept"));
    h.answer();
    let next = h
        .call("submit_checklist", json!({"scores": {"E1": 8}}))
        .await
        .ok();
    assert_eq!(next["round"], 1);
    assert_eq!(fs_err::read(&criteria_path).unwrap(), criteria_before);
}

#[tokio::test]
async fn deviation_reset_archives_round_folders_instead_of_overwriting_them() {
    // MassGen let the next new_answer overwrite round_001 and merge into its deliverables.
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "first");
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.call(
        "new_answer",
        json!({"answer": "v1", "file_paths": ["a.txt"]}),
    )
    .await
    .ok();
    let reset = h.call("reset_evaluation", json!({})).await.ok();
    assert_eq!(reset["archived_rounds"], json!(["round_001"]));
    let archived = h
        .session_dir("default")
        .join("archive/reset_1/round_001/submission.json");
    assert_eq!(read_json(&archived)["answer_summary"], "v1");
    h.write("a.txt", "second");
    let again = h
        .call(
            "new_answer",
            json!({"answer": "v2", "file_paths": ["a.txt"]}),
        )
        .await
        .ok();
    assert_eq!(again["round"], 1);
    assert_eq!(read_json(&archived)["answer_summary"], "v1");
}

#[tokio::test]
async fn check_16_init_session_with_label() {
    let h = harness(ToolSet::All).await;
    let body = h
        .call("init_session", json!({"label": "landing-page"}))
        .await
        .ok();
    let id = body["session_id"].as_str().unwrap().to_owned();
    let (stamp, label) = id.split_at(15);
    assert!(
        stamp
            .chars()
            .enumerate()
            .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() }),
        "{id}"
    );
    assert_eq!(label, "_landing-page");
    let pointer = read_json(&h.state.join("session_metadata.json"));
    assert_eq!(pointer["session_id"], id.as_str());
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    assert!(h.session_dir(&id).join("criteria.json").exists());
    assert!(!h.session_dir("default").exists());
}

#[tokio::test]
async fn check_17_init_session_without_label() {
    let h = harness(ToolSet::Quality).await;
    let plain = h.call("init_session", json!({})).await.ok();
    assert_eq!(plain["session_id"].as_str().unwrap().len(), 15);
}

#[tokio::test]
async fn deviation_17_a_label_with_no_usable_characters_adds_no_suffix() {
    // MassGen appended `_default`; an id of the bare timestamp is clearer.
    let h = harness(ToolSet::Quality).await;
    let body = h.call("init_session", json!({"label": "!!!"})).await.ok();
    let id = body["session_id"].as_str().unwrap();
    assert!(id.len() == 15 || id.len() == 17, "{id}");
}

#[tokio::test]
async fn deviation_same_second_sessions_never_share_a_folder() {
    let h = harness(ToolSet::Quality).await;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let body = h.call("init_session", json!({"label": "same"})).await.ok();
        ids.insert(body["session_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 5, "{ids:?}");
}

#[tokio::test]
async fn deviation_18_a_pointer_that_escapes_is_an_error_not_a_rename() {
    // MassGen sanitized "../../evil" to "evil" and carried on.
    let h = harness(ToolSet::Quality).await;
    fs_err::create_dir_all(&h.state).unwrap();
    fs_err::write(
        h.state.join("session_metadata.json"),
        r#"{"session_id":"../../evil"}"#,
    )
    .unwrap();
    let body = h.call("generate_eval_criteria", criteria(1)).await.err();
    assert_eq!(body["code"], "invalid_session");
    assert!(body["error"].as_str().unwrap().contains("init_session"));
    assert!(!h.state.join("sessions/evil").exists());
    assert!(!h.state.join("evil").exists());
}

#[tokio::test]
async fn check_19_new_answer_keeps_only_workspace_files() {
    let h = harness(ToolSet::Workflow).await;
    h.write("src/a.txt", "alpha");
    let paths = json!(["src/a.txt", "../x", "/etc/passwd", "missing"]);
    let body = h
        .call(
            "new_answer",
            json!({"answer": "s", "file_paths": paths.clone()}),
        )
        .await
        .ok();
    assert_eq!(body["round"], 1);
    assert_eq!(body["snapshots"], json!(["src/a.txt"]));
    let round_dir = h.session_dir("default").join("round_001");
    assert!(round_dir.join(".scratch/verification").is_dir());
    let submission = read_json(&round_dir.join("submission.json"));
    assert_eq!(submission["original_paths"], paths);
    assert_eq!(submission["answer_summary"], "s");
    assert_eq!(submission["files"][0]["path"], "src/a.txt");
}

#[tokio::test]
async fn deviation_19_skipped_paths_are_reported_with_reasons() {
    // MassGen only logged skipped paths; the caller never learned about them.
    let h = harness(ToolSet::Workflow).await;
    h.write("src/a.txt", "alpha");
    let body = h
        .call(
            "new_answer",
            json!({"answer": "s", "file_paths": ["src/a.txt", "../x", "/etc/passwd", "missing"]}),
        )
        .await
        .ok();
    let skipped = body["skipped"].as_array().unwrap();
    let reason = |path: &str| {
        skipped
            .iter()
            .find(|s| s["path"] == path)
            .map(|s| s["reason"].as_str().unwrap().to_owned())
    };
    assert!(reason("../x").unwrap().contains("outside the workspace"));
    assert!(
        reason("/etc/passwd")
            .unwrap()
            .contains("outside the workspace")
    );
    assert!(reason("missing").unwrap().contains("does not exist"));
}

#[tokio::test]
async fn deviation_19_snapshots_are_content_addressed_not_copied_to_deliverables() {
    // MassGen copied files to round_NNN/deliverables/<basename>; we keep a manifest of relative
    // paths and hashes, with the bytes in the shared object store.
    let h = harness(ToolSet::Workflow).await;
    h.write("src/a.txt", "alpha");
    h.call(
        "new_answer",
        json!({"answer": "s", "file_paths": ["src/a.txt"]}),
    )
    .await
    .ok();
    let round_dir = h.session_dir("default").join("round_001");
    assert!(!round_dir.join("deliverables").exists());
    let submission = read_json(&round_dir.join("submission.json"));
    let hash = submission["files"][0]["hash"].as_str().unwrap();
    let objects = refinery_core::ObjectStore::new(h.state.join("objects"));
    assert_eq!(objects.read_object(hash).unwrap(), b"alpha");
}

#[tokio::test]
async fn deviation_same_named_files_in_different_folders_stay_apart() {
    let h = harness(ToolSet::Workflow).await;
    h.write("src/index.html", "source");
    h.write("dist/index.html", "built");
    let body = h
        .call(
            "new_answer",
            json!({"answer": "s", "file_paths": ["src/index.html", "dist/index.html"]}),
        )
        .await
        .ok();
    assert_eq!(
        body["snapshots"],
        json!(["dist/index.html", "src/index.html"])
    );
}

#[tokio::test]
async fn deviation_dot_snapshots_the_workspace_without_recursing_into_state() {
    let h = harness(ToolSet::Workflow).await;
    h.write("index.html", "<h1>hi</h1>");
    h.write("css/site.css", "body{}");
    let first = h
        .call("new_answer", json!({"answer": "s", "file_paths": ["."]}))
        .await
        .ok();
    assert_eq!(first["snapshots"], json!(["css/site.css", "index.html"]));
    // A second submission of the same round sees the first one's state files and still
    // leaves them out.
    let second = h
        .call("new_answer", json!({"answer": "s2", "file_paths": ["."]}))
        .await
        .ok();
    assert_eq!(second["snapshots"], json!(["css/site.css", "index.html"]));
    assert_eq!(second["revision"], 2);
    assert_eq!(second["new_bytes"], 0);
}

#[cfg(unix)]
#[tokio::test]
async fn deviation_symlinks_to_outside_are_refused() {
    let h = harness(ToolSet::Workflow).await;
    let outside = h.workspace.parent().unwrap().join("outside.txt");
    fs_err::write(&outside, "private").unwrap();
    h.write("site/index.html", "ok");
    std::os::unix::fs::symlink(&outside, h.workspace.join("site/leak.txt")).unwrap();
    let body = h
        .call("new_answer", json!({"answer": "s", "file_paths": ["site"]}))
        .await
        .ok();
    assert_eq!(body["snapshots"], json!(["site/index.html"]));
    let skipped = body["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|s| {
        s["path"] == "site/leak.txt"
            && s["reason"]
                .as_str()
                .unwrap()
                .contains("outside the workspace")
    }));
}

#[tokio::test]
async fn check_20_vote_echoes_and_is_recorded() {
    let h = harness(ToolSet::Workflow).await;
    let body = h
        .call("vote", json!({"choice": "agent2", "reasoning": "best"}))
        .await
        .ok();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["tool_name"], "vote");
    assert_eq!(
        body["arguments"],
        json!({"choice": "agent2", "reasoning": "best"})
    );
    // Deviation: MassGen's vote persisted nothing; ours is in the journal.
    assert_eq!(body["server"], "refinery_workflow");
    assert_eq!(body["recorded"], true);
    let events = h.events("default");
    let vote = events.iter().find(|e| e["op"] == "vote").unwrap();
    assert_eq!(vote["choice"], "agent2");
    assert_eq!(vote["reasoning"], "best");
}

#[tokio::test]
async fn deviation_empty_vote_is_refused() {
    let h = harness(ToolSet::Workflow).await;
    let body = h.call("vote", json!({"choice": "  "})).await.err();
    assert_eq!(body["code"], "invalid_vote");
}

#[tokio::test]
async fn deviation_secrets_and_git_internals_are_never_snapshotted_even_when_named() {
    // MassGen copied whatever path it was given (inside the cwd): `.env`, `.git/config`.
    let h = harness(ToolSet::All).await;
    h.write(".env", "API_TOKEN=never-in-the-store\n");
    h.write(".env.local", "LOCAL=never-in-the-store-either\n");
    h.write(
        ".git/config",
        "[remote] url = https://token@example.invalid\n",
    );
    h.write("app.js", "ok");
    let body = h
        .call(
            "new_answer",
            json!({"answer": "s", "file_paths": [".env", ".env.local", ".git/config", "app.js"]}),
        )
        .await
        .ok();
    assert_eq!(body["snapshots"], json!(["app.js"]));
    let skipped: Vec<&str> = body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|skip| skip["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, vec![".env", ".env.local", ".git/config"]);
    let everything = h
        .call("new_answer", json!({"answer": "s", "file_paths": ["."]}))
        .await
        .ok();
    assert_eq!(everything["snapshots"], json!(["app.js"]));
}

#[tokio::test]
async fn deviation_ignore_rules_are_fixed_when_the_session_starts() {
    // A builder that rewrites `.gitignore` mid-loop cannot pull ignored files into a round.
    let h = harness(ToolSet::All).await;
    h.write(".gitignore", "private/\n*.log\n");
    h.write("private/notes.txt", "mine");
    h.write("app.js", "v1");
    h.call("init_session", json!({"label": "scope"})).await.ok();
    h.write(".gitignore", "");
    h.write("debug.log", "new, and ignored by the rules of the start");
    let body = h
        .call("new_answer", json!({"answer": "s", "file_paths": ["."]}))
        .await
        .ok();
    assert_eq!(body["snapshots"], json!([".gitignore", "app.js"]));
    let named = h
        .call(
            "new_answer",
            json!({"answer": "s", "file_paths": ["private/notes.txt"]}),
        )
        .await
        .ok();
    assert_eq!(named["snapshots"], json!([]));
    assert!(
        named["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ignored"),
        "{named}"
    );
}
