//! Caps the tools enforce on their own, whatever the skill's prompt says: the round count
//! survives `reset_evaluation` and new criteria, a checklist needs its round's answer, and a
//! cost budget the server cannot measure is refused. (The measured budget itself, from
//! Claude Code transcripts, is tested with the real binary in `refinery`'s
//! `tests/it/plugin_caps.rs`.)

use pretty_assertions::assert_eq;
use serde_json::json;

use refinery_mcp::ToolSet;

use crate::support::{criteria, harness};

#[tokio::test]
async fn reset_and_new_criteria_cannot_escape_max_rounds() {
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "a");
    let session = h
        .call("init_session", json!({"label": "capped", "max_rounds": 2}))
        .await
        .ok();
    let id = session["session_id"].as_str().unwrap().to_owned();
    let answer = json!({"answer": "work", "file_paths": ["a.txt"]});
    for _ in 0..2 {
        h.call("generate_eval_criteria", criteria(1)).await.ok();
        h.call("new_answer", answer.clone()).await.ok();
        let scored = h
            .call("submit_checklist", json!({"scores": {"E1": 3}}))
            .await
            .ok();
        assert_eq!(scored["round"], 1, "each reset restarts the round numbers");
        // Both ways a loop could try to start over.
        h.call("reset_evaluation", json!({})).await.ok();
        h.call("generate_eval_criteria", criteria(2)).await.ok();
    }
    let state_path = h.session_dir(&id).join("state.json");
    let before = fs_err::read(&state_path).unwrap();
    let refused = h.call("new_answer", answer.clone()).await.err();
    assert_eq!(refused["code"], "max_rounds_reached", "{refused}");
    let refused = h
        .call("submit_checklist", json!({"scores": {"E1": 9, "E2": 9}}))
        .await
        .err();
    assert_eq!(refused["code"], "max_rounds_reached", "{refused}");
    assert_eq!(fs_err::read(&state_path).unwrap(), before);
    // Resuming the session after a context clear keeps the count too.
    let resumed = h.call("init_session", json!({"resume": id})).await.ok();
    assert_eq!(resumed["rounds_used"], 2);
    let refused = h.call("new_answer", answer).await.err();
    assert_eq!(refused["code"], "max_rounds_reached");
}

#[tokio::test]
async fn a_checklist_needs_that_rounds_answer() {
    let h = harness(ToolSet::All).await;
    h.write("a.txt", "a");
    h.call("generate_eval_criteria", criteria(1)).await.ok();
    let state_path = h.session_dir("default").join("state.json");
    let before = fs_err::read(&state_path).unwrap();
    let refused = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(refused["code"], "no_answer", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("new_answer"),
        "{refused}"
    );
    assert_eq!(
        fs_err::read(&state_path).unwrap(),
        before,
        "nothing written"
    );
    h.call(
        "new_answer",
        json!({"answer": "work", "file_paths": ["a.txt"]}),
    )
    .await
    .ok();
    let scored = h
        .call("submit_checklist", json!({"scores": {"E1": 3}}))
        .await
        .ok();
    assert_eq!(scored["submission"], json!({"round": 1, "revision": 1}));
    // Round 2 has no answer yet: scoring it again is refused, not counted.
    let again = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(again["code"], "no_answer");
    // After a reset the old answer does not carry over to the new round 1.
    h.call("reset_evaluation", json!({})).await.ok();
    let after_reset = h
        .call("submit_checklist", json!({"scores": {"E1": 9}}))
        .await
        .err();
    assert_eq!(after_reset["code"], "no_answer");
}

#[tokio::test]
async fn a_cost_budget_outside_claude_code_is_refused_not_ignored() {
    // Without Claude Code there is no transcript to measure: accepting the budget would make
    // it the advisory text it used to be.
    let h = harness(ToolSet::All).await;
    let refused = h
        .call(
            "init_session",
            json!({"label": "budget", "cost_budget": 0.5}),
        )
        .await
        .err();
    assert_eq!(refused["code"], "cost_unmeasured", "{refused}");
    assert!(!h.state.join("sessions").exists(), "nothing was created");
    for bad in [json!(0), json!(-2), json!(1e9)] {
        let refused = h
            .call("init_session", json!({"cost_budget": bad}))
            .await
            .err();
        assert_eq!(refused["code"], "invalid_setting", "{bad}: {refused}");
    }
}

#[tokio::test]
async fn plugin_sessions_write_the_state_folder_gitignore() {
    // The CLI used to be the only writer of `.refinery/.gitignore`: in plugin mode `git add
    // -A` then committed every snapshot.
    let h = harness(ToolSet::All).await;
    assert!(!h.state.exists());
    h.call("init_session", json!({"label": "plugin"}))
        .await
        .ok();
    assert_eq!(
        fs_err::read_to_string(h.state.join(".gitignore")).unwrap(),
        "*\n"
    );
}
