//! Writing a snapshot back: into a folder ([`restore_into`]) or over the workspace, exactly
//! and only within a run's scope ([`WorkspaceScope::restore_exact`]).
//!
//! A restore cannot escape its destination. Every manifest is checked before anything is
//! written — paths must be plain relative ones (no `..`, no absolute path, no entry under
//! another entry that is a file or a link), every symbolic link must point inside the
//! destination even when followed through the manifest's other links, every object must be
//! present — because a manifest on disk could have been edited. And nothing is ever written
//! through a link or into a non-folder that is already in the destination: a restore stops
//! (or, over the workspace, leaves that entry alone and says so) rather than follow it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil::write_json;
use crate::scope::WorkspaceScope;
use crate::snapshot::{
    EntryKind, ManifestEntry, ObjectStore, Skipped, is_hash, make_symlink, set_mode,
};

/// Links are resolved through the manifest at most this deep (the kernel's own limit is 40).
const MAX_LINK_DEPTH: usize = 40;

/// What a restore may find in its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// The destination must be missing or an empty folder.
    IntoEmpty,
    /// Same-named files in the destination are replaced; nothing else is touched.
    Overwrite,
}

/// What [`WorkspaceScope::restore_exact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Files written (new, or replacing a different version).
    pub written: Vec<String>,
    /// Files deleted (created or changed by the run, and not in the target).
    pub deleted: Vec<String>,
    /// Files left as they were, with the reason.
    pub kept: Vec<Skipped>,
}

/// Checks a manifest without writing anything.
pub fn check_manifest(store: &ObjectStore, entries: &[ManifestEntry]) -> Result<()> {
    let mut kinds: BTreeMap<&str, EntryKind> = BTreeMap::new();
    for entry in entries {
        let bad = |reason: &str| Error::BadManifest {
            entry: entry.path.clone(),
            reason: reason.to_owned(),
        };
        let plain = !entry.path.is_empty()
            && !entry.path.contains('\0')
            && entry
                .path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
            return Err(bad(
                "is not a plain relative path (absolute, empty, or with `.` or `..`)",
            ));
        }
        if !is_hash(&entry.hash) {
            return Err(bad("has no valid content hash"));
        }
        if !store.has_object(&entry.hash)? {
            return Err(store.missing(&entry.hash));
        }
        if kinds.insert(entry.path.as_str(), entry.kind).is_some() {
            return Err(bad("is listed twice"));
        }
    }
    for entry in entries {
        let mut folder = entry.path.as_str();
        while let Some((parent, _)) = folder.rsplit_once('/') {
            if kinds.contains_key(parent) {
                return Err(Error::BadManifest {
                    entry: entry.path.clone(),
                    reason: format!(
                        "lies under `{parent}`, which the same manifest makes a file or a link"
                    ),
                });
            }
            folder = parent;
        }
    }
    let links = link_targets(store, entries)?;
    for (path, target) in &links {
        let parent: Vec<&str> = path
            .rsplit_once('/')
            .map_or_else(Vec::new, |(parent, _)| parent.split('/').collect());
        let inside = !target.starts_with('/')
            && !target.is_empty()
            && resolve_in_manifest(&links, parent, target, 0).is_some();
        if !inside {
            return Err(Error::BadManifest {
                entry: (*path).to_owned(),
                reason: format!(
                    "is a link to `{target}`, which is outside the folder being restored"
                ),
            });
        }
    }
    Ok(())
}

/// The target text of every link entry.
fn link_targets<'a>(
    store: &ObjectStore,
    entries: &'a [ManifestEntry],
) -> Result<HashMap<&'a str, String>> {
    let mut links = HashMap::new();
    for entry in entries {
        if entry.kind != EntryKind::Symlink {
            continue;
        }
        let bytes = store.read_object(&entry.hash)?;
        let target = String::from_utf8(bytes).map_err(|_| Error::BadManifest {
            entry: entry.path.clone(),
            reason: "is a link whose target is not valid UTF-8".to_owned(),
        })?;
        if target.contains('\0') {
            return Err(Error::BadManifest {
                entry: entry.path.clone(),
                reason: "is a link whose target holds a NUL byte".to_owned(),
            });
        }
        links.insert(entry.path.as_str(), target);
    }
    Ok(links)
}

/// Follows `target` from the folder `start` (components under the destination), through the
/// manifest's own links; `None` when it leaves the destination or loops.
fn resolve_in_manifest<'a>(
    links: &'a HashMap<&str, String>,
    start: Vec<&'a str>,
    target: &'a str,
    depth: usize,
) -> Option<Vec<&'a str>> {
    if depth > MAX_LINK_DEPTH {
        return None;
    }
    let mut stack = start;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            name => {
                stack.push(name);
                let here = stack.join("/");
                if let Some(next) = links.get(here.as_str()) {
                    if next.starts_with('/') {
                        return None;
                    }
                    stack.pop();
                    stack = resolve_in_manifest(links, stack, next, depth + 1)?;
                }
            }
        }
    }
    Some(stack)
}

/// Writes a snapshot into `dest`. The manifest is checked first, and every entry's place in
/// `dest` too, so a refused restore writes nothing.
pub fn restore_into(
    store: &ObjectStore,
    entries: &[ManifestEntry],
    dest: &Path,
    mode: RestoreMode,
) -> Result<()> {
    check_manifest(store, entries)?;
    match fs_err::symlink_metadata(dest) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
        Ok(_) if mode == RestoreMode::IntoEmpty => {
            let mut listing = fs_err::read_dir(dest)?;
            if listing.next().is_some() {
                return Err(Error::DestinationNotEmpty {
                    dest: dest.to_path_buf(),
                });
            }
        }
        Ok(_) => {}
    }
    fs_err::create_dir_all(dest)?;
    // The destination itself is the caller's choice (it may be a link); everything below it
    // is checked.
    let dest = fs_err::canonicalize(dest)?;
    for entry in entries {
        if let Some(reason) = blocker(&dest, &entry.path) {
            return Err(Error::UnsafeDestination {
                path: dest.join(&entry.path),
                reason,
            });
        }
    }
    for entry in sorted(entries) {
        write_entry(store, entry, &dest)?;
    }
    Ok(())
}

fn sorted(entries: &[ManifestEntry]) -> Vec<&ManifestEntry> {
    let mut sorted: Vec<&ManifestEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted
}

/// What in `dest` stops `relative` from being written without following a link or
/// destroying something, if anything.
fn blocker(dest: &Path, relative: &str) -> Option<&'static str> {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut here = dest.to_path_buf();
    for (index, part) in parts.iter().enumerate() {
        here.push(part);
        let last = index + 1 == parts.len();
        let Ok(metadata) = fs_err::symlink_metadata(&here) else {
            // Missing: created as needed from here on.
            return None;
        };
        let kind = metadata.file_type();
        if kind.is_symlink() {
            if last {
                // The link itself is replaced, never written through.
                return None;
            }
            return Some("a symbolic link is in the way, and a restore never writes through links");
        }
        if last {
            if kind.is_dir() && !is_empty_dir(&here) {
                return Some("a folder with files in it is where a file should go");
            }
            return None;
        }
        if !kind.is_dir() {
            return Some("a file is where a folder should be");
        }
    }
    None
}

fn is_empty_dir(path: &Path) -> bool {
    fs_err::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// Writes one entry, creating its folders and re-checking each one as it goes (so a link
/// planted since the check is still never followed).
fn write_entry(store: &ObjectStore, entry: &ManifestEntry, dest: &Path) -> Result<()> {
    let parts: Vec<&str> = entry.path.split('/').collect();
    let mut parent = dest.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        parent.push(part);
        match fs_err::symlink_metadata(&parent) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafeDestination {
                    path: parent,
                    reason: "a link or file is where a folder should be; nothing was written through it",
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                fs_err::create_dir(&parent)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    let target = parent.join(parts[parts.len() - 1]);
    match fs_err::symlink_metadata(&target) {
        Ok(metadata) if metadata.is_dir() => fs_err::remove_dir(&target)?,
        Ok(metadata) if metadata.file_type().is_symlink() => fs_err::remove_file(&target)?,
        _ => {}
    }
    match entry.kind {
        EntryKind::File => {
            let mut temp = tempfile::Builder::new()
                .prefix(".restore-")
                .tempfile_in(&parent)?;
            store.copy_out(&entry.hash, temp.as_file_mut())?;
            // Only permission bits: a manifest cannot make a restored file setuid.
            set_mode(temp.path(), entry.mode & 0o777)?;
            // A rename replaces the name itself; it never writes through what was there.
            temp.persist(&target).map_err(|err| err.error)?;
        }
        EntryKind::Symlink => {
            let bytes = store.read_object(&entry.hash)?;
            let link_target = String::from_utf8_lossy(&bytes).into_owned();
            if fs_err::symlink_metadata(&target).is_ok() {
                fs_err::remove_file(&target)?;
            }
            make_symlink(&link_target, &target)?;
        }
    }
    Ok(())
}

/// Whether two entries hold the same thing (kind, bytes and permission bits).
fn same_version(a: &ManifestEntry, b: &ManifestEntry) -> bool {
    a.kind == b.kind && a.hash == b.hash && a.mode & 0o777 == b.mode & 0o777
}

impl WorkspaceScope {
    /// Deletes an in-scope file the target does not hold, unless it existed before the run
    /// and the run did not change it (then it is kept, and the report says so).
    fn delete_unless_untouched(
        &self,
        entry: &ManifestEntry,
        original: Option<&&ManifestEntry>,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let keep = |reason: &str, report: &mut RestoreReport| {
            report.kept.push(Skipped {
                path: entry.path.clone(),
                reason: reason.to_owned(),
            });
        };
        if original.is_some_and(|original| same_version(original, entry)) {
            keep(
                "existed before the run and the run did not change it",
                report,
            );
            return Ok(());
        }
        if let Some(reason) = blocker(self.workspace(), &entry.path) {
            keep(reason, report);
            return Ok(());
        }
        match fs_err::remove_file(self.workspace().join(&entry.path)) {
            Ok(()) => report.deleted.push(entry.path.clone()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        Ok(())
    }

    /// Makes the in-scope part of the workspace hold `target` (a snapshot the run took),
    /// keeping everything else: files outside the scope are never read, written or deleted,
    /// and a file that existed before the run (it is in `baseline`, the snapshot taken when
    /// the run started) is never deleted unless the run changed it. Before anything changes,
    /// the in-scope files as they are now are stored and their manifest written to `backup`,
    /// so whatever this replaces or deletes can be brought back.
    pub fn restore_exact(
        &self,
        store: &ObjectStore,
        target: &[ManifestEntry],
        baseline: &[ManifestEntry],
        backup: &Path,
    ) -> Result<RestoreReport> {
        check_manifest(store, target)?;
        let current = self.snapshot(store, &[".".to_owned()])?;
        write_json(backup, &current.entries)?;
        let wanted: BTreeMap<&str, &ManifestEntry> = target
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let before: BTreeMap<&str, &ManifestEntry> = baseline
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let mut report = RestoreReport::default();
        for entry in &current.entries {
            if !wanted.contains_key(entry.path.as_str()) {
                self.delete_unless_untouched(entry, before.get(entry.path.as_str()), &mut report)?;
            }
        }
        let now: BTreeMap<&str, &ManifestEntry> = current
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let mut writes = Vec::new();
        for entry in sorted(target) {
            if let Err(reason) = self.check(&entry.path, false) {
                report.kept.push(Skipped {
                    path: entry.path.clone(),
                    reason: reason.reason().to_owned(),
                });
                continue;
            }
            if now
                .get(entry.path.as_str())
                .is_some_and(|existing| same_version(existing, entry))
            {
                continue;
            }
            match blocker(self.workspace(), &entry.path) {
                Some(reason) => report.kept.push(Skipped {
                    path: entry.path.clone(),
                    reason: reason.to_owned(),
                }),
                None => writes.push(entry),
            }
        }
        for entry in writes {
            write_entry(store, entry, self.workspace())?;
            report.written.push(entry.path.clone());
        }
        Ok(report)
    }
}
