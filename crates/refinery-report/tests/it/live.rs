//! The live status `refinery watch` shows, at each step of a session being written.

use pretty_assertions::assert_eq;
use refinery_report::{LiveRound, Scrub, live_status};
use serde_json::json;

use crate::sessions::{Fixture, refine_panel_session};

#[test]
fn a_plugin_session_is_followed_from_criteria_to_the_round_cap() {
    let fixture = Fixture::new("capped", Some(2));
    let scrub = Scrub::default();
    let status = live_status(&fixture.session, &scrub).unwrap();
    assert_eq!(
        (
            status.round,
            status.phase.as_ref().map(refinery_report::Text::as_str),
            status.end.as_deref()
        ),
        (Some(1), Some("writing criteria"), None)
    );
    fixture.criteria();
    assert_eq!(
        live_status(&fixture.session, &scrub)
            .unwrap()
            .phase
            .as_ref()
            .map(refinery_report::Text::as_str),
        Some("building")
    );
    fixture.write("index.html", "v1");
    fixture
        .session
        .new_answer("v1", &["index.html".to_owned()], crate::sessions::at(60))
        .unwrap();
    assert_eq!(
        live_status(&fixture.session, &scrub)
            .unwrap()
            .phase
            .as_ref()
            .map(refinery_report::Text::as_str),
        Some("evaluating")
    );
    fixture
        .session
        .submit_checklist(
            &json!({"E1": 4, "E2": 5, "E3": 6}),
            None,
            crate::sessions::at(90),
        )
        .unwrap();
    let status = live_status(&fixture.session, &scrub).unwrap();
    assert_eq!(
        (
            status.round,
            status.phase.as_ref().map(refinery_report::Text::as_str),
            status.end.as_deref(),
            status.spend
        ),
        (Some(2), Some("planning and building"), None, None)
    );
    assert_eq!(
        status.rounds,
        [LiveRound {
            round: 1,
            scores: vec![
                (scrub.text("E1"), 4),
                (scrub.text("E2"), 5),
                (scrub.text("E3"), 6)
            ],
            verdict: "iterate"
        }]
    );
    fixture.round(3, "v2", &json!({"E1": 5, "E2": 5, "E3": 6}));
    let status = live_status(&fixture.session, &scrub).unwrap();
    assert_eq!(
        status.end.as_deref(),
        Some("Stopped at the round cap (2) without converging")
    );
    assert_eq!(status.rounds.len(), 2);
}

#[test]
fn a_refine_run_shows_its_phase_and_spending_then_its_end() {
    let fixture = refine_panel_session();
    let scrub = Scrub::default();
    let status = live_status(&fixture.session, &scrub).unwrap();
    assert_eq!(status.end.as_deref(), Some("Converged after 3 rounds"));
    assert_eq!(status.driver, "refinery refine");
    assert_eq!(
        status
            .rounds
            .iter()
            .map(|round| round.verdict)
            .collect::<Vec<_>>(),
        ["iterate", "unscored", "converge"]
    );
    assert!(
        (status.spend.unwrap().usd - 0.3).abs() < 1e-9,
        "the log's latest totals"
    );
    // The same run while round 3 is still evaluating.
    let mut record: serde_json::Value =
        serde_json::from_slice(&fs_err::read(fixture.dir().join("run.json")).unwrap()).unwrap();
    record["status"] = json!({"status": "running"});
    record["in_progress"] = json!(3);
    fixture.write_json("run.json", &record);
    let log = fs_err::read_to_string(fixture.dir().join("progress.jsonl")).unwrap();
    let cut: Vec<&str> = log
        .lines()
        .take_while(|line| !line.contains("\"ts_ms\":26000"))
        .collect();
    fs_err::write(
        fixture.dir().join("progress.jsonl"),
        cut.join("\n") + "\n{\"event\":\"activ",
    )
    .unwrap();
    let status = live_status(&fixture.session, &scrub).unwrap();
    assert_eq!(
        (
            status.round,
            status.phase.as_ref().map(refinery_report::Text::as_str),
            status.end.as_deref(),
            status.max_rounds
        ),
        (Some(3), Some("evaluating"), None, Some(5))
    );
    assert_eq!(status.driver_pid, Some(1));
}
