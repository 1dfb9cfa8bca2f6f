//! Path scans through the CLI entry point: output, exit status, ignore file, allow comments,
//! TOML rules, skipped files, and failures that must never look clean.

use std::path::PathBuf;

use refinery_secrets::cli::{IgnoreRules, OutputFormat, ScanOptions, ScanStatus, ScanTarget};

use crate::corpus::{self, Rng};
use crate::support::{assert_no_leak, git, init_repo, scan, write};

fn options(dir: &std::path::Path) -> ScanOptions {
    ScanOptions::new(ScanTarget::Paths(vec![]), dir)
}

#[test]
fn clean_tree_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "src/main.rs",
        "fn main() { let max_tokens = 4096; }\n",
    );
    let (status, stdout, stderr) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Clean);
    assert_eq!(status.exit_code(), 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains("0 findings (1 file scanned"), "{stderr}");
}

#[test]
fn findings_are_reported_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(31);
    let key = corpus::secret("github-pat", &mut rng);
    write(
        dir.path(),
        "config/.env",
        &format!("# tokens\nGITHUB_TOKEN={key}\n"),
    );
    let (status, stdout, stderr) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Findings);
    assert_eq!(status.exit_code(), 1);
    let line = stdout.lines().next().unwrap();
    assert!(
        line.starts_with("config/.env:2:14: github-pat fingerprint="),
        "{line}"
    );
    assert!(
        line.ends_with("preview=`ghp_\u{2026} (40 chars)`"),
        "{line}"
    );
    assert_no_leak(&stdout, &key);
    assert_no_leak(&stderr, &key);
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn ignore_file_accepts_fingerprints_everywhere_or_per_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(32);
    let key = corpus::secret("npm-token", &mut rng);
    write(dir.path(), "a.txt", &format!("NPM_TOKEN={key}\n"));
    write(dir.path(), "b.txt", &format!("\n\nNPM_TOKEN={key}\n"));
    let mut json_options = options(dir.path());
    json_options.format = OutputFormat::Json;
    let (_, stdout, _) = scan(&json_options);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fingerprint = report["findings"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(report["findings"][1]["fingerprint"], fingerprint.as_str());

    write(
        dir.path(),
        ".refinery-secrets-ignore",
        &format!("{fingerprint} a.txt # fixture\n"),
    );
    let (status, stdout, stderr) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Findings);
    assert!(stdout.starts_with("b.txt:3:"), "{stdout}");
    assert!(stderr.contains("1 ignored"), "{stderr}");

    write(
        dir.path(),
        ".refinery-secrets-ignore",
        &format!("{fingerprint}\n"),
    );
    let (status, _, _) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Clean);
}

#[test]
fn malformed_ignore_file_fails_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".refinery-secrets-ignore",
        "0123456789abcdef\nnot-a-fingerprint\n",
    );
    let (status, stdout, stderr) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Failed);
    assert_eq!(status.exit_code(), 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(".refinery-secrets-ignore` line 2"),
        "{stderr}"
    );
    assert!(stderr.contains("did not complete"), "{stderr}");
}

#[test]
fn toml_rules_add_disable_and_allow() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(33);
    let custom = format!("acme_{}", rng.string(corpus::ALNUM, 32));
    let github = corpus::secret("github-pat", &mut rng);
    write(
        dir.path(),
        ".refinery-secrets.toml",
        "disable = [\"github-pat\"]\nallow-paths = [\"fixtures/\"]\n\n[[rule]]\nid = \"acme-token\"\n\
         description = \"ACME token\"\nregex = 'acme_(?P<secret>[A-Za-z0-9]{32})'\nkeywords = [\"acme_\"]\n",
    );
    write(
        dir.path(),
        "deploy.sh",
        &format!("ACME={custom}\nGH={github}\n"),
    );
    write(dir.path(), "fixtures/data.txt", &format!("ACME={custom}\n"));
    let mut sarif_options = options(dir.path());
    sarif_options.format = OutputFormat::Sarif;
    let (status, stdout, _) = scan(&sarif_options);
    assert_eq!(status, ScanStatus::Findings);
    let sarif: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["ruleId"], "acme-token");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "deploy.sh"
    );
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert!(rules.iter().any(|rule| rule["id"] == "acme-token"));
    assert!(!rules.iter().any(|rule| rule["id"] == "github-pat"));
    assert_no_leak(&stdout, &custom);
}

#[test]
fn malformed_config_fails_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".refinery-secrets.toml",
        "[[rule]]\nid = \"x\"\nregex = \"(\"\n",
    );
    let (status, _, stderr) = scan(&options(dir.path()));
    assert_eq!(status, ScanStatus::Failed);
    assert!(stderr.contains("rule `x` has an invalid regex"), "{stderr}");
}

#[test]
fn binary_and_large_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(34);
    let key = corpus::secret("github-pat", &mut rng);
    fs_err::write(dir.path().join("blob.bin"), format!("\0\0{key}")).unwrap();
    write(
        dir.path(),
        "big.txt",
        &format!("{}\nGH={key}\n", "a".repeat(2000)),
    );
    let mut limited = options(dir.path());
    limited.max_file_size = Some(1000);
    let (status, _, stderr) = scan(&limited);
    assert_eq!(status, ScanStatus::Clean);
    assert!(
        stderr.contains("skipped 1 binary, 1 over the size limit"),
        "{stderr}"
    );
}

#[test]
fn missing_paths_fail_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut missing = options(dir.path());
    missing.target = ScanTarget::Paths(vec![PathBuf::from("does-not-exist")]);
    let (status, _, stderr) = scan(&missing);
    assert_eq!(status, ScanStatus::Failed);
    assert!(stderr.contains("does-not-exist"), "{stderr}");
}

#[test]
fn gitignored_files_are_skipped_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    init_repo(dir.path());
    let mut rng = Rng::new(35);
    let key = corpus::secret("slack-token", &mut rng);
    write(dir.path(), ".gitignore", "build/\n");
    write(dir.path(), "build/out.txt", &format!("SLACK={key}\n"));
    write(dir.path(), "sub/.env", "PORT=8080\n");
    let in_subdir = ScanOptions::new(ScanTarget::Paths(vec![]), dir.path().join("sub"));
    assert_eq!(scan(&in_subdir).0, ScanStatus::Clean);
    assert_eq!(scan(&options(dir.path())).0, ScanStatus::Clean);
    let mut everything = options(dir.path());
    everything.ignore_rules = IgnoreRules::Disregard;
    let (status, stdout, _) = scan(&everything);
    assert_eq!(status, ScanStatus::Findings);
    assert!(stdout.starts_with("build/out.txt:1:"), "{stdout}");
    git(dir.path(), &["status", "--short"]);
}

/// A fifo named on the command line, or as the config or ignore file, is refused unread: the
/// scan fails (exit 2) instead of blocking forever on a read nobody will ever answer.
#[test]
fn named_pipes_are_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", "nothing secret\n");
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut as_path = options(dir.path());
    as_path.target = ScanTarget::Paths(vec![fifo.clone(), dir.path().join("a.txt")]);
    let mut as_config = options(dir.path());
    as_config.target = ScanTarget::Paths(vec![dir.path().join("a.txt")]);
    as_config.config_path = Some(fifo.clone());
    let mut as_ignore_file = options(dir.path());
    as_ignore_file.target = ScanTarget::Paths(vec![dir.path().join("a.txt")]);
    as_ignore_file.ignore_path = Some(fifo.clone());
    for options in [as_path, as_config, as_ignore_file] {
        let (status, _, stderr) = scan(&options);
        assert_eq!(status.exit_code(), 2, "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}
