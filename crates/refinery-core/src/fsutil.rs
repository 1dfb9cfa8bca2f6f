//! Durable file primitives: atomic replace, a JSON read that refuses corrupt files, and an
//! inter-process lock (the session journal's appends are in `crate::journal`).
//!
//! Every state write in Refinery goes through [`write_atomic`] so a crash leaves either the old
//! or the new file, never a torn one; and every read goes through [`read_json`] so a file we
//! cannot parse is an error naming it, never a silent reset (a known MassGen defect).
//!
//! State writes are also where secrets are stopped: [`write_atomic`], [`write_json`] and the
//! journal's line appends pass their text through the process scrubber
//! ([`refinery_secrets::process_scrubber`]), so a key in a task, a criterion, a judge's reply
//! or a command's output is stored as `[REDACTED…]`. A file whose bytes must be exactly what was
//! asked — a builder writing into the user's workspace — uses [`write_atomic_exact`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use refinery_secrets::JsonStyle;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically, with every secret masked (see the module docs): the
/// writer for state files.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_exact(
        path,
        &refinery_secrets::process_scrubber().scrub_bytes(bytes),
    )
}

/// Writes `bytes` to `path` through a temporary sibling file, fsync and rename, unchanged: for
/// user files only (never state, which goes through [`write_atomic`]).
pub fn write_atomic_exact(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes, Durability::Synced)
}

/// Whether a replacement survives a power loss, or only a crash of the process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The bytes and the new name are synced before returning.
    Synced,
    /// Atomic (old or new, never half), not synced.
    Unsynced,
}

/// Replaces `path` with `bytes` through a temporary sibling file and a rename.
fn replace_file(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|source| annotate(&source, "create a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(|source| annotate(&source, "write", temp.path()))?;
    if durability != Durability::Unsynced {
        temp.as_file()
            .sync_data()
            .map_err(|source| annotate(&source, "sync", temp.path()))?;
    }
    temp.persist(path)
        .map_err(|err| annotate(&err.error, "rename a temporary file onto", path))?;
    match durability {
        Durability::Synced => sync_dir(dir),
        Durability::Unsynced => Ok(()),
    }
}

/// Writes a record kept for people (a brief as sent, an event log, a copy of a file kept
/// elsewhere) atomically and scrubbed like [`write_atomic`], but without syncing: nothing
/// resumes from it, so a power loss may cost the record, never a run's consistency. State a
/// run or a resume reads goes through [`write_atomic`].
pub fn write_record(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(
        path,
        &refinery_secrets::process_scrubber().scrub_bytes(bytes),
        Durability::Unsynced,
    )
}

/// Serializes `value` as pretty JSON, masks every secret in its strings, and writes it
/// atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic_exact(path, scrubbed_json(value)?.as_bytes())
}

/// [`write_json`] without its syncs (atomic only): a cache the journal rebuilds, or JSON kept
/// for people next to a durable source of the same record (see [`crate::latest`]). A power
/// loss may cost the file, never a run's consistency.
pub fn write_json_record<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    replace_file(path, scrubbed_json(value)?.as_bytes(), Durability::Unsynced)
}

/// `value` as one line of compact JSON with every secret in its strings masked, no newline:
/// a journal record or a log line of [`crate::latest`].
pub(crate) fn scrubbed_json_line<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let text = serde_json::to_string(value).map_err(std::io::Error::other)?;
    Ok(refinery_secrets::process_scrubber()
        .scrub_json_text(&text, JsonStyle::Compact)
        .into_owned())
}

/// `value` as pretty JSON with every secret in its strings masked and a final newline: the
/// text of every JSON state file, whichever way it is then written.
pub(crate) fn scrubbed_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let mut text = refinery_secrets::process_scrubber()
        .scrub_json_text(&text, JsonStyle::Pretty)
        .into_owned();
    text.push('\n');
    Ok(text)
}

/// Reads a JSON file; `Ok(None)` when it does not exist, an error naming the file when it
/// cannot be parsed.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    read_if_exists(path)?
        .map(|bytes| parse_json(path, &bytes))
        .transpose()
}

/// A file's bytes; `Ok(None)` when it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// `bytes`, read from `path`, parsed as JSON; an error naming the file when they cannot be.
pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
thread_local! {
    /// Folders synced on this thread, in order, for the tests of which writes sync which.
    static FOLDER_SYNCS: std::cell::RefCell<Vec<std::path::PathBuf>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// How many folder syncs this thread has made, for tests of which writes make one.
#[cfg(test)]
pub(crate) fn folder_syncs() -> usize {
    FOLDER_SYNCS.with(|synced| synced.borrow().len())
}

/// The folders this thread has synced, in order.
#[cfg(test)]
pub(crate) fn synced_folders() -> Vec<std::path::PathBuf> {
    FOLDER_SYNCS.with(|synced| synced.borrow().clone())
}

/// Makes the renames into `dir` durable (every state folder and the object store).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(test)]
    FOLDER_SYNCS.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    // Directory fsync makes the rename itself durable; not all platforms allow opening a
    // directory, so only Unix does it.
    #[cfg(unix)]
    {
        fs_err::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn annotate(source: &std::io::Error, action: &str, path: &Path) -> Error {
    let kind = source.kind();
    Error::Io(std::io::Error::new(
        kind,
        format!("failed to {action} `{}`: {source}", path.display()),
    ))
}

/// An exclusive inter-process lock held until dropped.
///
/// Lock files are never deleted: deleting one while another process waits on it would let two
/// holders in at once.
#[derive(Debug)]
pub struct LockGuard {
    file: std::fs::File,
    path: PathBuf,
}

impl LockGuard {
    /// Opens (creating if needed) a lock file without locking it; the object store takes
    /// shared locks on one too.
    pub(crate) fn open(path: &Path) -> Result<std::fs::File> {
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        Ok(fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?
            .into_parts()
            .0)
    }

    /// Takes the lock at `path` only if nobody holds it; `Ok(None)` when somebody does.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let file = Self::open(path)?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Some(Self {
                file,
                path: path.to_path_buf(),
            })),
            Ok(false) => Ok(None),
            Err(source) => Err(annotate(&source, "lock", path)),
        }
    }

    /// Blocks until the lock at `path` is ours.
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let file = Self::open(path)?;
        file.lock_exclusive()
            .map_err(|source| annotate(&source, "lock", path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking explicitly just makes it
        // prompt. A failure here cannot be reported from drop and is harmless.
        if let Err(err) = FileExt::unlock(&self.file) {
            let _ = (err, &self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs_err::write(&path, b"{not json").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("state.json"), "{message}");
        assert!(message.contains("never reset"), "{message}");
        // And the file is left as it was.
        assert_eq!(fs_err::read(&path).unwrap(), b"{not json");
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let value: Option<serde_json::Value> = read_json(&dir.path().join("nope.json")).unwrap();
        assert!(value.is_none());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json(&path, &serde_json::json!({"a": 2})).unwrap();
        let value: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(value, serde_json::json!({"a": 2}));
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn state_writes_mask_secrets_and_exact_writes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        // Assembled at run time: a GitHub token shape and an unrelated loaded value.
        let token = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
        let loaded = ["core-fsutil-", "loaded-value-77"].concat();
        refinery_secrets::remember_secrets([loaded.as_str()]);
        let json = dir.path().join("a.json");
        write_json(
            &json,
            &serde_json::json!({"task": format!("use {token} and {loaded}")}),
        )
        .unwrap();
        let text = fs_err::read_to_string(&json).unwrap();
        assert!(!text.contains(&token) && !text.contains(&loaded), "{text}");
        let value: serde_json::Value = read_json(&json).unwrap().unwrap();
        assert_eq!(value["task"], "use [REDACTED:github-pat] and [REDACTED]");
        let lines = dir.path().join("events.jsonl");
        let line = crate::journal::Journal::encode(&serde_json::json!({"t": token})).unwrap();
        crate::journal::Journal::new(lines.clone())
            .append(&line, &crate::journal::Mark::default())
            .unwrap();
        assert!(!fs_err::read_to_string(&lines).unwrap().contains(&token));
        let plain = dir.path().join("notes.md");
        write_atomic(&plain, format!("key {loaded}\n").as_bytes()).unwrap();
        assert_eq!(fs_err::read_to_string(&plain).unwrap(), "key [REDACTED]\n");
        let user = dir.path().join("user.txt");
        write_atomic_exact(&user, token.as_bytes()).unwrap();
        assert_eq!(fs_err::read_to_string(&user).unwrap(), token);
    }

    #[test]
    fn manifests_with_digests_are_not_touched_by_the_scrubber() {
        use std::fmt::Write as _;

        // Content hashes are 64 hex digits: no rule may take one for a secret, or a restore
        // would fail on a damaged manifest.
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        let mut state = 0x1234_5678_9abc_def0_u64;
        for index in 0..2000 {
            let mut hash = String::new();
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let _ = write!(hash, "{state:016x}");
            }
            entries.push(serde_json::json!({"path": format!("src/file_{index}.rs"), "hash": hash, "size": index}));
        }
        let value = serde_json::Value::Array(entries);
        let path = dir.path().join("manifest.json");
        write_json(&path, &value).unwrap();
        let back: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(back, value);
    }
}
