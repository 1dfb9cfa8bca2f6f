//! The stat cache: a file whose size, modification time, change time, inode and device match
//! what they were when it was last hashed is not read again.
//!
//! One cache file per snapshotted root (the workspace, or a copy of it), at
//! `objects/.stat-cache/<16 hex of the root's path>.json`, keyed by path relative to the
//! root. It is only a cache: written without a sync by temporary file and rename, ignored
//! when missing or unreadable, and deleted by a sweep. It never vouches for an object by
//! itself: a hit is used only while the object is still in the store.
//!
//! **Racy files** (git's "racily clean" problem): a file written twice within one timestamp
//! tick keeps the same size and times, so a hash taken between the two writes would be
//! stale. Each entry therefore records when its snapshot started, and is trusted only when
//! the file's modification and change times are both strictly older than that start, less a
//! margin: 50 ms (the kernel stamps files with a coarse clock that may lag the clock we read
//! by a tick), or 2 s when both times have no sub-second part (a filesystem that keeps whole
//! or even seconds, such as FAT). Anything newer is hashed again and not recorded (such an
//! entry could never be trusted); a snapshot that finds it settled records it.
//! Setting a file's modification time back does not hide a change: the change time cannot be
//! set back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const CACHE_DIR: &str = ".stat-cache";
const VERSION: u32 = 1;
const FINE_MARGIN_NS: i64 = 50_000_000;
const COARSE_MARGIN_NS: i64 = 2_000_000_000;

/// The identity of a file's current content, as far as `stat` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatKey {
    size: u64,
    /// Modification time, nanoseconds since the epoch.
    mtime: i64,
    /// Change time (status change, which no user call can set back), nanoseconds.
    ctime: i64,
    ino: u64,
    dev: u64,
}

impl StatKey {
    /// The key of a file's metadata; `None` where the platform has no change time or inode.
    #[cfg(unix)]
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let nanos = |secs: i64, nsec: i64| secs.checked_mul(1_000_000_000)?.checked_add(nsec);
        Some(Self {
            size: metadata.len(),
            mtime: nanos(metadata.mtime(), metadata.mtime_nsec())?,
            ctime: nanos(metadata.ctime(), metadata.ctime_nsec())?,
            ino: metadata.ino(),
            dev: metadata.dev(),
        })
    }

    /// The key of a file's metadata; `None` where the platform has no change time or inode.
    #[cfg(not(unix))]
    pub(crate) fn of(_metadata: &std::fs::Metadata) -> Option<Self> {
        None
    }

    /// Whether a hash taken in a snapshot that started at `started` (nanoseconds) can be
    /// trusted for a file with this key (see the module docs).
    fn settled_before(&self, started: i64) -> bool {
        let whole_seconds = self.mtime % 1_000_000_000 == 0 && self.ctime % 1_000_000_000 == 0;
        let margin = if whole_seconds {
            COARSE_MARGIN_NS
        } else {
            FINE_MARGIN_NS
        };
        self.mtime.max(self.ctime) < started.saturating_sub(margin)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    key: StatKey,
    hash: String,
    /// When the snapshot that hashed the file started, nanoseconds since the epoch.
    hashed_in: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// One root's cache, loaded at the start of a snapshot and saved at its commit.
#[derive(Debug)]
pub(crate) struct StatCache {
    root: PathBuf,
    file: String,
    started: i64,
    entries: BTreeMap<String, Entry>,
    changed: bool,
}

impl StatCache {
    /// The cache for `root` in the store at `objects` (empty when missing or unreadable).
    pub(crate) fn load(objects: &Path, root: &Path, started: SystemTime) -> Self {
        let started = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_nanos()).ok())
            .unwrap_or(0);
        let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
        let file = format!("{}.json", hex::encode(&digest[..8]));
        let path = objects.join(CACHE_DIR).join(&file);
        let entries = recall(&path).unwrap_or_else(|| {
            fs_err::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
                .filter(|cache| cache.version == VERSION)
                .map(|cache| cache.entries)
                .unwrap_or_default()
        });
        Self {
            root: root.to_path_buf(),
            file,
            started,
            entries,
            changed: false,
        }
    }

    fn relative(&self, path: &Path) -> Option<String> {
        path.strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_owned)
    }

    /// The hash recorded for `path` if its metadata still matches and the entry is not racy.
    pub(crate) fn lookup(&self, path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
        let key = StatKey::of(metadata)?;
        let entry = self.entries.get(&self.relative(path)?)?;
        (entry.key == key && key.settled_before(entry.hashed_in)).then(|| entry.hash.clone())
    }

    /// Records the hash of `path`'s content as it was when `key` was taken. A file changed
    /// too recently to trust (see the module docs) is not recorded: its entry could never be
    /// a hit, and writing it would only rewrite the cache file at every snapshot of a file
    /// being worked on.
    pub(crate) fn record(&mut self, path: &Path, key: StatKey, hash: &str) {
        if !key.settled_before(self.started) {
            return;
        }
        let Some(relative) = self.relative(path) else {
            return;
        };
        let entry = Entry {
            key,
            hash: hash.to_owned(),
            hashed_in: self.started,
        };
        if self.entries.get(&relative) != Some(&entry) {
            self.entries.insert(relative, entry);
            self.changed = true;
        }
    }

    /// Writes the cache if anything changed. Failures are ignored: a cache that cannot be
    /// written only means the next snapshot hashes again.
    pub(crate) fn save(&self, objects: &Path) {
        if !self.changed {
            return;
        }
        let dir = objects.join(CACHE_DIR);
        let cache = CacheFile {
            version: VERSION,
            entries: self.entries.clone(),
        };
        let write = || -> std::io::Result<()> {
            fs_err::create_dir_all(&dir)?;
            let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
            serde_json::to_writer(std::io::BufWriter::new(temp.as_file_mut()), &cache)?;
            temp.persist(dir.join(&self.file))
                .map_err(|err| err.error)?;
            Ok(())
        };
        if write().is_ok() {
            // The copy just written, kept so the next load need not parse it back.
            remember(&dir.join(&self.file), cache.entries);
        }
    }
}

/// Which write of a cache file a remembered copy is: a file replaced since (by another
/// process, or deleted by a sweep) is a new inode or has another size or time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: i64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let key = StatKey::of(&fs_err::metadata(path).ok()?)?;
        Some(Self {
            ino: key.ino,
            len: key.size,
            mtime: key.mtime,
        })
    }
}

/// The cache files this process wrote last, with what they hold: a loop snapshots the same
/// workspace two or three times a round, and parsing the cache back each time cost more than
/// the walk it saves.
static WRITTEN: std::sync::LazyLock<std::sync::Mutex<Written>> =
    std::sync::LazyLock::new(std::sync::Mutex::default);

/// Per cache file: which write of it, and its entries.
type Written = BTreeMap<PathBuf, (Stamp, BTreeMap<String, Entry>)>;

fn written() -> std::sync::MutexGuard<'static, Written> {
    WRITTEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What this process last wrote to `path`, while the file is still that write. Were a stamp
/// ever to match another writer's file (a reused inode, same size and time), the entries would
/// still be true: each only says which hash a file with that exact metadata had.
fn recall(path: &Path) -> Option<BTreeMap<String, Entry>> {
    let stamp = Stamp::of(path)?;
    let written = written();
    let (kept, entries) = written.get(path)?;
    (*kept == stamp).then(|| entries.clone())
}

fn remember(path: &Path, entries: BTreeMap<String, Entry>) {
    let Some(stamp) = Stamp::of(path) else {
        return;
    };
    let mut written = written();
    // One entry per snapshotted root: a handful per process.
    if written.len() >= 16 {
        written.clear();
    }
    written.insert(path.to_path_buf(), (stamp, entries));
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(mtime: i64, ctime: i64) -> StatKey {
        StatKey {
            size: 1,
            mtime,
            ctime,
            ino: 1,
            dev: 1,
        }
    }

    #[test]
    fn only_times_older_than_the_snapshot_start_less_a_margin_are_trusted() {
        let start = 1_000_000_000_000_i64 + 500_000_000;
        assert!(key(start - 60_000_000, start - 60_000_000).settled_before(start));
        // Within the margin, or a change time after the start: hash again.
        assert!(!key(start - 10_000_000, start - 60_000_000).settled_before(start));
        assert!(!key(start - 60_000_000, start + 1).settled_before(start));
        // Whole seconds only (a coarse filesystem): two seconds of margin.
        let whole = 1_000_000_000_000_i64;
        assert!(!key(whole - 1_000_000_000, whole - 1_000_000_000).settled_before(start));
        assert!(key(whole - 2_000_000_000, whole - 2_000_000_000).settled_before(start));
    }

    #[test]
    fn a_recorded_file_is_a_hit_only_while_its_metadata_matches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs_err::create_dir_all(&root).unwrap();
        let file = root.join("a.txt");
        fs_err::write(&file, b"one").unwrap();
        // A snapshot that started a second after the file was written.
        let later = SystemTime::now() + Duration::from_secs(1);
        let mut cache = StatCache::load(dir.path(), &root, later);
        let metadata = fs_err::metadata(&file).unwrap();
        cache.record(&file, StatKey::of(&metadata).unwrap(), "h1");
        cache.save(dir.path());
        let loaded = StatCache::load(dir.path(), &root, SystemTime::now());
        assert_eq!(loaded.lookup(&file, &metadata).as_deref(), Some("h1"));
        fs_err::write(&file, b"two").unwrap();
        let changed = fs_err::metadata(&file).unwrap();
        assert_eq!(loaded.lookup(&file, &changed), None);
        // A cache file replaced by someone else is read again, not recalled.
        let path = dir.path().join(CACHE_DIR).join(&loaded.file);
        let mut other: CacheFile = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        other.entries.get_mut("a.txt").unwrap().hash = "h-other".to_owned();
        std::thread::sleep(Duration::from_millis(20));
        fs_err::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let reread = StatCache::load(dir.path(), &root, SystemTime::now());
        assert_eq!(reread.lookup(&file, &metadata).as_deref(), Some("h-other"));
        // Recorded by a snapshot that started now: too recent to trust, so not recorded at
        // all, and nothing is written for it.
        let mut racy = StatCache::load(dir.path(), &root, SystemTime::now());
        racy.record(&file, StatKey::of(&changed).unwrap(), "h2");
        assert_eq!(racy.lookup(&file, &changed), None);
        assert!(!racy.changed, "a racy entry does not rewrite the cache");
        let cache_file = fs_err::read(&path).unwrap();
        racy.save(dir.path());
        assert_eq!(fs_err::read(&path).unwrap(), cache_file);
    }
}
