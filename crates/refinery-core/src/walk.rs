//! Taking a snapshot through a [`WorkspaceScope`]: the one walker every snapshot uses.
//!
//! The walk never reads an ignore file (the scope froze those), never follows a link, never
//! enters a folder the scope leaves out (so `node_modules/` costs one `stat`, not a crawl),
//! and never lets one odd file stop it: a fifo, socket or device is skipped without being
//! opened for reading, an unreadable file or folder is skipped, and each is reported with a
//! reason in [`Snapshot::skipped`].

use std::path::{Component, Path};

use crate::error::Result;
use crate::objects::Batch;
use crate::scope::{EntryDecision, OutOfScope, WorkspaceScope, join_relative, normalize};
use crate::snapshot::{EntryKind, MAX_FILE_BYTES, ManifestEntry, ObjectStore, Skipped, Snapshot};

const NOT_REGULAR: &str =
    "is not a regular file (a fifo, socket or device); it was skipped without being opened";

impl WorkspaceScope {
    /// Snapshots `paths` (relative to the workspace, or absolute inside it; `.` for all of
    /// it) into `store`. Only paths in scope are stored; every path left out by name, and
    /// every file that could not be read, is listed in [`Snapshot::skipped`] with a reason.
    pub fn snapshot(&self, store: &ObjectStore, paths: &[String]) -> Result<Snapshot> {
        let mut batch = store.begin(self.workspace())?;
        let mut walker = Walker {
            scope: self,
            batch: &mut batch,
            snapshot: Snapshot::default(),
            noted_state: false,
            walked_root: false,
        };
        for raw in paths {
            walker.add(raw)?;
        }
        if walker.walked_root {
            // Ignore files the scope could not read (a fifo named `.gitignore`) are part of
            // what a whole-workspace snapshot left out.
            walker.snapshot.skipped.extend(self.notes().iter().cloned());
        }
        let mut snapshot = walker.snapshot;
        // Objects are durable before anyone can write a manifest naming them.
        snapshot.pin = batch.commit()?;
        snapshot.entries.sort_by(|a, b| a.path.cmp(&b.path));
        snapshot.entries.dedup_by(|a, b| a.path == b.path);
        Ok(snapshot)
    }
}

struct Walker<'a, 'b> {
    scope: &'a WorkspaceScope,
    batch: &'a mut Batch<'b>,
    snapshot: Snapshot,
    noted_state: bool,
    walked_root: bool,
}

impl Walker<'_, '_> {
    fn skip(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.snapshot.skipped.push(Skipped {
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn relative(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(self.scope.workspace()).ok()?;
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|component| match component {
                Component::Normal(part) => part.to_str(),
                _ => None,
            })
            .collect();
        let parts = parts?;
        if parts.is_empty() {
            return Some(".".to_owned());
        }
        Some(parts.join("/"))
    }

    /// One path named by the caller.
    fn add(&mut self, raw: &str) -> Result<()> {
        if raw.trim().is_empty() {
            self.skip(raw, "is empty");
            return Ok(());
        }
        let workspace = self.scope.workspace().to_path_buf();
        let given = Path::new(raw);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            workspace.join(given)
        };
        let lexical = normalize(&joined);
        if !lexical.starts_with(&workspace) {
            self.skip(raw, "is outside the workspace");
            return Ok(());
        }
        let metadata = match fs_err::symlink_metadata(&lexical) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.skip(raw, "does not exist");
                return Ok(());
            }
            Err(err) => {
                self.skip(raw, format!("could not be read: {}", err.kind()));
                return Ok(());
            }
        };
        // A folder on the way may itself be a link; judge the real location.
        let parent_real = match lexical.parent().map(fs_err::canonicalize) {
            Some(Ok(real)) => real,
            _ => workspace.clone(),
        };
        let real = match lexical.file_name() {
            Some(name) => parent_real.join(name),
            None => parent_real,
        };
        if !real.starts_with(&workspace) {
            self.skip(
                raw,
                "resolves outside the workspace through a symbolic link",
            );
            return Ok(());
        }
        let Some(relative) = self.relative(&real) else {
            self.skip(raw, "has a name that is not valid UTF-8");
            return Ok(());
        };
        if let Err(reason) = self.scope.check(&relative, metadata.is_dir()) {
            self.refuse(raw, reason);
            return Ok(());
        }
        let kind = metadata.file_type();
        if kind.is_symlink() {
            self.add_link(&real, relative)
        } else if kind.is_dir() {
            self.walked_root |= relative == ".";
            let inside_ignored = relative != "."
                && self.scope.decide_entry(&relative, true, false)
                    == EntryDecision::EnterForTracked;
            self.walk(&real, &relative, inside_ignored)
        } else if kind.is_file() {
            self.add_file(&real, relative, Some(metadata))
        } else {
            self.skip(relative, NOT_REGULAR);
            Ok(())
        }
    }

    fn refuse(&mut self, raw: &str, reason: OutOfScope) {
        self.skip(raw, reason.reason());
    }

    fn walk(&mut self, dir: &Path, relative: &str, inside_ignored: bool) -> Result<()> {
        let folder = if relative == "." { "" } else { relative };
        let entries = match fs_err::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.skip(relative, format!("could not be read: {}", err.kind()));
                return Ok(());
            }
        };
        // The entries are kept: a file's metadata is read through its folder's open handle
        // (`fstatat` on the folder), not by resolving its whole path again.
        let mut children: Vec<(String, std::fs::FileType, fs_err::DirEntry)> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.skip(relative, format!("could not be listed: {}", err.kind()));
                    continue;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.skip(
                    entry.path().display().to_string(),
                    "has a name that is not valid UTF-8",
                );
                continue;
            };
            match entry.file_type() {
                Ok(kind) => children.push((name, kind, entry)),
                Err(err) => self.skip(
                    join_relative(folder, &name),
                    format!("could not be read: {}", err.kind()),
                ),
            }
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind, entry) in children {
            let path = entry.path();
            let child = join_relative(folder, &name);
            match self
                .scope
                .decide_entry(&child, kind.is_dir(), inside_ignored)
            {
                EntryDecision::Out(OutOfScope::GitDir) => {}
                EntryDecision::Out(OutOfScope::StateFolder) => self.note_state(&child),
                EntryDecision::Out(OutOfScope::SecretFile) => {
                    self.skip(child, OutOfScope::SecretFile.reason());
                }
                EntryDecision::Out(OutOfScope::Ignored | OutOfScope::IgnoredAtStart) => {
                    self.snapshot.ignored += 1;
                }
                EntryDecision::EnterForTracked => self.walk(&path, &child, true)?,
                EntryDecision::In if kind.is_dir() => self.walk(&path, &child, inside_ignored)?,
                EntryDecision::In if kind.is_symlink() => self.add_link(&path, child)?,
                EntryDecision::In if kind.is_file() => {
                    let stat = entry.metadata().ok();
                    self.add_file(&path, child, stat)?;
                }
                EntryDecision::In => self.skip(child, NOT_REGULAR),
            }
        }
        Ok(())
    }

    fn note_state(&mut self, relative: &str) {
        if !self.noted_state {
            self.noted_state = true;
            self.skip(
                relative,
                "is Refinery's state folder, which is never snapshotted",
            );
        }
    }

    fn add_file(
        &mut self,
        path: &Path,
        relative: String,
        stat: Option<std::fs::Metadata>,
    ) -> Result<()> {
        match self.batch.put_file(path, stat)? {
            Ok(put) => {
                self.snapshot.new_bytes += put.added;
                self.snapshot.entries.push(ManifestEntry {
                    path: relative,
                    kind: EntryKind::File,
                    hash: put.hash,
                    size: put.size,
                    mode: put.mode,
                });
            }
            Err(unreadable) => self.skip(relative, unreadable.reason()),
        }
        Ok(())
    }

    fn add_link(&mut self, path: &Path, relative: String) -> Result<()> {
        let Ok(resolved) = fs_err::canonicalize(path) else {
            self.skip(relative, "is a symbolic link whose target does not exist");
            return Ok(());
        };
        if !resolved.starts_with(self.scope.workspace()) {
            self.skip(
                relative,
                "is a symbolic link to outside the workspace; links are never followed out",
            );
            return Ok(());
        }
        if self.scope.is_state_path(&resolved) {
            self.skip(relative, "is a symbolic link into Refinery's state folder");
            return Ok(());
        }
        let target = match fs_err::read_link(path) {
            Ok(target) => target,
            Err(err) => {
                self.skip(relative, format!("could not be read: {}", err.kind()));
                return Ok(());
            }
        };
        let Some(target_text) = target.to_str() else {
            self.skip(
                relative,
                "is a symbolic link whose target is not valid UTF-8",
            );
            return Ok(());
        };
        let (hash, size, added) = self.batch.put_bytes(target_text.as_bytes())?;
        self.snapshot.new_bytes += added;
        self.snapshot.entries.push(ManifestEntry {
            path: relative,
            kind: EntryKind::Symlink,
            hash,
            size,
            mode: 0o777,
        });
        Ok(())
    }
}

/// Why a file's bytes could not be stored (the file's problem, not the store's).
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// A fifo, socket or device, or a file that turned into one.
    NotRegular,
    /// Larger than [`MAX_FILE_BYTES`] before reading.
    TooLarge,
    /// Opening or reading failed.
    Io(std::io::ErrorKind),
}

impl Unreadable {
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::NotRegular => NOT_REGULAR.to_owned(),
            Self::TooLarge => format!("is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
            Self::Io(kind) => format!("could not be read ({kind}); it was skipped"),
        }
    }
}
