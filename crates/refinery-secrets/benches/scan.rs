//! Secret scanner benchmark: throughput on a generated 200 MiB tree and recall/precision on a
//! generated labelled set. Results go into docs/BENCHMARKS.md by hand.
//!
//! ```text
//! cargo bench -p refinery-secrets --bench scan
//! REFINERY_BENCH_MIB=50 cargo bench -p refinery-secrets --bench scan      # smaller tree
//! REFINERY_BENCH_TREE=/usr/lib/python3:/usr/share/doc cargo bench -p refinery-secrets --bench scan
//! ```
//!
//! `REFINERY_BENCH_TREE` adds a run over existing folders of real text (`:`-separated, up to
//! the same size), read into memory first. `REFINERY_BENCH_DENSE=1` generates a keyword-dense
//! tree (a stress case), `REFINERY_BENCH_DIR` keeps the generated tree. Everything runs on one
//! thread; the machine's other load shows in the numbers, so compare runs made side by side.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary reports on stdout and may panic on setup errors"
)]

#[path = "../tests/it/corpus.rs"]
mod corpus;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corpus::Rng;
use refinery_secrets::cli::{IgnoreRules, ScanOptions, ScanTarget, scan_report};
use refinery_secrets::{Scanner, ScannerBuilder};

const MIB: usize = 1024 * 1024;

fn main() {
    let mebibytes: usize = std::env::var("REFINERY_BENCH_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let work = tempfile::tempdir().unwrap();

    let started = Instant::now();
    // `REFINERY_BENCH_DIR` keeps the generated tree for inspection.
    let tree = std::env::var_os("REFINERY_BENCH_DIR")
        .map_or_else(|| work.path().join("tree"), PathBuf::from);
    let (files, bytes) = generate_tree(&tree, mebibytes * MIB);
    println!(
        "generated tree: {files} files, {:.1} MiB in {:.2} s",
        bytes as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );

    println!(
        "generic keyword density: {}",
        keyword_density(&read_tree(&tree, 16 * MIB))
    );

    // End to end through the CLI's entry point: walk, read, skip, scan, filter (one thread).
    let mut options = ScanOptions::new(ScanTarget::Paths(vec![]), &tree);
    options.ignore_rules = IgnoreRules::Disregard;
    options.max_file_size = Some(16 * MIB as u64);
    let mut end_to_end = Vec::new();
    let mut findings = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let report = scan_report(&options);
        end_to_end.push(started.elapsed());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.stats.bytes_scanned, bytes as u64);
        findings = report.findings.len();
    }
    let median = median(&mut end_to_end);
    println!(
        "end to end (walk + read + scan), generated tree: median {:.2} s of 3 -> {:.0} MB/s ({:.0} MiB/s), {findings} findings",
        median.as_secs_f64(),
        bytes as f64 / 1e6 / median.as_secs_f64(),
        bytes as f64 / MIB as f64 / median.as_secs_f64(),
    );

    // Scanning alone, from memory, with and without the keyword prefilter.
    let texts = read_tree(&tree, usize::MAX);
    let with_prefilter = Scanner::builtin();
    let without_prefilter = ScannerBuilder::new()
        .without_keyword_prefilter()
        .build()
        .unwrap();
    for (label, scanner) in [
        ("keyword prefilter", with_prefilter),
        ("every rule over every file", &without_prefilter),
    ] {
        let (seconds, found) = time_scan(scanner, &texts);
        println!(
            "in-memory scan, generated tree, {label}: {seconds:.2} s -> {:.0} MB/s, {found} findings",
            bytes as f64 / 1e6 / seconds
        );
    }

    println!(
        "  findings by rule: {:?}",
        findings_by_rule(with_prefilter, &texts)
    );
    scrubber_throughput(&texts);
    if let Ok(rules) = std::env::var("REFINERY_BENCH_DISABLE") {
        let mut builder = ScannerBuilder::new();
        for rule in rules.split(',') {
            builder = builder.with_disabled_rule(rule);
        }
        let (seconds, found) = time_scan(&builder.build().unwrap(), &texts);
        println!(
            "in-memory scan without {rules}: {seconds:.2} s -> {:.0} MB/s, {found} findings",
            bytes as f64 / 1e6 / seconds
        );
    }
    if std::env::var_os("REFINERY_BENCH_SHOW").is_some() {
        show_findings(with_prefilter, &texts);
    }

    if let Ok(real) = std::env::var("REFINERY_BENCH_TREE") {
        // Several folders may be given, separated by `:`.
        let mut texts = Vec::new();
        for folder in real.split(':') {
            let have: usize = texts
                .iter()
                .map(|(_, text): &(PathBuf, Vec<u8>)| text.len())
                .sum();
            texts.extend(read_tree(
                Path::new(folder),
                (mebibytes * MIB).saturating_sub(have),
            ));
        }
        if std::env::var_os("REFINERY_BENCH_SHOW").is_some() {
            show_findings(with_prefilter, &texts);
        }

        let real_bytes: usize = texts.iter().map(|(_, text)| text.len()).sum();
        println!("generic keyword density: {}", keyword_density(&texts));
        let (seconds, found) = time_scan(with_prefilter, &texts);
        println!(
            "in-memory scan, {real} ({} text files, {:.1} MiB): {seconds:.2} s -> {:.0} MB/s, {found} findings",
            texts.len(),
            real_bytes as f64 / MIB as f64,
            real_bytes as f64 / 1e6 / seconds
        );
        println!(
            "  findings by rule: {:?}",
            findings_by_rule(with_prefilter, &texts)
        );
    }

    labelled_set(work.path());
}

/// The scrubber every boundary applies: ten known values plus the redaction rules, over the
/// tree's texts as plain text and as one JSON document of strings (how state files and
/// requests are scrubbed).
fn scrubber_throughput(texts: &[(PathBuf, Vec<u8>)]) {
    let values: Vec<String> = (0..10)
        .map(|index| format!("known-credential-value-{index:04}-x7Q"))
        .collect();
    let scrubber = refinery_secrets::Scrubber::new(&values);
    let strings: Vec<String> = texts
        .iter()
        .map(|(_, text)| String::from_utf8_lossy(text).into_owned())
        .collect();
    let bytes: usize = strings.iter().map(String::len).sum();
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let changed = strings
            .iter()
            .filter(|text| matches!(scrubber.scrub_cow(text), std::borrow::Cow::Owned(_)))
            .count();
        times.push(started.elapsed());
        std::hint::black_box(changed);
    }
    let seconds = median(&mut times).as_secs_f64();
    println!(
        "scrubber, plain text ({} texts, {:.1} MiB): median {seconds:.2} s of 3 -> {:.0} MB/s",
        strings.len(),
        bytes as f64 / MIB as f64,
        bytes as f64 / 1e6 / seconds
    );
    let json = serde_json::to_string_pretty(&strings).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let clean = scrubber.scrub_json_text(&json, refinery_secrets::JsonStyle::Pretty);
        times.push(started.elapsed());
        std::hint::black_box(clean.len());
    }
    let seconds = median(&mut times).as_secs_f64();
    println!(
        "scrubber, one JSON document of those texts ({:.1} MiB): median {seconds:.2} s of 3 -> {:.0} MB/s",
        json.len() as f64 / MIB as f64,
        json.len() as f64 / 1e6 / seconds
    );
    manifest_scrub(&scrubber);
    pack_scrub(&scrubber, &strings);
}

/// How often the per-call cases (a pack, a manifest) are timed.
const PACK_RUNS: usize = 50;
const MANIFEST_RUNS: usize = 200;

/// A deliverable pack as judges get it (up to 240 KiB of text), scrubbed as one text: what
/// each scrub of a judge's request costs.
fn pack_scrub(scrubber: &refinery_secrets::Scrubber, strings: &[String]) {
    let mut pack = String::new();
    for text in strings {
        if pack.len() >= 240 * 1024 {
            break;
        }
        pack.push_str(text);
    }
    pack.truncate(pack.floor_char_boundary(240 * 1024));
    // A fresh scrubber (same values) each time scans; the same one remembers a clean text.
    let values: Vec<String> = (0..10)
        .map(|index| format!("known-credential-value-{index:04}-x7Q"))
        .collect();
    for (label, fresh) in [("scanned", true), ("again, remembered clean", false)] {
        let mut times = Vec::new();
        for _ in 0..PACK_RUNS {
            let fresh_scrubber = refinery_secrets::Scrubber::new(&values);
            let scrubber = if fresh { &fresh_scrubber } else { scrubber };
            let started = Instant::now();
            let clean = scrubber.scrub_cow(&pack);
            times.push(started.elapsed());
            std::hint::black_box(clean.len());
        }
        println!(
            "scrubber, a {} KiB deliverable pack as one text, {label}: median {:.0} µs of {PACK_RUNS}",
            pack.len() / 1024,
            median(&mut times).as_secs_f64() * 1e6
        );
    }
}

/// A snapshot manifest as the store writes it (`write_json`: pretty JSON, every string
/// scrubbed): 300 entries of path, kind, 64-hex hash, size and mode. Many short strings, so
/// this measures what one scrub call costs, not throughput.
fn manifest_scrub(scrubber: &refinery_secrets::Scrubber) {
    let mut rng = Rng::new(11);
    let entries: Vec<serde_json::Value> = (0..300)
        .map(|index| {
            let hash = rng.string(b"0123456789abcdef", 64);
            serde_json::json!({
                "path": format!("src/components/page_{index:03}.html"),
                "kind": "file",
                "hash": hash,
                "size": 10_240 + index,
                "mode": 420,
            })
        })
        .collect();
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "answer": "A1.2", "entries": entries, "skipped": []
    }))
    .unwrap();
    let mut times = Vec::new();
    for _ in 0..MANIFEST_RUNS {
        let started = Instant::now();
        let clean = scrubber.scrub_json_text(&json, refinery_secrets::JsonStyle::Pretty);
        times.push(started.elapsed());
        assert!(matches!(clean, std::borrow::Cow::Borrowed(_)));
    }
    println!(
        "scrubber, a 300-entry snapshot manifest ({} KiB of JSON): median {:.0} µs of {MANIFEST_RUNS}",
        json.len() / 1024,
        median(&mut times).as_secs_f64() * 1e6
    );
}

fn findings_by_rule(
    scanner: &Scanner,
    texts: &[(PathBuf, Vec<u8>)],
) -> std::collections::BTreeMap<String, usize> {
    let mut by_rule = std::collections::BTreeMap::new();
    for (_, text) in texts {
        for finding in scanner.scan(text) {
            *by_rule.entry(finding.rule_id).or_insert(0) += 1;
        }
    }
    by_rule
}

/// One generic-rule keyword per how many bytes.
fn keyword_density(texts: &[(PathBuf, Vec<u8>)]) -> String {
    let keywords =
        regex::bytes::Regex::new("(?i-u:key|secret|token|passw|pwd|passphrase|credential)")
            .unwrap();
    let bytes: usize = texts.iter().map(|(_, text)| text.len()).sum();
    let hits: usize = texts
        .iter()
        .map(|(_, text)| keywords.find_iter(text).count())
        .sum();
    format!("one keyword per {} bytes", bytes / hits.max(1))
}

/// Debugging aid for false positives: prints each finding with its context. Only for local
/// investigation of generated or public text; never used in tests or CI.
fn show_findings(scanner: &Scanner, texts: &[(PathBuf, Vec<u8>)]) {
    for (path, text) in texts {
        for finding in scanner.scan(text) {
            let start = finding.span.start.saturating_sub(60);
            let end = (finding.span.end + 10).min(text.len());
            let context = String::from_utf8_lossy(&text[start..end]).replace('\n', "\\n");
            println!("  [{}] {}: {context}", finding.rule_id, path.display());
        }
    }
}

fn median(durations: &mut [Duration]) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

fn time_scan(scanner: &Scanner, texts: &[(PathBuf, Vec<u8>)]) -> (f64, usize) {
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..3 {
        let started = Instant::now();
        found = texts.iter().map(|(_, text)| scanner.scan(text).len()).sum();
        times.push(started.elapsed());
    }
    (median(&mut times).as_secs_f64(), found)
}

/// Text files under `root` (binary and unreadable ones skipped), up to `limit` bytes.
fn read_tree(root: &Path, limit: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .build()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_some_and(|kind| kind.is_file()))
        .map(ignore::DirEntry::into_path)
        .collect();
    paths.sort();
    let mut texts = Vec::new();
    let mut total = 0;
    for path in paths {
        let Ok(bytes) = fs_err::read(&path) else {
            continue;
        };
        if bytes.len() > MIB || memchr::memchr(0, &bytes[..bytes.len().min(8000)]).is_some() {
            continue;
        }
        total += bytes.len();
        texts.push((path, bytes));
        if total >= limit {
            break;
        }
    }
    texts
}

/// Words of prose and code.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "for", "that", "with", "return", "value", "file", "path",
    "request", "response", "user", "config", "data", "error", "result", "list", "map", "session",
    "cache", "task", "disk", "ask", "risk", "message", "msg", "http", "server", "client",
    "handler", "index", "buffer", "string", "number", "default", "options", "api",
];

/// Words that hold the generic rule's keywords (`key`, `token`, `password`...), mostly not
/// next to secrets, as in real code.
const KEYWORD_WORDS: &[&str] = &[
    "key",
    "keys",
    "token",
    "tokens",
    "password",
    "secret",
    "keyboard",
    "monkey",
    "tokenizer",
];

const IDENTIFIERS: &[&str] = &[
    "user_id",
    "api_client",
    "session",
    "request",
    "item",
    "row",
    "node",
    "parent",
    "path",
    "buffer",
    "result",
    "handler",
    "options",
    "count",
    "offset",
    "limit",
    "name",
    "value",
];

const KEYWORD_IDENTIFIERS: &[&str] = &[
    "cache_key",
    "token_count",
    "max_tokens",
    "password_field",
    "primary_key",
    "public_key",
    "self.key",
    "config.token",
    "keyboard_layout",
    "monkey_patch",
    "sort_key",
    "access_token_url",
];

/// The share of words and identifiers drawn from the keyword lists. The default is calibrated
/// to real code: Python's standard library and site-packages have one generic keyword per
/// ~1.3 KB (measured with this benchmark's `REFINERY_BENCH_TREE`), and so does the generated
/// tree. `REFINERY_BENCH_DENSE=1` draws a third of them from the keyword lists (one keyword per
/// ~50 bytes), a stress case for the prefilter.
fn keyword_share() -> usize {
    if std::env::var_os("REFINERY_BENCH_DENSE").is_some() {
        330
    } else {
        12
    }
}

fn word(rng: &mut Rng) -> &'static str {
    if rng.below(1000) < keyword_share() {
        rng.pick(KEYWORD_WORDS)
    } else {
        rng.pick(WORDS)
    }
}

fn identifier(rng: &mut Rng) -> &'static str {
    if rng.below(1000) < keyword_share() {
        rng.pick(KEYWORD_IDENTIFIERS)
    } else {
        rng.pick(IDENTIFIERS)
    }
}

fn line(rng: &mut Rng, out: &mut String) {
    match rng.below(20) {
        0..=4 => {
            out.push_str("    ");
            let words = 3 + rng.below(12);
            out.push_str("# ");
            for index in 0..words {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(word(rng));
            }
        }
        5..=8 => {
            let (a, b, c) = (identifier(rng), identifier(rng), identifier(rng));
            let _ = write!(out, "    let {a} = {b}.get({c}, {});", rng.below(10_000));
        }
        9..=10 => {
            let (a, b) = (identifier(rng), identifier(rng));
            let _ = write!(out, "def handle_{}(self, {a}, {b}=None):", word(rng));
        }
        11 => {
            let a = identifier(rng);
            let _ = write!(out, "    {a} = os.environ[\"{}\"]", a.to_ascii_uppercase());
        }
        12 => {
            let (name, value, number) = (word(rng), word(rng), rng.below(100));
            let _ = write!(out, "    \"{name}\": \"{value}_{number}\",");
        }
        13 => {
            let _ = write!(out, "sha256 = \"{}\"", rng.string(corpus::HEX, 64));
        }
        14 => {
            let _ = write!(
                out,
                "    url = \"https://{}.example.org/{}/{}\"",
                word(rng),
                word(rng),
                rng.below(1000)
            );
        }
        15 => {
            let _ = write!(out, "  data: {}", rng.string(corpus::BASE64, 76));
        }
        16 => {
            let _ = write!(
                out,
                "id = \"{}-{}-4{}-a{}-{}\"",
                rng.string(corpus::HEX, 8),
                rng.string(corpus::HEX, 4),
                rng.string(corpus::HEX, 3),
                rng.string(corpus::HEX, 3),
                rng.string(corpus::HEX, 12)
            );
        }
        17 => out.push('}'),
        18 => {}
        _ => {
            let a = identifier(rng);
            let _ = write!(out, "    if {a} is None: raise KeyError(\"missing {a}\")");
        }
    }
    out.push('\n');
}

/// Writes about `target` bytes of code-like text in files of 4–64 KiB, 200 per folder.
fn generate_tree(root: &Path, target: usize) -> (usize, usize) {
    let mut rng = Rng::new(0x00be_9c11);
    let mut written = 0;
    let mut files = 0;
    let extensions = ["py", "rs", "js", "yaml", "md", "toml", "go"];
    let mut text = String::with_capacity(70 * 1024);
    while written < target {
        let size = (4 * 1024 + rng.below(60 * 1024)).min(target - written);
        text.clear();
        while text.len() < size {
            line(&mut rng, &mut text);
        }
        let directory = root.join(format!("d{:03}", files / 200));
        if files % 200 == 0 {
            fs_err::create_dir_all(&directory).unwrap();
        }
        let path = directory.join(format!(
            "f{files:05}.{}",
            extensions[files % extensions.len()]
        ));
        fs_err::write(&path, text.as_bytes()).unwrap();
        written += text.len();
        files += 1;
    }
    (files, written)
}

/// Recall and precision on planted secrets and look-alike decoys, one sample per file.
fn labelled_set(work: &Path) {
    let root = work.join("labelled");
    let mut rng = Rng::new(0x1abe_11ed);
    let positives = corpus::true_positives(&mut rng, 10);
    let mut decoys = Vec::new();
    for _ in 0..5 {
        decoys.extend(corpus::decoys(&mut rng));
    }
    let mut positive_paths = Vec::new();
    let mut decoy_paths = Vec::new();
    for (index, sample) in positives.iter().enumerate() {
        let path = format!("tp/{index:04}/{}", sample.file_name);
        write(&root, &path, &sample.content);
        positive_paths.push((path, sample.rule));
    }
    for (index, sample) in decoys.iter().enumerate() {
        let path = format!("fp/{index:04}/{}", sample.file_name);
        write(&root, &path, &sample.content);
        decoy_paths.push((path, sample.rule));
    }
    let mut options = ScanOptions::new(ScanTarget::Paths(vec![]), &root);
    options.ignore_rules = IgnoreRules::Disregard;
    let report = scan_report(&options);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let flagged: BTreeSet<&str> = report
        .findings
        .iter()
        .filter_map(|finding| finding.path.as_deref())
        .collect();
    let found = positive_paths
        .iter()
        .filter(|(path, _)| flagged.contains(path.as_str()))
        .count();
    let false_alarms: Vec<&(String, &str)> = decoy_paths
        .iter()
        .filter(|(path, _)| flagged.contains(path.as_str()))
        .collect();
    let missed: Vec<&(String, &str)> = positive_paths
        .iter()
        .filter(|(path, _)| !flagged.contains(path.as_str()))
        .collect();
    let recall = found as f64 / positive_paths.len() as f64;
    let precision = found as f64 / (found + false_alarms.len()) as f64;
    println!(
        "labelled set: {} planted secrets ({} rules), {} decoys -> recall {recall:.3}, precision {precision:.3}",
        positive_paths.len(),
        corpus::RULES.len(),
        decoy_paths.len()
    );
    println!("  missed: {missed:?}");
    println!("  false alarms: {false_alarms:?}");
}

fn write(root: &Path, relative: &str, content: &str) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, content).unwrap();
}
