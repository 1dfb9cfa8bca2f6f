//! The refine loop's sequencer: one round after another, each with new processes, until the
//! core says converge or stop.
//!
//! A round is a row of phase calls ([`crate::phases`]): build → verify → guard → submit →
//! judge → decide → handoff. The sequencer owns only the order and the run's record; what
//! each phase does is in its module.
//!
//! Everything a later round or a resumed run needs is on disk in the session folder: the
//! run's record (`run.jsonl`, see [`refinery_core::latest`]: settings, totals, per-round
//! summaries, the latest handoff and lessons, and the round being judged's file) and the
//! core's own journal and snapshots; `run.json`, `round_NNN/round.json`, `handoff.md` and
//! `learnings.md` are unsynced copies of them for people. The order of writes makes a crash
//! at any point resumable: a round counts as done once the core has recorded it
//! ([`decide::record`]), its file having been saved in the record just before, and what comes
//! after is computed again from that file.

use std::collections::BTreeMap;
use std::time::Duration;

use refinery_core::copies::Copies;
use refinery_core::fsutil::LockGuard;
use refinery_core::judgment::{self, Gates, GuardCheck, RoundFacts, Spread};
use refinery_core::rounds::{LoopLimits, StopReason};
use refinery_core::{
    ChecklistOutcome, CriteriaSet, ManifestEntry, Session, SessionId, SessionSettings, Snapshot,
    StateDir, WorkspaceScope,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::briefs::BuilderBrief;
use crate::error::{EngineError, Halt};
use crate::events::RefineEvent;
use crate::meter::{Meter, Spend};
use crate::pack::Scrubber;
use crate::phases::build::{self, BuildInput, BuilderTrail};
use crate::phases::criteria;
use crate::phases::decide::{self, DecideInput, Judgment};
use crate::phases::guard::{self, GuardInput};
use crate::phases::handoff::{self, HandoffWrite};
use crate::phases::judge::{self, EvaluationInput, RoundInput};
use crate::phases::submit::{self, SubmitInput};
use crate::phases::verify::{self, VerifyInput};
use crate::phases::{Context, Environment, shared_sink};
use crate::record::{
    CriteriaSource, GuardAction, PanelVerdict, RoundFile, RoundSummary, RoundVerdict, RunFile,
    RunRecord, RunStatus, RunSummary, load_run,
};
use crate::{git_view, outputs, trace, workspace};

const RUN_LOCK: &str = ".run.lock";

/// What to refine and within which limits.
#[derive(Clone, Debug)]
pub struct RefineConfig {
    /// The task, in the user's words.
    pub task: String,
    /// Criteria given by the user; `None` has the criteria writer write them.
    pub criteria: Option<CriteriaSet>,
    /// An existing version to improve, relative to the workspace.
    pub prior_answer: Option<String>,
    /// The caps.
    pub limits: LoopLimits,
    /// Commands that check the deliverable.
    pub verify: Vec<String>,
    /// A label for the session id.
    pub label: String,
}

/// Which backend plays which role.
#[derive(Clone, Debug)]
pub struct Roles {
    /// Builds and repairs (and fixes failing checks).
    pub builder: Backend,
    /// Writes criteria, judges rounds, guards against regressions, analyzes traces.
    pub evaluator: Backend,
    /// More judges of each round, in parallel and blind to each other; the core combines their
    /// scores (the lower median per criterion).
    pub panel: Vec<Backend>,
}

impl Roles {
    /// The judges of a round: the evaluator first, then the panel.
    fn judges(&self) -> Vec<&Backend> {
        std::iter::once(&self.evaluator)
            .chain(&self.panel)
            .collect()
    }
}

/// A run in progress, holding the session's run lock.
pub struct Refiner {
    store: StateDir,
    session: Session,
    /// What the run may snapshot and restore, fixed when it started (kept in the session).
    scope: WorkspaceScope,
    roles: Roles,
    env: Environment,
    meter: Meter,
    /// Writes the run's copies for people off the run's thread; before `_lock`, so a dropped
    /// run waits for them before the session is free.
    copies: Copies,
    run: RunFile,
    resumed: bool,
    _lock: LockGuard,
}

impl std::fmt::Debug for Refiner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Refiner")
            .field("session", self.session.id())
            .finish_non_exhaustive()
    }
}

impl Refiner {
    /// Starts a new run: a new session, the baseline snapshot, the user's criteria if any.
    pub fn start(
        store: StateDir,
        config: RefineConfig,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        Self::start_session(store, None, config, roles, env)
    }

    /// Like [`Refiner::start`], under a session id the caller chose (a worktree run names its
    /// branch and folder after the session before starting it).
    pub fn start_as(
        store: StateDir,
        session_id: SessionId,
        config: RefineConfig,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        Self::start_session(store, Some(session_id), config, roles, env)
    }

    fn start_session(
        store: StateDir,
        session_id: Option<SessionId>,
        config: RefineConfig,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        check_setup(&config.limits, &roles)?;
        let started = OffsetDateTime::now_utc();
        let settings = SessionSettings {
            max_rounds: None,
            ..SessionSettings::default()
        };
        let session = match session_id {
            Some(id) => store.init_session_with_id(&id, &config.label, settings, started)?,
            // The scope rides in the session's first record (one sync for both).
            None => store.init_session_scoped(
                &config.label,
                settings,
                git_view::git_listing(store.workspace()),
                started,
            )?,
        };
        let lock = take_lock(&session)?;
        // Before the builder can touch anything: what this run may snapshot and restore is
        // git's view now, whatever the ignore files say later.
        let scope = git_view::ensure_session_scope(&session, store.workspace(), started)?;
        workspace::save_baseline(&store, &scope, &session)?;
        let criteria_source = match &config.criteria {
            Some(criteria) => {
                session.register_criteria(criteria, started)?;
                Some(CriteriaSource::User)
            }
            None => None,
        };
        let record = new_record(config, &roles, &env.scrubber, criteria_source, started);
        let meter = Meter::new(record.limits, Spend::default(), Duration::ZERO);
        let copies = Copies::new();
        let mut run = RunFile::new(&session, record, &copies);
        run.save(&meter)?;
        Ok(Self {
            store,
            session,
            scope,
            roles,
            env,
            meter,
            copies,
            run,
            resumed: false,
            _lock: lock,
        })
    }

    /// Continues a run from its last finished round. `limits` replaces the stored caps (the
    /// driver merges the flags given now with the stored ones).
    pub fn resume(
        store: StateDir,
        session_id: &str,
        limits: LoopLimits,
        roles: Roles,
        env: Environment,
    ) -> Result<Self, EngineError> {
        let (session, mut record) = load_run(&store, session_id)?;
        let lock = take_lock(&session)?;
        check_budget(&limits, &roles)?;
        // The scope fixed when the run started (a session from before scopes gets one now).
        let scope =
            git_view::ensure_session_scope(&session, store.workspace(), OffsetDateTime::now_utc())?;
        record.limits = limits;
        record.builder = roles.builder.spec().to_string();
        record.evaluator = roles.evaluator.spec().to_string();
        record.panel = panel_names(&roles);
        let meter = Meter::new(
            record.limits,
            record.spend,
            Duration::from_millis(record.elapsed_ms),
        );
        let copies = Copies::new();
        Ok(Self {
            run: RunFile::new(&session, record, &copies),
            copies,
            store,
            session,
            scope,
            roles,
            env,
            meter,
            resumed: true,
            _lock: lock,
        })
    }

    /// Takes every later call's reservation from `pool` as well: a budget this run shares with
    /// other runs of the process (`refinery batch --cost-budget`).
    pub fn share_budget(&mut self, pool: std::sync::Arc<dyn crate::meter::BudgetPool>) {
        self.meter.share(pool);
    }

    /// The session this run writes to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The summary of the run as it stands.
    pub fn summary(&self) -> Result<RunSummary, EngineError> {
        RunSummary::of(&self.store, &self.session, &self.run.record, &self.meter)
    }

    /// Runs rounds until the core says converge or stop, a cap halts the run, or `cancel`
    /// fires. State is saved after every step; the returned summary says how it ended.
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RefineEvent) + Send),
    ) -> Result<RunSummary, EngineError> {
        let record = &self.run.record;
        on_event(&RefineEvent::Session {
            session: self.session.id().to_string(),
            dir: self.session.dir().to_path_buf(),
            resumed: self.resumed,
            builder: record.builder.clone(),
            evaluator: record.evaluator.clone(),
            panel: record.panel.clone(),
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
                roles: &self.roles,
                run: &mut self.run,
            };
            rounds.drive().await
        };
        let in_progress = self.run.record.in_progress;
        let status = match outcome {
            Ok(status) => status,
            Err(EngineError::Halted(halt)) => halted(halt, in_progress),
            Err(error) => {
                self.run.record.status = RunStatus::Failed {
                    error: error.to_string(),
                };
                // The original error matters more than a failure to record it.
                let _ = self.run.save(&self.meter);
                let _ = self.copies.flush();
                return Err(error);
            }
        };
        self.run.record.best_round = match status {
            RunStatus::Stopped { .. } => {
                let latest = in_progress.or(self.run.record.rounds.last().map(|r| r.round));
                workspace::deliver_best(&self.store, &self.scope, &self.session, latest)?
            }
            _ => None,
        };
        self.run.record.status = status.clone();
        self.run.save(&self.meter)?;
        // Reports read the copies: all of them are on disk before the run says it finished.
        self.copies.flush()?;
        on_event(&RefineEvent::Finished { status });
        self.summary()
    }
}

/// A round as the core recorded it: its file, the files it submitted, and the core's outcome
/// (`None`: unscored).
struct Judged {
    file: RoundFile,
    submitted: Vec<ManifestEntry>,
    outcome: Option<ChecklistOutcome>,
}

/// The previous round as this process ran it, for the checks that look back one round.
#[derive(Clone, Copy)]
struct Known<'a> {
    round: u32,
    files: &'a [ManifestEntry],
    outcome: Option<&'a ChecklistOutcome>,
}

/// The loop over rounds, with what every phase needs.
struct Rounds<'a> {
    ctx: Context<'a>,
    roles: &'a Roles,
    run: &'a mut RunFile,
}

impl Rounds<'_> {
    async fn drive(&mut self) -> Result<RunStatus, EngineError> {
        let criteria = self.criteria().await?;
        // Every round's judges, guard and trace analyzer answer against these schemas.
        refinery_llm::prepare_validators(vec![
            outputs::evaluator_schema(&criteria),
            outputs::guard_schema(&criteria),
            outputs::trace_lessons_schema(),
        ]);
        self.recover(&criteria)?;
        if let Some(status) = self.decide_again()? {
            return Ok(status);
        }
        self.undo_best_delivery()?;
        let mut previous: Option<Judged> = None;
        loop {
            let round = self.run.next_round();
            self.ctx.meter.check_time()?;
            self.run.record.in_progress = Some(round);
            self.run.save(self.ctx.meter)?;
            self.ctx.emit(&RefineEvent::RoundStarted {
                round,
                max_rounds: self.run.record.limits.max_rounds,
            });
            // The previous round as this process made it (its submission and outcome), so
            // neither is read back from disk: see `BeforeBuild`.
            let judged = self.round(round, &criteria, previous.take()).await?;
            let summary = self.conclude(round, &criteria, &judged.file, judged.outcome.as_ref());
            let next = summary.next.clone();
            self.ctx.emit(&RefineEvent::Decision {
                round,
                next: next.clone(),
            });
            self.run.record.rounds.push(summary);
            self.run.record.in_progress = None;
            previous = Some(judged);
            if let Some(status) = RunStatus::after(&next) {
                self.run.save(self.ctx.meter)?;
                return Ok(status);
            }
            // Saved with the next round's start, one write for both: a crash in between
            // leaves this round recorded by the core, and a resume concludes it again from
            // its files (`recover`), as after a crash anywhere past `decide::record`.
        }
    }

    /// One round up to the moment the core records it: build, verify, guard, submit, judge.
    /// `previous` is the previous round as this process ran it, when it did.
    async fn round(
        &mut self,
        round: u32,
        criteria: &CriteriaSet,
        previous: Option<Judged>,
    ) -> Result<Judged, EngineError> {
        let (ctx, roles, record) = (&self.ctx, self.roles, &self.run.record);
        // The round's folder is made by its first writer (a copy, or the core's snapshot,
        // which makes it durable): a new folder costs about half a millisecond on an ordinary
        // disk, better spent off this thread.
        let handoff = handoff::latest(ctx, round, record);
        let state_dir = state_dir_note(ctx.store);
        let brief = BuilderBrief {
            task: &record.task,
            criteria,
            round,
            handoff: handoff.as_deref(),
            prior_answer: record.prior_answer.as_deref().filter(|_| round == 1),
            verify: &record.verify,
            state_dir: &state_dir,
        };
        let builder = &roles.builder;
        let known = previous.as_ref().map(|previous| Known {
            round: round - 1,
            files: &previous.submitted,
            outcome: previous.outcome.as_ref(),
        });
        let before = match known {
            Some(known) => workspace::BeforeBuild::known(known.files),
            None => workspace::BeforeBuild::take(ctx.store, ctx.scope)?,
        };
        let built = build::run(ctx, BuildInput { builder, brief }).await?;
        let verify_input = VerifyInput {
            round,
            task: &record.task,
            commands: &record.verify,
            builder,
        };
        let verified = verify::run(ctx, verify_input).await?;
        // A builder that only claims to have written files is reported as such.
        let after = before.after(ctx.store, ctx.scope)?;
        let changed_nothing = after.changed_nothing;
        if changed_nothing {
            ctx.emit(&RefineEvent::BuilderChangedNothing { round });
        }
        let guarded = if round > 1 {
            let guard_input = GuardInput {
                round,
                task: &record.task,
                criteria,
                judge: &roles.evaluator,
                builder,
                verify: &record.verify,
                current: &after.snapshot.entries,
                previous: known.map(|known| known.files),
            };
            Some(guard::run(ctx, guard_input).await?)
        } else {
            None
        };
        let mut file = RoundFile {
            round,
            builder_summary: ctx.env.scrubber.scrub(&built.text),
            fix_attempted: verified.fix.is_some(),
            builder_changed_nothing: changed_nothing,
            ..RoundFile::default()
        };
        let mut trail = BuilderTrail::default();
        trail.push(built);
        trail.extend(verified.fix);
        file.verify = verified.results;
        // A repair (and a revert after it) changed the files the guard and the build saw.
        let mut submitted = Some(after.snapshot);
        if let Some(guarded) = guarded {
            if guarded.repair.is_some() {
                submitted = None;
            }
            trail.extend(guarded.repair);
            file.verify = guarded.verify.unwrap_or(file.verify);
            file.regression = Some(guarded.report);
        }
        self.submit_and_judge(file, &trail, submitted, criteria, known)
            .await
    }

    /// Submits the round and has it judged; the round's file is saved, then recorded with the
    /// checks made in code. The submitted files and the core's outcome come back with it.
    async fn submit_and_judge(
        &mut self,
        mut file: RoundFile,
        trail: &BuilderTrail,
        snapshot: Option<Snapshot>,
        criteria: &CriteriaSet,
        previous: Option<Known<'_>>,
    ) -> Result<Judged, EngineError> {
        let (ctx, roles, record) = (&self.ctx, self.roles, &self.run.record);
        let round = file.round;
        let judges = roles.judges();
        // The judges' briefs for a submission known already are rendered and scanned on
        // another thread while the submission's writes wait on the disk (see `judge::warm`).
        let warming = snapshot.as_ref().map(|snapshot| {
            judge::warm(
                ctx,
                &judges,
                judge::Foreseen {
                    task: record.task.clone(),
                    criteria: criteria.clone(),
                    files: snapshot.entries.clone(),
                    verify: file.verify.clone(),
                },
            )
        });
        let submit_input = SubmitInput {
            round,
            summary: &file.builder_summary,
            builder_events: &trail.events,
            snapshot,
        };
        let submission = submit::run(ctx, submit_input)?;
        file.trace = trace::stats(&trail.events, trail.duration);
        let input = RoundInput {
            round,
            judges: &judges,
            analyzer: &roles.evaluator,
            evaluation: EvaluationInput {
                task: &record.task,
                criteria,
                files: &submission.files,
                verify: &file.verify,
            },
            trace: &file.trace,
            builder_events: &trail.events,
            warming,
        };
        let judged = judge::round(ctx, input).await?;
        file.unscored_reason = judged.panel.unscored_reason();
        file.quorum = Some(judged.panel.quorum);
        file.panel = judged
            .panel
            .judges
            .into_iter()
            .map(PanelVerdict::from)
            .collect();
        file.lessons = judged.lessons;
        file.dropped_lessons = judged.dropped_lessons;
        let gates = match judged.panel.combined {
            Some(combined) => {
                file.evaluation = Some(combined.evaluation);
                file.spread = combined.spread;
                file.refused = combined.refused;
                Gates {
                    refused: file.refused.clone(),
                    blocks: judgment::blocks(&self.facts(&file, &submission.files, previous)?),
                }
            }
            None => Gates::default(),
        };
        // The round's file is made durable in the run's record, one append, before the core
        // records the round (recovery concludes a round the core has from it).
        self.run.record.judged = Some(file.clone());
        self.run.save_for_resume(ctx.meter)?;
        file.save_copy(ctx.session, ctx.copies);
        let judgment = Judgment {
            evaluation: file.evaluation.as_ref(),
            unscored_reason: file.unscored_reason.as_deref().unwrap_or_default(),
            gates: &gates,
            spread: &file.spread,
        };
        let outcome = decide::record(ctx, round, &judgment)?;
        Ok(Judged {
            file,
            submitted: submission.files,
            outcome,
        })
    }

    /// What the round's scores do not show: failed checks, an empty deliverable, one the round
    /// left as the previous round delivered although that round's evaluation asked for
    /// changes, and an unchecked guard. The core's [`judgment::blocks`] decides what they mean.
    /// `known` is the previous round as this process ran it, when it did.
    fn facts(
        &self,
        file: &RoundFile,
        files: &[ManifestEntry],
        known: Option<Known<'_>>,
    ) -> Result<RoundFacts, EngineError> {
        let ctx = &self.ctx;
        let failed_checks = file.verify.iter().filter(|result| !result.passed);
        let unchanged_since_failing_round = match self.run.record.rounds.last() {
            Some(previous) if previous.verdict != RoundVerdict::Unscored => {
                let known = known.filter(|known| known.round == previous.round);
                let asks = |outcome: &ChecklistOutcome| !outcome.failed_criteria.is_empty();
                let asked_for_changes = match known {
                    Some(known) => known.outcome.is_some_and(asks),
                    None => decide::recorded_outcome(ctx, previous.round)?
                        .as_ref()
                        .is_some_and(asks),
                };
                let unchanged = asked_for_changes
                    && match known {
                        Some(known) => known.files == files,
                        None => workspace::delivered(ctx.session, previous.round)? == files,
                    };
                unchanged.then_some(previous.round)
            }
            _ => None,
        };
        let guard = match &file.regression {
            None => GuardCheck::NotRun,
            Some(report) if report.action == GuardAction::Unchecked => GuardCheck::Unchecked,
            Some(_) => GuardCheck::Checked,
        };
        Ok(RoundFacts {
            failed_checks: failed_checks.map(|result| result.command.clone()).collect(),
            files: files.len(),
            unchanged_since_failing_round,
            guard,
        })
    }

    /// Everything after the core recorded a round: the decision and the handoff. Depends only
    /// on the round's file and the core, so recovery after a crash computes the same result:
    /// `outcome` is what the core recorded, handed over by the round that recorded it or read
    /// back from the core.
    fn conclude(
        &mut self,
        round: u32,
        criteria: &CriteriaSet,
        file: &RoundFile,
        outcome: Option<&ChecklistOutcome>,
    ) -> RoundSummary {
        let ctx = &self.ctx;
        let outcome = outcome.filter(|_| file.evaluation.is_some());
        let record = &mut self.run.record;
        let decision = decide::next(
            ctx.meter,
            &DecideInput {
                round,
                outcome,
                limits: &record.limits,
                forced_change_round: record.forced_change_round,
            },
        );
        record.forced_change_round = decision.forced_change_round;
        // Concluded: the summary and the handoff below take over from the round's file.
        record.judged = None;
        let spend = ctx.meter.spend();
        let trajectory: BTreeMap<String, Vec<Option<u8>>> = criteria
            .ids()
            .into_iter()
            .map(|id| {
                let scores = record
                    .rounds
                    .iter()
                    .map(|summary| summary.scores.get(&id).copied());
                let scores = scores.collect();
                (id, scores)
            })
            .collect();
        let written = handoff::write(
            ctx,
            &HandoffWrite {
                round,
                task: &record.task,
                criteria,
                outcome,
                evaluation: file.evaluation.as_ref(),
                next: &decision.next,
                lessons: file.lessons.as_ref(),
                trajectory: &trajectory,
                learnings: record.learnings.as_deref(),
            },
        );
        // Made durable by the save of the run's record that follows every conclusion.
        record.handoff = Some(written.handoff);
        record.learnings = Some(written.learnings);
        let scores = outcome.map(decide::scores).unwrap_or_default();
        let within_disagreement = disagreement(&record.rounds, &scores, &file.spread);
        RoundSummary {
            round,
            verdict: outcome.map_or(RoundVerdict::Unscored, |outcome| outcome.verdict.into()),
            unscored_reason: file.unscored_reason.clone(),
            verify_passed: (!file.verify.is_empty())
                .then(|| file.verify.iter().all(|result| result.passed)),
            regression: file.regression.clone(),
            builder_changed_nothing: file.builder_changed_nothing,
            blocked_by: outcome
                .map(|outcome| outcome.blocked_by.clone())
                .unwrap_or_default(),
            refused: outcome.map(decide::refused).unwrap_or_default(),
            quorum: file.quorum.filter(|quorum| quorum.asked > 1),
            spread: file.spread.clone(),
            within_disagreement,
            scores,
            trace: file.trace.clone(),
            next: decision.next,
            spend,
        }
    }

    /// The criteria: the session's, or the criteria writer's (saved in the session).
    async fn criteria(&mut self) -> Result<CriteriaSet, EngineError> {
        let record = &self.run.record;
        let (criteria, source) = criteria::settle(
            &self.ctx,
            &self.roles.evaluator,
            &record.task,
            record.criteria_source,
        )
        .await?;
        if record.criteria_source.is_none() {
            self.run.record.criteria_source = Some(source);
            self.run.save(self.ctx.meter)?;
        }
        Ok(criteria)
    }

    /// Brings the run's record in line with the core after a crash: a round the core finished is
    /// recorded, and a round cut short is undone so it can start clean.
    fn recover(&mut self, criteria: &CriteriaSet) -> Result<(), EngineError> {
        let ctx = self.ctx;
        let core_round = ctx.session.state()?.round;
        while self.run.next_round() <= core_round {
            let round = self.run.next_round();
            let saved = &mut self.run.record.judged;
            let file = match saved.take_if(|file| file.round == round) {
                Some(file) => file,
                // Saved by a version that kept it only in `round.json`.
                None => RoundFile::load(ctx.session, round)?,
            };
            let outcome = match file.evaluation {
                Some(_) => decide::recorded_outcome(&ctx, round)?,
                None => None,
            };
            let summary = self.conclude(round, criteria, &file, outcome.as_ref());
            self.run.record.rounds.push(summary);
        }
        if let Some(cut) = self.run.record.in_progress.take()
            && cut > core_round
        {
            // The interrupted round's files go back to what the last finished round
            // delivered (or to the workspace before round 1); the discarded state is kept in
            // the object store.
            let target = workspace::delivered(ctx.session, core_round)?;
            let backup = ctx.session.round_dir(cut).join("discarded.json");
            workspace::restore(ctx.store, ctx.scope, ctx.session, &target, &backup)?;
        }
        self.run.save(ctx.meter)
    }

    /// A resumed run that goes on after it had delivered its best round starts again from
    /// its latest round's files, which its handoff and its guard describe (see
    /// [`workspace::resume_from_latest`]).
    fn undo_best_delivery(&mut self) -> Result<(), EngineError> {
        if self.run.record.best_round.take().is_none() {
            return Ok(());
        }
        if let Some(latest) = self.run.record.rounds.last().map(|summary| summary.round) {
            let ctx = &self.ctx;
            workspace::resume_from_latest(ctx.store, ctx.scope, ctx.session, latest)?;
        }
        self.run.save(self.ctx.meter)
    }

    /// A resumed run decides again after its last round under the limits given now, so a run
    /// stopped by max-rounds can be given more rounds. `Some` when the run is over.
    fn decide_again(&mut self) -> Result<Option<RunStatus>, EngineError> {
        let Some(last) = self.run.record.rounds.last() else {
            return Ok(None);
        };
        let outcome = match last.verdict {
            RoundVerdict::Unscored => None,
            RoundVerdict::Converge | RoundVerdict::Iterate => {
                decide::recorded_outcome(&self.ctx, last.round)?
            }
        };
        let record = &self.run.record;
        // Only the next step is decided again: the round's handoff was written with its
        // original decision and stays, and so does the run's forced-change round.
        let decision = decide::next(
            self.ctx.meter,
            &DecideInput {
                round: last.round,
                outcome: outcome.as_ref(),
                limits: &record.limits,
                forced_change_round: record.forced_change_round,
            },
        );
        let status = RunStatus::after(&decision.next);
        if let Some(summary) = self.run.record.rounds.last_mut() {
            summary.next = decision.next;
        }
        Ok(status)
    }
}

/// Criteria whose gain since the last scored round in `earlier` is smaller than the judges'
/// spread in either round (the core's [`judgment::within_disagreement`]).
fn disagreement(
    earlier: &[RoundSummary],
    scores: &BTreeMap<String, u8>,
    spread: &BTreeMap<String, Spread>,
) -> Vec<String> {
    let Some(previous) = earlier
        .iter()
        .rev()
        .find(|summary| summary.verdict != RoundVerdict::Unscored)
    else {
        return Vec::new();
    };
    scores
        .iter()
        .filter(|(id, score)| {
            previous.scores.get(*id).is_some_and(|before| {
                judgment::within_disagreement(
                    *before,
                    **score,
                    previous.spread.get(*id).copied(),
                    spread.get(*id).copied(),
                )
            })
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The run's status when a cap or the user stopped it part-way.
fn halted(halt: Halt, in_progress: Option<u32>) -> RunStatus {
    match halt {
        Halt::Cancelled => RunStatus::Interrupted { round: in_progress },
        Halt::CostBudget => RunStatus::Stopped {
            reason: StopReason::CostBudget,
            interrupted_round: in_progress,
        },
        Halt::TimeBudget => RunStatus::Stopped {
            reason: StopReason::TimeBudget,
            interrupted_round: in_progress,
        },
    }
}

fn new_record(
    config: RefineConfig,
    roles: &Roles,
    scrubber: &Scrubber,
    criteria_source: Option<CriteriaSource>,
    started: OffsetDateTime,
) -> RunRecord {
    RunRecord {
        version: 1,
        // The task is sent to models and saved; a key pasted into it must be neither.
        task: scrubber.scrub(&config.task),
        builder: roles.builder.spec().to_string(),
        evaluator: roles.evaluator.spec().to_string(),
        panel: panel_names(roles),
        limits: config.limits,
        verify: config.verify,
        prior_answer: config.prior_answer,
        criteria_source,
        status: RunStatus::Running,
        rounds: Vec::new(),
        in_progress: None,
        spend: Spend::default(),
        elapsed_ms: 0,
        forced_change_round: None,
        best_round: None,
        handoff: None,
        learnings: None,
        judged: None,
        created_at: refinery_core::rfc3339(started),
        updated_at: refinery_core::rfc3339(started),
    }
}

fn panel_names(roles: &Roles) -> Vec<String> {
    let names = roles.panel.iter();
    names.map(|judge| judge.spec().to_string()).collect()
}

/// Whether a `refinery refine` is running `session` now: the run lock is taken for an instant
/// (a lock, not a guess from the record's status, which a killed run leaves at "running").
pub fn run_in_progress(session: &Session) -> Result<bool, EngineError> {
    Ok(LockGuard::try_acquire(&session.dir().join(RUN_LOCK))?.is_none())
}

fn take_lock(session: &Session) -> Result<LockGuard, EngineError> {
    LockGuard::try_acquire(&session.dir().join(RUN_LOCK))?.ok_or_else(|| {
        EngineError::Setup(format!(
            "session `{}` is being run by another `refinery refine`; wait for it or stop it first",
            session.id()
        ))
    })
}

/// Refuses settings that leave no round to run or a budget that cannot be enforced.
fn check_setup(limits: &LoopLimits, roles: &Roles) -> Result<(), EngineError> {
    check_budget(limits, roles)?;
    if limits.max_rounds == 0 || limits.min_rounds > limits.max_rounds {
        return Err(EngineError::Setup(format!(
            "--min-rounds {} and --max-rounds {} leave no round to run; max-rounds must be at least 1 and at least min-rounds",
            limits.min_rounds, limits.max_rounds
        )));
    }
    Ok(())
}

fn check_budget(limits: &LoopLimits, roles: &Roles) -> Result<(), EngineError> {
    if limits.cost_budget_usd.is_some() {
        for backend in [&roles.builder, &roles.evaluator]
            .into_iter()
            .chain(&roles.panel)
        {
            if let Some(problem) = backend.budget_problem() {
                return Err(EngineError::Setup(problem));
            }
        }
    }
    Ok(())
}

/// The state folder as the builder is told of it: relative to the workspace when inside it.
fn state_dir_note(store: &StateDir) -> String {
    store.root().strip_prefix(store.workspace()).map_or_else(
        |_| store.root().display().to_string(),
        |relative| relative.display().to_string(),
    )
}
