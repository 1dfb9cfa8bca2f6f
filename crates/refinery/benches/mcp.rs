//! MCP server benchmark: cold start, peak memory, per-call latency, shutdown.
//!
//! Run with `cargo bench -p refinery --bench mcp` (release profile). It spawns the built
//! `refinery mcp quality|workflow` binary and speaks newline-delimited JSON-RPC to it by hand,
//! exactly as the reference measurements of MassGen's Python servers did
//! (shared/reference/performance-anchors.md): `initialize` with protocol 2025-11-25, then 50
//! calls per tool. It runs twice, once with the state folder on the normal disk (every write is
//! fsynced) and once on tmpfs (`/dev/shm`, where fsync is free) to separate our code's cost from
//! the disk's. Results print as Markdown; paste them into docs/BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a benchmark harness: fail loudly, print its table, use plain std::fs"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_refinery");
const COLD_STARTS: usize = 20;
const CALLS: usize = 50;

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    fn spawn(kind: &str, workspace: &Path) -> (Self, Duration) {
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["mcp", kind])
            .current_dir(workspace)
            .env_remove("REFINERY_STATE_DIR")
            .env_remove("REFINERY_SESSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = Self {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        server.request(
            "initialize",
            &json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        let cold = started.elapsed();
        server.notify("notifications/initialized");
        (server, cold)
    }

    fn notify(&mut self, method: &str) {
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": method})
        )
        .unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: &Value) -> Value {
        self.next_id += 1;
        let message =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "server closed stdout"
            );
            let reply: Value = serde_json::from_str(&line).unwrap();
            if reply["id"] == json!(self.next_id) {
                assert!(reply.get("error").is_none(), "{reply}");
                return reply;
            }
        }
    }

    fn call(&mut self, name: &str, arguments: &Value) -> Duration {
        let started = Instant::now();
        let reply = self.request("tools/call", &json!({"name": name, "arguments": arguments}));
        let elapsed = started.elapsed();
        assert_ne!(reply["result"]["isError"], json!(true), "{name}: {reply}");
        elapsed
    }

    /// Peak resident memory (VmHWM) of the server process, in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Closes stdin and times the exit.
    fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        drop(self.stdin);
        self.child.wait().unwrap();
        started.elapsed()
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn stats(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    (
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    ms(sorted[sorted.len() / 2])
}

fn p95_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    ms(sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)])
}

fn fresh_workspace(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_suite(label: &str, base: &Path) {
    println!("\n### State folder on {label}\n");
    // Cold start and shutdown.
    let mut colds = Vec::new();
    let mut shutdowns = Vec::new();
    let workspace = fresh_workspace(base, "cold");
    for _ in 0..COLD_STARTS {
        let (server, cold) = Server::spawn("quality", &workspace);
        colds.push(cold);
        shutdowns.push(server.shutdown());
    }
    let (cold_min, cold_median, cold_max) = stats(&mut colds);
    let (_, shutdown_median, _) = stats(&mut shutdowns);

    // The call sequence, on one quality and one workflow server.
    let workspace = fresh_workspace(base, "calls");
    // `all`: the quality tools plus `new_answer`, which every checklist now needs first
    // (untimed below); the tool code measured is the same as on a `quality` server.
    let (mut quality, _) = Server::spawn("all", &workspace);
    let list = {
        let mut samples = Vec::new();
        for _ in 0..CALLS {
            let started = Instant::now();
            quality.request("tools/list", &json!({}));
            samples.push(started.elapsed());
        }
        samples
    };
    let init: Vec<Duration> = (0..CALLS)
        .map(|i| quality.call("init_session", &json!({"label": format!("bench {i}")})))
        .collect();
    let criteria = json!({"criteria": [
        {"id": "E1", "text": "requirements met", "category": "primary", "anti_patterns": ["partial"]},
        {"id": "E2", "text": "works when run"}, {"id": "E3", "text": "every part deep"}, {"id": "E4", "text": "crafted"}]});
    let generate: Vec<Duration> = (0..CALLS)
        .map(|_| quality.call("generate_eval_criteria", &criteria))
        .collect();
    std::fs::write(workspace.join("answer.md"), b"the deliverable\n").unwrap();
    let submit: Vec<Duration> = (0..CALLS)
        .map(|i| {
            let score = 2 + (i % 5);
            quality.call("new_answer", &json!({"answer": "round", "file_paths": ["answer.md"]}));
            quality.call("submit_checklist", &json!({"scores": {"E1": score, "E2": {"score": 8, "reasoning": "ran the tests; all pass"}, "E3": 6, "E4": 9}}))
        })
        .collect();
    let plan: Vec<Duration> = (0..CALLS)
        .map(|_| {
            quality.call(
                "propose_improvements",
                &json!({"improvements": {"E1": [{"plan": "rebuild the flow", "impact": "structural"}], "E3": ["deepen section 2"]}}),
            )
        })
        .collect();
    let quality_rss = quality.peak_rss_kib();
    quality.shutdown();

    let (mut workflow, _) = Server::spawn("workflow", &workspace);
    let vote: Vec<Duration> = (0..CALLS)
        .map(|_| workflow.call("vote", &json!({"choice": "agent2", "reasoning": "best"})))
        .collect();
    std::fs::write(workspace.join("big3.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
    std::fs::write(workspace.join("big5.bin"), vec![9u8; 5 * 1024 * 1024]).unwrap();
    let answer: Vec<Duration> = (0..CALLS)
        .map(|i| {
            workflow.call(
                "new_answer",
                &json!({"answer": format!("round {i}"), "file_paths": ["big3.bin", "big5.bin"]}),
            )
        })
        .collect();
    let workflow_rss = workflow.peak_rss_kib();
    workflow.shutdown();

    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| cold start, spawn → `initialize` reply (min / median / max of {COLD_STARTS}) | {cold_min:.1} / {cold_median:.1} / {cold_max:.1} ms |"
    );
    println!("| shutdown after stdin EOF (median) | {shutdown_median:.1} ms |");
    let kib = |value: Option<u64>| {
        value.map_or_else(
            || "n/a".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        )
    };
    println!(
        "| peak RSS, quality server after {} calls | {} |",
        CALLS * 5,
        kib(quality_rss)
    );
    println!(
        "| peak RSS, workflow server after {} calls | {} |",
        CALLS * 2,
        kib(workflow_rss)
    );
    println!();
    println!("| call ({CALLS} each) | p50 | p95 | p50 calls 1–5 | p50 calls 46–50 |");
    println!("|---|---|---|---|---|");
    for (name, samples) in [
        ("`tools/list`", &list),
        ("`init_session`", &init),
        ("`generate_eval_criteria`", &generate),
        ("`submit_checklist` (history grows)", &submit),
        ("`propose_improvements`", &plan),
        ("`vote`", &vote),
        ("`new_answer`, files of 3 + 5 MiB", &answer),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            median_ms(samples),
            p95_ms(samples),
            median_ms(&samples[..5]),
            median_ms(&samples[CALLS - 5..])
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let disk_base = std::env::temp_dir().join(format!("refinery-bench-{}", std::process::id()));
    std::fs::create_dir_all(&disk_base).unwrap();
    println!("## MCP servers (`cargo bench -p refinery --bench mcp`)");
    run_suite(&format!("disk ({})", disk_base.display()), &disk_base);
    let _ = std::fs::remove_dir_all(&disk_base);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let shm_base = shm.join(format!("refinery-bench-{}", std::process::id()));
        std::fs::create_dir_all(&shm_base).unwrap();
        run_suite("tmpfs (/dev/shm)", &shm_base);
        let _ = std::fs::remove_dir_all(&shm_base);
    }
}
