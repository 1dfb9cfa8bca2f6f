//! Recall and precision on a generated labelled set (the benchmark records the same numbers
//! for a larger set in docs/BENCHMARKS.md). A file counts as detected when the scan reports
//! anything in it.

use std::collections::BTreeSet;

use refinery_secrets::cli::{IgnoreRules, ScanOptions, ScanTarget, scan_report};

use crate::corpus::{self, Rng};
use crate::support::{assert_no_leak, scan};

#[test]
fn recall_and_precision_meet_the_goal() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x1abe1);
    let positives = corpus::true_positives(&mut rng, 3);
    let decoys = corpus::decoys(&mut rng);
    let mut positive_paths = Vec::new();
    let mut decoy_paths = Vec::new();
    for (index, sample) in positives.iter().enumerate() {
        let path = format!("tp/{index:03}/{}", sample.file_name);
        crate::support::write(dir.path(), &path, &sample.content);
        positive_paths.push(path);
    }
    for (index, sample) in decoys.iter().enumerate() {
        let path = format!("fp/{index:03}/{}", sample.file_name);
        crate::support::write(dir.path(), &path, &sample.content);
        decoy_paths.push(path);
    }
    let mut options = ScanOptions::new(ScanTarget::Paths(vec![]), dir.path());
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
        .filter(|path| flagged.contains(path.as_str()))
        .count();
    let false_alarms: Vec<&String> = decoy_paths
        .iter()
        .filter(|path| flagged.contains(path.as_str()))
        .collect();
    let recall = found as f64 / positive_paths.len() as f64;
    let precision = found as f64 / (found + false_alarms.len()) as f64;
    let missed: Vec<&String> = positive_paths
        .iter()
        .filter(|path| !flagged.contains(path.as_str()))
        .collect();
    assert!(recall >= 0.95, "recall {recall:.3}; missed {missed:?}");
    assert!(
        precision >= 0.95,
        "precision {precision:.3}; false alarms {false_alarms:?}"
    );

    let (_, stdout, stderr) = scan(&options);
    for sample in &positives {
        assert_no_leak(&stdout, &sample.secret);
        assert_no_leak(&stderr, &sample.secret);
    }
}

/// Findings of the redaction-only bare AWS rule in `text`.
fn bare_aws_hits(text: &str) -> usize {
    let (_, findings) = refinery_secrets::redact(text);
    findings
        .iter()
        .filter(|finding| finding.rule_id == "aws-secret-access-key-bare")
        .count()
}

/// The bare AWS secret access key rule (redaction only, no keyword): recall on generated keys
/// in contexts without any AWS naming, and false alarms on every decoy of the labelled set, on
/// the other rules' secrets, on look-alikes of its own shape, and on this repository's own
/// sources and docs (thousands of real lines).
#[test]
fn bare_aws_secret_keys_are_redacted_without_flooding_false_positives() {
    let mut rng = Rng::new(0xa5_5ec);
    let contexts: [fn(&str) -> String; 6] = [
        |key| format!("Use {key} for the backup job.\n"),
        |key| format!("{{\"k\": \"{key}\"}}\n"),
        |key| format!("{key}\n"),
        |key| format!("export BACKUP={key}\n"),
        |key| format!("- paste `{key}` into the console\n"),
        |key| format!("creds: {key},{key}\n"),
    ];
    let total = 600;
    let mut found = 0;
    let mut missed = Vec::new();
    for index in 0..total {
        let key = corpus::secret("aws-secret-access-key", &mut rng);
        let text = contexts[index % contexts.len()](&key);
        let (clean, _) = refinery_secrets::redact(&text);
        if clean.contains(&key) {
            missed.push(text);
        } else {
            found += 1;
        }
    }
    let recall = f64::from(found) / f64::from(u32::try_from(total).unwrap());

    // Look-alikes of its own shape: git object ids, hex and base64 digests, certificate and
    // key lines, identifiers, paths, UUIDs, npm integrity strings.
    let mut look_alikes = Vec::new();
    for _ in 0..200 {
        look_alikes.push(format!("commit {}\n", rng.string(corpus::HEX, 40)));
        look_alikes.push(format!("sha256: {}\n", rng.string(corpus::HEX, 64)));
        look_alikes.push(format!("digest: {}=\n", rng.string(corpus::BASE64, 43)));
        look_alikes.push(format!("{}\n", rng.string(corpus::BASE64, 64)));
        look_alikes.push(format!(
            "integrity sha512-{}==\n",
            rng.string(corpus::BASE64, 86)
        ));
    }
    look_alikes.extend(
        [
            "src/components/navigation/HeaderMenu2.tsx\n",
            "ThisIsAVeryLongCamelCaseIdentifierName12\n",
            "see crates/refinery-secrets/src/scrub.rs:42\n",
            "550e8400-e29b-41d4-a716-446655440000 6ba7b810-9dad-11d1-80b4-00c04fd430c8\n",
            "https://github.com/refinery-dev/refinery/blob/main/docs/SECRETS.md\n",
        ]
        .map(str::to_owned),
    );
    let mut false_alarms: Vec<String> = look_alikes
        .iter()
        .filter(|text| bare_aws_hits(text) > 0)
        .cloned()
        .collect();
    // Every decoy of the labelled set, and the other rules' true positives (a hit there would
    // mask a different secret twice, harmless, but it would show the rule is too loose).
    let decoys = corpus::decoys(&mut rng);
    let others: Vec<_> = corpus::true_positives(&mut rng, 2)
        .into_iter()
        .filter(|sample| sample.rule != "aws-secret-access-key")
        .collect();
    for sample in decoys.iter().chain(&others) {
        if bare_aws_hits(&sample.content) > 0 && !sample.is_hard {
            false_alarms.push(format!("{}: {}", sample.rule, sample.file_name));
        }
    }
    // This repository's own sources and documents.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut scanned_files = 0;
    let mut scanned_bytes = 0;
    let mut stack = vec![root.join("crates"), root.join("docs"), root.join("plugin")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = fs_err::read_to_string(&path) else {
                continue;
            };
            scanned_files += 1;
            scanned_bytes += text.len();
            if bare_aws_hits(&text) > 0 {
                false_alarms.push(path.display().to_string());
            }
        }
    }
    eprintln!(
        "bare AWS secret key: recall {recall:.3} ({found}/{total}); {} false alarms on {} look-alikes, {} labelled decoys and other rules' secrets, and {scanned_files} repository files ({scanned_bytes} bytes)",
        false_alarms.len(),
        look_alikes.len(),
        decoys.len() + others.len()
    );
    assert!(
        recall >= 0.99,
        "recall {recall:.3}; missed {:?}",
        &missed[..missed.len().min(5)]
    );
    assert!(false_alarms.is_empty(), "false alarms: {false_alarms:?}");
    assert!(
        scanned_files > 100,
        "only {scanned_files} repository files found"
    );
}
