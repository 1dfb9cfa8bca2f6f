//! Content-addressed snapshots of a workspace.
//!
//! Each file is stored once under `objects/<2 hex>/<62 hex>` (SHA-256 of its bytes), shared by
//! every round of every session, so an unchanged file adds no bytes. A round keeps a manifest
//! of relative path → hash, size and mode, and can be restored to any directory.
//!
//! Fixes for MassGen's copy-to-basename snapshots: relative paths are kept (so `src/index.html`
//! and `dist/index.html` stay apart); `.` or any ancestor of the state folder works because the
//! state folder is never walked; symbolic links are never followed — a link that resolves
//! inside the workspace is stored as a link, one that leaves it is refused with a reason.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

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
    /// Files left out by `.gitignore` / `.ignore` rules while walking folders.
    pub ignored: u64,
    /// Bytes this snapshot added to the object store (0 when nothing changed).
    pub new_bytes: u64,
}

impl Snapshot {
    /// Total size of the stored entries.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }
}

/// The shared content-addressed store.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    dir: PathBuf,
}

impl ObjectStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where objects live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn object_path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(&hash[2..])
    }

    /// Stores a file's bytes; returns `(hash, size, bytes added)`.
    fn put_file(&self, path: &Path) -> Result<(String, u64, u64)> {
        let (hash, size) = hash_reader(fs_err::File::open(path)?)?;
        if self.object_path(&hash).exists() {
            return Ok((hash, size, 0));
        }
        // Copy while hashing again: if the file changed since the first read, the object is
        // filed under the hash of what was actually copied.
        let mut source = fs_err::File::open(path)?;
        self.write_object(|sink| copy_hashing(&mut source, sink))
    }

    fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64, u64)> {
        let hash = hex::encode(Sha256::digest(bytes));
        if self.object_path(&hash).exists() {
            return Ok((hash, bytes.len() as u64, 0));
        }
        self.write_object(|sink| {
            sink.write_all(bytes)?;
            Ok((hash.clone(), bytes.len() as u64))
        })
    }

    fn write_object(
        &self,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<(String, u64)>,
    ) -> Result<(String, u64, u64)> {
        fs_err::create_dir_all(&self.dir)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)?;
        let (hash, size) = fill(temp.as_file_mut())?;
        temp.as_file().sync_data()?;
        let target = self.object_path(&hash);
        if target.exists() {
            return Ok((hash, size, 0));
        }
        fs_err::create_dir_all(self.dir.join(&hash[..2]))?;
        set_mode(temp.path(), 0o444)?;
        temp.persist(&target).map_err(|err| err.error)?;
        Ok((hash, size, size))
    }

    /// Copies an object to `dest`, checking its hash on the way.
    fn copy_out(&self, hash: &str, dest: &mut impl Write) -> Result<u64> {
        let damaged = || Error::DamagedObject {
            hash: hash.to_owned(),
            objects_dir: self.dir.clone(),
        };
        if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(damaged());
        }
        let mut source = fs_err::File::open(self.object_path(hash)).map_err(|_| damaged())?;
        let (actual, size) = copy_hashing(&mut source, dest)?;
        if actual != hash {
            return Err(damaged());
        }
        Ok(size)
    }

    /// The bytes of one stored object.
    pub fn read_object(&self, hash: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.copy_out(hash, &mut bytes)?;
        Ok(bytes)
    }
}

fn hash_reader(mut reader: impl Read) -> Result<(String, u64)> {
    let (hash, size) = copy_hashing(&mut reader, &mut std::io::sink())?;
    Ok((hash, size))
}

fn copy_hashing(source: &mut impl Read, sink: &mut impl Write) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let read = source.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        sink.write_all(&buffer[..read])?;
        total += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Removes `.` and resolves `..` without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

struct Walker<'a> {
    store: &'a ObjectStore,
    workspace: PathBuf,
    excluded: Vec<PathBuf>,
    snapshot: Snapshot,
    noted_excluded: bool,
}

impl Walker<'_> {
    fn skip(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.snapshot.skipped.push(Skipped {
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn relative(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.workspace).ok()?;
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

    fn is_excluded(&self, path: &Path) -> bool {
        self.excluded
            .iter()
            .any(|excluded| path.starts_with(excluded))
    }

    fn add(&mut self, raw: &str) -> Result<()> {
        if raw.trim().is_empty() {
            self.skip(raw, "is empty");
            return Ok(());
        }
        let given = Path::new(raw);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.workspace.join(given)
        };
        let lexical = normalize(&joined);
        if !lexical.starts_with(&self.workspace) {
            self.skip(raw, "is outside the workspace");
            return Ok(());
        }
        let metadata = match fs_err::symlink_metadata(&lexical) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.skip(raw, "does not exist");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if self.is_excluded(&lexical) {
            self.skip(
                raw,
                "is inside Refinery's state folder, which is never snapshotted",
            );
            return Ok(());
        }
        // A folder on the way may itself be a link; judge the real location.
        let parent_real = match lexical.parent().map(fs_err::canonicalize) {
            Some(Ok(real)) => real,
            _ => self.workspace.clone(),
        };
        let real = match lexical.file_name() {
            Some(name) => parent_real.join(name),
            None => parent_real,
        };
        if !real.starts_with(&self.workspace) {
            self.skip(
                raw,
                "resolves outside the workspace through a symbolic link",
            );
            return Ok(());
        }
        if metadata.file_type().is_symlink() {
            return self.add_link(&real);
        }
        if metadata.is_dir() {
            return self.walk(&real);
        }
        self.add_file(&real, &metadata)
    }

    fn add_file(&mut self, path: &Path, metadata: &std::fs::Metadata) -> Result<()> {
        let Some(relative) = self.relative(path) else {
            self.skip(
                path.display().to_string(),
                "has a name that is not valid UTF-8",
            );
            return Ok(());
        };
        if !metadata.is_file() {
            self.skip(relative, "is not a regular file");
            return Ok(());
        }
        if metadata.len() > MAX_FILE_BYTES {
            self.skip(
                relative,
                format!("is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
            );
            return Ok(());
        }
        let (hash, size, added) = self.store.put_file(path)?;
        self.snapshot.new_bytes += added;
        self.snapshot.entries.push(ManifestEntry {
            path: relative,
            kind: EntryKind::File,
            hash,
            size,
            mode: mode_of(metadata),
        });
        Ok(())
    }

    fn add_link(&mut self, path: &Path) -> Result<()> {
        let Some(relative) = self.relative(path) else {
            self.skip(
                path.display().to_string(),
                "has a name that is not valid UTF-8",
            );
            return Ok(());
        };
        let Ok(resolved) = fs_err::canonicalize(path) else {
            self.skip(relative, "is a symbolic link whose target does not exist");
            return Ok(());
        };
        if !resolved.starts_with(&self.workspace) {
            self.skip(
                relative,
                "is a symbolic link to outside the workspace; links are never followed out",
            );
            return Ok(());
        }
        if self.is_excluded(&resolved) {
            self.skip(relative, "is a symbolic link into Refinery's state folder");
            return Ok(());
        }
        let target = fs_err::read_link(path)?;
        let Some(target_text) = target.to_str() else {
            self.skip(
                relative,
                "is a symbolic link whose target is not valid UTF-8",
            );
            return Ok(());
        };
        let (hash, size, added) = self.store.put_bytes(target_text.as_bytes())?;
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

    fn walk(&mut self, root: &Path) -> Result<()> {
        let excluded = self.excluded.clone();
        let walk = ignore::WalkBuilder::new(root)
            .hidden(false)
            .parents(true)
            .ignore(true)
            .git_ignore(true)
            .git_global(false)
            .git_exclude(true)
            .require_git(false)
            .follow_links(false)
            .sort_by_file_name(std::cmp::Ord::cmp)
            .filter_entry(move |entry| keep_entry(entry, &excluded))
            .build();
        let mut seen = 0u64;
        // The filter above hides the state folder; say so once if the walk covered it.
        let covered = self
            .excluded
            .iter()
            .find(|path| path.starts_with(root) && path.exists())
            .cloned();
        if let Some(excluded) = covered.filter(|_| !self.noted_excluded) {
            let shown = self.relative(&excluded).unwrap_or_default();
            self.skip(
                shown,
                "is Refinery's state folder, which is never snapshotted",
            );
            self.noted_excluded = true;
        }
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.skip(
                        root.display().to_string(),
                        format!("could not be read: {err}"),
                    );
                    continue;
                }
            };
            let Some(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                continue;
            }
            seen += 1;
            let path = entry.path().to_path_buf();
            if kind.is_symlink() {
                self.add_link(&path)?;
            } else {
                let metadata = fs_err::symlink_metadata(&path)?;
                self.add_file(&path, &metadata)?;
            }
        }
        self.snapshot.ignored += count_all_files(root, &self.excluded).saturating_sub(seen);
        Ok(())
    }
}

/// Counts the files under `root` with no ignore rules applied (still without `.git` and the
/// excluded folders), so the result can say how many the rules left out.
fn count_all_files(root: &Path, excluded: &[PathBuf]) -> u64 {
    let excluded = excluded.to_vec();
    ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(move |entry| keep_entry(entry, &excluded))
        .build()
        .filter_map(std::result::Result::ok)
        .filter(|entry| entry.file_type().is_some_and(|kind| !kind.is_dir()))
        .count() as u64
}

fn keep_entry(entry: &ignore::DirEntry, excluded: &[PathBuf]) -> bool {
    let is_git_dir =
        entry.file_name() == ".git" && entry.file_type().is_some_and(|kind| kind.is_dir());
    !is_git_dir && !excluded.iter().any(|path| entry.path() == path)
}

/// Snapshots `paths` (relative to `workspace`, or absolute inside it) into `store`.
///
/// `excluded` folders (the state folder) are never entered. Folders are walked with
/// `.gitignore` rules applied and `.git` left out; explicitly named files are always taken.
pub fn take_snapshot(
    store: &ObjectStore,
    workspace: &Path,
    excluded: &[PathBuf],
    paths: &[String],
) -> Result<Snapshot> {
    let workspace = fs_err::canonicalize(workspace)?;
    let excluded = excluded
        .iter()
        .map(|path| fs_err::canonicalize(path).unwrap_or_else(|_| normalize(path)))
        .collect();
    let mut walker = Walker {
        store,
        workspace,
        excluded,
        snapshot: Snapshot::default(),
        noted_excluded: false,
    };
    for raw in paths {
        walker.add(raw)?;
    }
    let mut snapshot = walker.snapshot;
    snapshot.entries.sort_by(|a, b| a.path.cmp(&b.path));
    snapshot.entries.dedup_by(|a, b| a.path == b.path);
    Ok(snapshot)
}

/// Writes every entry under `dest`, byte-identical to when it was taken.
///
/// Paths are checked again (a manifest on disk could have been edited): an absolute path or
/// one with `..` is an error, so a restore can never write outside `dest`.
pub fn restore(store: &ObjectStore, entries: &[ManifestEntry], dest: &Path) -> Result<()> {
    fs_err::create_dir_all(dest)?;
    for entry in entries {
        let relative = Path::new(&entry.path);
        let safe = relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        if !safe || entry.path.is_empty() {
            return Err(Error::BadPath {
                path: entry.path.clone(),
                reason: "in a manifest is not a plain relative path; the manifest was altered"
                    .to_owned(),
            });
        }
        let target = dest.join(relative);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        match entry.kind {
            EntryKind::File => {
                let parent = target.parent().unwrap_or(dest);
                let mut temp = tempfile::Builder::new()
                    .prefix(".restore-")
                    .tempfile_in(parent)?;
                store.copy_out(&entry.hash, temp.as_file_mut())?;
                set_mode(temp.path(), entry.mode)?;
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
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    if metadata.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, link: &Path) -> Result<()> {
    fs_err::os::unix::fs::symlink(target, link)?;
    Ok(())
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, link: &Path) -> Result<()> {
    Err(Error::BadPath {
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
