//! Success and error paths beyond the reference table.

use pretty_assertions::assert_eq;
use refinery_mcp::ToolSet;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::support::{criteria, harness, read_json};

#[tokio::test]
async fn each_server_lists_its_tools_with_schemas() {
    let expect = [
        (
            ToolSet::Quality,
            vec![
                "draft_approach",
                "generate_eval_criteria",
                "init_session",
                "propose_improvements",
                "reset_evaluation",
                "submit_checklist",
            ],
        ),
        (ToolSet::Workflow, vec!["new_answer", "vote"]),
        (
            ToolSet::All,
            vec![
                "draft_approach",
                "generate_eval_criteria",
                "init_session",
                "new_answer",
                "propose_improvements",
                "reset_evaluation",
                "submit_checklist",
                "vote",
            ],
        ),
    ];
    for (set, names) in expect {
        let h = harness(set).await;
        let tools = h.client.list_all_tools().await.unwrap();
        let mut listed: Vec<String> = tools.iter().map(|tool| tool.name.to_string()).collect();
        listed.sort();
        assert_eq!(listed, names, "{set:?}");
        for tool in &tools {
            assert!(
                tool.output_schema.is_some(),
                "{} lacks an output schema",
                tool.name
            );
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(
                !description.is_empty() && description.len() < 250,
                "{}",
                tool.name
            );
        }
    }
}

#[tokio::test]
async fn argument_names_match_the_reference_servers() {
    // shared/reference/massgen-tools.json: the argument names clients already send.
    let h = harness(ToolSet::All).await;
    let tools = h.client.list_all_tools().await.unwrap();
    let properties = |name: &str| {
        let tool = tools.iter().find(|tool| tool.name == name).unwrap();
        let mut keys: Vec<String> = tool.input_schema["properties"]
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert!(properties("init_session").contains(&"label".to_owned()));
    assert_eq!(properties("generate_eval_criteria"), vec!["criteria"]);
    assert_eq!(
        properties("submit_checklist"),
        vec!["panel_session", "report_path", "scores"]
    );
    assert_eq!(
        properties("draft_approach"),
        vec!["improvements", "preserve", "vision"]
    );
    assert_eq!(
        properties("propose_improvements"),
        vec!["improvements", "preserve", "vision"]
    );
    assert_eq!(properties("new_answer"), vec!["answer", "file_paths"]);
    assert_eq!(properties("vote"), vec!["choice", "reasoning"]);
}

#[tokio::test]
async fn missing_required_arguments_are_tool_errors() {
    let h = harness(ToolSet::All).await;
    let result = h
        .client
        .call_tool(
            CallToolRequestParams::new("submit_checklist").with_arguments(serde_json::Map::new()),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = &result.content[0].as_text().unwrap().text;
    assert!(text.contains("scores"), "{text}");
}

#[tokio::test]
async fn unknown_tools_are_protocol_errors() {
    let h = harness(ToolSet::Quality).await;
    let result = h
        .client
        .call_tool(CallToolRequestParams::new("new_answer").with_arguments(serde_json::Map::new()))
        .await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_corrupt_state_file_is_rebuilt_from_the_journal() {
    // `state.json` only caches what `events.jsonl` says: a damaged copy is never believed
    // (round 3 here) and never blocks the session.
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let state_path = h.session_dir("default").join("state.json");
    fs_err::write(&state_path, b"{\"round\": 3, \"last_res").unwrap();
    let body = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(body["code"], "no_answer", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("round 1"),
        "{body}"
    );
    let state = read_json(&state_path);
    assert_eq!(state["round"], 0);
    assert_eq!(state["criteria_revision"], 1);
}

#[tokio::test]
async fn a_corrupt_pointer_is_an_error_too() {
    let h = harness(ToolSet::Quality).await;
    fs_err::create_dir_all(&h.state).unwrap();
    fs_err::write(h.state.join("session_metadata.json"), b"[1,2").unwrap();
    let body = h.call("generate_eval_criteria", criteria(1)).await.err();
    assert_eq!(body["code"], "corrupt_state");
    let body = {
        fs_err::write(
            h.state.join("session_metadata.json"),
            br#"{"session_id": 7}"#,
        )
        .unwrap();
        h.call("generate_eval_criteria", criteria(1)).await.err()
    };
    assert_eq!(body["code"], "corrupt_state");
}

#[tokio::test]
async fn max_rounds_is_enforced_by_the_tools() {
    let h = harness(ToolSet::All).await;
    let session = h
        .call("init_session", json!({"label": "capped", "max_rounds": 1}))
        .await
        .ok();
    assert_eq!(session["max_rounds"], 1);
    h.write("a.txt", "a");
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.call(
        "new_answer",
        json!({"answer": "r1", "file_paths": ["a.txt"]}),
    )
    .await
    .ok();
    let scored = h
        .call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    assert_eq!(scored["max_rounds"], 1);
    let refused = h
        .call(
            "new_answer",
            json!({"answer": "r2", "file_paths": ["a.txt"]}),
        )
        .await
        .err();
    assert_eq!(refused["code"], "max_rounds_reached");
    assert_eq!(refused["round"], 2);
    let refused = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(refused["code"], "max_rounds_reached");
}

#[tokio::test]
async fn the_cutoff_is_set_per_session_and_validated() {
    let h = harness(ToolSet::Quality).await;
    h.call("init_session", json!({"cutoff": 11})).await.err();
    h.call("init_session", json!({"label": "strict", "cutoff": 9}))
        .await
        .ok();
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    let body = h
        .call("submit_checklist", json!({"scores": {"E1": 8}}))
        .await
        .ok();
    assert_eq!(body["verdict"], "iterate");
    assert_eq!(body["cutoff"], 9);
}

#[tokio::test]
async fn replacing_criteria_invalidates_the_last_verdict() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3, "E2": 3}}))
        .await
        .ok();
    h.call("generate_eval_criteria", criteria(3)).await.ok();
    let body = h
        .call(
            "propose_improvements",
            json!({"improvements": {"E1": [{"plan": "p", "impact": "structural"}]}}),
        )
        .await
        .err();
    assert!(body["error"].as_str().unwrap().contains("submit_checklist"));
    h.answer();
    let next = h
        .call(
            "submit_checklist",
            json!({"scores": {"E1": 3, "E2": 3, "E3": 3}}),
        )
        .await
        .ok();
    assert_eq!(next["round"], 2);
    assert_eq!(next["plateaued_criteria"], json!([]));
}

#[tokio::test]
async fn an_accepted_plan_is_saved_with_preserve_and_vision() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(2)).await.ok();
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 3, "E2": 9}}))
        .await
        .ok();
    let body = h
        .call(
            "propose_improvements",
            json!({
                "improvements": {"E1": [{"plan": "replace the layout grid", "impact": "structural"}, "tighten copy"]},
                "preserve": {"E2": "the colour palette"},
                "vision": "a calmer page"
            }),
        )
        .await
        .ok();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["valid"], true);
    assert_eq!(body["improvements_count"], 2);
    assert_eq!(body["non_incremental_count"], 1);
    assert_eq!(body["failed_criteria"], json!(["E1"]));
    let plan = read_json(std::path::Path::new(body["plan_path"].as_str().unwrap()));
    assert_eq!(plan["after_round"], 1);
    assert_eq!(plan["preserve"], json!({"E2": "the colour palette"}));
    assert_eq!(plan["vision"], "a calmer page");
    assert_eq!(plan["improvements"]["E1"][1]["impact"], "incremental");
    // A new checklist supersedes the plan.
    h.answer();
    h.call("submit_checklist", json!({"scores": {"E1": 9, "E2": 9}}))
        .await
        .ok();
    let state = read_json(&h.session_dir("default").join("state.json"));
    assert!(state["plan"].is_null());
}

#[tokio::test]
async fn report_paths_must_exist_inside_the_workspace() {
    let h = harness(ToolSet::Quality).await;
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.answer();
    let missing = h
        .call(
            "submit_checklist",
            json!({"scores": {"E1": 5}, "report_path": "nope.md"}),
        )
        .await
        .err();
    assert_eq!(missing["code"], "bad_path");
    let outside = h
        .call(
            "submit_checklist",
            json!({"scores": {"E1": 5}, "report_path": "/etc/hostname"}),
        )
        .await
        .err();
    assert!(
        outside["error"]
            .as_str()
            .unwrap()
            .contains("outside the workspace")
            || outside["error"]
                .as_str()
                .unwrap()
                .contains("does not exist")
    );
    h.write("reports/round1.md", "# critique");
    let ok = h
        .call(
            "submit_checklist",
            json!({"scores": {"E1": 5}, "report_path": "reports/round1.md"}),
        )
        .await
        .ok();
    assert_eq!(ok["report_path"], "reports/round1.md");
    assert_eq!(ok["round"], 1);
}

#[tokio::test]
async fn a_checklist_is_tied_to_the_submission_it_scored() {
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "one");
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let first = h
        .call(
            "new_answer",
            json!({"answer": "draft", "file_paths": ["a.txt"]}),
        )
        .await
        .ok();
    assert_eq!(
        (first["round"].as_u64(), first["revision"].as_u64()),
        (Some(1), Some(1))
    );
    h.write("a.txt", "two");
    let second = h
        .call(
            "new_answer",
            json!({"answer": "fixed", "file_paths": ["a.txt"]}),
        )
        .await
        .ok();
    assert_eq!(
        (second["round"].as_u64(), second["revision"].as_u64()),
        (Some(1), Some(2))
    );
    let round_dir = h.session_dir("default").join("round_001");
    assert_eq!(
        read_json(&round_dir.join("submission.1.json"))["answer_summary"],
        "draft"
    );
    assert_eq!(
        read_json(&round_dir.join("submission.json"))["answer_summary"],
        "fixed"
    );
    let scored = h
        .call("submit_checklist", json!({"scores": {"E1": 4}}))
        .await
        .ok();
    assert_eq!(scored["submission"], json!({"round": 1, "revision": 2}));
    let next = h
        .call(
            "new_answer",
            json!({"answer": "round two", "file_paths": ["a.txt"]}),
        )
        .await
        .ok();
    assert_eq!(next["round"], 2);
    assert_eq!(next["new_bytes"], 0);
    let second_round = h
        .call("submit_checklist", json!({"scores": {"E1": 4}}))
        .await
        .ok();
    assert_eq!(
        second_round["submission"],
        json!({"round": 2, "revision": 1})
    );
    // A checklist for round 3, which has no answer, is refused: only answers are scored.
    let blind = h
        .call("submit_checklist", json!({"scores": {"E1": 4}}))
        .await
        .err();
    assert_eq!(blind["code"], "no_answer");
}

#[tokio::test]
async fn every_operation_is_journaled() {
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "a");
    let session = h
        .call("init_session", json!({"label": "journal"}))
        .await
        .ok();
    let id = session["session_id"].as_str().unwrap().to_owned();
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    h.call(
        "new_answer",
        json!({"answer": "a", "file_paths": ["a.txt"]}),
    )
    .await
    .ok();
    h.call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    h.call(
        "propose_improvements",
        json!({"improvements": {"E1": [{"plan": "redo", "impact": "transformative"}]}}),
    )
    .await
    .ok();
    h.call("vote", json!({"choice": "a"})).await.ok();
    h.call("reset_evaluation", json!({})).await.ok();
    // A refused call writes nothing.
    h.call("submit_checklist", json!({"scores": {"E1": 99}}))
        .await
        .err();
    let ops: Vec<String> = h
        .events(&id)
        .iter()
        .map(|e| e["op"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ops,
        vec![
            "init_session",
            "generate_eval_criteria",
            "new_answer",
            "submit_checklist",
            "propose_improvements",
            "vote",
            "reset_evaluation"
        ]
    );
    for event in h.events(&id) {
        assert!(event["ts"].as_str().unwrap().ends_with('Z'), "{event}");
    }
}
