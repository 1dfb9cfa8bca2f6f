//! The report's HTML: structure, escaping, scrubbing, and each driver's variant.

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::sessions::{Fixture, HOSTILE, github_token, plugin_session, refine_panel_session};

/// Every value of attribute `name` in `html`, in order.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .map(|(start, _)| {
            let rest = &html[start + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The chart's points as (criterion, round, score).
fn points(html: &str) -> Vec<(String, u32, u8)> {
    html.split("<circle ")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap()];
            let value = |name: &str| attributes(&format!(" {tag}"), name)[0].to_owned();
            (
                value("data-criterion"),
                value("data-round").parse().unwrap(),
                value("data-score").parse().unwrap(),
            )
        })
        .collect()
}

/// Model text never becomes markup, no secret is shown, and nothing can load from anywhere.
fn assert_safe(html: &str) {
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the report's own script"
    );
    assert!(!html.contains(HOSTILE), "hostile markup was not escaped");
    assert!(html.contains(
        "&lt;script&gt;alert('owned')&lt;/script&gt;&lt;img src=http://evil.example/x.png&gt;"
    ));
    assert!(
        !html.contains(&github_token()),
        "a secret reached the report"
    );
    for name in ["src", "href", "action", "srcset", "background"] {
        for value in attributes(html, name) {
            assert!(
                value.starts_with('#'),
                "{name}=\"{value}\" could make a request"
            );
        }
    }
    assert!(
        !html.contains("<img")
            && !html.contains("<link")
            && !html.contains("<iframe")
            && !html.contains("url(")
    );
    let policy = attributes(html, "content")
        .into_iter()
        .find(|value| value.starts_with("default-src"))
        .expect("a Content-Security-Policy");
    assert!(
        policy.starts_with("default-src 'none'; style-src 'sha256-"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
}

#[test]
fn a_plugin_session_shows_criteria_scores_verdicts_plan_diffs_and_learnings() {
    let fixture = plugin_session();
    let html = fixture.report();
    assert_safe(&html);
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    assert!(html.contains("MCP tools (Claude Code plugin)"));
    assert!(
        html.contains("id=\"status\">Converged in round 2</span>"),
        "{html}"
    );
    // Criteria with tiers, anti-patterns, checks and anchors.
    for needle in [
        "<td class=\"mono\">E1</td><td>primary</td>",
        "Anti-patterns: a generic welcome",
        "Check: read the h1",
        "visitors decide in seconds",
        "<td>stretch</td>",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    // The chart has one point per score, and the pass mark.
    assert_eq!(
        points(&html),
        [
            ("E1".to_owned(), 1, 4),
            ("E1".to_owned(), 2, 9),
            ("E2".to_owned(), 1, 6),
            ("E2".to_owned(), 2, 8),
            ("E3".to_owned(), 1, 8),
            ("E3".to_owned(), 2, 9)
        ]
    );
    assert!(html.contains("<line class=\"pass\" data-score=\"7\""));
    // Each round says why: the core's explanation, failing criteria, the plan, the decision.
    assert!(html.contains("1 of 3 criteria passed (required: 3, cutoff 7). Verdict: iterate. Below the bar: E1, E2.</p>"));
    assert!(html.contains("Below the pass mark: <span class=\"mono\">E1</span> (4), <span class=\"mono\">E2</span> (6)"));
    assert!(html.contains("lead with the measured outcome"));
    assert!(html.contains("<strong>Vision: </strong>a page that proves its claim"));
    assert!(html.contains("<strong>Next: </strong>converged; the loop ended here."));
    // Score deltas between rounds.
    assert!(html.contains("9 <span class=\"delta\">+5</span>"));
    // Files changed, as a unified diff; round 1 against nothing.
    assert!(html.contains("<span class=\"del\">-&lt;h1&gt;Welcome&lt;/h1&gt;</span>"));
    assert!(
        html.contains(
            "<span class=\"add\">+&lt;h1&gt;Invoices paid in 3 minutes&lt;/h1&gt;</span>"
        )
    );
    assert!(html.contains("(against nothing (the first snapshot))"));
    // Learnings, scrubbed.
    assert!(html.contains("DON&#39;T") || html.contains("DON'T"));
    assert!(
        html.contains("[REDACTED:github-"),
        "the token in learnings.md is masked"
    );
    // Time from the journal, spending not measured.
    assert!(html.contains("times from the journal, to the second; spending not measured"));
    assert!(html.contains("not measured"));
    assert!(html.contains("refinery session restore "));
}

#[test]
fn a_refine_panel_session_shows_judges_spread_guard_checks_phases_and_unscored_rounds() {
    let fixture = refine_panel_session();
    let html = fixture.report();
    assert_safe(&html);
    assert!(
        html.contains("id=\"status\">Converged after 3 rounds</span>"),
        "{html}"
    );
    assert!(html.contains("Build a landing page for Acme"));
    assert!(html.contains("<dt>judges (panel)</dt><dd><code>anthropic/claude-sonnet-4-5, anthropic/claude-haiku-4-5</code></dd>"));
    assert!(html.contains("<dt>cost budget</dt><dd><code>$2.00</code></dd>"));
    // The unscored round is marked on the chart and breaks the lines; no points invented.
    assert!(html.contains("class=\"unscored-label\""));
    assert!(points(&html).iter().all(|(_, round, _)| *round != 2));
    assert_eq!(points(&html).len(), 6);
    assert!(html.contains("The evaluation was unusable, so the round counts as iterate and no scores were invented: judge 1: no JSON object found; judge 2: no JSON object found"));
    // The panel: each judge's scores, the spread, the combined score, each judge's critique.
    assert!(html.contains("<td class=\"mono\">anthropic/claude-haiku-4-5</td>"));
    assert!(
        html.contains("4–8 <span class=\"delta\">(4)</span>"),
        "E1's spread in round 1"
    );
    assert!(html.contains("Strict: E2 lacks numbers."));
    assert!(html.contains("Lenient: weak hero. &lt;script&gt;"));
    assert!(html.contains("unusable: no JSON object found"));
    // The decision with a forced change of approach.
    assert!(html.contains(
        "another round, with a forced change of approach for <span class=\"mono\">E2</span>."
    ));
    // Checks and their scrubbed output, the guard.
    assert!(html.contains("<code>test -s index.html</code>"));
    assert!(html.contains("ok [REDACTED:github-"));
    assert!(html.contains(
        "Worse in both blind orders, then repaired by the builder: <span class=\"mono\">E2</span>"
    ));
    assert!(html.contains("No criterion got worse than in the previous round"));
    // Phases with time and cost; the round's cost from run.json's running totals.
    assert!(
        html.contains("<td>building</td><td class=\"num\">3.0s</td><td class=\"num\">$0.05</td>"),
        "{html}"
    );
    assert!(
        html.contains(
            "<td>whole round</td><td class=\"num\">6.5s</td><td class=\"num\">$0.15</td>"
        )
    );
    assert!(html.contains("Builder: 1 tool call (write_file 1)"));
    // Round 1's files against the workspace before the run.
    assert!(html.contains("(against the workspace before round 1)"));
    assert!(html.contains("<span class=\"add\">+&lt;h1&gt;VERSION-1&lt;/h1&gt;</span>"));
    assert!(html.contains("Keep doing"));
}

#[test]
fn a_session_with_unreadable_files_still_reports_and_says_what_it_left_out() {
    let fixture = Fixture::new("broken", None);
    fixture.criteria();
    fixture.round(1, "<h1>x</h1>", &json!({"E1": 3, "E2": 3, "E3": 3}));
    fs_err::write(fixture.dir().join("run.json"), "{not json").unwrap();
    fs_err::create_dir_all(fixture.dir().join("round_001")).unwrap();
    fs_err::write(fixture.dir().join("round_001/round.json"), "[1, 2").unwrap();
    let html = fixture.report();
    assert!(html.contains("<h2>Left out</h2>"));
    assert!(
        html.contains("/run.json could not be read: key must be a string"),
        "notes name the file"
    );
    assert!(html.contains("/round.json could not be read"));
    assert_eq!(points(&html).len(), 3);
}

#[test]
fn an_empty_session_reports_that_nothing_happened_yet() {
    let fixture = Fixture::new("fresh", None);
    let html = fixture.report();
    assert_safe_minimal(&html);
    assert!(html.contains("No criteria were stored."));
    assert!(html.contains("No round has been scored."));
    assert!(html.contains("No round was submitted."));
    assert!(html.contains("id=\"status\">No round scored yet</span>"));
}

fn assert_safe_minimal(html: &str) {
    assert_eq!(html.matches("<script").count(), 1);
    for value in attributes(html, "href") {
        assert!(value.starts_with('#'));
    }
}

#[test]
fn write_report_puts_the_file_in_the_session_folder_or_where_asked() {
    let fixture = plugin_session();
    let scrub = refinery_report::Scrub::with_known_secrets(["built it".to_owned().repeat(2)]);
    let path =
        refinery_report::write_report(&fixture.session, &fixture.store, &scrub, None).unwrap();
    assert_eq!(path, fixture.dir().join("report.html"));
    let out = fixture.workspace.join("out.html");
    let written =
        refinery_report::write_report(&fixture.session, &fixture.store, &scrub, Some(&out))
            .unwrap();
    assert_eq!(written, out);
    assert_eq!(
        fs_err::read_to_string(&path).unwrap(),
        fs_err::read_to_string(&out).unwrap()
    );
    let missing = fixture.workspace.join("no/such/dir/../../x").join("\0bad");
    assert!(
        refinery_report::write_report(&fixture.session, &fixture.store, &scrub, Some(&missing))
            .is_err()
    );
}

#[test]
fn known_secret_values_are_masked_even_when_no_rule_matches() {
    let fixture = plugin_session();
    let scrub = refinery_report::Scrub::with_known_secrets(["check the h1 first".to_owned()]);
    let html = refinery_report::render_report(&fixture.session, &fixture.store, &scrub).unwrap();
    assert!(!html.contains("check the h1 first"));
    assert!(html.contains("- DO: [REDACTED]"));
}

/// A token planted in every kind of string a session holds — a criterion's id and text, a
/// file's name and content, a tool name, a judge's name, command output, the guard's
/// reasoning, the phase log — never reaches the page.
#[test]
fn every_string_from_the_session_is_scrubbed() {
    let token = github_token();
    let fixture = Fixture::new("leaky", None);
    let criteria = refinery_core::CriteriaSet::from_json(&json!([
        {"id": token, "text": format!("mentions {token}"), "anti_patterns": [token], "verify_by": token, "rationale": token, "score_anchors": {"3": token}},
        {"id": "E2", "text": "fine"}
    ]))
    .unwrap();
    fixture
        .session
        .register_criteria(&criteria, crate::sessions::at(1))
        .unwrap();
    fixture.write(&format!("{token}.txt"), &format!("secret {token}\n"));
    fixture
        .session
        .new_answer(&token, &[".".to_owned()], crate::sessions::at(2))
        .unwrap();
    fixture
        .session
        .submit_checklist(
            // The store masks what it writes, so the criterion is known by its masked id.
            &json!({refinery_secrets::scrub(&token): {"score": 3, "reasoning": token}, "E2": 9}),
            None,
            crate::sessions::at(3),
        )
        .unwrap();
    let judge = json!({"scores": {token.clone(): {"score": 3, "evidence": [token], "reasoning": token}, "E2": {"score": 9, "evidence": [], "reasoning": ""}}, "critique": token, "improvement_spec": [{"criterion": token, "change": token, "impact": token}], "preserve": [token]});
    fixture.write_json("round_001/round.json", &json!({
        "builder_summary": token, "verify": [{"command": token, "passed": false, "output": token, "exit_code": 1}],
        "regression": {"regressed": [token], "action": token, "reasoning": token},
        "evaluation": judge, "panel": [{"evaluator": token, "reply": judge, "problem": null}, {"evaluator": "b", "reply": null, "problem": token}],
        "trace": {"tool_calls": 1, "by_tool": {token.clone(): 1}},
        "lessons": {"do": [token], "dont": [token], "critical_errors": [token]}
    }));
    fixture.write_json("run.json", &json!({
        "task": token, "builder": token, "evaluator": token, "panel": [token], "verify": [token], "prior_answer": token,
        "status": {"status": "failed", "error": token},
        "rounds": [{"round": 1, "verdict": "iterate", "next": {"next": "continue", "change_approach_for": [token]}}]
    }));
    fs_err::write(
        fixture.dir().join("progress.jsonl"),
        format!(
            "{}\n",
            json!({"event": "phase", "round": 1, "phase": token, "ts_ms": 1})
        ),
    )
    .unwrap();
    fs_err::write(fixture.dir().join("learnings.md"), &token).unwrap();
    let html = fixture.report();
    assert!(!html.contains(&token), "the token reached the page");
    assert!(html.matches("[REDACTED:github-pat]").count() > 30);
}
