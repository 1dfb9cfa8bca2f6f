//! The submit phase: the core snapshots the workspace as the round's answer (the bytes the
//! judges will see), and the builder's event stream is kept next to it, scrubbed.

use refinery_core::{Snapshot, Submission};
use refinery_llm::AgentEvent;
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::events::{Phase, RefineEvent};
use crate::phases::Context;

/// What a round submits.
pub(crate) struct SubmitInput<'a> {
    pub round: u32,
    /// The builder's summary (already scrubbed).
    pub summary: &'a str,
    /// Every builder turn's events, in order.
    pub builder_events: &'a [AgentEvent],
    /// The workspace as the round left it, when it was already snapshotted (through the
    /// run's scope) and nothing changed it since; `None` snapshots it now.
    pub snapshot: Option<Snapshot>,
}

/// Snapshots the workspace through the core and writes `builder_events.jsonl`.
pub(crate) fn run(ctx: &Context<'_>, input: SubmitInput<'_>) -> Result<Submission, EngineError> {
    ctx.phase(input.round, Phase::Submit);
    let paths = [".".to_owned()];
    let now = OffsetDateTime::now_utc();
    let submission = match input.snapshot {
        Some(snapshot) => {
            ctx.session
                .new_answer_from_snapshot(input.summary, &paths, snapshot, now)?
        }
        None => ctx.session.new_answer(input.summary, &paths, now)?,
    };
    ctx.emit(&RefineEvent::Submitted {
        round: input.round,
        files: submission.files.len(),
        bytes: submission.total_bytes,
    });
    let lines: Vec<String> = input
        .builder_events
        .iter()
        .filter_map(|event| serde_json::to_string(event).ok())
        .collect();
    // A record for people and reports (the trace analyzer reads the events in memory),
    // scrubbed line by line with the run's scrubber and written off this thread.
    let scrubber = ctx.env.scrubber.clone();
    let path = ctx
        .session
        .round_dir(input.round)
        .join("builder_events.jsonl");
    ctx.copies.run(move || {
        let mut text = String::new();
        for line in &lines {
            text.push_str(&scrubber.scrub(line));
            text.push('\n');
        }
        refinery_core::fsutil::write_record(&path, text.as_bytes())
    });
    Ok(submission)
}
