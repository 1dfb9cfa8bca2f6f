//! The user's workspace as the loop touches it: snapshots of it, the version a round
//! delivered, and exact restores.
//!
//! Every read of the whole workspace and every write back to it goes through here, so the rules
//! for what a run may snapshot, restore or delete live in one place (and the state folder is
//! always left out). The isolated copies the agents of a multi-model run work in
//! ([`AgentCopies`]) and the one write of its winner ([`apply_answer`]) are here too, so a git
//! worktree can replace the copies without the run noticing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use refinery_core::best_round::{RoundScore, RoundStanding, best_round};
use refinery_core::fsutil::{read_json, write_json};
use refinery_core::snapshot::take_snapshot;
use refinery_core::{ManifestEntry, Session, Snapshot, StateDir};

use crate::error::EngineError;
use crate::record::BestRound;

/// What the latest round left in the workspace, once the best round replaced it (in that
/// round's folder).
const REPLACED_FILE: &str = "replaced.json";

/// The workspace before round 1, in the session folder.
const BASELINE_FILE: &str = "baseline.json";

/// The workspace as it is now, stored in the object store (unchanged files cost nothing).
pub(crate) fn snapshot(store: &StateDir) -> Result<Snapshot, EngineError> {
    Ok(take_snapshot(
        &store.objects(),
        store.workspace(),
        &[store.root().to_path_buf()],
        &[".".to_owned()],
    )?)
}

/// Keeps the workspace as it was before any round, so an interrupted first round can be
/// undone on resume.
pub(crate) fn save_baseline(store: &StateDir, session: &Session) -> Result<(), EngineError> {
    let baseline = snapshot(store)?;
    write_json(&session.dir().join(BASELINE_FILE), &baseline.entries)?;
    Ok(())
}

/// The files `round` delivered (round 0: the workspace before the run).
pub(crate) fn delivered(session: &Session, round: u32) -> Result<Vec<ManifestEntry>, EngineError> {
    if round == 0 {
        return Ok(
            read_json::<Vec<ManifestEntry>>(&session.dir().join(BASELINE_FILE))?
                .unwrap_or_default(),
        );
    }
    let submissions = session.submissions()?;
    submissions
        .get(&round)
        .map(|submission| submission.files.clone())
        .ok_or_else(|| {
            EngineError::Setup(format!(
                "round {round} of session `{}` has no submission on disk; the session folder was changed by hand",
                session.id()
            ))
        })
}

/// Makes the workspace hold exactly `target` (files the ignore rules skip are left alone).
/// What is removed or overwritten is snapshotted to `backup` first.
pub(crate) fn restore_exact(
    store: &StateDir,
    target: &[ManifestEntry],
    backup: &Path,
) -> Result<(), EngineError> {
    let current = snapshot(store)?;
    write_json(backup, &current.entries)?;
    let keep: BTreeSet<&str> = target.iter().map(|entry| entry.path.as_str()).collect();
    for entry in &current.entries {
        if !keep.contains(entry.path.as_str()) {
            let path = store.workspace().join(&entry.path);
            match fs_err::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    refinery_core::snapshot::restore(&store.objects(), target, store.workspace())?;
    Ok(())
}

/// Writes an answer made in a copy of the workspace back into the workspace: every file the
/// answer added or changed relative to `baseline` (the workspace the copies were made from)
/// is written, every baseline file it deleted is removed, and nothing else is touched (a file
/// the user changed meanwhile stays as it is unless the answer changed it too). What is
/// removed or overwritten is snapshotted to `backup` first.
pub(crate) fn apply_answer(
    store: &StateDir,
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
    let mut target: BTreeMap<String, ManifestEntry> = snapshot(store)?
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
    restore_exact(store, &target, backup)
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
/// reported as "builder changed nothing". Two snapshots; unchanged files cost nothing.
pub(crate) struct BeforeBuild(Vec<ManifestEntry>);

impl BeforeBuild {
    /// The workspace as it is now.
    pub(crate) fn take(store: &StateDir) -> Result<Self, EngineError> {
        Ok(Self(snapshot(store)?.entries))
    }

    /// Whether every file is still exactly as it was (content, mode, and the set of paths).
    pub(crate) fn changed_nothing(&self, store: &StateDir) -> Result<bool, EngineError> {
        Ok(snapshot(store)?.entries == self.0)
    }
}

/// When a run stops without converging, puts the best-scoring round's files (by the core's
/// rule) back in the workspace in place of `latest`'s (the latest round, finished or cut
/// short), which are kept in `round_NNN/replaced.json` first. `None` when the latest round is
/// the best, or when no round was scored (nothing is known to be better).
pub(crate) fn deliver_best(
    store: &StateDir,
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
            restore_exact(store, &target, &backup)?;
            Ok(Some(BestRound {
                round: best,
                replaced: latest,
            }))
        }
        _ => Ok(None),
    }
}
