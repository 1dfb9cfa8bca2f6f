//! Sessions to report on, built through `refinery-core` in a temporary workspace.

use std::path::{Path, PathBuf};

use refinery_core::{CriteriaSet, Session, SessionSettings, StateDir};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

/// A hostile string a judge might send.
pub(crate) const HOSTILE: &str =
    "<script>alert('owned')</script><img src=http://evil.example/x.png>";

/// A key assembled at run time, so the repository's own secret scan stays clean.
pub(crate) fn github_token() -> String {
    format!("ghp_{}{}", "R4nd0mT0k3nV4lu3xYz12", "q9W8e7R6t5Y4u3I")
}

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) workspace: PathBuf,
    pub(crate) store: StateDir,
    pub(crate) session: Session,
}

impl Fixture {
    pub(crate) fn new(label: &str, max_rounds: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        fs_err::create_dir_all(&workspace).unwrap();
        let store = StateDir::new(workspace.join(".refinery"), &workspace);
        let session = store
            .init_session(
                label,
                SessionSettings {
                    max_rounds,
                    ..SessionSettings::default()
                },
                at(0),
            )
            .unwrap();
        Self {
            _dir: dir,
            workspace,
            store,
            session,
        }
    }

    pub(crate) fn criteria(&self) {
        let criteria = CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "The first heading states the outcome", "category": "primary",
             "anti_patterns": ["a generic welcome"], "verify_by": "read the h1",
             "rationale": "visitors decide in seconds", "score_anchors": {"3": "vague", "9": "a measured outcome"}},
            {"id": "E2", "text": "Claims carry numbers", "category": "standard", "anti_patterns": ["adjectives instead of figures"]},
            {"id": "E3", "text": "Loads without errors", "category": "stretch"}
        ]))
        .unwrap();
        self.session.register_criteria(&criteria, at(5)).unwrap();
    }

    pub(crate) fn write(&self, path: &str, text: &str) {
        fs_err::write(self.workspace.join(path), text).unwrap();
    }

    /// Submits the workspace's `index.html` and scores it; `scores` maps ids to a score or
    /// `{score, reasoning}`.
    pub(crate) fn round(&self, minute: i64, content: &str, scores: &Value) {
        self.write("index.html", content);
        self.session
            .new_answer("built it", &["index.html".to_owned()], at(minute * 60))
            .unwrap();
        self.session
            .submit_checklist(scores, None, at(minute * 60 + 30))
            .unwrap();
    }

    pub(crate) fn dir(&self) -> &Path {
        self.session.dir()
    }

    pub(crate) fn write_json(&self, relative: &str, value: &Value) {
        let path = self.dir().join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    }

    pub(crate) fn report(&self) -> String {
        refinery_report::render_report(
            &self.session,
            &self.store,
            &refinery_report::Scrub::default(),
        )
        .unwrap()
    }
}

pub(crate) fn at(seconds: i64) -> OffsetDateTime {
    datetime!(2026-11-24 03:00 UTC) + time::Duration::seconds(seconds)
}

/// A plugin-driven session: criteria, two rounds through the core (iterate with a plan, then
/// converge), learnings — only the core's files and what the skill writes.
pub(crate) fn plugin_session() -> Fixture {
    let fixture = Fixture::new("landing page", Some(3));
    fixture.criteria();
    fixture.round(
        1,
        "<h1>Welcome</h1>\n<p>Fast invoices.</p>\n",
        &json!({"E1": {"score": 4, "reasoning": format!("generic hero {HOSTILE}")}, "E2": 6, "E3": 8}),
    );
    fixture
        .session
        .propose_improvements(
            &json!({"E1": [{"plan": "lead with the measured outcome", "impact": "structural"}], "E2": [{"plan": "add the 3-minute figure", "impact": "incremental"}]}),
            Some(json!(["the palette"])),
            Some("a page that proves its claim".to_owned()),
            at(100),
        )
        .unwrap();
    fixture.round(
        3,
        "<h1>Invoices paid in 3 minutes</h1>\n<p>Fast invoices.</p>\n",
        &json!({"E1": 9, "E2": 8, "E3": 9}),
    );
    fs_err::write(
        fixture.dir().join("learnings.md"),
        format!(
            "- DO: check the h1 first\n- DON'T: paste tokens like {}\n",
            github_token()
        ),
    )
    .unwrap();
    fixture
}

fn reply(scores: [u8; 3], critique: &str) -> Value {
    let mut map = serde_json::Map::new();
    for (index, score) in scores.iter().enumerate() {
        map.insert(
            format!("E{}", index + 1),
            json!({"score": score, "evidence": [format!("index.html:1 evidence for E{}", index + 1)], "reasoning": format!("scored {score}")}),
        );
    }
    json!({"scores": map, "critique": critique, "improvement_spec": [{"criterion": "E1", "change": "lead with the outcome", "impact": "structural"}], "preserve": ["the palette"]})
}

/// A `refinery refine` session with a two-judge panel: round 1 iterate, round 2 unscored,
/// round 3 converge, with the engine's `run.json`, `round.json` files and a progress log.
pub(crate) fn refine_panel_session() -> Fixture {
    let fixture = Fixture::new("build-a-page", None);
    fixture.criteria();
    fixture.write("index.html", "<h1>VERSION-0</h1>\n");
    let baseline = refinery_core::snapshot::take_snapshot(
        &fixture.store.objects(),
        &fixture.workspace,
        &[fixture.store.root().to_path_buf()],
        &[".".to_owned()],
    )
    .unwrap();
    fixture.write_json(
        "baseline.json",
        &serde_json::to_value(&baseline.entries).unwrap(),
    );
    let spend = |usd: f64, calls: u32| json!({"usd": usd, "unknown_cost_calls": 0, "input_tokens": calls * 2000, "output_tokens": calls * 500, "calls": calls});
    fixture.round(
        1,
        "<h1>VERSION-1</h1>\n",
        &json!({"E1": 4, "E2": 6, "E3": 8}),
    );
    fixture.write("index.html", "<h1>VERSION-2</h1>\n");
    fixture
        .session
        .new_answer("v2", &[".".to_owned()], at(240))
        .unwrap();
    fixture
        .session
        .record_unscored_round(
            "judge 1: no JSON object found; judge 2: no JSON object found",
            at(250),
        )
        .unwrap();
    fixture.round(
        5,
        "<h1>VERSION-3</h1>\n",
        &json!({"E1": 9, "E2": 8, "E3": 9}),
    );
    let judge_one = reply([4, 6, 8], &format!("Lenient: weak hero. {HOSTILE}"));
    let judge_two = reply([8, 6, 9], "Strict: E2 lacks numbers.");
    fixture.write_json("round_001/round.json", &json!({
        "round": 1, "builder_summary": "Wrote index.html", "fix_attempted": false,
        "verify": [{"command": "test -s index.html", "exit_code": 0, "passed": true, "timed_out": false, "output": format!("ok {}", github_token()), "duration_ms": 12}],
        "regression": null, "evaluation": reply([4, 6, 8], "combined"),
        "panel": [{"evaluator": "anthropic/claude-sonnet-4-5", "reply": judge_one, "problem": null},
                  {"evaluator": "anthropic/claude-haiku-4-5", "reply": judge_two, "problem": null}],
        "unscored_reason": null,
        "trace": {"tool_calls": 1, "by_tool": {"write_file": 1}, "tool_errors": 0, "agent_errors": 0, "repeated_calls": 0, "input_tokens": 2000, "output_tokens": 500, "duration_ms": 900},
        "lessons": {"do": ["wrote the page in one pass"], "dont": [], "critical_errors": []}
    }));
    fixture.write_json("round_002/round.json", &json!({
        "round": 2, "builder_summary": "Rewrote the hero", "verify": [], "fix_attempted": false,
        "regression": {"regressed": ["E2"], "action": "repaired", "reasoning": "Previous shown as A: A keeps the figure"},
        "evaluation": null,
        "panel": [{"evaluator": "anthropic/claude-sonnet-4-5", "reply": null, "problem": "no JSON object found"},
                  {"evaluator": "anthropic/claude-haiku-4-5", "reply": null, "problem": "no JSON object found"}],
        "unscored_reason": "judge 1: no JSON object found; judge 2: no JSON object found",
        "trace": {"tool_calls": 2, "by_tool": {"write_file": 2}, "input_tokens": 4000, "output_tokens": 900, "duration_ms": 1200}
    }));
    fixture.write_json("round_003/round.json", &json!({
        "round": 3, "builder_summary": "Final", "verify": [], "regression": {"regressed": [], "action": "accepted", "reasoning": "tie"},
        "evaluation": reply([9, 8, 9], "Strong now."),
        "panel": [{"evaluator": "anthropic/claude-sonnet-4-5", "reply": reply([9, 9, 9], "fine"), "problem": null},
                  {"evaluator": "anthropic/claude-haiku-4-5", "reply": reply([9, 8, 10], "fine too"), "problem": null}],
        "trace": {"tool_calls": 1, "by_tool": {"write_file": 1}, "input_tokens": 2000, "output_tokens": 500, "duration_ms": 800}
    }));
    let next_continue = json!({"next": "continue", "change_approach_for": []});
    fixture.write_json("run.json", &json!({
        "version": 1, "task": "Build a landing page for Acme", "builder": "anthropic/claude-sonnet-4-5",
        "evaluator": "anthropic/claude-sonnet-4-5", "panel": ["anthropic/claude-haiku-4-5"],
        "limits": {"max_rounds": 5, "min_rounds": 1, "cost_budget_usd": 2.0, "time_budget": null},
        "verify": ["test -s index.html"], "prior_answer": null, "criteria_source": "user",
        "status": {"status": "converged"},
        "rounds": [
            {"round": 1, "scores": {"E1": 4, "E2": 6, "E3": 8}, "verdict": "iterate", "next": next_continue, "spend": spend(0.10, 5)},
            {"round": 2, "scores": {}, "verdict": "unscored", "unscored_reason": "judge 1: no JSON object found", "next": {"next": "continue", "change_approach_for": ["E2"]}, "spend": spend(0.25, 11)},
            {"round": 3, "scores": {"E1": 9, "E2": 8, "E3": 9}, "verdict": "converge", "next": {"next": "converged"}, "spend": spend(0.40, 16)}
        ],
        "in_progress": null, "spend": spend(0.40, 16), "elapsed_ms": 4200, "forced_change_round": 2,
        "created_at": "2026-11-24T03:00:00Z", "updated_at": "2026-11-24T03:06:00Z"
    }));
    let mut log = String::new();
    let mut line = |ts: i64, event: Value| {
        let mut event = event;
        event["ts_ms"] = json!(ts);
        log.push_str(&event.to_string());
        log.push('\n');
    };
    line(0, json!({"event": "driver", "command": "refine", "pid": 1}));
    for (round, start) in [(1, 1_000), (2, 10_000), (3, 20_000)] {
        line(
            start,
            json!({"event": "round_started", "round": round, "max_rounds": 5}),
        );
        line(
            start,
            json!({"event": "phase", "round": round, "phase": "build"}),
        );
        line(
            start + 2_000,
            json!({"event": "spend", "spend": spend(0.05 * f64::from(round), round * 2), "elapsed_ms": 100}),
        );
        line(
            start + 3_000,
            json!({"event": "phase", "round": round, "phase": "evaluate"}),
        );
        line(
            start + 6_000,
            json!({"event": "spend", "spend": spend(0.1 * f64::from(round), round * 5), "elapsed_ms": 200}),
        );
        line(
            start + 6_500,
            json!({"event": "decision", "round": round, "next": next_continue}),
        );
    }
    line(
        26_600,
        json!({"event": "finished", "status": {"status": "converged"}}),
    );
    fs_err::write(fixture.dir().join("progress.jsonl"), log).unwrap();
    fs_err::write(
        fixture.dir().join("learnings.md"),
        "### Round 1\n- DO: wrote the page in one pass\n",
    )
    .unwrap();
    fixture
}
