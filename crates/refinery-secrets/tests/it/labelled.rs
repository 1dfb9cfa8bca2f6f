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
