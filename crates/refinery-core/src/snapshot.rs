//! Content-addressed snapshots of a workspace.
//!
//! Each file is stored once under its SHA-256, packed with the snapshot's other small files
//! or alone when large (see [`crate::objects`] for the layout and how writes are made
//! durable), shared by every round
//! of every session, so an unchanged file adds no bytes. A round keeps a manifest of relative
//! path → hash, size and mode, and can be restored to any directory. A file unchanged since it
//! was last hashed is not even read (see [`crate::statcache`]).
//!
//! Fixes for MassGen's copy-to-basename snapshots: relative paths are kept (so `src/index.html`
//! and `dist/index.html` stay apart); `.` or any ancestor of the state folder works because the
//! state folder is never walked; symbolic links are never followed — a link that resolves
//! inside the workspace is stored as a link, one that leaves it is refused with a reason.
//!
//! Which paths are taken is decided by a [`WorkspaceScope`] (see [`crate::scope`]); this
//! module keeps the bytes. Restores live in [`crate::restore`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use crate::objects::is_hash;
pub use crate::objects::{ObjectPin, ObjectStore, SweepReport};

use crate::error::Result;
use crate::restore::RestoreMode;
use crate::scope::WorkspaceScope;

/// Files larger than this are skipped with a reason rather than copied into the store.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// What a manifest entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file; the object holds its bytes.
    File,
    /// A symbolic link inside the workspace; the object holds the link's target text.
    Symlink,
}

/// One stored path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the workspace root, `/`-separated.
    pub path: String,
    /// File or link.
    pub kind: EntryKind,
    /// SHA-256 of the content, hex.
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits (`0o644`, `0o755`; links `0o777`).
    pub mode: u32,
}

/// A path that was not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The path as given or found.
    pub path: String,
    /// Why it was left out.
    pub reason: String,
}

/// The result of snapshotting a list of paths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Stored entries, sorted by path.
    pub entries: Vec<ManifestEntry>,
    /// Paths left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Paths the scope's ignore rules left out while walking folders (an ignored folder
    /// counts once: it is never entered).
    pub ignored: u64,
    /// Bytes this snapshot added to the object store (0 when nothing changed).
    pub new_bytes: u64,
    /// Keeps the store from being swept while the snapshot is held: keep the snapshot until
    /// the manifest that references its objects is written (see [`crate::objects`]).
    #[serde(skip)]
    pub pin: ObjectPin,
}

impl Snapshot {
    /// Total size of the stored entries.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }
}

/// Snapshots `paths` (relative to `workspace`, or absolute inside it) into `store`, with a
/// scope taken from the workspace's ignore files as they are now.
///
/// `excluded` folders (the state folder) are never entered; `.git` and `.env*` never enter a
/// snapshot. A run should fix its scope once instead ([`WorkspaceScope`], kept with the
/// session) so that ignore-file edits during the run cannot widen it; this function is for
/// one-off snapshots.
pub fn take_snapshot(
    store: &ObjectStore,
    workspace: &Path,
    excluded: &[PathBuf],
    paths: &[String],
) -> Result<Snapshot> {
    WorkspaceScope::from_walk(workspace, excluded)?.snapshot(store, paths)
}

/// Writes every entry under `dest`, byte-identical to when it was taken, over any
/// same-named file already there (other files are left alone).
///
/// The manifest is checked first (a manifest on disk could have been edited): a path that
/// is not a plain relative one, a link whose target leaves `dest`, or a missing object stops
/// the restore before anything is written; and nothing is ever written through a symbolic
/// link already in `dest`. See [`crate::restore::restore_into`].
pub fn restore(store: &ObjectStore, entries: &[ManifestEntry], dest: &Path) -> Result<()> {
    crate::restore::restore_into(store, entries, dest, RestoreMode::Overwrite)
}

#[cfg(unix)]
pub(crate) fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o777
}

#[cfg(not(unix))]
pub(crate) fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    if metadata.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
pub(crate) fn make_symlink(target: &str, link: &Path) -> Result<()> {
    fs_err::os::unix::fs::symlink(target, link)?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn make_symlink(_target: &str, link: &Path) -> Result<()> {
    Err(crate::error::Error::BadPath {
        path: link.display().to_string(),
        reason: "is a symbolic link, which this platform cannot restore".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _root: tempfile::TempDir,
        workspace: PathBuf,
        state: PathBuf,
        store: ObjectStore,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let workspace = fs_err::canonicalize(root.path()).unwrap().join("ws");
        let state = workspace.join(".refinery");
        fs_err::create_dir_all(&state).unwrap();
        let store = ObjectStore::new(state.join("objects"));
        Fixture {
            _root: root,
            workspace,
            state,
            store,
        }
    }

    fn write(path: &Path, text: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    fn snap(f: &Fixture, paths: &[&str]) -> Snapshot {
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        take_snapshot(
            &f.store,
            &f.workspace,
            std::slice::from_ref(&f.state),
            &paths,
        )
        .unwrap()
    }

    fn paths(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn same_named_files_stay_apart() {
        let f = fixture();
        write(&f.workspace.join("src/index.html"), "source");
        write(&f.workspace.join("dist/index.html"), "built");
        let snapshot = snap(&f, &["src", "dist/index.html"]);
        assert_eq!(paths(&snapshot), vec!["dist/index.html", "src/index.html"]);
        assert_ne!(snapshot.entries[0].hash, snapshot.entries[1].hash);
    }

    #[test]
    fn dot_takes_the_workspace_without_the_state_folder() {
        let f = fixture();
        write(&f.workspace.join("a.txt"), "a");
        write(&f.state.join("sessions/x/state.json"), "{}");
        let first = snap(&f, &["."]);
        let second = snap(&f, &["."]);
        assert_eq!(paths(&first), vec!["a.txt"]);
        assert_eq!(paths(&second), vec!["a.txt"]);
        assert!(
            first
                .skipped
                .iter()
                .any(|s| s.reason.contains("state folder"))
        );
        assert_eq!(second.new_bytes, 0);
    }

    #[test]
    fn outside_missing_and_state_paths_are_skipped_with_reasons() {
        let f = fixture();
        write(&f.workspace.join("src/a.txt"), "a");
        let snapshot = snap(
            &f,
            &[
                "src/a.txt",
                "../x",
                "/etc/passwd",
                "missing",
                ".refinery/objects",
                "",
            ],
        );
        assert_eq!(paths(&snapshot), vec!["src/a.txt"]);
        let reasons: Vec<(&str, &str)> = snapshot
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == "../x" && r.contains("outside"))
        );
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == "/etc/passwd" && r.contains("outside"))
        );
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == "missing" && r.contains("does not exist"))
        );
        assert!(
            reasons
                .iter()
                .any(|(p, r)| *p == ".refinery/objects" && r.contains("state folder"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_out_are_refused_links_in_are_kept() {
        let f = fixture();
        let outside = f.workspace.parent().unwrap().join("secret.txt");
        write(&outside, "do not copy");
        write(&f.workspace.join("dir/real.txt"), "inside");
        std::os::unix::fs::symlink(&outside, f.workspace.join("dir/out-link")).unwrap();
        std::os::unix::fs::symlink("real.txt", f.workspace.join("dir/in-link")).unwrap();
        std::os::unix::fs::symlink(&outside, f.workspace.join("top-link")).unwrap();
        std::os::unix::fs::symlink(f.workspace.parent().unwrap(), f.workspace.join("updir"))
            .unwrap();
        let snapshot = snap(&f, &["dir", "top-link", "updir/secret.txt"]);
        assert_eq!(paths(&snapshot), vec!["dir/in-link", "dir/real.txt"]);
        assert_eq!(snapshot.entries[0].kind, EntryKind::Symlink);
        let refused: Vec<&str> = snapshot.skipped.iter().map(|s| s.path.as_str()).collect();
        assert!(refused.contains(&"dir/out-link"), "{refused:?}");
        assert!(refused.contains(&"top-link"), "{refused:?}");
        assert!(refused.contains(&"updir/secret.txt"), "{refused:?}");
        // Nothing from outside reached the store.
        let stored: Vec<Vec<u8>> = snapshot
            .entries
            .iter()
            .map(|e| f.store.read_object(&e.hash).unwrap())
            .collect();
        assert!(!stored.iter().any(|bytes| bytes == b"do not copy"));
    }

    #[test]
    fn gitignore_is_honoured_and_git_folder_left_out() {
        let f = fixture();
        write(&f.workspace.join(".gitignore"), "node_modules/\n");
        write(&f.workspace.join("node_modules/x/index.js"), "x");
        write(&f.workspace.join(".git/HEAD"), "ref");
        write(&f.workspace.join("app.js"), "app");
        let snapshot = snap(&f, &["."]);
        assert_eq!(paths(&snapshot), vec![".gitignore", "app.js"]);
        assert_eq!(snapshot.ignored, 1);
    }

    #[cfg(unix)]
    #[test]
    fn restore_is_byte_identical_with_modes_and_links() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = fixture();
        write(&f.workspace.join("bin/run.sh"), "#!/bin/sh\necho hi\n");
        fs_err::set_permissions(
            f.workspace.join("bin/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        fs_err::write(f.workspace.join("data.bin"), &binary).unwrap();
        std::os::unix::fs::symlink("data.bin", f.workspace.join("alias")).unwrap();
        let snapshot = snap(&f, &["."]);
        let dest = f.workspace.parent().unwrap().join("restored");
        restore(&f.store, &snapshot.entries, &dest).unwrap();
        assert_eq!(fs_err::read(dest.join("data.bin")).unwrap(), binary);
        assert_eq!(
            fs_err::read_to_string(dest.join("bin/run.sh")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        let mode = fs_err::metadata(dest.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            fs_err::read_link(dest.join("alias")).unwrap(),
            Path::new("data.bin")
        );
    }

    #[test]
    fn restore_refuses_escaping_manifests_and_damaged_objects() {
        let f = fixture();
        write(&f.workspace.join("a.txt"), "a");
        let mut snapshot = snap(&f, &["a.txt"]);
        let dest = f.workspace.parent().unwrap().join("out");
        let mut evil = snapshot.entries[0].clone();
        evil.path = "../escape.txt".into();
        assert!(restore(&f.store, &[evil], &dest).is_err());
        assert!(!f.workspace.parent().unwrap().join("escape.txt").exists());
        snapshot.entries[0].hash = "0".repeat(64);
        let err = restore(&f.store, &snapshot.entries, &dest).unwrap_err();
        assert!(err.to_string().contains("missing or damaged"), "{err}");
    }

    #[test]
    fn unchanged_files_add_no_bytes_and_changes_add_only_themselves() {
        let f = fixture();
        write(&f.workspace.join("a.txt"), &"a".repeat(10_000));
        write(&f.workspace.join("b.txt"), &"b".repeat(10_000));
        let first = snap(&f, &["."]);
        assert_eq!(first.new_bytes, 20_000);
        write(&f.workspace.join("b.txt"), &"c".repeat(5_000));
        let second = snap(&f, &["."]);
        assert_eq!(second.new_bytes, 5_000);
    }
}
