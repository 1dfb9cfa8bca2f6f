//! `refinery trace <transcript.jsonl> [--json]`: statistics of a Claude Code transcript for
//! the execution-trace analyzer. The counting rules live in `refinery_core::transcript`; this
//! command reads the files (the transcript and the subagent transcripts Claude Code keeps
//! beside it) and renders the result.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use refinery_core::transcript::{self, TraceStats};

use crate::ExitStatus;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// A Claude Code transcript (`~/.claude/projects/<project>/<session>.jsonl`).
    transcript: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    transcript: String,
    #[serde(flatten)]
    stats: TraceStats,
    /// Each subagent transcript found beside the main one (`<session>/subagents/*.jsonl`).
    subagent_transcripts: Vec<SubagentReport>,
}

#[derive(Debug, Serialize)]
struct SubagentReport {
    transcript: String,
    #[serde(flatten)]
    stats: TraceStats,
}

pub(crate) fn run_main(args: &TraceArgs) -> anyhow::Result<ExitStatus> {
    let path = &args.transcript;
    let stats = analyze_file(path)?;
    let mut subagent_transcripts = Vec::new();
    for sub in subagent_files(path)? {
        subagent_transcripts.push(SubagentReport {
            stats: analyze_file(&sub)?,
            transcript: sub.display().to_string(),
        });
    }
    let report = Report {
        transcript: path.display().to_string(),
        stats,
        subagent_transcripts,
    };
    if args.json {
        output::json(&serde_json::to_value(&report)?)?;
    } else {
        for line in render(&report) {
            output::line(&line)?;
        }
    }
    Ok(ExitStatus::Success)
}

fn analyze_file(path: &Path) -> anyhow::Result<TraceStats> {
    if fs_err::metadata(path).is_ok() {
        crate::files::require_regular_file(path, "the transcript")?;
    }
    let bytes = fs_err::read(path).with_context(|| {
        "could not read the transcript; pass the `.jsonl` path from the hook's `transcript_path` or `~/.claude/projects/`"
    })?;
    // Invalid UTF-8 damages only the lines it is on, which are then counted as malformed.
    Ok(transcript::analyze(&String::from_utf8_lossy(&bytes)))
}

fn subagent_files(transcript: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (Some(parent), Some(stem)) = (transcript.parent(), transcript.file_stem()) else {
        return Ok(Vec::new());
    };
    let dir = parent.join(stem).join("subagents");
    let entries = match fs_err::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "jsonl") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn render(report: &Report) -> Vec<String> {
    let stats = &report.stats;
    let mut lines = vec![format!("transcript  {}", report.transcript)];
    let duration = stats.duration_ms.map_or_else(
        || "unknown".to_owned(),
        |ms| format!("{:.1}s", ms as f64 / 1000.0),
    );
    lines.push(format!(
        "duration    {duration}   prompts {}   API messages {}   API errors {}",
        stats.prompts, stats.api_messages, stats.api_errors
    ));
    lines.push(format!(
        "tokens      input {}   output {}   cache write {}   cache read {}",
        stats.tokens.input,
        stats.tokens.output,
        stats.tokens.cache_creation,
        stats.tokens.cache_read
    ));
    lines.push(format!(
        "tool calls  {} ({} failed, {} repeated unchanged)",
        stats.tool_calls, stats.tool_errors, stats.repeated_calls
    ));
    for (name, counts) in &stats.tools {
        lines.push(format!(
            "  {name:<56} {:>4} calls {:>4} failed {:>4} repeated",
            counts.calls, counts.errors, counts.repeated
        ));
    }
    if !stats.subagents.is_empty() {
        lines.push(format!("subagents   {}", stats.subagents.len()));
        for subagent in &stats.subagents {
            lines.push(format!(
                "  {} — {}{}",
                subagent.subagent_type,
                subagent.description,
                if subagent.failed { " (failed)" } else { "" }
            ));
        }
    }
    for sub in &report.subagent_transcripts {
        lines.push(format!(
            "  transcript {}: {} tool calls ({} failed), output tokens {}",
            sub.transcript, sub.stats.tool_calls, sub.stats.tool_errors, sub.stats.tokens.output
        ));
    }
    if stats.malformed_lines > 0 {
        let listed: Vec<String> = stats
            .malformed_line_numbers
            .iter()
            .map(u64::to_string)
            .collect();
        lines.push(format!(
            "malformed   {} line(s) skipped (lines {}{})",
            stats.malformed_lines,
            listed.join(", "),
            if stats.malformed_lines > listed.len() as u64 {
                ", …"
            } else {
                ""
            }
        ));
    }
    lines
}
