//! `refinery run`: several models answer the same task, judge each other's answers
//! anonymously, and converge on a winner, which is written into the workspace.
//!
//! A round is: agents without an answer answer (round 1; each in its own copy of the
//! workspace, [`crate::workspace::AgentCopies`]) → every live agent whose vote is missing or
//! stale judges the current answers, anonymized, and votes or chooses an answer to improve →
//! the improvers carry out their plans → the core ([`refinery_core::votes`]) says what
//! follows: another round, or a winner (consensus, or the plurality at the cap).
//!
//! The sequencer owns only that order and `consensus.json`; the phases are
//! [`crate::phases::answer`] and [`crate::phases::vote`], and every decision is the core's.
//! A round counts once `consensus.json` records it: everything a round changes is built on a
//! copy of the standing and committed in one atomic write, so a crash or a halt part-way
//! through leaves the last finished round, and `--resume` does the cut round again.

mod record;

use std::collections::BTreeMap;

use refinery_core::copies::Copies;
use refinery_core::fsutil::{LockGuard, write_json};
use refinery_core::rounds::{LoopLimits, StopReason};
use refinery_core::votes::{Agent, AnswerId, NoConsensus, RunStep, Standing, Vote, Winner};
use refinery_core::{
    CriteriaSet, ManifestEntry, Session, SessionId, SessionSettings, StateDir, WorkspaceScope,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::briefs::{self, ImproveBrief};
use crate::error::{EngineError, Halt};
use crate::events::{Phase, RefineEvent};
use crate::meter::{Meter, Spend};
use crate::outputs::ballot::{Decision, Judgment};
use crate::phases::answer::{self, AnswerTurn, Made};
use crate::phases::ask::JudgeReply;
use crate::phases::criteria;
use crate::phases::vote::{self, Candidate, JudgeInput, Judged};
use crate::phases::{Context, Environment, shared_sink};
use crate::record::CriteriaSource;
use crate::workspace::{self, AgentCopies};

pub use record::{
    AnswerRecord, AnswerScores, AssessmentRecord, ConsensusRecord, ConsensusStatus,
    ConsensusSummary, JudgmentOutcome, JudgmentRecord, RoundTally, WinnerRecord, load_consensus,
};
use record::{JUDGMENTS_FILE, RecordFile, answer_files, save_answer};

const RUN_LOCK: &str = ".run.lock";

/// How many models a run takes.
pub const MODELS: std::ops::RangeInclusive<usize> = 2..=8;

/// What to run and within which limits.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The task, in the user's words.
    pub task: String,
    /// Criteria given by the user; `None` has the criteria writer (the first model) write them.
    pub criteria: Option<CriteriaSet>,
    /// Rounds, budgets (`min_rounds` is not used).
    pub limits: LoopLimits,
    /// A label for the session id.
    pub label: String,
}

/// A multi-model run in progress, holding the session's run lock.
pub struct ConsensusRun {
    store: StateDir,
    session: Session,
    /// What the run may snapshot and write back, fixed when it started (kept in the session).
    scope: WorkspaceScope,
    models: Vec<Backend>,
    env: Environment,
    meter: Meter,
    /// Writes the run's copies for people off the run's thread (before `_lock`: a dropped run
    /// waits for them before the session is free).
    copies: Copies,
    file: RecordFile,
    resumed: bool,
    _lock: LockGuard,
}

impl std::fmt::Debug for ConsensusRun {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConsensusRun")
            .field("session", self.session.id())
            .finish_non_exhaustive()
    }
}

impl ConsensusRun {
    /// Starts a new run: a new session, the baseline snapshot, the user's criteria if any.
    pub fn start(
        store: StateDir,
        config: &RunConfig,
        models: Vec<Backend>,
        env: Environment,
    ) -> Result<Self, EngineError> {
        Self::start_session(store, None, config, models, env)
    }

    /// Like [`ConsensusRun::start`], under a session id the caller chose (a worktree run names
    /// its branch and folder after the session before starting it).
    pub fn start_as(
        store: StateDir,
        session_id: &SessionId,
        config: &RunConfig,
        models: Vec<Backend>,
        env: Environment,
    ) -> Result<Self, EngineError> {
        Self::start_session(store, Some(session_id), config, models, env)
    }

    fn start_session(
        store: StateDir,
        session_id: Option<&SessionId>,
        config: &RunConfig,
        models: Vec<Backend>,
        env: Environment,
    ) -> Result<Self, EngineError> {
        check_setup(&config.limits, &models)?;
        let started = OffsetDateTime::now_utc();
        let settings = SessionSettings {
            max_rounds: None,
            ..SessionSettings::default()
        };
        let session = match session_id {
            Some(id) => store.init_session_with_id(id, &config.label, settings, started)?,
            None => store.init_session(&config.label, settings, started)?,
        };
        let lock = take_lock(&session)?;
        // Before any agent can touch anything: git's view now, whatever the ignore files say
        // later.
        let scope = crate::git_view::ensure_session_scope(&session, store.workspace(), started)?;
        workspace::save_baseline(&store, &scope, &session)?;
        let source = match &config.criteria {
            Some(criteria) => {
                session.register_criteria(criteria, started)?;
                Some(CriteriaSource::User)
            }
            None => None,
        };
        let names = models
            .iter()
            .map(|model| model.spec().to_string())
            .collect();
        // The task is sent to models and saved; a key pasted into it must be neither.
        let task = env.scrubber.scrub(&config.task);
        let record = record::new_record(task, names, config.limits, source, started);
        let meter = Meter::new(record.limits, Spend::default(), std::time::Duration::ZERO);
        let copies = Copies::new();
        let mut file = RecordFile::new(&session, record, &copies);
        file.save(&meter)?;
        Ok(Self {
            store,
            session,
            scope,
            models,
            env,
            meter,
            copies,
            file,
            resumed: false,
            _lock: lock,
        })
    }

    /// Continues a run from its last finished round. `limits` replace the stored caps; the
    /// models are the run's own (the same agents must go on).
    pub fn resume(
        store: StateDir,
        session_id: &str,
        limits: LoopLimits,
        models: Vec<Backend>,
        env: Environment,
    ) -> Result<Self, EngineError> {
        let (session, mut record) = load_consensus(&store, session_id)?;
        let lock = take_lock(&session)?;
        check_budget(&limits, &models)?;
        let scope = crate::git_view::ensure_session_scope(
            &session,
            store.workspace(),
            OffsetDateTime::now_utc(),
        )?;
        if models.len() != record.models.len() {
            return Err(EngineError::Setup(format!(
                "session `{session_id}` has {} agents but {} backends were given; resume with the run's own models",
                record.models.len(),
                models.len()
            )));
        }
        if limits.max_rounds < 2 {
            return Err(rounds_error(limits.max_rounds));
        }
        record.limits = limits;
        let meter = Meter::new(limits, record.spend, record::elapsed_before(&record));
        let copies = Copies::new();
        Ok(Self {
            file: RecordFile::new(&session, record, &copies),
            copies,
            store,
            session,
            scope,
            models,
            env,
            meter,
            resumed: true,
            _lock: lock,
        })
    }

    /// The session this run writes to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs rounds until a winner is chosen, a cap halts the run, or `cancel` fires. State is
    /// saved after every round; the returned summary says how it ended.
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<ConsensusSummary, EngineError> {
        on_event(&RefineEvent::RunSession {
            session: self.session.id().to_string(),
            dir: self.session.dir().to_path_buf(),
            resumed: self.resumed,
            models: self.file.record.models.clone(),
        });
        let outcome = {
            let events = shared_sink(&mut *on_event);
            let ctx = Context {
                store: &self.store,
                session: &self.session,
                copies: &self.copies,
                scope: &self.scope,
                meter: &self.meter,
                env: &self.env,
                cancel,
                events: &events,
            };
            let mut rounds = Rounds {
                ctx,
                models: &self.models,
                file: &mut self.file,
            };
            rounds.drive().await
        };
        let status = match outcome {
            Ok(status) => status,
            Err(error) => {
                self.file.record.status = ConsensusStatus::Failed {
                    error: error.to_string(),
                };
                // The original error matters more than a failure to record it.
                let _ = self.file.save(&self.meter);
                let _ = self.copies.flush();
                return Err(error);
            }
        };
        self.file.record.status = status.clone();
        self.file.save(&self.meter)?;
        // Reports read the copies: all of them are on disk before the run says it finished.
        self.copies.flush()?;
        on_event(&RefineEvent::RunFinished { status });
        ConsensusSummary::of(
            self.store.workspace(),
            &self.session,
            &self.file.record,
            &self.meter,
        )
    }
}

/// The loop over rounds, with what every phase needs.
struct Rounds<'a> {
    ctx: Context<'a>,
    models: &'a [Backend],
    file: &'a mut RecordFile,
}

/// What a round changed, applied to the record only once the round is over.
struct RoundOutcome {
    standing: Standing,
    answers: Vec<AnswerRecord>,
    judgments: Vec<JudgmentRecord>,
    dropped: BTreeMap<Agent, String>,
    scores: BTreeMap<Agent, Vec<AnswerScores>>,
    answered: Vec<Agent>,
    asked: Vec<Agent>,
}

impl Rounds<'_> {
    async fn drive(&mut self) -> Result<ConsensusStatus, EngineError> {
        let criteria = self.criteria().await?;
        if let Some(status) = self.already_over()? {
            return Ok(status);
        }
        let copies = self.copies()?;
        loop {
            let round = self.file.record.next_round();
            match self.one_round(round, &criteria, &copies).await {
                Ok(RunStep::Continue { .. }) => {}
                Ok(RunStep::Decided {
                    winner,
                    without_consensus,
                }) => {
                    self.write_winner(winner, without_consensus)?;
                    return Ok(match without_consensus {
                        None => ConsensusStatus::Consensus,
                        Some(reason) => ConsensusStatus::NoConsensus { reason },
                    });
                }
                Ok(RunStep::NoAnswer) => return Ok(ConsensusStatus::NoAnswer),
                Err(EngineError::Halted(halt)) => return self.halted(halt),
                Err(error) => return Err(error),
            }
        }
    }

    /// One round, committed: its judgments file, then `consensus.json`.
    async fn one_round(
        &mut self,
        round: u32,
        criteria: &CriteriaSet,
        copies: &AgentCopies,
    ) -> Result<RunStep, EngineError> {
        let ctx = self.ctx;
        ctx.meter.check_time()?;
        self.file.record.in_progress = Some(round);
        self.file.save(ctx.meter)?;
        ctx.emit(&RefineEvent::RoundStarted {
            round,
            max_rounds: self.file.record.limits.max_rounds,
        });
        fs_err::create_dir_all(ctx.session.round_dir(round))?;
        let outcome = self.round(round, criteria, copies).await?;
        write_json(
            &ctx.session.round_dir(round).join(JUDGMENTS_FILE),
            &outcome.judgments,
        )?;
        let record = &mut self.file.record;
        record.standing = outcome.standing;
        record.answers.extend(outcome.answers);
        record.dropped.extend(outcome.dropped.clone());
        record.latest_scores.extend(outcome.scores);
        let next =
            record
                .standing
                .next_step(round, record.limits.max_rounds, &record.criteria_totals());
        let tally = record.standing.tally();
        record.rounds.push(RoundTally {
            round,
            answered: outcome.answered,
            asked: outcome.asked,
            dropped: outcome.dropped,
            tally: tally.clone(),
            next: next.clone(),
            spend: ctx.meter.spend(),
        });
        record.in_progress = None;
        self.file.save(ctx.meter)?;
        ctx.emit(&RefineEvent::Tally {
            round,
            tally,
            next: next.clone(),
        });
        Ok(next)
    }

    /// A round up to its commit: first answers, judgments, improvements.
    async fn round(
        &self,
        round: u32,
        criteria: &CriteriaSet,
        copies: &AgentCopies,
    ) -> Result<RoundOutcome, EngineError> {
        let record = &self.file.record;
        let mut outcome = RoundOutcome {
            standing: record.standing.clone(),
            answers: Vec::new(),
            judgments: Vec::new(),
            dropped: BTreeMap::new(),
            scores: BTreeMap::new(),
            answered: Vec::new(),
            asked: Vec::new(),
        };
        let first: Vec<Agent> = outcome
            .standing
            .live
            .iter()
            .copied()
            .filter(|agent| !outcome.standing.current.contains_key(agent))
            .collect();
        if !first.is_empty() {
            self.ctx.phase(round, Phase::Answer);
            let prompt = briefs::run_answer(&record.task, criteria);
            let turns = first
                .iter()
                .map(|agent| AnswerTurn {
                    agent: *agent,
                    backend: self.backend(*agent),
                    prompt: prompt.clone(),
                    start_from: None,
                })
                .collect();
            let made = answer::make(&self.ctx, round, copies, turns).await?;
            self.take_answers(round, &mut outcome, made, &BTreeMap::new())?;
            outcome.answered = first;
        }
        let improvements = self.judge(round, criteria, &mut outcome).await?;
        if !improvements.is_empty() {
            self.improve(round, criteria, copies, &mut outcome, improvements)
                .await?;
        }
        Ok(outcome)
    }

    /// Every agent that must act judges the current answers; votes go into the standing,
    /// improvements are returned to be carried out.
    async fn judge(
        &self,
        round: u32,
        criteria: &CriteriaSet,
        outcome: &mut RoundOutcome,
    ) -> Result<Vec<Improvement>, EngineError> {
        let to_act = outcome.standing.to_act();
        if to_act.is_empty() || outcome.standing.current.is_empty() {
            return Ok(Vec::new());
        }
        self.ctx.phase(round, Phase::JudgeAnswers);
        let baseline = self.baseline()?;
        let candidates = self.candidates(&outcome.standing, &outcome.answers, &baseline)?;
        let judges: Vec<(Agent, &Backend)> = to_act
            .iter()
            .map(|agent| (*agent, self.backend(*agent)))
            .collect();
        let input = JudgeInput {
            task: &self.file.record.task,
            criteria,
            judges: &judges,
            candidates: &candidates,
        };
        let judged = vote::judge(&self.ctx, &input).await?;
        outcome.asked = to_act;
        let mut improvements = Vec::new();
        for result in judged {
            if let Some(improvement) = self.take_judgment(round, outcome, result) {
                improvements.push(improvement);
            }
        }
        Ok(improvements)
    }

    /// Records one judgment: a vote into the standing, scores for the tie-break, a drop-out
    /// for unusable output or a failed backend. Returns the improvement it asks for, if any.
    fn take_judgment(
        &self,
        round: u32,
        outcome: &mut RoundOutcome,
        judged: Judged,
    ) -> Option<Improvement> {
        let Judged {
            agent,
            seen,
            labels,
            reply,
        } = judged;
        let model = self.file.record.model(agent);
        let (reason, failure) = match reply {
            Ok(JudgeReply::Usable(judgment)) => {
                let ballot = Ballot {
                    agent,
                    model,
                    seen,
                    labels,
                };
                return self.take_usable(round, outcome, ballot, judgment);
            }
            Ok(JudgeReply::Unusable { problem }) => (
                format!("its judgment stayed unusable: {problem}"),
                JudgmentOutcome::Unusable { problem },
            ),
            Err(error) => {
                let error = self.ctx.env.scrubber.scrub(&error.to_string());
                (
                    format!("its backend failed: {error}"),
                    JudgmentOutcome::Failed { error },
                )
            }
        };
        self.drop_agent(round, outcome, agent, reason);
        outcome.judgments.push(JudgmentRecord {
            agent,
            model,
            seen,
            labels,
            assessments: Vec::new(),
            outcome: failure,
        });
        None
    }

    /// A usable judgment: its scores, then its vote or its plan to improve.
    fn take_usable(
        &self,
        round: u32,
        outcome: &mut RoundOutcome,
        ballot: Ballot,
        judgment: Judgment,
    ) -> Option<Improvement> {
        let Ballot {
            agent,
            model,
            seen,
            labels,
        } = ballot;
        let assessments = assessments(&labels, &judgment);
        outcome.scores.insert(agent, answer_scores(&assessments));
        let (decision, improvement) = match judgment.decision {
            Decision::Vote { label, reason } => {
                // The parser let through only letters this judge was shown.
                let choice = labels.get(&label).copied()?;
                let vote = Vote {
                    voter: agent,
                    seen: seen.clone(),
                    choice,
                };
                let self_vote = vote.is_self_vote();
                outcome.standing.votes.insert(agent, vote);
                self.ctx.emit(&RefineEvent::Voted {
                    round,
                    agent,
                    model: model.clone(),
                    choice,
                    self_vote,
                    reason: reason.clone(),
                });
                let voted = JudgmentOutcome::Voted {
                    choice,
                    self_vote,
                    reason,
                };
                (voted, None)
            }
            Decision::Improve { base, plan, reason } => {
                let base_id = labels.get(&base).copied()?;
                self.ctx.emit(&RefineEvent::Improving {
                    round,
                    agent,
                    model: model.clone(),
                    base: base_id,
                });
                let improvement = Improvement {
                    agent,
                    base: base_id,
                    assessment: assessment_text(&judgment.assessments, &base),
                    base_label: base,
                    plan: plan.clone(),
                    reason: reason.clone(),
                    judgment: outcome.judgments.len(),
                };
                let improved = JudgmentOutcome::Improved {
                    base: base_id,
                    plan,
                    reason,
                    new_answer: None,
                };
                (improved, Some(improvement))
            }
        };
        outcome.judgments.push(JudgmentRecord {
            agent,
            model,
            seen,
            labels,
            assessments,
            outcome: decision,
        });
        improvement
    }

    /// The improvers carry out their plans, each from its chosen answer's files.
    async fn improve(
        &self,
        round: u32,
        criteria: &CriteriaSet,
        copies: &AgentCopies,
        outcome: &mut RoundOutcome,
        improvements: Vec<Improvement>,
    ) -> Result<(), EngineError> {
        self.ctx.phase(round, Phase::Improve);
        let task = &self.file.record.task;
        let mut turns = Vec::new();
        for improvement in &improvements {
            let prompt = briefs::run_improve(&ImproveBrief {
                task,
                criteria,
                base_label: &improvement.base_label,
                plan: &improvement.plan,
                reason: &improvement.reason,
                assessment: &improvement.assessment,
            });
            turns.push(AnswerTurn {
                agent: improvement.agent,
                backend: self.backend(improvement.agent),
                prompt,
                start_from: Some(answer_files(self.ctx.session, improvement.base)?),
            });
        }
        let made = answer::make(&self.ctx, round, copies, turns).await?;
        let based_on: BTreeMap<Agent, &Improvement> = improvements
            .iter()
            .map(|improvement| (improvement.agent, improvement))
            .collect();
        self.take_answers(round, outcome, made, &based_on)
    }

    /// Records the answers a phase made (saving their manifests), and drops the agents whose
    /// backend failed.
    fn take_answers(
        &self,
        round: u32,
        outcome: &mut RoundOutcome,
        made: Vec<(Agent, Result<Made, EngineError>)>,
        improvements: &BTreeMap<Agent, &Improvement>,
    ) -> Result<(), EngineError> {
        for (agent, result) in made {
            let improvement = improvements.get(&agent);
            let made = match result {
                Ok(made) => made,
                Err(error) => {
                    let error = self.ctx.env.scrubber.scrub(&error.to_string());
                    let reason = format!("its backend failed while answering: {error}");
                    self.drop_agent(round, outcome, agent, reason);
                    continue;
                }
            };
            let id = outcome.standing.record_answer(agent);
            save_answer(self.ctx.session, id, &made.snapshot.entries)?;
            if let Some(improvement) = improvement
                && let Some(JudgmentRecord {
                    outcome: JudgmentOutcome::Improved { new_answer, .. },
                    ..
                }) = outcome.judgments.get_mut(improvement.judgment)
            {
                *new_answer = Some(id);
            }
            let based_on = improvement.map(|improvement| improvement.base);
            let answer = AnswerRecord {
                id,
                round,
                summary: made.summary,
                based_on,
                files: made.snapshot.entries.len(),
                bytes: made.snapshot.total_bytes(),
            };
            self.ctx.emit(&RefineEvent::Answered {
                round,
                answer: id,
                model: self.file.record.model(agent),
                based_on,
                files: answer.files,
                bytes: answer.bytes,
            });
            outcome.answers.push(answer);
        }
        Ok(())
    }

    fn drop_agent(&self, round: u32, outcome: &mut RoundOutcome, agent: Agent, reason: String) {
        outcome.standing.live.remove(&agent);
        self.ctx.emit(&RefineEvent::Dropped {
            round,
            agent,
            model: self.file.record.model(agent),
            reason: reason.clone(),
        });
        outcome.dropped.insert(agent, reason);
    }

    /// The current answers as judges get them: summary, files, what changed.
    fn candidates(
        &self,
        standing: &Standing,
        made_now: &[AnswerRecord],
        baseline: &[ManifestEntry],
    ) -> Result<Vec<Candidate>, EngineError> {
        standing
            .current_answers()
            .into_iter()
            .map(|id| {
                let summary = made_now
                    .iter()
                    .find(|answer| answer.id == id)
                    .or_else(|| self.file.record.answer(id))
                    .map(|answer| answer.summary.clone())
                    .unwrap_or_default();
                let files = answer_files(self.ctx.session, id)?;
                Ok(Candidate::new(id, summary, files, baseline))
            })
            .collect()
    }

    fn backend(&self, agent: Agent) -> &Backend {
        // Agents are numbered by their place in `models`; `check_setup` and `resume` keep the
        // two in step, so the fallback is never used.
        self.models.get(agent.0).unwrap_or(&self.models[0])
    }

    fn baseline(&self) -> Result<Vec<ManifestEntry>, EngineError> {
        workspace::delivered(self.ctx.session, 0)
    }

    /// Each agent's copy, holding its latest committed answer (or the baseline).
    fn copies(&self) -> Result<AgentCopies, EngineError> {
        let baseline = self.baseline()?;
        let standing = &self.file.record.standing;
        let contents = (0..self.models.len())
            .map(|index| match standing.current.get(&Agent(index)) {
                Some(revision) => answer_files(
                    self.ctx.session,
                    AnswerId {
                        agent: Agent(index),
                        revision: *revision,
                    },
                ),
                None => Ok(baseline.clone()),
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let slices: Vec<&[ManifestEntry]> = contents.iter().map(Vec::as_slice).collect();
        AgentCopies::create(self.ctx.store, &slices)
    }

    /// The criteria: the session's, or the first model's as criteria writer.
    async fn criteria(&mut self) -> Result<CriteriaSet, EngineError> {
        let record = &self.file.record;
        let writer = self.models.first().ok_or_else(|| {
            EngineError::Setup("a run needs at least two models; pass --models".to_owned())
        })?;
        let (criteria, source) =
            criteria::settle(&self.ctx, writer, &record.task, record.criteria_source).await?;
        if record.criteria_source.is_none() {
            self.file.record.criteria_source = Some(source);
            self.file.save(self.ctx.meter)?;
        }
        Ok(criteria)
    }

    /// On `--resume`: a run already decided ends here (writing its winner if a crash came
    /// between choosing and writing it), unless it stopped at the round cap and the cap was
    /// raised. A run stopped by a budget goes on.
    fn already_over(&mut self) -> Result<Option<ConsensusStatus>, EngineError> {
        let record = &self.file.record;
        let status = record.status.clone();
        let more_rounds = record.next_round() <= record.limits.max_rounds;
        let over = match &status {
            ConsensusStatus::Consensus | ConsensusStatus::NoAnswer => true,
            ConsensusStatus::NoConsensus { reason } => {
                !(matches!(reason, NoConsensus::MaxRounds) && more_rounds)
            }
            _ => false,
        };
        if !over {
            return Ok(None);
        }
        if let Some(winner) = record.winner.clone()
            && !winner.written
        {
            self.write_winner(winner.winner, winner.without_consensus)?;
        }
        Ok(Some(status))
    }

    /// A budget or Ctrl-C stopped the run part-way: the cut round is dropped; after a budget
    /// stop the plurality of the finished rounds is written.
    fn halted(&mut self, halt: Halt) -> Result<ConsensusStatus, EngineError> {
        let record = &mut self.file.record;
        let cut = record.in_progress.take();
        let reason = match halt {
            Halt::Cancelled => return Ok(ConsensusStatus::Interrupted { round: cut }),
            Halt::CostBudget => StopReason::CostBudget,
            Halt::TimeBudget => StopReason::TimeBudget,
        };
        if let Some(winner) = record.standing.plurality(&record.criteria_totals()) {
            let unchanged = record
                .winner
                .as_ref()
                .is_some_and(|written| written.written && written.winner.answer == winner.answer);
            if !unchanged {
                self.write_winner(winner, Some(NoConsensus::Budget))?;
            }
        }
        Ok(ConsensusStatus::Stopped {
            reason,
            interrupted_round: cut,
        })
    }

    /// Records the winner, then writes its files into the workspace (keeping what they
    /// replace), then records that it is written: a crash between the two is finished on
    /// `--resume`.
    fn write_winner(
        &mut self,
        winner: Winner,
        without_consensus: Option<NoConsensus>,
    ) -> Result<(), EngineError> {
        let ctx = self.ctx;
        let session = ctx.session;
        // Relative to what is in the workspace now: the baseline, or an earlier winner.
        let previous = match &self.file.record.winner {
            Some(earlier) if earlier.written && earlier.winner.answer != winner.answer => {
                answer_files(session, earlier.winner.answer)?
            }
            _ => self.baseline()?,
        };
        let files = answer_files(session, winner.answer)?;
        let round = self.file.record.rounds.len();
        let backup_name = format!("winner_backup_{round:03}.json");
        let model = self.file.record.model(winner.answer.agent);
        self.file.record.winner = Some(WinnerRecord {
            winner,
            model: model.clone(),
            without_consensus,
            written: false,
            backup: backup_name.clone(),
        });
        self.file.save(ctx.meter)?;
        let backup = session.dir().join(&backup_name);
        workspace::apply_answer(ctx.store, ctx.scope, &previous, &files, &backup)?;
        if let Some(written) = &mut self.file.record.winner {
            written.written = true;
        }
        self.file.save(ctx.meter)?;
        ctx.emit(&RefineEvent::Winner {
            winner,
            model,
            without_consensus,
            backup,
        });
        Ok(())
    }
}

/// An agent's decision to improve on an answer, to be carried out after the judging.
struct Improvement {
    agent: Agent,
    base: AnswerId,
    base_label: String,
    plan: String,
    reason: String,
    /// Its own scores of the base, as text for its brief.
    assessment: String,
    /// Its judgment's index in the round's judgments (to note the answer it made).
    judgment: usize,
}

/// Who judged, and what it was shown.
struct Ballot {
    agent: Agent,
    model: String,
    seen: refinery_core::votes::Seen,
    labels: BTreeMap<String, AnswerId>,
}

/// Each assessed answer's scores, by criterion (the tie-break's input).
fn answer_scores(assessments: &[AssessmentRecord]) -> Vec<AnswerScores> {
    assessments
        .iter()
        .map(|assessed| AnswerScores {
            answer: assessed.answer,
            scores: assessed
                .scores
                .iter()
                .map(|(id, found)| (id.clone(), found.score.get()))
                .collect(),
        })
        .collect()
}

/// A judgment's scores, by answer rather than by letter.
fn assessments(labels: &BTreeMap<String, AnswerId>, judgment: &Judgment) -> Vec<AssessmentRecord> {
    judgment
        .assessments
        .iter()
        .filter_map(|(label, scores)| {
            Some(AssessmentRecord {
                answer: *labels.get(label)?,
                scores: scores.clone(),
            })
        })
        .collect()
}

/// A judge's own scores of one answer, as its improvement brief shows them.
fn assessment_text(
    assessments: &BTreeMap<String, BTreeMap<String, crate::outputs::ballot::Assessed>>,
    label: &str,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (id, found) in assessments.get(label).into_iter().flatten() {
        let _ = writeln!(
            out,
            "- {id}: {} — {}",
            found.score.get(),
            found.evidence.join("; ")
        );
    }
    out
}

fn take_lock(session: &Session) -> Result<LockGuard, EngineError> {
    LockGuard::try_acquire(&session.dir().join(RUN_LOCK))?.ok_or_else(|| {
        EngineError::Setup(format!(
            "session `{}` is being run by another `refinery run`; wait for it or stop it first",
            session.id()
        ))
    })
}

fn rounds_error(max_rounds: u32) -> EngineError {
    EngineError::Setup(format!(
        "--max-rounds {max_rounds} leaves no round for votes; a run needs at least 2 (round 1 answers, later rounds only judge)"
    ))
}

/// Refuses a run that cannot work: a model count outside 2–8, fewer than two rounds, or a
/// budget that cannot be enforced with one of the models.
fn check_setup(limits: &LoopLimits, models: &[Backend]) -> Result<(), EngineError> {
    if !MODELS.contains(&models.len()) {
        return Err(EngineError::Setup(format!(
            "{} model(s) given; a run takes {} to {} (--models A B …)",
            models.len(),
            MODELS.start(),
            MODELS.end()
        )));
    }
    if limits.max_rounds < 2 {
        return Err(rounds_error(limits.max_rounds));
    }
    check_budget(limits, models)
}

fn check_budget(limits: &LoopLimits, models: &[Backend]) -> Result<(), EngineError> {
    if limits.cost_budget_usd.is_some()
        && let Some(problem) = models.iter().find_map(Backend::budget_problem)
    {
        return Err(EngineError::Setup(problem));
    }
    Ok(())
}
