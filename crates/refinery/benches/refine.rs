//! Refine-loop benchmark: what the loop itself costs per round, apart from the models.
//!
//! Run with `cargo bench -p refinery --bench refine` (release profile). Each run is a real
//! `refinery refine` process against the fake model server on 127.0.0.1, whose replies are
//! instant, on a workspace of 300 files (3 MiB, like a small web project), for four rounds
//! that never converge (so every phase runs: build with a tool call, snapshot, regression
//! guard in both orders, evaluation and trace analysis, decision, handoff). What remains is
//! Refinery's own work: process start, state writes (fsynced), snapshots, deliverable packs,
//! HTTP to the fake. Peak RSS is read from `/proc/<pid>/status` (`VmHWM`) while it runs.
//!
//! The `--json` events are timestamped as they arrive, so the run splits into set-up (spawn →
//! round 1's `round_started`: start-up, criteria and the baseline snapshot of the 300 files)
//! and orchestration per round (one `round_started` to the next). The state folder is under
//! the temp folder (set TMPDIR to move it); its filesystem type is printed, since on tmpfs
//! the syncs cost nothing. Results print as Markdown; paste them into docs/BENCHMARKS.md.
//!
//! To see where a round's time goes: `REFINERY_BENCH_EVENTS=1` prints every event of every
//! run with its arrival time, and `REFINERY_BENCH_WRAP="strace -f -c"` (or `perf record …`,
//! `/usr/bin/time -v`) runs each `refinery` under that command; `REFINERY_BENCH_ROUNDS=30`
//! makes each run longer, so a profile is mostly rounds. To compare two builds,
//! `REFINERY_BENCH_BASELINE=<another refinery binary>` runs it in turn with this one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a benchmark harness: fail loudly, print its table, use plain std::fs"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/machine.rs"]
mod machine;

use refinery_testkit::{FakeModelServer, Reply};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_refinery");
const RUNS: usize = 5;
const ROUNDS: u32 = 4;

/// Rounds per run: four, or `REFINERY_BENCH_ROUNDS` (a profile of many rounds shows the
/// round's own costs above start-up and the final report).
fn rounds_per_run() -> u32 {
    std::env::var("REFINERY_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(ROUNDS)
}
const FILES: usize = 300;
const FILE_BYTES: usize = 10 * 1024;
const MODEL: &str = "anthropic/claude-sonnet-4-5";

fn role(body: &str) -> &'static str {
    for (marker, role) in [
        ("# Role: builder", "builder"),
        ("# Role: round evaluator", "evaluator"),
        ("# Role: regression guard", "guard"),
        ("# Role: execution trace analyzer", "trace"),
    ] {
        if body.contains(marker) {
            return role;
        }
    }
    "other"
}

/// The `index`th evaluation: scores climb 1, 3, 5 and start over, below the cutoff (7) and
/// never flat, so a run of any length neither converges nor plateaus.
fn evaluation(index: usize) -> String {
    let score = 1 + 2 * (index % 3);
    let finding = |id: &str| json!({"score": score, "evidence": [format!("{id}: seen")], "reasoning": "middling"});
    json!({
        "scores": {"E1": finding("E1"), "E2": finding("E2"), "E3": finding("E3")},
        "critique": "Generic.",
        "improvement_spec": [{"criterion": "E1", "change": "rewrite the hero", "impact": "structural"}],
        "preserve": []
    })
    .to_string()
}

fn workspace(root: &Path) {
    std::fs::create_dir_all(root.join("src")).unwrap();
    for index in 0..FILES {
        let line = format!("<p>section {index}: lorem ipsum dolor sit amet</p>\n");
        let text = line.repeat(FILE_BYTES / line.len() + 1);
        std::fs::write(
            root.join(format!("src/page_{index:03}.html")),
            &text[..FILE_BYTES],
        )
        .unwrap();
    }
    Command::new("git")
        .args(["init", "--quiet"])
        .current_dir(root)
        .status()
        .unwrap();
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

struct Sample {
    wall: Duration,
    /// Spawn → the `round_started` event of round 1: start-up, criteria, the baseline
    /// snapshot.
    setup: Duration,
    /// `round_started` of round k → of round k + 1: one whole round of orchestration.
    rounds: Vec<Duration>,
    /// `round_started` of the last round → exit (that round, the summary and the report).
    last_round: Duration,
    peak_rss_kib: u64,
    calls: usize,
    /// The run's folders, deleted once every run is done (see `main`).
    _dir: tempfile::TempDir,
}

/// The JSON events a run printed, each with when it arrived (since spawn). Events are
/// flushed line by line, so arrival is emission plus a pipe hop.
fn read_events(
    stdout: std::process::ChildStdout,
    started: Instant,
) -> std::thread::JoinHandle<Vec<(Duration, Value)>> {
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let at = started.elapsed();
                serde_json::from_str::<Value>(&line)
                    .ok()
                    .map(|event| (at, event))
            })
            .collect()
    })
}

/// With `REFINERY_BENCH_EVENTS=1`: every event of every run with its arrival time and the
/// gap since the one before, to see where a round's time goes.
fn print_events(events: &[(Duration, Value)]) {
    let mut last = Duration::ZERO;
    for (at, event) in events {
        let gap = at.saturating_sub(last);
        last = *at;
        let mut line = event.to_string();
        line.truncate(120);
        println!(
            "{:8.1} ms (+{:6.1}) {line}",
            at.as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0
        );
    }
    println!();
}

fn round_starts(events: &[(Duration, Value)]) -> Vec<Duration> {
    events
        .iter()
        .filter(|(_, event)| event["event"] == "round_started")
        .map(|(at, _)| *at)
        .collect()
}

fn run_once(server: &FakeModelServer, bin: &str) -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    workspace(&root);
    let before = server.model_request_count();
    let started = Instant::now();
    // A profiler or tracer around the process, for looking into a slow phase.
    let mut command = match std::env::var("REFINERY_BENCH_WRAP") {
        Ok(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(bin);
            command
        }
        Err(_) => Command::new(bin),
    };
    let mut child = command
        .args([
            "refine",
            "Improve the pages",
            "--criteria",
            "E1: Clear hero, E2: Concrete numbers, E3: No broken markup",
            "--builder",
            MODEL,
            "--evaluator",
            MODEL,
            "--max-rounds",
            &rounds_per_run().to_string(),
            "--json",
        ])
        .current_dir(&root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("ANTHROPIC_BASE_URL", server.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-bench-0000000001")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let events = read_events(child.stdout.take().unwrap(), started);
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss_kib(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = started.elapsed();
    let events = events.join().unwrap();
    if std::env::var_os("REFINERY_BENCH_EVENTS").is_some() {
        print_events(&events);
    }
    assert_eq!(status.code(), Some(2), "a run must stop at max rounds");
    let summary = events
        .iter()
        .find(|(_, event)| event["event"] == "summary")
        .map(|(_, event)| event)
        .unwrap();
    assert_eq!(
        summary["rounds"].as_array().unwrap().len(),
        rounds_per_run() as usize
    );
    let starts = round_starts(&events);
    assert_eq!(
        starts.len(),
        rounds_per_run() as usize,
        "one round_started per round"
    );
    Sample {
        wall,
        setup: starts[0],
        rounds: starts
            .windows(2)
            .map(|pair| pair[1].saturating_sub(pair[0]))
            .collect(),
        last_round: wall.saturating_sub(starts[starts.len() - 1]),
        peak_rss_kib: peak,
        calls: server.model_request_count() - before,
        _dir: dir,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // Two workers: a round sends its two guard comparisons, and its evaluation and trace
    // review, at once, and a real provider answers them side by side. One worker would parse
    // each pair's quarter-megabyte bodies one after the other while Refinery waits, and time
    // the fake spends counts as orchestration.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(FakeModelServer::start()).unwrap();
    // Routed on the system prompt, where each role's prompt goes: re-serialising and
    // searching a whole 0.5 MiB request body would make the fake slow, not the loop.
    let builds = std::sync::atomic::AtomicUsize::new(0);
    let evaluations = std::sync::atomic::AtomicUsize::new(0);
    server.route(move |request| {
        let system = request.system_text();
        Some(match role(&system) {
            "builder" if request.tool_results().is_empty() => {
                let build = builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Reply::tool_call(
                    "write_file",
                    json!({"path": "src/page_000.html", "content": format!("<h1>{build}</h1>")}),
                )
            }
            "builder" => Reply::text("rewrote the first page"),
            "evaluator" => Reply::text(evaluation(
                evaluations.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )),
            "guard" => Reply::text(
                json!({"preferences": {"E1": "tie", "E2": "tie", "E3": "tie"}, "reasoning": "same"})
                    .to_string(),
            ),
            "trace" => Reply::text(json!({"do": ["kept edits small"]}).to_string()),
            _ => Reply::status(400),
        })
    });
    // One warm-up run so the page cache holds the binary. The folders of every run are kept
    // until all are done: on a filesystem without a journal, ext4 steps over each inode freed
    // in the last minutes when it allocates one, so deleting a run's ~500 files right before
    // the next run would slow every file that run creates (measured in docs/BENCHMARKS.md),
    // a cost of this harness, not of the loop.
    //
    // `REFINERY_BENCH_BASELINE=<path to another refinery>` runs that binary too, alternating
    // run by run, so both see the same machine and filesystem state.
    let baseline = std::env::var("REFINERY_BENCH_BASELINE").ok();
    let mut kept = vec![run_once(&server, BIN)];
    if let Some(other) = &baseline {
        kept.push(run_once(&server, other));
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        ours.push(run_once(&server, BIN));
        if let Some(other) = &baseline {
            theirs.push(run_once(&server, other));
        }
    }
    print_table(&ours);
    if let Some(other) = &baseline {
        println!();
        println!("Baseline `{other}`, alternating with the runs above:");
        println!();
        print_table(&theirs);
    }
    drop((kept, ours, theirs));
}

fn print_table(samples: &[Sample]) {
    let ms = |duration: &Duration| duration.as_secs_f64() * 1000.0;
    let wall = median(samples.iter().map(|s| ms(&s.wall)).collect());
    let setup = median(samples.iter().map(|s| ms(&s.setup)).collect());
    let rounds: Vec<f64> = samples
        .iter()
        .flat_map(|s| s.rounds.iter().map(ms))
        .collect();
    let round_count = rounds.len();
    let per_round = median(rounds);
    let last_round = median(samples.iter().map(|s| ms(&s.last_round)).collect());
    let rss = median(
        samples
            .iter()
            .map(|s| s.peak_rss_kib as f64 / 1024.0)
            .collect(),
    );
    let calls = samples[0].calls;
    let state_dir = std::env::temp_dir();
    let state_fs = machine::filesystem_type(&state_dir);
    println!("- {}", machine::run_line());
    println!("- state: {} ({state_fs})", state_dir.display());
    if machine::is_memory_filesystem(&state_fs) {
        println!(
            "- WARNING: that is memory, not a disk: point TMPDIR at a folder on the ordinary disk"
        );
    }
    println!();
    println!("| measure ({RUNS} runs, median) | value | target |");
    println!("|---|---|---|");
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let mib = (FILES * FILE_BYTES) as f64 / (1024.0 * 1024.0);
    println!("| workspace | {FILES} files, {mib:.1} MiB, git repository | |");
    println!(
        "| `refinery refine`, {} rounds, wall time | {wall:.0} ms | |",
        rounds_per_run()
    );
    println!(
        "| set-up: spawn → `round_started` of round 1 (criteria, baseline snapshot) | {setup:.0} ms | ≤ 100 ms |"
    );
    println!(
        "| orchestration per round: `round_started` k → k + 1 ({round_count} rounds) | {per_round:.1} ms | ≤ 20 ms |"
    );
    println!("| last round → exit (round, summary, report) | {last_round:.0} ms | |");
    println!("| model calls per run | {calls} | |");
    println!("| peak RSS | {rss:.1} MiB | |");
}
