//! A session's journal (`events.jsonl`): the one source of truth for what a session did.
//!
//! Every write operation of the store is one JSON line appended here, under the session's
//! lock, and made durable with one `fdatasync` before the caller gets its reply. Everything
//! else in a session folder that the journal describes (`state.json`, `criteria.json`,
//! `round_NNN/plan.json`, `session.json`) is a cache derived from it and rebuilt when it is
//! missing, stale or damaged, so a crash between two files can never leave them disagreeing.
//!
//! **Group commit.** A writer appends under the session lock and releases it *before* it
//! syncs, so the next writer can append meanwhile. The sync itself runs under a second lock
//! (`.sync-lock`), whose file holds how many journal bytes the last sync covered: a writer
//! whose bytes a later sync already covered (another process synced after appending its own
//! record) skips its own. Every caller still returns only after a sync that started after its
//! record was written, so durability-before-reply holds for each one.
//!
//! **Torn records.** A crash mid-append can leave a final line without its newline, or one
//! that does not parse. Readers ignore such a tail (it was never acknowledged: the sync comes
//! after the append); the next writer copies its bytes to `events.jsonl.torn-<offset>` and
//! truncates it off before appending. A line that does not parse anywhere *before* the end
//! is damage, not a crash, and is an error naming the file and byte offset: never skipped.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::sync_dir;

/// The file next to the journal whose lock serialises syncs and whose bytes say how much of
/// the journal the last sync covered.
const SYNC_LOCK: &str = ".sync-lock";

/// One session's journal file.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    path: PathBuf,
}

/// One complete record and the byte offset where its line starts.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub offset: u64,
    pub value: Value,
}

/// The journal read from start to end.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every complete record, in order.
    pub entries: Vec<Entry>,
    /// Where the complete records end (the length the journal should have).
    pub mark: Mark,
    /// The offset of a torn final record, if the journal ends in one.
    pub torn: Option<u64>,
}

/// Where a journal ended when a cache was derived from it: the cache is fresh only while the
/// journal still has exactly this length and this last record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// Length in bytes.
    pub bytes: u64,
    /// How many records.
    pub records: u64,
    /// Where the last record starts.
    pub last: u64,
    /// SHA-256 of the last record's line, hex (empty for an empty journal).
    pub tail: String,
}

/// What an append left for [`Journal::make_durable`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended {
    /// The journal's length after the record.
    end: u64,
}

impl Journal {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every record. A torn final record is reported, not returned; damage before the
    /// end is an error naming the file and the byte offset.
    pub(crate) fn scan(&self) -> Result<Scan> {
        let bytes = match fs_err::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
            Err(err) => return Err(err.into()),
        };
        let mut scan = Scan::default();
        let mut start = 0_usize;
        let mut line_number = 0_usize;
        while start < bytes.len() {
            line_number += 1;
            let rest = &bytes[start..];
            let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
                // No newline: the append never finished.
                scan.torn = Some(start as u64);
                break;
            };
            let line = &rest[..newline];
            let next = start + newline + 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<Value>(line) {
                    Ok(value) if value.is_object() => {
                        // The tail's digest is taken once, after the loop: only the last
                        // record's counts, and hashing every line would hash the journal.
                        scan.mark = Mark {
                            bytes: next as u64,
                            records: scan.mark.records + 1,
                            last: start as u64,
                            tail: String::new(),
                        };
                        scan.entries.push(Entry {
                            offset: start as u64,
                            value,
                        });
                    }
                    parsed => {
                        let reason = match parsed {
                            Ok(_) => "not a JSON object".to_owned(),
                            Err(err) => err.to_string(),
                        };
                        if bytes[next..].iter().all(u8::is_ascii_whitespace) {
                            scan.torn = Some(start as u64);
                            break;
                        }
                        return Err(self.damaged(start as u64, line_number, &reason));
                    }
                }
            }
            // A blank line is harmless and skipped; we never write one, so a journal that
            // ends in one just never matches a cache and is read in full.
            start = next;
        }
        if scan.mark.records > 0 {
            let last = usize::try_from(scan.mark.last).unwrap_or(usize::MAX);
            let end = usize::try_from(scan.mark.bytes).unwrap_or(usize::MAX);
            if let Some(line) = bytes.get(last..end.saturating_sub(1)) {
                scan.mark.tail = digest(line);
            }
        }
        Ok(scan)
    }

    /// Whether the journal still ends where `mark` says, with the same last record: the cheap
    /// check that lets a cache be used without reading the whole journal.
    pub(crate) fn matches(&self, mark: &Mark) -> Result<bool> {
        let mut file = match fs_err::File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(mark.bytes == 0),
            Err(err) => return Err(err.into()),
        };
        if file.metadata()?.len() != mark.bytes {
            return Ok(false);
        }
        if mark.records == 0 {
            return Ok(mark.tail.is_empty());
        }
        let Some(length) = mark.bytes.checked_sub(mark.last) else {
            return Ok(false);
        };
        let Ok(length) = usize::try_from(length) else {
            return Ok(false);
        };
        let mut tail = vec![0; length];
        file.seek(SeekFrom::Start(mark.last))?;
        file.read_exact(&mut tail)?;
        // The line without its newline, as `scan` hashed it.
        let line = tail.strip_suffix(b"\n").unwrap_or(&tail);
        Ok(digest(line) == mark.tail)
    }

    /// Copies a torn final record's bytes beside the journal and cuts them off, so the next
    /// record starts on a clean line. The caller holds the session lock.
    pub(crate) fn set_aside(&self, torn: u64) -> Result<()> {
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(torn))?;
        file.read_to_end(&mut bytes)?;
        let mut aside = self.torn_path(torn, 0);
        let mut counter = 1;
        while aside.exists() {
            // The same offset torn twice: keep both.
            aside = self.torn_path(torn, counter);
            counter += 1;
        }
        crate::fsutil::write_atomic_exact(&aside, &bytes)?;
        file.set_len(torn)?;
        file.sync_data()?;
        // The sync record may claim bytes past the new end; start it again from here.
        let sync = SyncLock::acquire(&self.sync_lock_path())?;
        sync.record(torn)?;
        Ok(())
    }

    /// One record as its journal line (secrets masked, no newline): what is appended and
    /// what the state is derived from, byte for byte.
    pub(crate) fn encode(record: &Value) -> Result<Vec<u8>> {
        Ok(crate::fsutil::scrubbed_json_line(record)?.into_bytes())
    }

    /// Appends one encoded record and returns the journal's new mark, plus what
    /// [`Journal::make_durable`] needs. The caller holds the session lock. A journal created
    /// here is made durable at once, folder entries included, before the lock is released:
    /// later writers' syncs cover only the file's data.
    pub(crate) fn append(&self, line: &[u8], before: &Mark) -> Result<(Mark, Appended)> {
        let (mut file, created) = match fs_err::OpenOptions::new().append(true).open(&self.path) {
            Ok(file) => (file, false),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (
                fs_err::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
                true,
            ),
            Err(err) => return Err(err.into()),
        };
        let start = file.metadata()?.len();
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        // One write of the whole line: a crash can tear only this record, never an earlier one.
        file.write_all(&bytes)?;
        let end = start + bytes.len() as u64;
        if created {
            file.sync_data()?;
            // The journal's entry in the session folder, and the session folder's entry in
            // `sessions/` (a new session's folder was made just before its first record).
            let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
            sync_dir(dir)?;
            if let Some(sessions) = dir.parent() {
                sync_dir(sessions)?;
            }
            SyncLock::acquire(&self.sync_lock_path())?.record(end)?;
        }
        let mark = Mark {
            bytes: end,
            records: before.records + 1,
            last: start,
            tail: digest(line),
        };
        Ok((mark, Appended { end }))
    }

    /// Makes the journal durable at least up to `appended`: one `fdatasync`, or none when a
    /// sync that started after this record was written already covered it. Called after the
    /// session lock is released, so concurrent writers share syncs.
    /// Returns whether this call synced (false: another writer's sync covered the record).
    pub(crate) fn make_durable(&self, appended: Appended) -> Result<bool> {
        let sync = SyncLock::acquire(&self.sync_lock_path())?;
        if sync.covered()? >= appended.end {
            return Ok(false);
        }
        let file = fs_err::File::open(&self.path)?;
        // Everything written up to now (this record and any appended after it) is covered.
        let length = file.metadata()?.len();
        file.sync_data()?;
        sync.record(length)?;
        Ok(true)
    }

    /// Where a torn record found at `offset` is kept.
    pub(crate) fn torn_path(&self, offset: u64, counter: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".torn-{offset}"));
        if counter > 0 {
            name.push(format!("-{counter}"));
        }
        PathBuf::from(name)
    }

    fn sync_lock_path(&self) -> PathBuf {
        self.path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(SYNC_LOCK)
    }

    fn damaged(&self, offset: u64, line: usize, reason: &str) -> Error {
        Error::CorruptFile {
            path: self.path.clone(),
            reason: format!(
                "byte offset {offset} (line {line}) is not a journal record ({reason}); records after it \
                 exist, so this is damage rather than a crash mid-write. Move the file aside and \
                 repair it by hand"
            ),
        }
    }
}

/// The sync lock: held while one writer syncs; its file's first bytes hold the journal length
/// the last sync covered, as decimal digits. The number is only a shortcut (a sync skipped
/// because one already covered it): when it is missing or unreadable, writers sync.
struct SyncLock {
    file: std::fs::File,
}

impl SyncLock {
    fn acquire(path: &Path) -> Result<Self> {
        let file = crate::fsutil::LockGuard::open(path)?;
        file.lock_exclusive().map_err(|source| {
            Error::Io(std::io::Error::new(
                source.kind(),
                format!("failed to lock `{}`: {source}", path.display()),
            ))
        })?;
        Ok(Self { file })
    }

    fn covered(&self) -> Result<u64> {
        let mut text = String::new();
        (&self.file).seek(SeekFrom::Start(0))?;
        (&self.file).take(32).read_to_string(&mut text)?;
        Ok(text.trim().parse().unwrap_or(0))
    }

    fn record(&self, length: u64) -> Result<()> {
        // Fixed width, so a shorter number never leaves digits of a longer one behind.
        let text = format!("{length:020}\n");
        (&self.file).seek(SeekFrom::Start(0))?;
        (&self.file).write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock anyway; unlocking only makes it prompt.
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

/// Rewrites a session's `state.json` in place (truncated and written, no temporary file and
/// no rename), without syncing. Only for a cache that carries its journal mark, written by
/// the lock holder: a reader that catches it half written gets text that does not parse
/// (a prefix of a JSON object never does, nor old bytes with new ones after them), and one
/// whose mark no longer matches the journal ignores it; either way the view is derived from
/// the journal. A replacement by rename would allocate a new inode and free the old one at
/// every write, which on a filesystem without a journal slows every later file creation.
pub(crate) fn write_state_cache<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = crate::fsutil::scrubbed_json(value)?;
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn digest(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("events.jsonl"));
        (dir, journal)
    }

    fn add(journal: &Journal, before: &Mark, n: u64) -> (Mark, Appended) {
        let line = Journal::encode(&json!({"op": "vote", "n": n})).unwrap();
        journal.append(&line, before).unwrap()
    }

    #[test]
    fn the_mark_tells_a_fresh_cache_from_a_stale_one() {
        let (_dir, journal) = journal();
        assert!(journal.matches(&Mark::default()).unwrap());
        let (first, _) = add(&journal, &Mark::default(), 1);
        assert_eq!(first.records, 1);
        assert!(journal.matches(&first).unwrap());
        assert!(!journal.matches(&Mark::default()).unwrap());
        let (second, _) = add(&journal, &first, 2);
        assert!(!journal.matches(&first).unwrap());
        assert!(journal.matches(&second).unwrap());
        assert_eq!(journal.scan().unwrap().mark, second);
        // Same length, different last record: stale.
        let text = fs_err::read_to_string(journal.path()).unwrap();
        fs_err::write(journal.path(), text.replace("\"n\":2", "\"n\":3")).unwrap();
        assert!(!journal.matches(&second).unwrap());
    }

    #[test]
    fn a_sync_that_covered_a_record_spares_its_writer_one() {
        let (_dir, journal) = journal();
        // The first record creates the journal and is durable at once.
        let (first, created) = add(&journal, &Mark::default(), 1);
        assert!(!journal.make_durable(created).unwrap());
        let (second, a) = add(&journal, &first, 2);
        let (_, b) = add(&journal, &second, 3);
        // The later writer syncs first and covers the earlier one's record too.
        assert!(journal.make_durable(b).unwrap());
        assert!(!journal.make_durable(a).unwrap());
    }

    #[test]
    fn cutting_a_torn_record_restarts_the_sync_mark() {
        let (_dir, journal) = journal();
        let (first, _) = add(&journal, &Mark::default(), 1);
        let (second, appended) = add(&journal, &first, 2);
        assert!(journal.make_durable(appended).unwrap());
        // Tear the second record, as a crash mid-append would.
        fs_err::OpenOptions::new()
            .write(true)
            .open(journal.path())
            .unwrap()
            .set_len(second.bytes - 3)
            .unwrap();
        let scan = journal.scan().unwrap();
        assert_eq!(scan.entries.len(), 1);
        assert_eq!(scan.torn, Some(second.last));
        journal.set_aside(second.last).unwrap();
        assert!(journal.torn_path(second.last, 0).is_file());
        // A new record ends before the old sync mark, and still gets its own sync.
        let (_, appended) = add(&journal, &scan.mark, 9);
        assert!(journal.make_durable(appended).unwrap());
    }

    #[test]
    fn blank_lines_are_skipped_and_only_a_bad_last_line_is_torn() {
        let (_dir, journal) = journal();
        fs_err::write(journal.path(), b"{\"op\":\"a\"}\n\n{\"op\":\"b\"}\n[1]\n").unwrap();
        let scan = journal.scan().unwrap();
        assert_eq!(scan.entries.len(), 2);
        assert_eq!(scan.torn, Some(23));
        fs_err::write(journal.path(), b"{\"op\":\"a\"}\n[1]\n{\"op\":\"b\"}\n").unwrap();
        let message = journal.scan().unwrap_err().to_string();
        assert!(message.contains("byte offset 11 (line 2)"), "{message}");
    }
}
