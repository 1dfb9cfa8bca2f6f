//! The user's workspace as the loop touches it: snapshots of it, the version a round
//! delivered, and restores.
//!
//! Every read of the whole workspace and every write back to it goes through here and
//! through the run's [`WorkspaceScope`], fixed from git's view when the run started (see
//! `refinery_core::scope`). So a builder that edits `.gitignore` to un-ignore `.env.local` or
//! `private/` widens nothing: those files are never snapshotted (so never shown to a judge
//! nor stored), and a revert, a resume or a best-round delivery never deletes or overwrites
//! them. A restore also keeps every file that existed before the run unless the run changed
//! it, and stores what it replaces in the session first. The isolated copies the agents of a
//! multi-model run work in ([`AgentCopies`]) and the one write of its winner
//! ([`apply_answer`]) are here too, so a git worktree can replace the copies without the run
//! noticing.

use std::collections::BTreeMap;
use std::path::Path;

use refinery_core::best_round::{RoundScore, RoundStanding, best_round};
use refinery_core::fsutil::{read_json, write_json};
use refinery_core::snapshot::take_snapshot;
use refinery_core::{ManifestEntry, RestoreReport, Session, Snapshot, StateDir, WorkspaceScope};

use crate::error::EngineError;
use crate::record::BestRound;

/// What the latest round left in the workspace, once the best round replaced it (in that
/// round's folder).
const REPLACED_FILE: &str = "replaced.json";

/// What the best round's files (and anything else in scope) were when a resumed run put its
/// latest round's files back, in that round's folder.
const BEFORE_RESUME_FILE: &str = "before_resume.json";

/// The workspace before round 1, in the session folder.
const BASELINE_FILE: &str = "baseline.json";

/// The in-scope part of the workspace as it is now, stored in the object store (unchanged
/// files cost nothing).
pub(crate) fn snapshot(store: &StateDir, scope: &WorkspaceScope) -> Result<Snapshot, EngineError> {
    Ok(scope.snapshot(&store.objects(), &[".".to_owned()])?)
}

/// Keeps the workspace as it was before any round, so an interrupted first round can be
/// undone on resume and a restore knows which files predate the run.
pub(crate) fn save_baseline(
    store: &StateDir,
    scope: &WorkspaceScope,
    session: &Session,
) -> Result<(), EngineError> {
    let baseline = snapshot(store, scope)?;
    write_json(&session.dir().join(BASELINE_FILE), &baseline.entries)?;
    Ok(())
}

fn baseline(session: &Session) -> Result<Vec<ManifestEntry>, EngineError> {
    Ok(read_json::<Vec<ManifestEntry>>(&session.dir().join(BASELINE_FILE))?.unwrap_or_default())
}

/// The files `round` delivered (round 0: the workspace before the run).
pub(crate) fn delivered(session: &Session, round: u32) -> Result<Vec<ManifestEntry>, EngineError> {
    if round == 0 {
        return baseline(session);
    }
    session
        .submission(round)?
        .map(|submission| submission.files)
        .ok_or_else(|| {
            EngineError::Setup(format!(
                "round {round} of session `{}` has no submission on disk; the session folder was changed by hand",
                session.id()
            ))
        })
}

/// Brings the in-scope part of the workspace back to `target`, within the run's scope only
/// (see [`WorkspaceScope::restore_exact`]): files outside the scope are never touched, a
/// file that existed before the run is kept unless the run changed it, and the in-scope
/// files as they are now are stored first, their manifest written to `backup`.
pub(crate) fn restore(
    store: &StateDir,
    scope: &WorkspaceScope,
    session: &Session,
    target: &[ManifestEntry],
    backup: &Path,
) -> Result<RestoreReport, EngineError> {
    let before = baseline(session)?;
    Ok(scope.restore_exact(&store.objects(), target, &before, backup)?)
}

/// Writes an answer made in a copy of the workspace back into the workspace: every file the
/// answer added or changed relative to `baseline` (the workspace the copies were made from)
/// is written, every baseline file it deleted is removed, and nothing else is touched (a file
/// the user changed meanwhile stays as it is unless the answer changed it too). What is
/// removed or overwritten is snapshotted to `backup` first.
pub(crate) fn apply_answer(
    store: &StateDir,
    scope: &WorkspaceScope,
    baseline: &[ManifestEntry],
    answer: &[ManifestEntry],
    backup: &Path,
) -> Result<(), EngineError> {
    let before: BTreeMap<&str, &ManifestEntry> = baseline
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let after: BTreeMap<&str, &ManifestEntry> = answer
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let mut target: BTreeMap<String, ManifestEntry> = snapshot(store, scope)?
        .entries
        .into_iter()
        .map(|entry| (entry.path.clone(), entry))
        .collect();
    for (path, entry) in &after {
        if before.get(path) != Some(entry) {
            target.insert((*path).to_owned(), (*entry).clone());
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            target.remove(*path);
        }
    }
    let target: Vec<ManifestEntry> = target.into_values().collect();
    // Within the scope, so out-of-scope files stay. `target` already keeps every file the
    // answer left alone; a file it deleted is the run's change, so no file is protected
    // beyond that.
    scope.restore_exact(&store.objects(), &target, &[], backup)?;
    Ok(())
}

/// The private copies of the workspace the agents of a multi-model run work in, one per
/// agent, each a temporary folder with a random name (a path shown to a model says nothing
/// about whose copy it is). No copy holds the state folder or `.git`, and no agent ever sees
/// another's copy: answers travel between agents only as snapshots in the object store.
pub(crate) struct AgentCopies {
    dirs: Vec<tempfile::TempDir>,
}

impl AgentCopies {
    /// One copy per entry of `contents`, each holding exactly those files.
    pub(crate) fn create(
        store: &StateDir,
        contents: &[&[ManifestEntry]],
    ) -> Result<Self, EngineError> {
        let dirs = contents
            .iter()
            .map(|entries| {
                let dir = tempfile::Builder::new()
                    .prefix("refinery-answer-")
                    .tempdir()?;
                refinery_core::snapshot::restore(&store.objects(), entries, dir.path())?;
                Ok(dir)
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { dirs })
    }

    /// The folder of agent `index`.
    pub(crate) fn path(&self, index: usize) -> Option<&Path> {
        self.dirs.get(index).map(tempfile::TempDir::path)
    }

    /// Makes agent `index`'s copy hold exactly `entries` (the answer it starts from).
    pub(crate) fn reset(
        &self,
        store: &StateDir,
        index: usize,
        entries: &[ManifestEntry],
    ) -> Result<(), EngineError> {
        let Some(dir) = self.path(index) else {
            return Ok(());
        };
        // The folder is ours alone: emptying it cannot touch a user file.
        for entry in fs_err::read_dir(dir)? {
            let path = entry?.path();
            if fs_err::symlink_metadata(&path)?.is_dir() {
                fs_err::remove_dir_all(&path)?;
            } else {
                fs_err::remove_file(&path)?;
            }
        }
        refinery_core::snapshot::restore(&store.objects(), entries, dir)?;
        Ok(())
    }

    /// Agent `index`'s copy as it is now, stored in the object store.
    pub(crate) fn snapshot(&self, store: &StateDir, index: usize) -> Result<Snapshot, EngineError> {
        let dir = self.path(index).ok_or_else(|| {
            EngineError::Setup(format!("no workspace copy for agent {}", index + 1))
        })?;
        Ok(take_snapshot(
            &store.objects(),
            dir,
            &[],
            &[".".to_owned()],
        )?)
    }
}

/// The workspace's files before a builder's turn, to tell afterwards whether the turn (its fix
/// attempt included) wrote or deleted anything: a builder that only *claims* its work is
/// reported as "builder changed nothing": a snapshot after the turn is compared with this
/// (unchanged files cost nothing to snapshot).
///
/// In a run's first round (and the first after a resume) "before" is a walk; from then on it
/// is what the previous round submitted ([`BeforeBuild::known`]): nothing of Refinery's writes
/// to the workspace between a submission and the next build (judges, the guard and the trace
/// analyzer work in copies), so a walk there would find the same files. A person editing the workspace in that gap has their edit
/// counted as the builder's.
pub(crate) struct BeforeBuild<'a>(std::borrow::Cow<'a, [ManifestEntry]>);

/// The workspace as a builder's turn left it.
pub(crate) struct AfterBuild {
    /// Whether every in-scope file is still exactly as it was before the turn (content,
    /// mode, and the set of paths).
    pub changed_nothing: bool,
    /// The in-scope part of the workspace now: what the guard compares and, unless a repair
    /// changes the files again, what the round submits (so both see the same bytes and the
    /// workspace is walked once).
    pub snapshot: Snapshot,
}

impl<'a> BeforeBuild<'a> {
    /// The in-scope part of the workspace as it is now.
    pub(crate) fn take(store: &StateDir, scope: &WorkspaceScope) -> Result<Self, EngineError> {
        Ok(Self(snapshot(store, scope)?.entries.into()))
    }

    /// The workspace as this process last snapshotted it, with nothing of ours writing to
    /// it since.
    pub(crate) fn known(entries: &'a [ManifestEntry]) -> Self {
        Self(entries.into())
    }

    /// The workspace after the turn, compared with before it.
    pub(crate) fn after(
        &self,
        store: &StateDir,
        scope: &WorkspaceScope,
    ) -> Result<AfterBuild, EngineError> {
        let snapshot = snapshot(store, scope)?;
        Ok(AfterBuild {
            changed_nothing: *snapshot.entries == *self.0,
            snapshot,
        })
    }
}

/// When a run stops without converging, puts the best-scoring round's files (by the core's
/// rule) back in the workspace in place of `latest`'s (the latest round, finished or cut
/// short), which are kept in `round_NNN/replaced.json` first. `None` when the latest round is
/// the best, or when no round was scored (nothing is known to be better).
pub(crate) fn deliver_best(
    store: &StateDir,
    scope: &WorkspaceScope,
    session: &Session,
    latest: Option<u32>,
) -> Result<Option<BestRound>, EngineError> {
    let Some(latest) = latest else {
        return Ok(None);
    };
    // The core's own records, newest last; a round scored twice (a resume) counts as scored
    // the last time.
    let mut standings: Vec<RoundStanding> = Vec::new();
    for record in session.history()? {
        let outcome = &record.outcome;
        standings.retain(|standing| standing.round != outcome.round);
        standings.push(RoundStanding {
            round: outcome.round,
            score: Some(RoundScore::of(outcome)),
        });
    }
    match best_round(&standings) {
        Some(best) if best != latest => {
            let target = delivered(session, best)?;
            let backup = session.round_dir(latest).join(REPLACED_FILE);
            fs_err::create_dir_all(session.round_dir(latest))?;
            restore(store, scope, session, &target, &backup)?;
            Ok(Some(BestRound {
                round: best,
                replaced: latest,
            }))
        }
        _ => Ok(None),
    }
}

/// A stopped run that had put its best round's files in place ([`deliver_best`]) and is now
/// resumed goes on from where the loop was: the files `latest` (the last concluded round,
/// which the handoff and the regression guard describe) delivered. What the workspace holds
/// now is kept in `round_NNN/before_resume.json` first; at the end of the resumed run the
/// best round of all is delivered again.
pub(crate) fn resume_from_latest(
    store: &StateDir,
    scope: &WorkspaceScope,
    session: &Session,
    latest: u32,
) -> Result<(), EngineError> {
    let target = delivered(session, latest)?;
    let backup = session.round_dir(latest).join(BEFORE_RESUME_FILE);
    restore(store, scope, session, &target, &backup)?;
    Ok(())
}
