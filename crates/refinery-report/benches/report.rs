//! Report benchmark: how long `refinery report` takes on a 10-round session, how big the file
//! is, and what one `refinery watch` poll costs.
//!
//! Run with `cargo bench -p refinery-report --bench report` (release profile). The session is
//! built through the core, as a run writes it: 5 criteria, a two-judge panel, a workspace of
//! 40 files (8 KiB each: HTML, CSS, JS) of which 5 change every round, `run.json`,
//! `round_NNN/round.json` with evidence, critiques and verify output, a progress log with
//! every phase, and learnings. Results print as Markdown; paste them into docs/BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a benchmark harness: fail loudly, print its table, use plain std::fs"
)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use refinery_core::{CriteriaSet, Session, SessionSettings, StateDir};
use refinery_report::{Scrub, live_status, render_report};
use serde_json::{Value, json};
use time::macros::datetime;

const ROUNDS: u32 = 10;
const FILES: usize = 40;
const FILE_BYTES: usize = 8 * 1024;
const CHANGED_PER_ROUND: usize = 5;
const RUNS: usize = 10;
const IDS: [&str; 5] = ["E1", "E2", "E3", "E4", "E5"];

fn file_text(index: usize, round: u32) -> String {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < FILE_BYTES {
        // A few lines of each changed file differ from round to round.
        let version = if line % 37 == 0 { round } else { 0 };
        let _ = writeln!(
            text,
            "<p class=\"item-{index}\">line {line} of file {index}, version {version}</p>"
        );
        line += 1;
    }
    text
}

fn scores(round: u32, judge: u32) -> Value {
    let mut map = serde_json::Map::new();
    for (position, id) in IDS.iter().enumerate() {
        let score = (3 + round / 2 + u32::try_from(position).unwrap() % 2 + judge).min(10);
        map.insert(
            (*id).to_owned(),
            json!({"score": score, "evidence": [format!("index.html:{round} shows {id}"), "a second quote from the page"], "reasoning": format!("{id} is at {score} because the page is still generic in places")}),
        );
    }
    json!({"scores": map, "critique": "The hero is generic; numbers are missing; the pricing table overflows on phones. ".repeat(4),
           "improvement_spec": [{"criterion": "E1", "change": "lead with the measured outcome", "impact": "structural"}], "preserve": ["the palette"]})
}

fn build(root: &Path) -> (StateDir, Session) {
    let workspace = root.join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    let store = StateDir::new(workspace.join(".refinery"), &workspace);
    let at = |seconds: i64| datetime!(2026-11-24 03:00 UTC) + time::Duration::seconds(seconds);
    let session = store
        .init_session("bench", SessionSettings::default(), at(0))
        .unwrap();
    let criteria: Vec<Value> = IDS
        .iter()
        .map(|id| json!({"id": id, "text": format!("{id}: a criterion of reasonable length"), "anti_patterns": ["one way to fail"], "verify_by": "open it"}))
        .collect();
    session
        .register_criteria(
            &CriteriaSet::from_json(&Value::Array(criteria)).unwrap(),
            at(1),
        )
        .unwrap();
    for index in 0..FILES {
        std::fs::write(
            workspace.join(format!("file_{index:02}.html")),
            file_text(index, 0),
        )
        .unwrap();
    }
    let mut progress = String::new();
    let mut run_rounds = Vec::new();
    for round in 1..=ROUNDS {
        for index in 0..CHANGED_PER_ROUND {
            let file = (usize::try_from(round).unwrap() * CHANGED_PER_ROUND + index) % FILES;
            std::fs::write(
                workspace.join(format!("file_{file:02}.html")),
                file_text(file, round),
            )
            .unwrap();
        }
        let start = i64::from(round) * 600;
        session
            .new_answer("built", &[".".to_owned()], at(start + 300))
            .unwrap();
        let combined = scores(round, 0);
        let checklist: serde_json::Map<String, Value> = IDS
            .iter()
            .map(|id| ((*id).to_owned(), json!({"score": combined["scores"][id]["score"], "reasoning": combined["scores"][id]["reasoning"]})))
            .collect();
        session
            .submit_checklist(&Value::Object(checklist), None, at(start + 500))
            .unwrap();
        let dir = session.round_dir(round);
        std::fs::write(dir.join("round.json"), serde_json::to_vec(&json!({
            "round": round, "builder_summary": "Rewrote five files.",
            "verify": [{"command": "npm test", "passed": true, "exit_code": 0, "output": "ok\n".repeat(200), "duration_ms": 900}],
            "regression": {"regressed": [], "action": "accepted", "reasoning": "no criterion got worse"},
            "evaluation": combined,
            "panel": [{"evaluator": "judge-a", "reply": scores(round, 0)}, {"evaluator": "judge-b", "reply": scores(round, 1)}],
            "trace": {"tool_calls": 12, "by_tool": {"write_file": 5, "read_file": 7}, "input_tokens": 40000, "output_tokens": 9000, "duration_ms": 60000},
            "lessons": {"do": ["read before writing"], "dont": ["rewrite unchanged files"], "critical_errors": []}
        })).unwrap()).unwrap();
        let spend = json!({"usd": 0.4 * f64::from(round), "unknown_cost_calls": 0, "input_tokens": 90000 * round, "output_tokens": 20000 * round, "calls": 9 * round});
        run_rounds.push(json!({"round": round, "verdict": "iterate", "next": {"next": "continue", "change_approach_for": []}, "spend": spend}));
        let ms = start * 1000;
        for (offset, event) in [
            (
                0,
                json!({"event": "round_started", "round": round, "max_rounds": ROUNDS}),
            ),
            (
                0,
                json!({"event": "phase", "round": round, "phase": "build"}),
            ),
            (
                200_000,
                json!({"event": "spend", "spend": spend, "elapsed_ms": ms}),
            ),
            (
                250_000,
                json!({"event": "phase", "round": round, "phase": "verify"}),
            ),
            (
                260_000,
                json!({"event": "phase", "round": round, "phase": "regression_guard"}),
            ),
            (
                290_000,
                json!({"event": "phase", "round": round, "phase": "submit"}),
            ),
            (
                300_000,
                json!({"event": "phase", "round": round, "phase": "evaluate"}),
            ),
            (
                480_000,
                json!({"event": "spend", "spend": spend, "elapsed_ms": ms}),
            ),
            (
                500_000,
                json!({"event": "decision", "round": round, "next": {"next": "continue", "change_approach_for": []}}),
            ),
        ] {
            let mut event = event;
            event["ts_ms"] = json!(ms + offset);
            progress.push_str(&event.to_string());
            progress.push('\n');
        }
    }
    let dir = session.dir().to_path_buf();
    std::fs::write(dir.join("progress.jsonl"), progress).unwrap();
    std::fs::write(
        dir.join("learnings.md"),
        "- DO: read before writing\n".repeat(ROUNDS as usize),
    )
    .unwrap();
    std::fs::write(dir.join("run.json"), serde_json::to_vec(&json!({
        "task": "Build a landing page", "builder": "claude", "evaluator": "judge-a", "panel": ["judge-b"],
        "limits": {"max_rounds": ROUNDS}, "status": {"status": "stopped", "reason": "max_rounds"},
        "rounds": run_rounds, "spend": run_rounds.last().unwrap()["spend"], "elapsed_ms": 6_000_000
    })).unwrap()).unwrap();
    (store, session)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let (store, session) = build(root.path());
    let scrub = Scrub::default();
    let mut renders = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let page = render_report(&session, &store, &scrub).unwrap();
        renders.push(started.elapsed());
        size = page.len();
    }
    let mut polls = Vec::new();
    for _ in 0..RUNS * 10 {
        let started = Instant::now();
        live_status(&session, &scrub).unwrap();
        polls.push(started.elapsed());
    }
    let slowest = renders.iter().max().copied().unwrap_or_default();
    println!(
        "| {ROUNDS}-round session ({FILES} files × {} KiB, {CHANGED_PER_ROUND} changed per round, 2 judges) | median | slowest |",
        FILE_BYTES / 1024
    );
    println!("|---|---|---|");
    println!(
        "| `render_report` ({RUNS} runs) | {:.1} ms | {:.1} ms |",
        median(renders).as_secs_f64() * 1000.0,
        slowest.as_secs_f64() * 1000.0
    );
    println!(
        "| `live_status`, one `refinery watch` poll ({} runs) | {:.2} ms | |",
        RUNS * 10,
        median(polls).as_secs_f64() * 1000.0
    );
    println!();
    println!(
        "Report size: {:.0} KiB. Peak RSS of the whole benchmark process: {:.1} MiB.",
        size as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0
    );
}
