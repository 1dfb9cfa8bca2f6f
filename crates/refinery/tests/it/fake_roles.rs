//! The fake model server playing Refinery's roles, shared by the trust tests: which role a
//! request is for (by the role prompt it carries), well-formed judge and trace replies, and a
//! hermetic environment for API-model runs.

use std::collections::BTreeMap;
use std::process::Output;

use refinery_testkit::agent_cli::FAKE_KEY;
use refinery_testkit::{FakeModelServer, RecordedRequest, TestContext};
use serde_json::{Value, json};

/// The API model every role uses in these tests.
pub(crate) const MODEL: &str = "anthropic/claude-sonnet-4-5";

/// The role a request is for, by the role prompt it carries.
pub(crate) fn role(request: &RecordedRequest) -> &'static str {
    let body = request.body_text();
    for (marker, role) in [
        ("# Role: criteria writer", "criteria"),
        ("# Role: builder", "builder"),
        ("# Role: round evaluator", "evaluator"),
        ("# Role: regression guard", "guard"),
        ("# Role: execution trace analyzer", "trace"),
    ] {
        if body.contains(marker) {
            return role;
        }
    }
    "unknown"
}

/// A judge's reply scoring every id 9, citing `index.html`.
pub(crate) fn evaluation(ids: &[&str], critique: &str) -> String {
    let scores: serde_json::Map<String, Value> = ids
        .iter()
        .map(|id| {
            (
                (*id).to_owned(),
                json!({"score": 9, "evidence": ["index.html: the heading is there"], "reasoning": "meets it"}),
            )
        })
        .collect();
    json!({"scores": scores, "critique": critique, "improvement_spec": [], "preserve": ["the heading"]})
        .to_string()
}

/// A trace analyzer's reply with one lesson.
pub(crate) fn lessons(text: &str) -> String {
    json!({"do": [text], "dont": [], "critical_errors": []}).to_string()
}

/// A hermetic environment for API-only runs against `server`.
pub(crate) fn api_env(context: &TestContext, server: &FakeModelServer) -> BTreeMap<String, String> {
    let mut env = context.env_with_path(&[]);
    env.insert("ANTHROPIC_BASE_URL".to_owned(), server.url());
    env.insert("ANTHROPIC_API_KEY".to_owned(), FAKE_KEY.to_owned());
    env
}

/// `refinery refine TASK --criteria CRITERIA` for one round, API models in every role.
pub(crate) fn refine_once(
    context: &TestContext,
    env: &BTreeMap<String, String>,
    task: &str,
    criteria: &str,
) -> Output {
    std::process::Command::new(crate::support::BIN)
        .env_clear()
        .envs(env)
        .current_dir(context.project())
        .args([
            "refine",
            task,
            "--criteria",
            criteria,
            "--builder",
            MODEL,
            "--evaluator",
            MODEL,
            "--max-rounds",
            "1",
            "--yes",
        ])
        .output()
        .unwrap()
}
