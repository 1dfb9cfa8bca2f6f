//! A record kept durably as its latest version: a driver's `run.json` (`refinery refine`) or
//! `consensus.json` (`refinery run`), saved once or twice a round.
//!
//! Replacing a file durably costs a new file, a sync of its bytes, a rename and a sync of the
//! folder; on an ordinary disk the sync of a new file alone takes about a millisecond (two at
//! times), one of the largest costs of a round. Appending the record as one line to a log
//! that already exists and syncing that (`fdatasync`) makes the same promise for a fraction of
//! it: the log is the truth, read back as its last complete line, and the driver writes the
//! JSON file of the same name after it, atomically but unsynced, for people and reports
//! (after a power loss or a kill it can be behind the log; nothing that resumes reads it
//! while a log exists).
//!
//! A save torn by a crash (a final line without its newline) was never acknowledged: readers
//! skip it and the next save cuts it off before appending. A complete line that does not
//! parse is an error naming the file and the line's offset, never a silent step back to an
//! older record. When the log passes [`COMPACT_FROM`] bytes, the next save replaces it with a
//! log of that one record (durably, the expensive way, once in a long while).

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::fsutil;

/// A log at least this long is rewritten with only its newest record at the next save.
pub const COMPACT_FROM: u64 = 1024 * 1024;

/// Saves `value` as the latest record: a line appended to `dir/log` and synced (the log and
/// its name are synced when the save creates it), with secrets masked as in every state
/// write. The JSON copy that [`load`] falls back to is the caller's to write after it,
/// unsynced (`refine` and `run` hand it to their writer of copies, [`crate::copies`]), and
/// only when people should see this save: a new file each time costs on an ordinary disk as
/// much as the append and its sync together (measured).
pub fn save<T: Serialize + ?Sized>(dir: &Path, log: &str, value: &T) -> Result<()> {
    let mut line = fsutil::scrubbed_json_line(value)?;
    line.push('\n');
    append(&dir.join(log), line.as_bytes())
}

/// The latest record: the log's last complete line, or `dir/copy` for a record saved before
/// there were logs; `None` when neither exists.
pub fn load<T: DeserializeOwned>(dir: &Path, log: &str, copy: &str) -> Result<Option<T>> {
    let path = dir.join(log);
    let bytes = match fs_err::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return fsutil::read_json(&dir.join(copy));
        }
        Err(err) => return Err(err.into()),
    };
    let Some((offset, line)) = last_complete_line(&bytes) else {
        // Only a torn first save: the run never got further than that.
        return fsutil::read_json(&dir.join(copy));
    };
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|err| Error::CorruptFile {
            path: path.clone(),
            reason: format!("the record at byte {offset} does not parse ({err})"),
        })
}

/// Whether a save ever finished in `dir`: the log holds a complete line, or the file of a
/// record saved before there were logs exists. (A log holding only a save cut short does not
/// count: [`load`] finds nothing in it either.)
pub fn exists(dir: &Path, log: &str, copy: &str) -> bool {
    let logged =
        fs_err::read(dir.join(log)).is_ok_and(|bytes| last_complete_line(&bytes).is_some());
    logged || dir.join(copy).is_file()
}

/// The last line ending in a newline, with its offset.
fn last_complete_line(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let end = bytes.iter().rposition(|&byte| byte == b'\n')?;
    let start = bytes[..end]
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    Some((start, &bytes[start..end]))
}

fn append(path: &Path, line: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let created = !path.exists();
    let mut file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut len = file.metadata()?.len();
    if len >= COMPACT_FROM {
        drop(file);
        return fsutil::write_atomic_exact(path, line);
    }
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            // A save cut short by a crash: it was never acknowledged, so it goes.
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut bytes)?;
            len = last_complete_line(&bytes)
                .map_or(0, |(start, line)| (start + line.len() + 1) as u64);
            file.set_len(len)?;
        }
    }
    file.seek(SeekFrom::Start(len))?;
    file.write_all(line)?;
    file.sync_data()?;
    if created {
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const LOG: &str = "run.jsonl";
    const COPY: &str = "run.json";

    /// A save as a driver makes it: the log, then the copy for people.
    fn save_with_copy(dir: &Path, value: &Value) -> Result<()> {
        save(dir, LOG, value)?;
        fsutil::write_json_record(&dir.join(COPY), value)
    }

    #[test]
    fn the_latest_save_is_read_back_and_copied_for_people() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load::<Value>(dir.path(), LOG, COPY).unwrap(), None);
        assert!(!exists(dir.path(), LOG, COPY));
        for round in 1..=3 {
            save_with_copy(dir.path(), &json!({"round": round})).unwrap();
        }
        assert_eq!(
            load::<Value>(dir.path(), LOG, COPY).unwrap(),
            Some(json!({"round": 3}))
        );
        let copy: Value =
            serde_json::from_str(&fs_err::read_to_string(dir.path().join(COPY)).unwrap()).unwrap();
        assert_eq!(copy, json!({"round": 3}));
        // The log, not the copy, is what is read.
        fs_err::write(dir.path().join(COPY), "{\"round\": 1}").unwrap();
        assert_eq!(
            load::<Value>(dir.path(), LOG, COPY).unwrap(),
            Some(json!({"round": 3}))
        );
    }

    #[test]
    fn a_record_saved_before_there_were_logs_is_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join(COPY), "{\"round\": 7}").unwrap();
        assert!(exists(dir.path(), LOG, COPY));
        assert_eq!(
            load::<Value>(dir.path(), LOG, COPY).unwrap(),
            Some(json!({"round": 7}))
        );
        save_with_copy(dir.path(), &json!({"round": 8})).unwrap();
        assert_eq!(
            load::<Value>(dir.path(), LOG, COPY).unwrap(),
            Some(json!({"round": 8}))
        );
    }

    #[test]
    fn a_torn_save_is_skipped_then_cut_off_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        save_with_copy(dir.path(), &json!({"round": 1})).unwrap();
        save_with_copy(dir.path(), &json!({"round": 2})).unwrap();
        let log = dir.path().join(LOG);
        let whole = fs_err::read(&log).unwrap();
        // Every cut inside the second line reads as the first record.
        let second = whole[..whole.len() - 1]
            .iter()
            .rposition(|&byte| byte == b'\n')
            .unwrap()
            + 1;
        // A first save cut short is no save at all.
        fs_err::write(&log, &whole[..second - 1]).unwrap();
        assert!(!exists(dir.path(), LOG, "none.json"));
        for cut in second..whole.len() {
            fs_err::write(&log, &whole[..cut]).unwrap();
            assert_eq!(
                load::<Value>(dir.path(), LOG, COPY).unwrap(),
                Some(json!({"round": 1})),
                "cut at {cut}"
            );
        }
        save_with_copy(dir.path(), &json!({"round": 3})).unwrap();
        let text = fs_err::read_to_string(&log).unwrap();
        assert_eq!(text, "{\"round\":1}\n{\"round\":3}\n");
    }

    #[test]
    fn a_damaged_complete_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        save_with_copy(dir.path(), &json!({"round": 1})).unwrap();
        let log = dir.path().join(LOG);
        let mut bytes = fs_err::read(&log).unwrap();
        bytes.extend_from_slice(b"{\"round\": 2,,}\n");
        fs_err::write(&log, &bytes).unwrap();
        let message = load::<Value>(dir.path(), LOG, COPY)
            .unwrap_err()
            .to_string();
        assert!(message.contains("run.jsonl"), "{message}");
        assert!(message.contains("byte 12"), "{message}");
    }

    #[test]
    fn a_long_log_is_rewritten_with_its_newest_record() {
        let dir = tempfile::tempdir().unwrap();
        let padding = "x".repeat(64 * 1024);
        for round in 0..20 {
            save_with_copy(dir.path(), &json!({"round": round, "padding": padding})).unwrap();
        }
        let len = fs_err::metadata(dir.path().join(LOG)).unwrap().len();
        assert!(len < COMPACT_FROM + 70 * 1024, "{len}");
        let latest: Value = load(dir.path(), LOG, COPY).unwrap().unwrap();
        assert_eq!(latest["round"], 19);
    }

    #[test]
    fn secrets_are_masked_in_the_log_and_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
        save_with_copy(dir.path(), &json!({"task": format!("use {token}")})).unwrap();
        for name in [LOG, COPY] {
            let text = fs_err::read_to_string(dir.path().join(name)).unwrap();
            assert!(!text.contains(&token), "{name}: {text}");
            assert!(text.contains("[REDACTED:github-pat]"), "{name}: {text}");
        }
    }
}
