//! MCP server benchmark, side by side with MassGen's Python servers in one run.
//!
//! Run with `cargo bench -p refinery --bench mcp` (release profile). It spawns the built
//! `refinery mcp …` binary and speaks newline-delimited JSON-RPC to it over real stdio
//! (`support/stdio_mcp.rs`): `initialize` with protocol 2025-11-25, then 50 calls per tool.
//!
//! With `REFINERY_BENCH_MASSGEN_PYTHON=/path/to/venv/bin/python` (a Python with
//! `massgen==0.1.97`; docs/BENCHMARKS.md says how to make one), the same run also starts
//! MassGen's standalone quality and workflow servers, sends them the same calls in alternating
//! batches (ours, theirs, theirs, ours, …) with both state folders side by side on the same
//! disk, and prints medians, p90s and ratios. Without it, only ours run, and the output says so.
//!
//! Two suites: state on the ordinary disk (the temp folder; its filesystem type is printed and
//! a tmpfs there is flagged), where every durable write pays for its syncs, and on tmpfs
//! (`/dev/shm`), where syncs are free, to separate the code's cost from the disk's. Results
//! print as Markdown; paste them into docs/BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::cast_precision_loss,
    reason = "a benchmark harness: fail loudly, print its table, use plain std::fs"
)]

#[path = "support/machine.rs"]
mod machine;
#[path = "support/stdio_mcp.rs"]
mod stdio_mcp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use machine::{filesystem_type, is_memory_filesystem};
use serde_json::{Value, json};
use stdio_mcp::Server;

const BIN: &str = env!("CARGO_BIN_EXE_refinery");
const MASSGEN_PYTHON: &str = "REFINERY_BENCH_MASSGEN_PYTHON";
const COLD_STARTS: usize = 20;
const CALLS: usize = 50;
/// Calls per batch before the other side takes its turn.
const BATCH: usize = 10;
const FIRST_SNAPSHOTS: usize = 15;
const SMALL_FILES: usize = 300;
const SMALL_FILE_BYTES: usize = 10 * 1024;

/// Whose servers.
#[derive(Clone, Debug)]
enum Side {
    Refinery,
    MassGen { python: PathBuf },
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Self::Refinery => "Refinery",
            Self::MassGen { .. } => "MassGen",
        }
    }

    /// The command for one of its servers, in `workspace`. Ours serves every tool from one
    /// process (`all`: `new_answer` lives with the checklist, which needs it first); MassGen
    /// splits them into the quality and the workflow server (module paths as in its package:
    /// `massgen/mcp_tools/standalone/*_server.py`, each run with `python -m`).
    fn command(&self, server: ServerKind, workspace: &Path, log: &Path) -> Command {
        let mut command = match self {
            Self::Refinery => {
                let mut command = Command::new(BIN);
                command.args(["mcp", server.refinery_kind()]);
                command
                    .env_remove("REFINERY_STATE_DIR")
                    .env_remove("REFINERY_SESSION");
                command
            }
            Self::MassGen { python } => {
                let mut command = Command::new(python);
                command.args(["-m", server.massgen_module()]);
                command
            }
        };
        let stderr = std::fs::File::create(log).unwrap();
        command.current_dir(workspace).stderr(Stdio::from(stderr));
        command
    }

    fn spawn(&self, server: ServerKind, workspace: &Path) -> (Server, Duration) {
        let log =
            workspace
                .parent()
                .unwrap()
                .join(format!("{}-{:?}.stderr.log", self.name(), server));
        let label = format!("{} {server:?} server", self.name());
        Server::spawn(&label, self.command(server, workspace, &log))
            .unwrap_or_else(|error| panic!("{error}\n(stderr in {})", log.display()))
    }

    /// The improvement-plan tool: ours is `propose_improvements`, MassGen's standalone server
    /// calls the same step `draft_approach`.
    fn plan_tool(&self) -> &'static str {
        match self {
            Self::Refinery => "propose_improvements",
            Self::MassGen { .. } => "draft_approach",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ServerKind {
    Quality,
    Workflow,
}

impl ServerKind {
    fn refinery_kind(self) -> &'static str {
        match self {
            Self::Quality => "all",
            Self::Workflow => "workflow",
        }
    }

    fn massgen_module(self) -> &'static str {
        match self {
            Self::Quality => "massgen.mcp_tools.standalone.quality_server",
            Self::Workflow => "massgen.mcp_tools.standalone.workflow_server",
        }
    }
}

/// One side's servers in its own workspace.
struct Contender {
    side: Side,
    workspace: PathBuf,
    quality: Server,
    /// MassGen's `new_answer` and `vote` live on a second server; ours on the same one.
    workflow: Option<Server>,
    colds: Vec<Duration>,
}

impl Contender {
    fn start(side: Side, base: &Path) -> Self {
        let workspace = fresh_dir(&base.join(format!("{}-calls", side.name())));
        write_deliverables(&workspace);
        let (quality, cold) = side.spawn(ServerKind::Quality, &workspace);
        let mut colds = vec![cold];
        let workflow = match side {
            Side::Refinery => None,
            Side::MassGen { .. } => {
                let (server, cold) = side.spawn(ServerKind::Workflow, &workspace);
                colds.push(cold);
                Some(server)
            }
        };
        Self {
            side,
            workspace,
            quality,
            workflow,
            colds,
        }
    }

    fn workflow(&mut self) -> &mut Server {
        self.workflow.as_mut().unwrap_or(&mut self.quality)
    }

    fn quality_call(&mut self, tool: &str, arguments: &Value) -> Duration {
        self.quality
            .call(tool, arguments)
            .unwrap_or_else(|error| panic!("{error}"))
            .0
    }

    fn workflow_call(&mut self, tool: &str, arguments: &Value) -> Duration {
        self.workflow()
            .call(tool, arguments)
            .unwrap_or_else(|error| panic!("{error}"))
            .0
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let quality = self.quality.peak_rss_kib();
        let workflow = self.workflow.as_ref().and_then(Server::peak_rss_kib);
        quality.max(workflow)
    }

    fn shutdown(self) -> Duration {
        let mut longest = self.quality.shutdown();
        if let Some(workflow) = self.workflow {
            longest = longest.max(workflow.shutdown());
        }
        longest
    }
}

/// The calls, in the order a round makes them. Both sides get the same arguments (criteria
/// with string fields only: MassGen's schema rejects anything else).
#[derive(Clone, Copy, Debug)]
enum Step {
    ToolsList,
    InitSession,
    GenerateCriteria,
    /// An untimed `new_answer` of a small file, then the timed checklist (ours needs a
    /// submission first; MassGen gets the same call so both histories grow alike).
    SubmitChecklist,
    ProposeImprovements,
    Vote,
    /// Two files of 3 and 5 MiB, unchanged since the first (untimed) call.
    NewAnswerUnchanged,
}

impl Step {
    const ALL: [Self; 7] = [
        Self::ToolsList,
        Self::InitSession,
        Self::GenerateCriteria,
        Self::SubmitChecklist,
        Self::ProposeImprovements,
        Self::Vote,
        Self::NewAnswerUnchanged,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ToolsList => "`tools/list`",
            Self::InitSession => "`init_session`",
            Self::GenerateCriteria => "`generate_eval_criteria`",
            Self::SubmitChecklist => "`submit_checklist` (history grows)",
            Self::ProposeImprovements => "`propose_improvements` (MassGen: `draft_approach`)",
            Self::Vote => "`vote`",
            Self::NewAnswerUnchanged => "`new_answer`, unchanged 3 + 5 MiB files",
        }
    }

    /// What the issue asks of it, where it asks something.
    fn target(self) -> &'static str {
        match self {
            Self::InitSession
            | Self::GenerateCriteria
            | Self::SubmitChecklist
            | Self::ProposeImprovements => "p50 ≤ MassGen's",
            Self::NewAnswerUnchanged => "p50 ≤ 2 ms",
            Self::ToolsList | Self::Vote => "",
        }
    }

    fn run(self, contender: &mut Contender, index: usize) -> Duration {
        match self {
            Self::ToolsList => {
                let started = std::time::Instant::now();
                contender.quality.request("tools/list", &json!({})).unwrap();
                started.elapsed()
            }
            Self::InitSession => {
                contender.quality_call("init_session", &json!({"label": format!("bench {index}")}))
            }
            Self::GenerateCriteria => contender.quality_call(
                "generate_eval_criteria",
                &json!({"criteria": [
                    {"id": "E1", "text": "requirements met", "category": "primary"},
                    {"id": "E2", "text": "works when run"},
                    {"id": "E3", "text": "every part deep"},
                    {"id": "E4", "text": "crafted"}]}),
            ),
            Self::SubmitChecklist => {
                contender.workflow_call(
                    "new_answer",
                    &json!({"answer": "round", "file_paths": ["answer.md"]}),
                );
                // E1 and E3 stay below the bar, so every verdict is iterate and the plan step
                // below is allowed on both sides.
                let score = 2 + (index % 5);
                contender.quality_call(
                    "submit_checklist",
                    &json!({"scores": {"E1": score,
                        "E2": {"score": 8, "reasoning": "ran the tests; all pass"},
                        "E3": 6, "E4": 9}}),
                )
            }
            Self::ProposeImprovements => {
                let tool = contender.side.plan_tool();
                contender.quality_call(
                    tool,
                    &json!({"improvements": {
                        "E1": [{"plan": "rebuild the flow", "impact": "structural"}],
                        "E3": ["deepen section 2"]}}),
                )
            }
            Self::Vote => {
                contender.workflow_call("vote", &json!({"choice": "agent2", "reasoning": "best"}))
            }
            Self::NewAnswerUnchanged => contender.workflow_call(
                "new_answer",
                &json!({"answer": format!("round {index}"), "file_paths": ["big3.bin", "big5.bin"]}),
            ),
        }
    }
}

fn write_deliverables(workspace: &Path) {
    std::fs::write(workspace.join("answer.md"), b"the deliverable\n").unwrap();
    std::fs::write(workspace.join("big3.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
    std::fs::write(workspace.join("big5.bin"), vec![9u8; 5 * 1024 * 1024]).unwrap();
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], fraction: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(sorted[rank - 1])
}

fn fresh_dir(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

/// Samples per side and step.
struct Samples {
    sides: Vec<String>,
    /// `[step][side]`.
    calls: Vec<Vec<Vec<Duration>>>,
    first_snapshot: Vec<Vec<Duration>>,
    colds: Vec<Vec<Duration>>,
    rss_kib: Vec<Option<u64>>,
    shutdowns: Vec<Duration>,
}

/// Every step on every side, in alternating batches: in batch `b` the sides go in turn,
/// starting with side `b mod n`, so neither always runs on a cooler or busier machine.
fn run_calls(contenders: &mut [Contender]) -> Vec<Vec<Vec<Duration>>> {
    let mut all = Vec::new();
    for step in Step::ALL {
        if matches!(step, Step::NewAnswerUnchanged) {
            // The first call stores the files; the timed ones find them unchanged.
            for contender in contenders.iter_mut() {
                step.run(contender, 0);
            }
        }
        let mut samples = vec![Vec::new(); contenders.len()];
        for batch in 0..CALLS / BATCH {
            for turn in 0..contenders.len() {
                let side = (batch + turn) % contenders.len();
                for call in 0..BATCH {
                    let index = batch * BATCH + call;
                    samples[side].push(step.run(&mut contenders[side], index));
                }
            }
        }
        all.push(samples);
    }
    all
}

/// A snapshot of 300 files of 10 KiB (`new_answer` of their folder) into a store that has
/// none of them. Ours: a fresh workspace and server per sample (the store is the workspace's).
/// MassGen: a new session per sample on one server (`init_session`, untimed), so each copy
/// goes into a new round folder; its every snapshot is a full copy anyway.
fn first_snapshots(
    sides: &[Side],
    base: &Path,
    mut massgen: Option<&mut Contender>,
) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::new(); sides.len()];
    if let Some(contender) = massgen.as_deref_mut() {
        write_small_tree(&contender.workspace);
    }
    for sample in 0..FIRST_SNAPSHOTS {
        for turn in 0..sides.len() {
            let side = (sample + turn) % sides.len();
            let arguments = json!({"answer": "first", "file_paths": ["site"]});
            let elapsed = match &sides[side] {
                Side::Refinery => {
                    let workspace = fresh_dir(&base.join("first-snapshot"));
                    write_small_tree(&workspace);
                    let (mut server, _) = sides[side].spawn(ServerKind::Quality, &workspace);
                    server
                        .call("init_session", &json!({"label": "first"}))
                        .unwrap();
                    let (elapsed, _) = server.call("new_answer", &arguments).unwrap();
                    server.shutdown();
                    elapsed
                }
                Side::MassGen { .. } => {
                    let contender = massgen.as_deref_mut().unwrap();
                    contender
                        .quality_call("init_session", &json!({"label": format!("first {sample}")}));
                    contender.workflow_call("new_answer", &arguments)
                }
            };
            samples[side].push(elapsed);
        }
    }
    samples
}

fn write_small_tree(workspace: &Path) {
    let site = workspace.join("site");
    std::fs::create_dir_all(&site).unwrap();
    for index in 0..SMALL_FILES {
        let line = format!("<p>section {index}: lorem ipsum dolor sit amet</p>\n");
        let text = line.repeat(SMALL_FILE_BYTES / line.len() + 1);
        std::fs::write(
            site.join(format!("page_{index:03}.html")),
            &text.as_bytes()[..SMALL_FILE_BYTES],
        )
        .unwrap();
    }
}

/// Our cold starts: many, since ours take milliseconds (MassGen's are its two spawns above).
fn refinery_colds(base: &Path) -> (Vec<Duration>, Vec<Duration>) {
    let workspace = fresh_dir(&base.join("cold"));
    let mut colds = Vec::new();
    let mut shutdowns = Vec::new();
    for _ in 0..COLD_STARTS {
        let (server, cold) = Side::Refinery.spawn(ServerKind::Quality, &workspace);
        colds.push(cold);
        shutdowns.push(server.shutdown());
    }
    (colds, shutdowns)
}

fn run_suite(sides: &[Side], base: &Path) -> Samples {
    let mut contenders: Vec<Contender> = sides
        .iter()
        .map(|side| Contender::start(side.clone(), base))
        .collect();
    let calls = run_calls(&mut contenders);
    let mut colds: Vec<Vec<Duration>> = contenders.iter().map(|c| c.colds.clone()).collect();
    let rss_kib = contenders.iter().map(Contender::peak_rss_kib).collect();
    let massgen = contenders
        .iter_mut()
        .find(|contender| matches!(contender.side, Side::MassGen { .. }));
    let first_snapshot = first_snapshots(sides, base, massgen);
    let mut shutdowns: Vec<Duration> = contenders.into_iter().map(Contender::shutdown).collect();
    let (our_colds, our_shutdowns) = refinery_colds(base);
    colds[0] = our_colds;
    shutdowns[0] = Duration::from_secs_f64(percentile(&our_shutdowns, 0.5) / 1000.0);
    Samples {
        sides: sides.iter().map(|side| side.name().to_owned()).collect(),
        calls,
        first_snapshot,
        colds,
        rss_kib,
        shutdowns,
    }
}

fn print_suite(samples: &Samples) {
    let with_massgen = samples.sides.len() > 1;
    println!("| process | {} |", samples.sides.join(" | "));
    println!("|---|{}", "---|".repeat(samples.sides.len()));
    let row = |label: &str, cells: Vec<String>| println!("| {label} | {} |", cells.join(" | "));
    row(
        "cold start, spawn → `initialize` reply (median; runs)",
        samples
            .colds
            .iter()
            .map(|colds| format!("{:.1} ms ({})", percentile(colds, 0.5), colds.len()))
            .collect(),
    );
    row(
        "peak RSS after the calls (largest server)",
        samples
            .rss_kib
            .iter()
            .map(|rss| {
                rss.map_or_else(
                    || "n/a".to_owned(),
                    |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
                )
            })
            .collect(),
    );
    row(
        "shutdown after stdin EOF",
        samples
            .shutdowns
            .iter()
            .map(|d| format!("{:.1} ms", ms(*d)))
            .collect(),
    );
    println!();
    if with_massgen {
        println!(
            "| call ({CALLS} each, alternating batches of {BATCH}) | MassGen p50 | MassGen p90 | Refinery p50 | Refinery p90 | Refinery ÷ MassGen (p50) | target |"
        );
        println!("|---|---|---|---|---|---|---|");
    } else {
        println!("| call ({CALLS} each) | Refinery p50 | Refinery p90 | target |");
        println!("|---|---|---|---|");
    }
    let mut rows: Vec<(&str, &[Vec<Duration>], &str)> = Step::ALL
        .iter()
        .zip(&samples.calls)
        .map(|(step, per_side)| (step.label(), per_side.as_slice(), step.target()))
        .collect();
    let first_label = format!(
        "first snapshot of {SMALL_FILES} files of 10 KiB (`new_answer`; {FIRST_SNAPSHOTS} each)"
    );
    rows.push((&first_label, &samples.first_snapshot, "p50 ≤ 50 ms"));
    for (label, per_side, target) in rows {
        let ours = &per_side[0];
        let (ours_p50, ours_p90) = (percentile(ours, 0.5), percentile(ours, 0.9));
        if with_massgen {
            let theirs = &per_side[1];
            let (theirs_p50, theirs_p90) = (percentile(theirs, 0.5), percentile(theirs, 0.9));
            println!(
                "| {label} | {theirs_p50:.2} ms | {theirs_p90:.2} ms | {ours_p50:.2} ms | {ours_p90:.2} ms | {:.2} | {target} |",
                ours_p50 / theirs_p50
            );
        } else {
            println!("| {label} | {ours_p50:.2} ms | {ours_p90:.2} ms | {target} |");
        }
    }
}

fn massgen_side() -> Option<Side> {
    let python = std::env::var_os(MASSGEN_PYTHON)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)?;
    // Fail loudly on a Python without MassGen: a silent fallback would print a table without
    // the comparison that was asked for.
    let output = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(' '.join(p + ' ' + m.version(p) for p in ('massgen', 'fastmcp', 'mcp')))",
        ])
        .output()
        .unwrap_or_else(|error| panic!("{MASSGEN_PYTHON}={}: {error}", python.display()));
    assert!(
        output.status.success(),
        "{MASSGEN_PYTHON}={} has no MassGen: {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "- anchor: {} ({})",
        String::from_utf8_lossy(&output.stdout).trim(),
        python.display()
    );
    Some(Side::MassGen { python })
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    println!("## MCP servers (`cargo bench -p refinery --bench mcp`)\n");
    println!("- {}", machine::run_line());
    let mut sides = vec![Side::Refinery];
    match massgen_side() {
        Some(side) => sides.push(side),
        None => println!(
            "- MassGen: not given, so ours run alone (set {MASSGEN_PYTHON} to a Python with massgen==0.1.97; see docs/BENCHMARKS.md)"
        ),
    }
    let disk_base = std::env::temp_dir().join(format!("refinery-bench-{}", std::process::id()));
    std::fs::create_dir_all(&disk_base).unwrap();
    let disk_fs = filesystem_type(&disk_base);
    if is_memory_filesystem(&disk_fs) {
        println!(
            "- WARNING: {} is on {disk_fs}, not a disk: point TMPDIR at a folder on the ordinary disk",
            disk_base.display()
        );
    }
    println!(
        "\n### State folders on the ordinary disk ({}: {disk_fs})\n",
        disk_base.display()
    );
    print_suite(&run_suite(&sides, &disk_base));
    let _ = std::fs::remove_dir_all(&disk_base);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let shm_base = shm.join(format!("refinery-bench-{}", std::process::id()));
        std::fs::create_dir_all(&shm_base).unwrap();
        println!(
            "\n### State folders on tmpfs ({}: {}; syncs cost nothing)\n",
            shm_base.display(),
            filesystem_type(&shm_base)
        );
        print_suite(&run_suite(&sides, &shm_base));
        let _ = std::fs::remove_dir_all(&shm_base);
    }
}
