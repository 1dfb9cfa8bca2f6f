//! Snapshot benchmark: what the object store and the stat cache cost, on the ordinary disk.
//!
//! Run with `cargo bench -p refinery-core --bench snapshot`. The state and the workspace go
//! under `REFINERY_BENCH_DIR` (default: the system temporary folder; it must not be tmpfs for
//! the durable numbers to mean anything, and the bench prints which filesystem it is on).
//! It times, as medians of alternating runs:
//! - the first snapshot of 300 small files into an empty store (every object new, made
//!   durable before the snapshot returns);
//! - a snapshot of an unchanged tree of two files, 3 and 5 MiB (the stat cache's case);
//! - `new_answer` of that unchanged tree through a session (snapshot, manifest, state, journal).
//!
//! Results print as Markdown; docs/BENCHMARKS.md keeps them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark harness: fail loudly, print its table"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refinery_core::{SessionSettings, StateDir, WorkspaceScope};
use time::OffsetDateTime;

const RUNS: usize = 21;

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn small_tree(root: &Path) {
    for index in 0..300 {
        let dir = root.join(format!("pages/section_{}", index % 12));
        fs_err::create_dir_all(&dir).unwrap();
        let body = format!(
            "<html><body><h1>Page {index}</h1>{}</body></html>\n",
            "text ".repeat(400 + index)
        );
        fs_err::write(dir.join(format!("page_{index}.html")), body).unwrap();
    }
}

fn big_tree(root: &Path) {
    fs_err::create_dir_all(root).unwrap();
    fs_err::write(root.join("big3.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
    fs_err::write(root.join("big5.bin"), vec![9u8; 5 * 1024 * 1024]).unwrap();
}

fn canonical_dir(path: PathBuf) -> PathBuf {
    fs_err::create_dir_all(&path).unwrap();
    fs_err::canonicalize(path).unwrap()
}

fn first_snapshot_of_300(base: &Path) -> Vec<Duration> {
    let workspace = canonical_dir(base.join("small"));
    small_tree(&workspace);
    (0..RUNS)
        .map(|run| {
            let state = base.join(format!("small-state-{run}"));
            let store = refinery_core::ObjectStore::new(state.join("objects"));
            let scope = WorkspaceScope::from_walk(&workspace, &[]).unwrap();
            let started = Instant::now();
            let snapshot = scope.snapshot(&store, &[".".to_owned()]).unwrap();
            let took = started.elapsed();
            assert_eq!(snapshot.entries.len(), 300);
            took
        })
        .collect()
}

fn unchanged_big_tree(base: &Path) -> (Vec<Duration>, Vec<Duration>) {
    let workspace = canonical_dir(base.join("big"));
    big_tree(&workspace);
    let state = StateDir::new(base.join("big-state"), &workspace);
    state.prepare().unwrap();
    let scope = WorkspaceScope::from_walk(&workspace, &[state.root().to_path_buf()]).unwrap();
    let paths = vec!["big3.bin".to_owned(), "big5.bin".to_owned()];
    // Let the files' times settle past the racy margin, then warm the cache once.
    std::thread::sleep(Duration::from_millis(200));
    scope.snapshot(&state.objects(), &paths).unwrap();
    let session = state
        .init_session(
            "bench",
            SessionSettings::default(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let mut snapshots = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let snapshot = scope.snapshot(&state.objects(), &paths).unwrap();
        snapshots.push(started.elapsed());
        assert_eq!(snapshot.new_bytes, 0);
        let started = Instant::now();
        session
            .new_answer("round", &paths, OffsetDateTime::now_utc())
            .unwrap();
        answers.push(started.elapsed());
    }
    (snapshots, answers)
}

fn filesystem_of(path: &Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let root = std::env::var_os("REFINERY_BENCH_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("refinery-snapshot-bench-{}", std::process::id()));
    fs_err::create_dir_all(&root).unwrap();
    println!(
        "## Snapshots (`cargo bench -p refinery-core --bench snapshot`), {} on {}\n",
        root.display(),
        filesystem_of(&root)
    );
    let mut first = first_snapshot_of_300(&root);
    let (mut unchanged, mut answers) = unchanged_big_tree(&root);
    println!("| measure (median of {RUNS}) | time |");
    println!("|---|---|");
    println!(
        "| first snapshot of 300 small files (2–5 KiB), empty store | {:.1} ms |",
        median_ms(&mut first)
    );
    println!(
        "| snapshot of an unchanged 3 + 5 MiB tree | {:.2} ms |",
        median_ms(&mut unchanged)
    );
    println!(
        "| `new_answer` of an unchanged 3 + 5 MiB tree (snapshot, manifest, state, journal) | {:.2} ms |",
        median_ms(&mut answers)
    );
    let _ = fs_err::remove_dir_all(&root);
}
