//! The user's workspace as the loop touches it: snapshots of it, the version a round
//! delivered, and exact restores.
//!
//! Every read of the whole workspace and every write back to it goes through here, so the rules
//! for what a run may snapshot, restore or delete live in one place (and the state folder is
//! always left out).

use std::collections::BTreeSet;
use std::path::Path;

use refinery_core::fsutil::{read_json, write_json};
use refinery_core::snapshot::take_snapshot;
use refinery_core::{ManifestEntry, Session, Snapshot, StateDir};

use crate::error::EngineError;

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
