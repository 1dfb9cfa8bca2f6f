//! Durable file primitives: atomic replace, JSON read that refuses corrupt files, append-only
//! JSON lines, and an inter-process lock.
//!
//! Every state write in Refinery goes through [`write_atomic`] so a crash leaves either the old
//! or the new file, never a torn one; and every read goes through [`read_json`] so a file we
//! cannot parse is an error naming it, never a silent reset (a known MassGen defect).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary sibling file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|source| annotate(&source, "create a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(|source| annotate(&source, "write", temp.path()))?;
    temp.as_file()
        .sync_data()
        .map_err(|source| annotate(&source, "sync", temp.path()))?;
    temp.persist(path)
        .map_err(|err| annotate(&err.error, "rename a temporary file onto", path))?;
    sync_dir(dir)
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a JSON file; `Ok(None)` when it does not exist, an error naming the file when it
/// cannot be parsed.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs_err::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| Error::CorruptFile {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })
}

/// Appends one JSON value as a line. The caller holds the session lock, so lines never
/// interleave; one `write_all` of a whole line keeps a crash from tearing earlier lines.
pub(crate) fn append_json_line<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)?;
    file.sync_data()?;
    Ok(())
}

/// Reads every line of a JSON-lines file; a line that does not parse is an error naming the
/// file and the line number.
pub(crate) fn read_json_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|err| Error::CorruptFile {
                path: path.to_path_buf(),
                reason: format!("line {}: {err}", index + 1),
            })
        })
        .collect()
}

fn sync_dir(dir: &Path) -> Result<()> {
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
    fn open(path: &Path) -> Result<std::fs::File> {
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
    fn json_lines_report_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append_json_line(&path, &serde_json::json!({"n": 1})).unwrap();
        fs_err::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{oops\n")
            .unwrap();
        let err = read_json_lines::<serde_json::Value>(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
