//! The judging phase of a multi-model run: every agent that must act is shown the current
//! answers, anonymized, and judges them; the one panel ([`Panel::ask_each`]) asks them all in
//! parallel, blind to each other.
//!
//! Anonymity is built here, per judge and per round:
//! - each judge gets its own letters (`A`, `B`, …) and order, drawn at random; within a round
//!   the judges' own answers are spread over different positions, so no position (first,
//!   last) ever means "yours";
//! - answers carry no model name and no path of the copy they were made in (summaries were
//!   cleaned when the answer was made); agent-CLI judges open them as `answer-<letter>/`
//!   folders in a folder of their own;
//! - what a judge was shown ([`Seen`], the revisions) is taken before it is asked, so a vote
//!   can never count as having seen an answer that appeared while it was being made.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use refinery_core::votes::{Agent, AnswerId, Seen};
use refinery_core::{CriteriaSet, ManifestEntry};
use refinery_prompts::Role;

use crate::backend::Backend;
use crate::briefs::{self, ShownAnswer};
use crate::error::EngineError;
use crate::outputs::ballot::{Judgment, JudgmentOutput, parse_judgment};
use crate::outputs::schema_for;
use crate::pack::{self, View};
use crate::phases::Context;
use crate::phases::ask::JudgeReply;
use crate::phases::judge::Panel;

/// Most text of one answer's files shown to an API judge (all answers share a brief).
const ANSWERS_TEXT_LIMIT: usize = 160 * 1024;

/// A current answer, as the judges get it.
pub(crate) struct Candidate {
    pub id: AnswerId,
    pub summary: String,
    /// Its whole copy (agent-CLI judges get these files on disk).
    pub files: Vec<ManifestEntry>,
    /// What it changed from the workspace the copies started from (shown as text).
    pub changed: Vec<ManifestEntry>,
    /// Baseline files it removed.
    pub removed: Vec<String>,
}

impl Candidate {
    /// A current answer with what it changed from `baseline`.
    pub(crate) fn new(
        id: AnswerId,
        summary: String,
        files: Vec<ManifestEntry>,
        baseline: &[ManifestEntry],
    ) -> Self {
        let before: BTreeMap<&str, &ManifestEntry> = baseline
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let changed = files
            .iter()
            .filter(|entry| before.get(entry.path.as_str()) != Some(entry))
            .cloned()
            .collect();
        let removed = baseline
            .iter()
            .filter(|entry| !files.iter().any(|file| file.path == entry.path))
            .map(|entry| entry.path.clone())
            .collect();
        Candidate {
            id,
            summary,
            files,
            changed,
            removed,
        }
    }
}

/// What the phase judges.
pub(crate) struct JudgeInput<'a> {
    pub task: &'a str,
    pub criteria: &'a CriteriaSet,
    /// The judges, each with its backend.
    pub judges: &'a [(Agent, &'a Backend)],
    /// The current answers, in agent order.
    pub candidates: &'a [Candidate],
}

/// One judge's result.
#[derive(Debug)]
pub(crate) struct Judged {
    pub agent: Agent,
    /// The revisions it was shown, taken before it was asked.
    pub seen: Seen,
    /// Its letters.
    pub labels: BTreeMap<String, AnswerId>,
    /// Its judgment, unusable output, or its backend's failure (never a halt).
    pub reply: Result<JudgeReply<Judgment>, EngineError>,
}

/// Asks every judge of `input` in parallel. A halt of any judge is the phase's `Err`.
pub(crate) async fn judge(
    ctx: &Context<'_>,
    input: &JudgeInput<'_>,
) -> Result<Vec<Judged>, EngineError> {
    let seen = Seen(
        input
            .candidates
            .iter()
            .map(|candidate| (candidate.id.agent, candidate.id.revision))
            .collect(),
    );
    let ids: Vec<AnswerId> = input.candidates.iter().map(|c| c.id).collect();
    let viewers: Vec<Agent> = input.judges.iter().map(|(agent, _)| *agent).collect();
    let orders = assign_orders(&viewers, &ids, &mut fastrand::Rng::new());
    let letters: Vec<String> = (0..ids.len()).map(letter).collect();
    let backends: Vec<&Backend> = input.judges.iter().map(|(_, backend)| *backend).collect();
    // Folders for agent-CLI judges, one per judge, with the answers under its own letters.
    let folders = orders
        .iter()
        .zip(&backends)
        .map(|(order, backend)| judge_folder(ctx, input, order, backend))
        .collect::<Result<Vec<_>, EngineError>>()?;
    let shared = tempfile::Builder::new()
        .prefix("refinery-judge-")
        .tempdir()?;
    let panel = Panel {
        judges: &backends,
        workdir: shared.path(),
        budget_share: 0.5,
    };
    let brief = |index: usize, backend: &Backend| {
        let order = orders.get(index).map_or(&[][..], Vec::as_slice);
        brief_for(ctx, input, order, backend)
    };
    let workdir = |index: usize| -> Option<PathBuf> {
        folders
            .get(index)
            .and_then(Option::as_ref)
            .map(|folder| folder.path().to_path_buf())
    };
    let criteria = input.criteria;
    let replies = panel
        .ask_each(
            ctx,
            Role::AnswerJudge,
            &schema_for::<JudgmentOutput>(),
            brief,
            workdir,
            |text| parse_judgment(criteria, &letters, text),
        )
        .await;
    ctx.emit_spend();
    let mut judged = Vec::new();
    for ((agent, order), reply) in viewers.into_iter().zip(orders).zip(replies) {
        let reply = match reply {
            Ok(verdict) => Ok(verdict.reply),
            Err(EngineError::Halted(halt)) => return Err(halt.into()),
            Err(error) => Err(error),
        };
        judged.push(Judged {
            agent,
            seen: seen.clone(),
            labels: letters.iter().cloned().zip(order).collect(),
            reply,
        });
    }
    Ok(judged)
}

/// The letter of position `index`: `A`, `B`, … (a run has at most eight answers).
fn letter(index: usize) -> String {
    char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string()
}

/// Each viewer's order of the answers (letter = position). Orders are random, and within the
/// round the viewers' own answers take different positions: a random permutation of the
/// positions hands one to each viewer with an answer, and the other answers fill the rest in
/// random order.
fn assign_orders(
    viewers: &[Agent],
    answers: &[AnswerId],
    rng: &mut fastrand::Rng,
) -> Vec<Vec<AnswerId>> {
    let mut positions: Vec<usize> = (0..answers.len()).collect();
    rng.shuffle(&mut positions);
    let mut own_positions = positions.into_iter();
    viewers
        .iter()
        .map(|viewer| {
            let own = answers.iter().find(|answer| answer.agent == *viewer);
            let mut others: Vec<AnswerId> = answers
                .iter()
                .filter(|answer| Some(*answer) != own)
                .copied()
                .collect();
            rng.shuffle(&mut others);
            let mut others = others.into_iter();
            let own_at = own.and_then(|_| own_positions.next());
            (0..answers.len())
                .filter_map(|position| {
                    if Some(position) == own_at {
                        own.copied()
                    } else {
                        others.next()
                    }
                })
                .collect()
        })
        .collect()
}

/// One judge's brief: the answers in its order, under its letters.
fn brief_for(
    ctx: &Context<'_>,
    input: &JudgeInput<'_>,
    order: &[AnswerId],
    backend: &Backend,
) -> String {
    let objects = ctx.store.objects();
    let limit = ANSWERS_TEXT_LIMIT / order.len().max(1);
    let shown: Vec<(String, &Candidate, String)> = order
        .iter()
        .enumerate()
        .filter_map(|(position, id)| {
            let candidate = input.candidates.iter().find(|c| c.id == *id)?;
            let label = letter(position);
            let mut files = match backend.view() {
                View::Listing => pack::render_view(
                    View::Listing,
                    &objects,
                    &candidate.changed,
                    &ctx.env.scrubber,
                ),
                View::Contents => {
                    pack::render_limited(&objects, &candidate.changed, &ctx.env.scrubber, limit)
                }
            };
            if !candidate.removed.is_empty() {
                let _ = write!(
                    files,
                    "\nRemoved from the project: {}\n",
                    candidate.removed.join(", ")
                );
            }
            Some((label, candidate, files))
        })
        .collect();
    let answers: Vec<ShownAnswer<'_>> = shown
        .iter()
        .map(|(label, candidate, files)| ShownAnswer {
            label,
            summary: &candidate.summary,
            files,
        })
        .collect();
    let files_note = if backend.reads_files() {
        "Each answer's whole project is in the folder `answer-<letter>` of the current folder (copies: changes you make there are discarded); open, run and measure them yourself. Below, each lists the files it added or changed."
    } else {
        "Each answer shows the files it added or changed in the project, with their contents."
    };
    briefs::answer_judge(input.task, input.criteria, files_note, &answers)
}

/// A folder holding `answer-<letter>/` copies in this judge's order, for judges that open
/// files themselves; `None` for the others.
fn judge_folder(
    ctx: &Context<'_>,
    input: &JudgeInput<'_>,
    order: &[AnswerId],
    backend: &Backend,
) -> Result<Option<tempfile::TempDir>, EngineError> {
    if !backend.reads_files() {
        return Ok(None);
    }
    let folder = tempfile::Builder::new()
        .prefix("refinery-judge-")
        .tempdir()?;
    for (position, id) in order.iter().enumerate() {
        if let Some(candidate) = input.candidates.iter().find(|c| c.id == *id) {
            let dest = folder.path().join(format!("answer-{}", letter(position)));
            refinery_core::snapshot::restore(&ctx.store.objects(), &candidate.files, &dest)?;
        }
    }
    Ok(Some(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(count: usize) -> Vec<AnswerId> {
        (0..count)
            .map(|agent| AnswerId {
                agent: Agent(agent),
                revision: 1,
            })
            .collect()
    }

    #[test]
    fn every_judge_sees_every_answer_once_and_own_answers_never_share_a_position() {
        let mut rng = fastrand::Rng::with_seed(7);
        for count in 2..=8 {
            let ids = answers(count);
            let viewers: Vec<Agent> = (0..count).map(Agent).collect();
            for _ in 0..50 {
                let orders = assign_orders(&viewers, &ids, &mut rng);
                let mut own_positions = Vec::new();
                for (viewer, order) in viewers.iter().zip(&orders) {
                    let mut sorted = order.clone();
                    sorted.sort();
                    assert_eq!(sorted, ids);
                    own_positions.push(order.iter().position(|id| id.agent == *viewer).unwrap());
                }
                own_positions.sort_unstable();
                own_positions.dedup();
                assert_eq!(own_positions.len(), count, "{orders:?}");
            }
        }
        // A judge without an answer (its backend failed before answering) sees them all too.
        let orders = assign_orders(&[Agent(5)], &answers(3), &mut rng);
        assert_eq!(orders[0].len(), 3);
    }

    #[test]
    fn over_many_rounds_a_judge_finds_its_answer_everywhere() {
        let mut rng = fastrand::Rng::with_seed(11);
        let ids = answers(3);
        let mut seen_at = [0usize; 3];
        for _ in 0..300 {
            let orders = assign_orders(&[Agent(0)], &ids, &mut rng);
            seen_at[orders[0]
                .iter()
                .position(|id| id.agent == Agent(0))
                .unwrap()] += 1;
        }
        assert!(seen_at.iter().all(|count| *count > 60), "{seen_at:?}");
        assert_eq!(letter(0), "A");
        assert_eq!(letter(7), "H");
    }
}
