//! `refinery report` on sessions from real runs (the built binary against the fake model
//! server), looked at in headless Chromium: no console error, no request of any kind, the
//! chart's points drawn where the session's scores say, readable on a phone and with
//! JavaScript off. Screenshots land in `target/tmp/report-screenshots/`.
//!
//! Set `REFINERY_REPORT_SCREENSHOT=FILE` to also copy the top of the converged three-round
//! run's report there (that is how `docs/report.png` is made).

use std::path::{Path, PathBuf};

use refinery_core::StateDir;
use refinery_testkit::chromium::Browser;
use refinery_testkit::{FakeModelServer, RecordedRequest, Reply};
use serde_json::{Value, json};

use crate::fake_roles::role;
use crate::llm_support::text;
use crate::refine::{
    CRITERIA, MODEL, Run, content_by_round, criteria_writer_reply, evaluation, guard_tie, lessons,
    summary,
};

const STRICT: &str = "anthropic/claude-haiku-4-5";

/// A run's outcome as the tests need it.
struct Finished {
    run: Run,
    session_dir: PathBuf,
    report: PathBuf,
    exit: Option<i32>,
}

/// Routes every role; `scores` maps the version the evaluator sees (and the judge's model) to
/// its reply.
fn install(server: &FakeModelServer, scores: fn(u32, &str) -> String) {
    server.route(move |request: &RecordedRequest| {
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        Some(match role(request) {
            "criteria" => usage(Reply::text(criteria_writer_reply())),
            "builder" if request.tool_results().is_empty() => usage(Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": format!("{}\n<p>Invoices in {} minutes.</p>\n", content_by_round(request), 9 - crate::refine::builder_round(request).min(8))}),
            )),
            "builder" => usage(Reply::text("Wrote index.html")),
            "evaluator" => {
                let body = request.body_text();
                let version = (1..=5)
                    .rev()
                    .find(|version| body.contains(&format!("VERSION-{version}")))
                    .unwrap_or(0);
                usage(Reply::text(scores(version, &request.model())))
            }
            "guard" => usage(Reply::text(guard_tie())),
            "trace" => usage(Reply::text(lessons())),
            _ => Reply::status(400),
        })
    });
}

async fn finish(server: &FakeModelServer, args: &[&str]) -> Finished {
    let run = Run::new(server);
    let (output, events) = run.refine(args).await;
    let summary = summary(&events).clone();
    let report = events
        .iter()
        .find(|event| event["event"] == "report")
        .and_then(|event| event["path"].as_str())
        .map_or_else(
            || panic!("no report event\n{}", text(&output.stderr)),
            PathBuf::from,
        );
    Finished {
        session_dir: PathBuf::from(summary["session_dir"].as_str().unwrap()),
        report,
        exit: output.status.code(),
        run,
    }
}

/// Converges in round 3: 4/6/8 → 6/8/8 → 9/8/9, with a `--verify` check.
fn converging(version: u32, _model: &str) -> String {
    match version {
        1 => evaluation([4, 6, 8], "The hero says nothing about the outcome."),
        2 => evaluation([6, 8, 8], "Better; the outcome is still vague."),
        _ => evaluation([9, 8, 9], "Strong now."),
    }
}

/// Never passes.
fn stuck(_version: u32, _model: &str) -> String {
    evaluation([5, 5, 5], "Weak.")
}

/// Two judges: the strict one holds E2 back until version 3.
fn panel(version: u32, model: &str) -> String {
    match (model, version) {
        ("claude-haiku-4-5", 3..) => evaluation([9, 9, 9], "Strict judge: fine now."),
        ("claude-haiku-4-5", _) => evaluation([8, 6, 9], "Strict judge: E2 lacks numbers."),
        (_, 1) => evaluation([4, 6, 8], "Lenient judge: weak hero."),
        _ => evaluation([9, 8, 9], "Lenient judge: strong now."),
    }
}

/// Round 2's evaluation is garbage (unscored), round 3 converges.
fn garbled(version: u32, _model: &str) -> String {
    match version {
        1 => evaluation([4, 6, 8], "Weak hero."),
        2 => "Looks great to me! <script>alert(1)</script>".to_owned(),
        _ => evaluation([9, 8, 9], "Strong now."),
    }
}

/// The scores the core recorded, as (criterion, round, score).
fn recorded_scores(session_dir: &Path) -> Vec<(String, u32, u8)> {
    let state = session_dir.parent().unwrap().parent().unwrap();
    let store = StateDir::new(state, state.parent().unwrap());
    let id = session_dir.file_name().unwrap().to_str().unwrap();
    let mut scores: Vec<(String, u32, u8)> = store
        .existing_session(id)
        .unwrap()
        .history()
        .unwrap()
        .iter()
        .flat_map(|record| {
            record
                .outcome
                .items
                .iter()
                .map(|item| (item.id.clone(), record.outcome.round, item.score))
                .collect::<Vec<_>>()
        })
        .collect();
    scores.sort();
    scores
}

/// The rendered chart: each point's criterion, round and the score its drawn position stands
/// for (read against the drawn 0 and 10 grid lines), plus page width facts.
const CHART_PROBE: &str = r"(() => {
  const svg = document.querySelector('svg.chart');
  const middle = (element) => { const box = element.getBoundingClientRect(); return box.top + box.height / 2; };
  const grid = {};
  if (svg) { svg.querySelectorAll('line.grid').forEach((line) => { grid[line.dataset.score] = middle(line); }); }
  const points = svg ? Array.from(svg.querySelectorAll('circle.point')).map((point) => {
    const box = point.getBoundingClientRect();
    return { criterion: point.dataset.criterion, round: Number(point.dataset.round), y: middle(point), drawn: box.width > 0 && box.height > 0 };
  }) : [];
  return { grid, points, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
           controlsShown: !document.getElementById('controls').hidden, unscored: document.querySelectorAll('svg.chart .unscored').length };
})()";

/// Checks the drawn chart against the recorded scores; returns the probe.
fn check_chart(browser: &mut Browser, expected: &[(String, u32, u8)]) -> Value {
    let probe = browser.evaluate(CHART_PROBE).unwrap();
    let zero = probe["grid"]["0"].as_f64().unwrap();
    let ten = probe["grid"]["10"].as_f64().unwrap();
    assert!(zero > ten, "the 0 line is below the 10 line");
    let mut drawn: Vec<(String, u32, u8)> = probe["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| {
            assert_eq!(point["drawn"], true, "{point}");
            let score = (zero - point["y"].as_f64().unwrap()) / (zero - ten) * 10.0;
            let rounded = score.round();
            assert!(
                (score - rounded).abs() < 0.05,
                "a point off the score grid: {point} → {score}"
            );
            (
                point["criterion"].as_str().unwrap().to_owned(),
                u32::try_from(point["round"].as_u64().unwrap()).unwrap(),
                u8::try_from(rounded as i64).unwrap(),
            )
        })
        .collect();
    drawn.sort();
    assert_eq!(
        drawn, expected,
        "the chart shows exactly the recorded scores"
    );
    probe
}

/// No console message above info, no exception, no request but the page itself.
fn check_quiet(browser: &mut Browser, page: &str) {
    for event in browser.take_events() {
        let method = event["method"].as_str().unwrap_or_default();
        let params = &event["params"];
        match method {
            "Network.requestWillBeSent" => {
                assert_eq!(
                    params["request"]["url"], page,
                    "a request left the page: {event}"
                );
            }
            "Runtime.exceptionThrown" => panic!("a script error: {event}"),
            "Runtime.consoleAPICalled" => {
                assert!(
                    !matches!(
                        params["type"].as_str(),
                        Some("error" | "warning" | "assert")
                    ),
                    "{event}"
                );
            }
            "Log.entryAdded" => {
                assert!(
                    !matches!(params["entry"]["level"].as_str(), Some("error" | "warning")),
                    "{event}"
                );
            }
            _ => {}
        }
    }
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots")
}

/// Renders one report on a desktop, a phone, and with scripts off; checks each.
fn look_at(browser: &mut Browser, name: &str, finished: &Finished) -> Value {
    let page = format!("file://{}", finished.report.display());
    let expected = recorded_scores(&finished.session_dir);
    browser.viewport(1100, 900, false).unwrap();
    browser.navigate(&page).unwrap();
    let desktop = check_chart(browser, &expected);
    assert_eq!(desktop["controlsShown"], true, "the script ran");
    let shots = screenshots();
    browser
        .screenshot(&shots.join(format!("{name}.png")), true)
        .unwrap();
    browser.viewport(1100, 1500, false).unwrap();
    browser
        .screenshot(&shots.join(format!("{name}-top.png")), false)
        .unwrap();
    check_quiet(browser, &page);
    // A phone: nothing wider than the screen.
    browser.viewport(390, 844, true).unwrap();
    browser.navigate(&page).unwrap();
    let phone = check_chart(browser, &expected);
    assert!(
        phone["scrollWidth"].as_f64().unwrap() <= phone["innerWidth"].as_f64().unwrap(),
        "the page scrolls sideways on a phone: {phone}"
    );
    browser
        .screenshot(&shots.join(format!("{name}-phone.png")), false)
        .unwrap();
    check_quiet(browser, &page);
    // Scripts off: the same chart, drawn without them.
    browser
        .call(
            "Emulation.setScriptExecutionDisabled",
            &json!({"value": true}),
        )
        .unwrap();
    browser.viewport(1100, 900, false).unwrap();
    browser.navigate(&page).unwrap();
    let without_scripts = check_chart(browser, &expected);
    assert_eq!(without_scripts["controlsShown"], false, "scripts were off");
    browser
        .call(
            "Emulation.setScriptExecutionDisabled",
            &json!({"value": false}),
        )
        .unwrap();
    browser.navigate(&page).unwrap();
    // Before printing, the script opens every section; afterwards it closes them again.
    let opened = browser
        .evaluate("(() => { window.dispatchEvent(new Event('beforeprint')); const all = document.querySelectorAll('details'); const open = Array.from(all).filter((item) => item.open).length; window.dispatchEvent(new Event('afterprint')); return [all.length, open, document.querySelectorAll('details[open]').length]; })()")
        .unwrap();
    assert_eq!(
        opened[0], opened[1],
        "every section opens for printing: {opened}"
    );
    assert_eq!(opened[2], 0, "and closes again: {opened}");
    // Printing works and yields a PDF.
    let pdf = browser.call("Page.printToPDF", &json!({})).unwrap();
    assert!(
        pdf["data"]
            .as_str()
            .is_some_and(|data| data.starts_with("JVBERi")),
        "a PDF"
    );
    check_quiet(browser, &page);
    desktop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_real_runs_render_in_chromium_quietly_and_draw_the_recorded_scores() {
    let Some(browser) = Browser::launch() else {
        return;
    };
    let mut browser = browser.unwrap();
    let server = FakeModelServer::start().await.unwrap();

    install(&server, converging);
    let converged = finish(
        &server,
        &[
            "Build a landing page for Acme's invoicing app",
            "--verify",
            "test -s index.html",
            "--max-rounds",
            "4",
        ],
    )
    .await;
    assert_eq!(converged.exit, Some(0));
    look_at(&mut browser, "converged", &converged);
    let html = fs_err::read_to_string(&converged.report).unwrap();
    assert!(html.contains("Converged after 3 rounds"));
    assert!(html.contains("written by the criteria writer"));
    if let Some(path) = std::env::var_os("REFINERY_REPORT_SCREENSHOT") {
        fs_err::copy(screenshots().join("converged-top.png"), path).unwrap();
    }

    install(&server, stuck);
    let capped = finish(
        &server,
        &["Build a page", "--criteria", CRITERIA, "--max-rounds", "2"],
    )
    .await;
    assert_eq!(capped.exit, Some(2));
    look_at(&mut browser, "capped", &capped);
    let html = fs_err::read_to_string(&capped.report).unwrap();
    assert!(html.contains("Stopped after 2 rounds: the round cap was reached"));
    assert!(html.contains("<strong>Next: </strong>stop: the round cap was reached."));

    install(&server, panel);
    let panel_run = finish(
        &server,
        &[
            "Build a page",
            "--criteria",
            CRITERIA,
            "--evaluator",
            STRICT,
        ],
    )
    .await;
    assert_eq!(panel_run.exit, Some(0));
    look_at(&mut browser, "panel", &panel_run);
    let html = fs_err::read_to_string(&panel_run.report).unwrap();
    assert!(html.contains("Strict judge: E2 lacks numbers."));
    assert!(
        html.contains("4–8 <span class=\"delta\">(4)</span>"),
        "round 1's E1 spread"
    );

    install(&server, garbled);
    let unscored = finish(&server, &["Build a page", "--criteria", CRITERIA]).await;
    assert_eq!(unscored.exit, Some(0));
    let probe = look_at(&mut browser, "unscored", &unscored);
    assert_eq!(
        probe["unscored"], 1,
        "round 2 is marked unscored on the chart"
    );
    let html = fs_err::read_to_string(&unscored.report).unwrap();
    assert!(html.contains("The evaluation was unusable, so the round counts as iterate"));
    assert!(!html.contains("<script>alert(1)"));
    drop(unscored.run);
}

/// `refinery evaluate page.html` with the standard criteria.
async fn evaluate_page(run: &Run, json: bool) -> std::process::Output {
    let mut args = vec![
        "evaluate",
        "page.html",
        "--criteria",
        CRITERIA,
        "--evaluator",
        MODEL,
        "--yes",
    ];
    if json {
        args.push("--json");
    }
    run.refinery(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_evaluate_write_the_file_and_say_where() {
    let server = FakeModelServer::start().await.unwrap();
    install(&server, converging);
    let finished = finish(&server, &["Build a page", "--criteria", CRITERIA]).await;
    assert_eq!(finished.report, finished.session_dir.join("report.html"));
    let id = finished
        .session_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // `refinery report` again, elsewhere, by id and by default (the session started last).
    let out = finished.run.context.tmp().join("shared.html");
    let output = finished
        .run
        .refinery(&["report", &id, "--out", out.to_str().unwrap()])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), out.display().to_string());
    let output = finished.run.refinery(&["report"]).await;
    assert_eq!(
        text(&output.stdout).trim(),
        finished.report.display().to_string()
    );
    // Human output names the report last.
    let child = finished.run.spawn_refine();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = text(&output.stdout);
    let last = stdout.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("Report: ") && last.ends_with("report.html"),
        "{stdout}"
    );
    // evaluate: an HTML report next to evaluation.md, named in both outputs.
    fs_err::write(
        finished.run.project().join("page.html"),
        "<h1>VERSION-3</h1>",
    )
    .unwrap();
    let stdout = text(&evaluate_page(&finished.run, false).await.stdout);
    let html_line = stdout
        .lines()
        .find(|line| line.starts_with("HTML report: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let html = fs_err::read_to_string(html_line.trim_start_matches("HTML report: ")).unwrap();
    assert!(html.contains("refinery evaluate") && html.contains("Meets the bar"));
    let output = evaluate_page(&finished.run, true).await;
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(Path::new(value["html_report"].as_str().unwrap()).is_file());
    // A session that does not exist is a clear error, and nothing is written.
    let output = finished
        .run
        .refinery(&["report", "20990101_000000_nope"])
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("20990101_000000_nope"),
        "{}",
        text(&output.stderr)
    );
}
