//! The handoff phase: the round's process lessons join `learnings.md`, and `handoff.md` (the
//! verdict, findings, improvement spec, preserve list and learnings, rendered by
//! [`crate::handoff`]) is written for the next round's fresh builder, in the session folder and
//! in the round's own folder.
//!
//! It depends only on what the round left on disk and in the core, so recovery after a crash
//! writes the same files again.
//!
//! The texts go back to the sequencer, which keeps them in the run's record (`run.jsonl`): the
//! one durable write that concludes a round. The Markdown files are copies for people, handed to the run's
//! writer of copies ([`refinery_core::copies`]): atomic, not synced, written off the run's
//! thread; nothing resumes from them unless the record predates the texts in it.

use std::collections::BTreeMap;

use refinery_core::fsutil::write_record;
use refinery_core::rounds::NextStep;
use refinery_core::{ChecklistOutcome, CriteriaSet, Verdict};
use serde_json::{Value, json};

use crate::handoff::{HandoffInput, append_learnings, render_handoff};
use crate::outputs::{Evaluation, TraceLessons};
use crate::phases::Context;
use crate::record::RunRecord;

const HANDOFF_FILE: &str = "handoff.md";
const LEARNINGS_FILE: &str = "learnings.md";

/// What a handoff is made from.
pub(crate) struct HandoffWrite<'a> {
    pub round: u32,
    pub task: &'a str,
    pub criteria: &'a CriteriaSet,
    /// The core's outcome; `None` for an unscored round.
    pub outcome: Option<&'a ChecklistOutcome>,
    pub evaluation: Option<&'a Evaluation>,
    pub next: &'a NextStep,
    pub lessons: Option<&'a TraceLessons>,
    /// Earlier rounds' scores per criterion, oldest first (for the builder, never a judge).
    pub trajectory: &'a BTreeMap<String, Vec<Option<u8>>>,
    /// The lessons so far as `run.json` keeps them; `None` reads `learnings.md` (a run saved
    /// by an earlier version, or none yet).
    pub learnings: Option<&'a str>,
}

/// What a handoff wrote, for `run.json`.
pub(crate) struct Written {
    pub handoff: String,
    pub learnings: String,
}

/// Appends the round's lessons (once per round) and hands the handoff to the run's writer of
/// copies (a copy that fails fails the run's next save).
pub(crate) fn write(ctx: &Context<'_>, input: &HandoffWrite<'_>) -> Written {
    let learnings_path = ctx.session.dir().join(LEARNINGS_FILE);
    let mut learnings = match input.learnings {
        Some(kept) => kept.to_owned(),
        None => fs_err::read_to_string(&learnings_path).unwrap_or_default(),
    };
    if let Some(lessons) = input.lessons
        && !learnings.contains(&format!("### Round {}\n", input.round))
    {
        learnings = append_learnings(&learnings, input.round, lessons);
        ctx.copies.write(learnings_path, learnings.as_bytes());
    }
    let change_approach_for = match input.next {
        NextStep::Continue {
            change_approach_for,
        } => change_approach_for.as_slice(),
        NextStep::Converged | NextStep::Stop { .. } => &[],
    };
    let stand_in;
    let outcome = if let Some(outcome) = input.outcome {
        outcome
    } else {
        stand_in = unscored_outcome(input.criteria, input.round);
        &stand_in
    };
    let handoff = render_handoff(&HandoffInput {
        task: input.task,
        criteria: input.criteria,
        outcome,
        evaluation: input.evaluation,
        change_approach_for,
        learnings: &learnings,
        trajectory: input.trajectory,
    });
    let handoff = ctx.env.scrubber.scrub(&handoff);
    // Both copies are for people: the next round reads the text from the run's record, which
    // the sequencer saves next whatever happens (a crash before that concludes the round again
    // on resume).
    let session_copy = ctx.session.dir().join(HANDOFF_FILE);
    let round_copy = ctx.session.round_dir(input.round).join(HANDOFF_FILE);
    let bytes = handoff.clone().into_bytes();
    // Written off this thread, in order with the run's other copies.
    ctx.copies.run(move || {
        write_record(&session_copy, &bytes)?;
        // The round's copy is a second name for the file just written rather than a new file
        // (a new file costs about half a millisecond on an ordinary disk, measured): the next
        // round's handoff puts a new file under the session's name, and this name keeps these
        // bytes. Written out where links are not possible. A conclusion written again after a
        // crash replaces the copy it wrote before.
        let _ = fs_err::remove_file(&round_copy);
        if fs_err::hard_link(&session_copy, &round_copy).is_err() {
            write_record(&round_copy, &bytes)?;
        }
        Ok(())
    });
    Written { handoff, learnings }
}

/// The latest handoff, for the builder of `round` (none before round 2): `run.json`'s, or
/// the session's `handoff.md` for a run saved before `run.json` kept it.
pub(crate) fn latest(ctx: &Context<'_>, round: u32, record: &RunRecord) -> Option<String> {
    if round < 2 {
        return None;
    }
    record
        .handoff
        .clone()
        .or_else(|| fs_err::read_to_string(ctx.session.dir().join(HANDOFF_FILE)).ok())
}

/// A stand-in outcome for the handoff of an unscored round: every criterion below the bar,
/// verdict iterate. Only rendered, never recorded.
fn unscored_outcome(criteria: &CriteriaSet, round: u32) -> ChecklistOutcome {
    let zeros: serde_json::Map<String, Value> = criteria
        .ids()
        .into_iter()
        .map(|id| (id, json!(0)))
        .collect();
    let scores =
        refinery_core::checklist::parse_scores(criteria, &Value::Object(zeros)).unwrap_or_default();
    let mut outcome = refinery_core::checklist::evaluate(
        criteria,
        &scores,
        refinery_core::Cutoff::DEFAULT,
        round,
        &[],
    );
    outcome.verdict = Verdict::Iterate;
    outcome
}
