//! Where a running session stands right now, for `refinery watch`: the round, the phase,
//! the scores so far, the spending and whether it has ended.
//!
//! Read from the same files as the report but without diffs or evidence, so it is cheap
//! enough to read again every few hundred milliseconds. A run driven by `refinery refine`
//! shows its phases and spending (from `progress.jsonl`); a plugin-driven session shows what
//! the core's journal records: criteria, snapshots and verdicts.

use refinery_core::Session;
use serde_json::Value;

use crate::error::Result;
use crate::files::{EvaluationFile, RunFile, SpendFile, read_lenient};
use crate::load::{Journal, StatusInput, driver_of, status, unix_ms};
use crate::model::RoundVerdict;
use crate::progress::{self, Timeline, phase_label};
use crate::scrub::{Scrub, Text};

/// One finished round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRound {
    /// The round.
    pub round: u32,
    /// Scores in criteria order (empty when unscored).
    pub scores: Vec<(Text, u8)>,
    /// `converge`, `iterate` or `unscored`.
    pub verdict: &'static str,
}

/// Money and tokens so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveSpend {
    /// Known cost in USD.
    pub usd: f64,
    /// Calls whose cost is unknown.
    pub unknown_cost_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Model calls and agent processes.
    pub calls: u32,
}

impl From<SpendFile> for LiveSpend {
    fn from(spend: SpendFile) -> Self {
        Self {
            usd: spend.usd,
            unknown_cost_calls: spend.unknown_cost_calls,
            input_tokens: spend.input_tokens,
            output_tokens: spend.output_tokens,
            calls: spend.calls,
        }
    }
}

/// A session as it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveStatus {
    /// The session id.
    pub session: String,
    /// Who drives it, in words.
    pub driver: &'static str,
    /// The round under way, or the last one.
    pub round: Option<u32>,
    /// The round cap, when known.
    pub max_rounds: Option<u32>,
    /// The phase under way, in words.
    pub phase: Option<Text>,
    /// The builder's latest tool call.
    pub activity: Option<Text>,
    /// Finished rounds.
    pub rounds: Vec<LiveRound>,
    /// Spending so far (only drivers that measure it).
    pub spend: Option<LiveSpend>,
    /// Active time as of the last spending record, in milliseconds.
    pub active_ms: Option<u64>,
    /// When the session started (Unix milliseconds).
    pub started_ms: Option<i64>,
    /// The pid of the process driving the run, when it wrote one.
    pub driver_pid: Option<u32>,
    /// How the session ended, once it has.
    pub end: Option<String>,
}

/// Reads where `session` stands.
pub fn live_status(session: &Session, scrub: &Scrub) -> Result<LiveStatus> {
    let dir = session.dir();
    let journal = Journal::read(session)?;
    let timeline = Timeline::from_entries(&progress::read(dir));
    let run: Option<RunFile> = read_lenient(&dir.join("run.json")).ok().flatten();
    let evaluation: Option<EvaluationFile> =
        read_lenient(&dir.join("evaluation.json")).ok().flatten();
    let info = session.info()?;
    let state = session.state()?;
    let driver = driver_of(&info, run.as_ref(), evaluation.as_ref());
    let rounds = finished_rounds(session, &journal, scrub)?;
    let max_rounds = timeline
        .max_rounds
        .or_else(|| run.as_ref().and_then(|run| run.limits.max_rounds))
        .or(info.settings.max_rounds);
    let last_closed = rounds.last().map(|round| {
        (
            round.round,
            match round.verdict {
                "converge" => RoundVerdict::Converge,
                "iterate" => RoundVerdict::Iterate,
                _ => RoundVerdict::Unscored(Text::default()),
            },
        )
    });
    let outcome = status(
        &StatusInput {
            driver,
            run: run.as_ref(),
            evaluation: evaluation.as_ref(),
            max_rounds,
            session_id: session.id().as_str(),
            last_closed,
            rounds: rounds.len(),
        },
        scrub,
    );
    let (round, phase) = match &timeline.current {
        Some((round, phase)) if !outcome.ended => (
            Some(*round).filter(|round| *round > 0),
            Some(scrub.text(phase_label(phase))),
        ),
        _ if outcome.ended => (rounds.last().map(|round| round.round), None),
        _ => {
            let (round, phase) = plugin_phase(&state, session.criteria()?.is_some(), rounds.len());
            (round, Some(scrub.text(phase)))
        }
    };
    Ok(LiveStatus {
        session: session.id().to_string(),
        driver: driver.label(),
        round,
        max_rounds,
        phase,
        activity: timeline
            .activity
            .as_deref()
            .filter(|_| !outcome.ended)
            .map(|tool| scrub.text(tool)),
        spend: timeline
            .spend
            .map(|(spend, _)| spend.into())
            .or_else(|| run.as_ref().map(|run| run.spend.into())),
        active_ms: timeline
            .spend
            .map(|(_, elapsed)| elapsed)
            .or_else(|| run.as_ref().map(|run| run.elapsed_ms)),
        started_ms: unix_ms(&Value::from(refinery_core::rfc3339(info.created_at))),
        driver_pid: timeline.pid,
        rounds,
        end: outcome.ended.then_some(outcome.headline),
    })
}

/// What a plugin-driven session is doing, from the core's state alone.
fn plugin_phase(
    state: &refinery_core::SessionState,
    has_criteria: bool,
    finished: usize,
) -> (Option<u32>, &'static str) {
    let next = state.round + 1;
    let phase = if !has_criteria {
        "writing criteria"
    } else if state
        .pending_answer
        .is_some_and(|answer| answer.round == next)
    {
        "evaluating"
    } else if finished == 0 {
        "building"
    } else {
        "planning and building"
    };
    (Some(next), phase)
}

fn finished_rounds(session: &Session, journal: &Journal, scrub: &Scrub) -> Result<Vec<LiveRound>> {
    let order = session
        .criteria()?
        .map(|criteria| criteria.ids())
        .unwrap_or_default();
    let mut rounds: Vec<LiveRound> = journal
        .records
        .iter()
        .map(|record| {
            let mut scores: Vec<(String, u8)> = record
                .outcome
                .items
                .iter()
                .map(|item| (item.id.clone(), item.score))
                .collect();
            scores.sort_by_key(|(id, _)| {
                order
                    .iter()
                    .position(|known| known == id)
                    .unwrap_or(usize::MAX)
            });
            LiveRound {
                round: record.outcome.round,
                scores: scores
                    .into_iter()
                    .map(|(id, score)| (scrub.text(&id), score))
                    .collect(),
                verdict: record.outcome.verdict.as_str(),
            }
        })
        .collect();
    for round in journal.unscored.keys() {
        rounds.push(LiveRound {
            round: *round,
            scores: Vec::new(),
            verdict: "unscored",
        });
    }
    rounds.sort_by_key(|round| round.round);
    rounds.dedup_by_key(|round| round.round);
    Ok(rounds)
}
