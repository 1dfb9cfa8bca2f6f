//! What the engine reports as it goes. Drivers render these events (a progress bar, lines,
//! or one JSON object per event); the engine itself never prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use refinery_core::judgment::{Block, Spread};
use refinery_core::rounds::NextStep;
use refinery_core::votes::{Agent, AnswerId, NoConsensus, RunStep, Tally, Winner};
use refinery_core::{CriteriaSet, Verdict};
use serde::Serialize;

use crate::meter::Spend;
use crate::record::{CriteriaSource, RegressionReport, RunStatus};
use crate::run::ConsensusStatus;

/// A phase of a round, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Writing criteria.
    Criteria,
    /// The builder works.
    Build,
    /// `--verify` commands run.
    Verify,
    /// The builder's fix attempt.
    Fix,
    /// Blind comparison with the previous round.
    RegressionGuard,
    /// The builder's repair attempt.
    Repair,
    /// Snapshot through the core.
    Submit,
    /// Evaluator and trace analyzer.
    Evaluate,
    /// Multi-model run: agents answer, each in its own copy.
    Answer,
    /// Multi-model run: agents judge the anonymized answers.
    JudgeAnswers,
    /// Multi-model run: agents that chose to improve an answer do it.
    Improve,
}

impl Phase {
    /// How the phase reads in progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Criteria => "writing criteria",
            Phase::Build => "building",
            Phase::Verify => "verifying",
            Phase::Fix => "fixing failed checks",
            Phase::RegressionGuard => "regression guard",
            Phase::Repair => "repairing a regression",
            Phase::Submit => "snapshot",
            Phase::Evaluate => "evaluating",
            Phase::Answer => "answering",
            Phase::JudgeAnswers => "judging the answers",
            Phase::Improve => "improving answers",
        }
    }
}

/// One criterion, for events and summaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CriterionLine {
    /// Id.
    pub id: String,
    /// primary / standard / stretch.
    pub category: String,
    /// Text.
    pub text: String,
}

/// What the loop reports as it goes; the driver renders these (bar, lines or JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RefineEvent {
    /// The session is ready.
    Session {
        /// Its id.
        session: String,
        /// Its folder.
        dir: PathBuf,
        /// Whether this continues an earlier run.
        resumed: bool,
        /// Builder backend.
        builder: String,
        /// Evaluator backend.
        evaluator: String,
        /// Further judges.
        panel: Vec<String>,
    },
    /// The criteria in use.
    Criteria {
        /// Where they came from.
        source: CriteriaSource,
        /// The criteria.
        criteria: Vec<CriterionLine>,
        /// Advice that did not block the run (a count outside 3–7).
        warnings: Vec<String>,
    },
    /// A round begins.
    RoundStarted {
        /// The round.
        round: u32,
        /// The cap.
        max_rounds: u32,
    },
    /// A phase begins.
    Phase {
        /// The round (0 before the first).
        round: u32,
        /// The phase.
        phase: Phase,
    },
    /// The builder used a tool.
    Activity {
        /// The round.
        round: u32,
        /// The tool.
        tool: String,
    },
    /// A `--verify` command finished.
    Verify {
        /// The round.
        round: u32,
        /// The command.
        command: String,
        /// Whether it passed.
        passed: bool,
        /// Its exit code.
        exit_code: Option<i32>,
    },
    /// The regression guard's outcome.
    Regression {
        /// The round.
        round: u32,
        /// What it found and did.
        report: RegressionReport,
    },
    /// The round was snapshotted.
    Submitted {
        /// The round.
        round: u32,
        /// Files stored.
        files: usize,
        /// Their size.
        bytes: u64,
    },
    /// The builder (fix attempt included) left every file as it was: "builder changed
    /// nothing".
    BuilderChangedNothing {
        /// The round.
        round: u32,
    },
    /// The round was scored.
    Scored {
        /// The round.
        round: u32,
        /// Scores by criterion.
        scores: BTreeMap<String, u8>,
        /// The verdict (the checks made in code included).
        verdict: Verdict,
        /// Why the round does not converge although its scores pass.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        blocked_by: Vec<Block>,
        /// Criteria whose score is not accepted as passing, with why.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        refused: BTreeMap<String, String>,
        /// For a panel: each criterion's spread across the judges.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        spread: BTreeMap<String, Spread>,
    },
    /// One judge of a panel scored the round (only with more than one judge).
    Judged {
        /// The round.
        round: u32,
        /// The judge.
        evaluator: String,
        /// Its scores, when its reply was usable.
        scores: Option<BTreeMap<String, u8>>,
        /// Why its reply was unusable.
        problem: Option<String>,
    },
    /// The evaluation was unusable; the round counts as iterate.
    Unscored {
        /// The round.
        round: u32,
        /// Why.
        reason: String,
    },
    /// What follows the round.
    Decision {
        /// The round.
        round: u32,
        /// The decision.
        next: NextStep,
    },
    /// Totals after a model call.
    Spend {
        /// Money and tokens.
        spend: Spend,
        /// Active time in milliseconds.
        elapsed_ms: u64,
    },
    /// The run ended (for now).
    Finished {
        /// How.
        status: RunStatus,
    },
    /// A multi-model run's session is ready.
    RunSession {
        /// Its id.
        session: String,
        /// Its folder.
        dir: PathBuf,
        /// Whether this continues an earlier run.
        resumed: bool,
        /// The agents' backends, in the order given (agent 0 first).
        models: Vec<String>,
    },
    /// An agent made an answer (its first, or an improvement).
    Answered {
        /// The round.
        round: u32,
        /// The answer.
        answer: AnswerId,
        /// Its author's backend.
        model: String,
        /// The answer it improved on, for an improvement.
        based_on: Option<AnswerId>,
        /// Files it holds.
        files: usize,
        /// Their size.
        bytes: u64,
    },
    /// An agent voted.
    Voted {
        /// The round.
        round: u32,
        /// The voter.
        agent: Agent,
        /// Its backend.
        model: String,
        /// The answer it voted for.
        choice: AnswerId,
        /// A vote for its own answer (recorded, not counted).
        self_vote: bool,
        /// Its reason.
        reason: String,
    },
    /// An agent chose to improve on an answer.
    Improving {
        /// The round.
        round: u32,
        /// The agent.
        agent: Agent,
        /// Its backend.
        model: String,
        /// The answer it starts from.
        base: AnswerId,
    },
    /// An agent left the run: its backend failed or its replies stayed unusable.
    Dropped {
        /// The round.
        round: u32,
        /// The agent.
        agent: Agent,
        /// Its backend.
        model: String,
        /// Why.
        reason: String,
    },
    /// The votes after a round, and what follows.
    Tally {
        /// The round.
        round: u32,
        /// The votes as they stand.
        tally: Tally,
        /// What follows.
        next: RunStep,
    },
    /// The winning answer was written into the workspace.
    Winner {
        /// The winner.
        winner: Winner,
        /// Its author's backend.
        model: String,
        /// Why not by consensus, when not.
        without_consensus: Option<NoConsensus>,
        /// Where what it replaced is kept (a snapshot manifest in the session).
        backup: PathBuf,
    },
    /// A multi-model run ended (for now).
    RunFinished {
        /// How.
        status: ConsensusStatus,
    },
}

pub(crate) fn lines(criteria: &CriteriaSet) -> Vec<CriterionLine> {
    criteria
        .as_slice()
        .iter()
        .map(|criterion| CriterionLine {
            id: criterion.id.clone(),
            category: criterion.category.as_str().to_owned(),
            text: criterion.text.clone(),
        })
        .collect()
}
