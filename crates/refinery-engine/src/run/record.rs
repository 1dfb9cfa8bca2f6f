//! What a multi-model run keeps on disk, and the summary made from it.
//!
//! `consensus.json` ([`ConsensusRecord`]) is the run's commit point: settings, the standing
//! (answers, live agents, votes), one [`RoundTally`] per finished round, the winner. It is
//! written whole and atomically once a round is over, so a crash part-way through a round
//! leaves the previous round's state and the round is done again on `--resume`. Beside it:
//! `answers/<agent>-<revision>.json`, each answer's snapshot manifest (its bytes are in the
//! object store), and `round_NNN/judgments.json`, every judgment of a round: who was asked,
//! what they were shown under which letters, their scores with evidence, their vote or
//! improvement and its reason, or why they dropped out. These shapes are a file format: fields
//! are only ever added (with defaults), never renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use refinery_core::fsutil::{read_json, write_json};
use refinery_core::latest;
use refinery_core::rounds::{LoopLimits, StopReason};
use refinery_core::votes::{Agent, AnswerId, NoConsensus, RunStep, Seen, Standing, Tally, Winner};
use refinery_core::{ManifestEntry, Session, StateDir};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::EngineError;
use crate::events::CriterionLine;
use crate::meter::{Meter, Spend};
use crate::outputs::ballot::Assessed;
use crate::record::{CriteriaSource, Journal, JournalFile, millis};

/// `consensus.json`, in the session folder.
pub(crate) const CONSENSUS_FILE: &str = "consensus.json";
/// Its durable log (see [`refinery_core::latest`]).
pub(crate) const CONSENSUS_LOG: &str = "consensus.jsonl";
/// `judgments.json`, in each round's folder.
pub(crate) const JUDGMENTS_FILE: &str = "judgments.json";

/// Where a multi-model run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ConsensusStatus {
    /// Not finished (running, or killed without a chance to say so).
    Running,
    /// The agents agreed; the winner is in the workspace.
    Consensus,
    /// No consensus; the plurality winner is in the workspace.
    NoConsensus {
        /// Why the run decided without one.
        reason: NoConsensus,
    },
    /// A budget stopped the run; the plurality winner of the finished rounds, if there is
    /// one, is in the workspace.
    Stopped {
        /// Which budget.
        reason: StopReason,
        /// The round cut short, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupted_round: Option<u32>,
    },
    /// Every agent failed before answering: there is nothing to choose from.
    NoAnswer,
    /// Ctrl-C; `--resume` continues.
    Interrupted {
        /// The round cut short.
        round: Option<u32>,
    },
    /// An error; `--resume` retries from the last finished round.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One answer, as the record lists it (its files are in `answers/<agent>-<revision>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// Which answer.
    pub id: AnswerId,
    /// The round it was made in.
    pub round: u32,
    /// Its author's closing summary (scrubbed; the author's folder shown as `.`).
    pub summary: String,
    /// The answer it improved on.
    #[serde(default)]
    pub based_on: Option<AnswerId>,
    /// Files.
    pub files: usize,
    /// Their size.
    pub bytes: u64,
}

/// One finished round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundTally {
    /// The round.
    pub round: u32,
    /// Agents that answered for the first time.
    pub answered: Vec<Agent>,
    /// Agents asked to judge.
    pub asked: Vec<Agent>,
    /// Agents that dropped out, with why.
    #[serde(default)]
    pub dropped: BTreeMap<Agent, String>,
    /// The votes after the round.
    pub tally: Tally,
    /// What followed.
    pub next: RunStep,
    /// Totals after the round.
    pub spend: Spend,
}

/// The chosen answer and where it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinnerRecord {
    /// The winner and how it won.
    pub winner: Winner,
    /// Its author's backend.
    pub model: String,
    /// Why not by consensus, when not.
    #[serde(default)]
    pub without_consensus: Option<NoConsensus>,
    /// Whether its files are in the workspace yet.
    pub written: bool,
    /// The snapshot manifest of what writing it replaced, relative to the session folder.
    pub backup: String,
}

/// `consensus.json`: everything needed to report on or resume a multi-model run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsensusRecord {
    /// File format version.
    pub version: u32,
    /// The task.
    pub task: String,
    /// The agents' backends, in the order given.
    pub models: Vec<String>,
    /// The caps (`min_rounds` is not used).
    pub limits: LoopLimits,
    /// Where the criteria came from (`None` until they exist).
    pub criteria_source: Option<CriteriaSource>,
    /// Where the run stands.
    pub status: ConsensusStatus,
    /// Answers, live agents and votes after the last finished round.
    pub standing: Standing,
    /// Every answer made in a finished round, oldest first.
    pub answers: Vec<AnswerRecord>,
    /// Agents that dropped out, with why.
    #[serde(default)]
    pub dropped: BTreeMap<Agent, String>,
    /// Each agent's latest scores of the answers it judged (for the tie-break at the cap).
    #[serde(default)]
    pub latest_scores: BTreeMap<Agent, Vec<AnswerScores>>,
    /// Finished rounds.
    pub rounds: Vec<RoundTally>,
    /// The round under way, if any.
    pub in_progress: Option<u32>,
    /// The winner, once chosen.
    pub winner: Option<WinnerRecord>,
    /// Money and tokens so far.
    pub spend: Spend,
    /// Active time so far, in milliseconds.
    pub elapsed_ms: u64,
    /// When the run started.
    pub created_at: String,
    /// When this file was last written.
    pub updated_at: String,
}

/// One judge's scores of one answer, without the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerScores {
    /// The answer judged.
    pub answer: AnswerId,
    /// Score per criterion.
    pub scores: BTreeMap<String, u8>,
}

/// What one judgment came to, in `round_NNN/judgments.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JudgmentOutcome {
    /// A vote.
    Voted {
        /// The answer voted for.
        choice: AnswerId,
        /// A vote for the judge's own answer (kept, not counted).
        self_vote: bool,
        /// Why.
        reason: String,
    },
    /// A decision to improve on an answer.
    Improved {
        /// The answer started from.
        base: AnswerId,
        /// The plan.
        plan: String,
        /// Why.
        reason: String,
        /// The answer it made (`None` when the improvement failed).
        new_answer: Option<AnswerId>,
    },
    /// The reply stayed unusable after a retry: the agent dropped out.
    Unusable {
        /// The parser's last complaint.
        problem: String,
    },
    /// The backend failed: the agent dropped out.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One judgment: who, what it was shown (recorded when it was asked), what it said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgmentRecord {
    /// The judge.
    pub agent: Agent,
    /// Its backend.
    pub model: String,
    /// The answer revisions it was shown, as of the moment it was asked.
    pub seen: Seen,
    /// Its letters: which answer each stood for.
    pub labels: BTreeMap<String, AnswerId>,
    /// Its scores with evidence, per answer (empty when unusable or failed).
    #[serde(default)]
    pub assessments: Vec<AssessmentRecord>,
    /// What it decided.
    #[serde(flatten)]
    pub outcome: JudgmentOutcome,
}

/// One judge's scores and evidence for one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssessmentRecord {
    /// The answer.
    pub answer: AnswerId,
    /// Per criterion.
    pub scores: BTreeMap<String, Assessed>,
}

impl ConsensusRecord {
    /// The round after the last finished one.
    pub(crate) fn next_round(&self) -> u32 {
        u32::try_from(self.rounds.len()).unwrap_or(u32::MAX) + 1
    }

    /// Each current answer's criteria score from the other agents' latest judgments of it.
    pub(crate) fn criteria_totals(&self) -> BTreeMap<AnswerId, u32> {
        self.standing
            .current_answers()
            .into_iter()
            .filter_map(|answer| {
                let judgments: Vec<&BTreeMap<String, u8>> = self
                    .latest_scores
                    .iter()
                    .filter(|(judge, _)| **judge != answer.agent)
                    .flat_map(|(_, scores)| scores.iter())
                    .filter(|scores| scores.answer == answer)
                    .map(|scores| &scores.scores)
                    .collect();
                refinery_core::votes::criteria_total(&judgments).map(|total| (answer, total))
            })
            .collect()
    }

    /// The record of an answer made in a finished round.
    pub(crate) fn answer(&self, id: AnswerId) -> Option<&AnswerRecord> {
        self.answers.iter().find(|answer| answer.id == id)
    }

    /// An agent's backend as named.
    pub(crate) fn model(&self, agent: Agent) -> String {
        self.models.get(agent.0).cloned().unwrap_or_default()
    }
}

/// Where an answer's manifest is kept.
pub(crate) fn answer_path(session: &Session, id: AnswerId) -> PathBuf {
    session
        .dir()
        .join("answers")
        .join(format!("{}-{}.json", id.agent.0, id.revision))
}

/// Keeps an answer's manifest (before the round that made it is committed).
pub(crate) fn save_answer(
    session: &Session,
    id: AnswerId,
    files: &[ManifestEntry],
) -> Result<(), EngineError> {
    let path = answer_path(session, id);
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    write_json(&path, files)?;
    Ok(())
}

/// An answer's files.
pub(crate) fn answer_files(
    session: &Session,
    id: AnswerId,
) -> Result<Vec<ManifestEntry>, EngineError> {
    read_json(&answer_path(session, id))?.ok_or_else(|| {
        EngineError::Setup(format!(
            "{id} of session `{}` has no manifest on disk; the session folder was changed by hand",
            session.id()
        ))
    })
}

/// Reads a session's `consensus.json`, for `--resume` and reports.
pub fn load_consensus(
    store: &StateDir,
    session_id: &str,
) -> Result<(Session, ConsensusRecord), EngineError> {
    let session = store.existing_session(session_id)?;
    let record =
        latest::load::<ConsensusRecord>(session.dir(), CONSENSUS_LOG, CONSENSUS_FILE)?.ok_or_else(|| {
            EngineError::Setup(format!(
                "session `{session_id}` was not started by `refinery run` (it has no {CONSENSUS_FILE}); start a new run instead"
            ))
        })?;
    Ok((session, record))
}

/// `consensus.json` of a run in progress.
pub(crate) type RecordFile = JournalFile<ConsensusRecord>;

impl Journal for ConsensusRecord {
    const FILE: &'static str = CONSENSUS_FILE;
    const LOG: &'static str = CONSENSUS_LOG;

    fn stamp(&mut self, spend: Spend, elapsed_ms: u64, updated_at: String) {
        self.spend = spend;
        self.elapsed_ms = elapsed_ms;
        self.updated_at = updated_at;
    }
}

/// The end of a multi-model run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsensusSummary {
    /// The session id.
    pub session: String,
    /// The session folder.
    pub session_dir: PathBuf,
    /// The workspace the winner was written into.
    pub workspace: PathBuf,
    /// How the run ended.
    pub status: ConsensusStatus,
    /// The agents' backends, in the order given.
    pub models: Vec<String>,
    /// The criteria.
    pub criteria: Vec<CriterionLine>,
    /// Every answer made.
    pub answers: Vec<AnswerRecord>,
    /// Finished rounds, with the tally after each.
    pub rounds: Vec<RoundTally>,
    /// Agents that dropped out, with why.
    pub dropped: BTreeMap<Agent, String>,
    /// The winner.
    pub winner: Option<WinnerRecord>,
    /// Money and tokens.
    pub spend: Spend,
    /// Active time in milliseconds.
    pub elapsed_ms: u64,
}

impl ConsensusSummary {
    pub(crate) fn of(
        workspace: &Path,
        session: &Session,
        record: &ConsensusRecord,
        meter: &Meter,
    ) -> Result<Self, EngineError> {
        let criteria = session
            .criteria()?
            .map(|set| crate::events::lines(&set))
            .unwrap_or_default();
        Ok(Self {
            session: session.id().to_string(),
            session_dir: session.dir().to_path_buf(),
            workspace: workspace.to_path_buf(),
            status: record.status.clone(),
            models: record.models.clone(),
            criteria,
            answers: record.answers.clone(),
            rounds: record.rounds.clone(),
            dropped: record.dropped.clone(),
            winner: record.winner.clone(),
            spend: meter.spend(),
            elapsed_ms: millis(meter.elapsed()),
        })
    }
}

/// A fresh record.
pub(crate) fn new_record(
    task: String,
    models: Vec<String>,
    limits: LoopLimits,
    criteria_source: Option<CriteriaSource>,
    started: OffsetDateTime,
) -> ConsensusRecord {
    let standing = Standing {
        live: (0..models.len()).map(Agent).collect(),
        ..Standing::default()
    };
    ConsensusRecord {
        version: 1,
        task,
        models,
        limits,
        criteria_source,
        status: ConsensusStatus::Running,
        standing,
        answers: Vec::new(),
        dropped: BTreeMap::new(),
        latest_scores: BTreeMap::new(),
        rounds: Vec::new(),
        in_progress: None,
        winner: None,
        spend: Spend::default(),
        elapsed_ms: 0,
        created_at: refinery_core::rfc3339(started),
        updated_at: refinery_core::rfc3339(started),
    }
}

/// Time already spent, for a resumed meter.
pub(crate) fn elapsed_before(record: &ConsensusRecord) -> Duration {
    Duration::from_millis(record.elapsed_ms)
}
