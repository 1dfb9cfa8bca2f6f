//! Rendering a scan's result: human lines, JSON, or SARIF 2.1.0. All three render the same
//! [`ScanReport`]; none has access to a matched value.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;
use serde_json::json;

use crate::error::Result;
use crate::finding::Finding;
use crate::scanner::Scanner;

/// Counters of what a scan looked at and what it skipped; skipped files are never silent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Files (or per-commit file diffs) whose text was scanned.
    pub files_scanned: u64,
    /// Bytes of text scanned.
    pub bytes_scanned: u64,
    /// Commits whose additions were scanned (history and pre-push modes).
    pub commits_scanned: u64,
    /// Files skipped because they are binary.
    pub skipped_binary: u64,
    /// Files skipped because they exceed the size limit.
    pub skipped_too_large: u64,
    /// Findings dropped by the ignore file or `allow-paths` (allow comments drop them earlier).
    pub ignored_findings: u64,
}

/// How a scan ended. Maps to the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    /// Everything was scanned and nothing was found: exit 0.
    Clean,
    /// Everything was scanned and secrets were found: exit 1.
    Findings,
    /// Part of the scan could not run (git failed, a file was unreadable, bad config): exit 2,
    /// whatever was found, because "nothing found" would be a lie.
    Failed,
}

impl ScanStatus {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Findings => 1,
            Self::Failed => 2,
        }
    }
}

/// Everything a scan produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScanReport {
    /// What was found, in path/line order.
    pub findings: Vec<Finding>,
    /// What was looked at.
    pub stats: ScanStats,
    /// Why parts of the scan failed (messages hold paths and revisions, never values).
    pub errors: Vec<String>,
}

impl ScanReport {
    /// The scan's outcome.
    pub fn status(&self) -> ScanStatus {
        if !self.errors.is_empty() {
            ScanStatus::Failed
        } else if self.findings.is_empty() {
            ScanStatus::Clean
        } else {
            ScanStatus::Findings
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per finding on stdout, a summary on stderr.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
    /// A SARIF 2.1.0 log on stdout (for code-scanning uploads).
    Sarif,
}

pub(crate) fn render(
    report: &ScanReport,
    format: OutputFormat,
    scanner: &Scanner,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<()> {
    match format {
        OutputFormat::Human => render_human(report, stdout, stderr)?,
        OutputFormat::Json => {
            let document = json!({
                "status": report.status(),
                "findings": report.findings,
                "stats": report.stats,
                "errors": report.errors,
            });
            serde_json::to_writer_pretty(&mut *stdout, &document)?;
            writeln!(stdout)?;
        }
        OutputFormat::Sarif => {
            serde_json::to_writer_pretty(&mut *stdout, &sarif(report, scanner))?;
            writeln!(stdout)?;
        }
    }
    // Errors always reach stderr too, so a hook that only shows stderr still explains itself.
    if format != OutputFormat::Human {
        for error in &report.errors {
            writeln!(stderr, "error: {error}")?;
        }
    }
    Ok(())
}

fn render_human(report: &ScanReport, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<()> {
    for finding in &report.findings {
        let mut location = String::new();
        if let Some(commit) = &finding.commit {
            location.push_str(&commit[..commit.len().min(12)]);
            location.push(':');
        }
        location.push_str(finding.path.as_deref().unwrap_or("<text>"));
        writeln!(
            stdout,
            "{location}:{}:{}: {} fingerprint={} preview=`{}`",
            finding.line, finding.column, finding.rule_id, finding.fingerprint, finding.preview
        )?;
    }
    for error in &report.errors {
        writeln!(stderr, "error: {error}")?;
    }
    let stats = &report.stats;
    let mut summary = format!(
        "refinery secrets: {} finding{} ({} file{} scanned, {} bytes",
        report.findings.len(),
        plural(report.findings.len() as u64),
        stats.files_scanned,
        plural(stats.files_scanned),
        stats.bytes_scanned,
    );
    if stats.commits_scanned > 0 {
        let _ = write!(
            summary,
            ", {} commit{}",
            stats.commits_scanned,
            plural(stats.commits_scanned)
        );
    }
    let _ = write!(
        summary,
        "; skipped {} binary, {} over the size limit",
        stats.skipped_binary, stats.skipped_too_large
    );
    if stats.ignored_findings > 0 {
        let _ = write!(summary, "; {} ignored", stats.ignored_findings);
    }
    summary.push(')');
    writeln!(stderr, "{summary}")?;
    match report.status() {
        ScanStatus::Clean => {}
        ScanStatus::Findings => {
            writeln!(
                stderr,
                "hint: remove the secret and rotate it; if it is not a secret, add `refinery:allow` \
                 in a comment on its line or its fingerprint to `.refinery-secrets-ignore`"
            )?;
        }
        ScanStatus::Failed => {
            writeln!(
                stderr,
                "refinery secrets: the scan did not complete; treat this as a failure, not as \"no findings\""
            )?;
        }
    }
    Ok(())
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn sarif(report: &ScanReport, scanner: &Scanner) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = scanner
        .rules()
        .map(|rule| {
            json!({
                "id": rule.id,
                "shortDescription": { "text": rule.description },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|finding| {
            let description = scanner
                .rules()
                .find(|rule| rule.id == finding.rule_id)
                .map_or("secret", |rule| rule.description);
            let mut result = json!({
                "ruleId": finding.rule_id,
                "level": "error",
                "message": { "text": format!("{description}: `{}`", finding.preview) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": finding.path.as_deref().unwrap_or("<text>") },
                        "region": { "startLine": finding.line, "startColumn": finding.column },
                    }
                }],
                "partialFingerprints": { "refinerySecrets/v1": finding.fingerprint.to_string() },
            });
            if let Some(commit) = &finding.commit {
                result["properties"] = json!({ "commit": commit });
            }
            result
        })
        .collect();
    let notifications: Vec<serde_json::Value> = report
        .errors
        .iter()
        .map(|error| json!({ "level": "error", "message": { "text": error } }))
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "refinery-secrets",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    })
}
