//! The content-addressed object store every snapshot shares, and how its writes are made
//! durable cheaply.
//!
//! ```text
//! objects/<64 hex>           one object: SHA-256 of its bytes (read-only, never changed)
//! objects/<2 hex>/<62 hex>   the same, written by Refinery before 0.4 (still read, never written)
//! objects/.incoming-*        an object being written (removed on error; swept after a crash)
//! objects/.pin.lock          shared by every writer, exclusive for a sweep
//! objects/.stat-cache/       the stat cache (see [`crate::statcache`]); only a cache
//! ```
//!
//! One flat folder instead of git's 256-way fan-out: a first snapshot of a small tree used to
//! create up to 256 folders, each needing its own directory sync; now every object lives in
//! one folder that is synced once. ext4, XFS, btrfs and APFS index large folders, so a flat
//! folder of many thousands of objects stays fast.
//!
//! **Durability, in one batch.** A snapshot ([`ObjectStore::begin`]) writes each new object to
//! a temporary file without syncing it. [`Batch::commit`] then makes all of them durable at
//! once (on Linux one `syncfs` of the store's filesystem, elsewhere one `fdatasync` per new
//! object), renames each into place, and syncs the objects folder once. Only after that does
//! the caller write the manifest (a round's `submission.json`), which is the commit point. So
//! a file at an object's final name always has durable bytes, and a crash before the manifest
//! leaves at most unreferenced objects or temporary files, which [`ObjectStore::sweep`]
//! removes later. An object that a snapshot found already present (written by another
//! writer, perhaps not yet synced into its folder) makes the commit sync that folder too; an
//! object known through the stat cache needs nothing, because the cache is only written after
//! a commit made its objects durable.
//!
//! **Sweeping safely.** A writer holds a shared lock on `.pin.lock` from the start of its
//! snapshot until the [`ObjectPin`] it returns is dropped (the caller keeps the snapshot until
//! its manifest is written). A sweep takes the same lock exclusively, and only if nobody holds
//! it: so it never deletes an object that a writer has just written or found and is about to
//! reference. As a second guard it also keeps objects younger than a grace period.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::LockGuard;
use crate::scope::open_regular;
use crate::snapshot::{MAX_FILE_BYTES, mode_of};
use crate::statcache::{StatCache, StatKey};
use crate::walk::Unreadable;

/// Files up to this size are read once into memory (hashed and written from the same
/// buffer); larger ones are streamed twice (hashed, then copied only if the object is new).
const SMALL_FILE_BYTES: u64 = 1024 * 1024;
const INCOMING_PREFIX: &str = ".incoming-";
const PIN_FILE: &str = ".pin.lock";

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

    /// Where a new object goes.
    fn object_path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    /// Where Refinery before 0.4 put it.
    fn legacy_path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(&hash[2..])
    }

    /// The file holding an object, in either layout.
    fn find(&self, hash: &str) -> Option<PathBuf> {
        if !is_hash(hash) {
            return None;
        }
        [self.object_path(hash), self.legacy_path(hash)]
            .into_iter()
            .find(|path| path.is_file())
    }

    /// Whether an object with this hash is present (its bytes are checked when read).
    pub(crate) fn has_object(&self, hash: &str) -> bool {
        self.find(hash).is_some()
    }

    /// Copies an object to `dest`, checking its hash on the way.
    pub(crate) fn copy_out(&self, hash: &str, dest: &mut impl Write) -> Result<u64> {
        let damaged = || Error::DamagedObject {
            hash: hash.to_owned(),
            objects_dir: self.dir.clone(),
        };
        let path = self.find(hash).ok_or_else(damaged)?;
        let mut source = fs_err::File::open(path).map_err(|_| damaged())?;
        let (actual, size) = copy_hashing(&mut source, dest)?;
        if !actual.eq_ignore_ascii_case(hash) {
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

    /// Starts writing one snapshot of files under `root`: pins the store against sweeps and
    /// loads `root`'s stat cache.
    pub(crate) fn begin(&self, root: &Path) -> Result<Batch<'_>> {
        fs_err::create_dir_all(&self.dir)?;
        let pin = PinLock::acquire(&self.dir.join(PIN_FILE))?;
        let started = SystemTime::now();
        Ok(Batch {
            store: self,
            pin: Arc::new(pin),
            cache: StatCache::load(&self.dir, root, started),
            staged: Vec::new(),
            staged_hashes: HashSet::new(),
            found_in: BTreeSet::new(),
        })
    }

    /// Deletes the objects that no file under `roots` mentions and that are older than
    /// `grace`, every temporary file a crashed writer left, and the stat cache. Returns `None`,
    /// deleting nothing, while any writer holds the store (see the module docs).
    ///
    /// A root file "mentions" an object when its text holds the object's 64-digit hash
    /// anywhere: manifests of every kind (rounds, archived rounds, a run's baseline) keep
    /// their objects without this function knowing their formats.
    pub fn sweep(&self, roots: &[PathBuf], grace: Duration) -> Result<Option<SweepReport>> {
        if !self.dir.is_dir() {
            return Ok(Some(SweepReport::default()));
        }
        let Some(_lock) = PinLock::try_exclusive(&self.dir.join(PIN_FILE))? else {
            return Ok(None);
        };
        let mut referenced = HashSet::new();
        for root in roots {
            collect_hashes(root, &self.dir, &mut referenced)?;
        }
        let now = SystemTime::now();
        let mut report = SweepReport::default();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type()?;
            if name.starts_with(INCOMING_PREFIX) && kind.is_file() {
                fs_err::remove_file(&path)?;
                report.temporary_files += 1;
            } else if name == ".stat-cache" && kind.is_dir() {
                fs_err::remove_dir_all(&path)?;
            } else if kind.is_file() && is_hash(&name) {
                sweep_one(&path, &name, &referenced, now, grace, &mut report)?;
            } else if kind.is_dir() && name.len() == 2 && is_hash_prefix(&name) {
                for inner in fs_err::read_dir(&path)? {
                    let inner = inner?;
                    let rest = inner.file_name().to_string_lossy().into_owned();
                    let hash = format!("{name}{rest}");
                    if inner.file_type()?.is_file() && is_hash(&hash) {
                        sweep_one(&inner.path(), &hash, &referenced, now, grace, &mut report)?;
                    }
                }
            }
        }
        Ok(Some(report))
    }
}

fn sweep_one(
    path: &Path,
    hash: &str,
    referenced: &HashSet<String>,
    now: SystemTime,
    grace: Duration,
    report: &mut SweepReport,
) -> Result<()> {
    if referenced.contains(&hash.to_ascii_lowercase()) {
        report.kept += 1;
        return Ok(());
    }
    let metadata = fs_err::metadata(path)?;
    let young = metadata
        .modified()
        .ok()
        .and_then(|modified| now.duration_since(modified).ok())
        .is_none_or(|age| age < grace);
    if young {
        report.kept += 1;
        return Ok(());
    }
    fs_err::remove_file(path)?;
    report.removed += 1;
    report.removed_bytes += metadata.len();
    Ok(())
}

/// Every 64-digit hex run in every file under `dir`, except inside `objects`.
fn collect_hashes(dir: &Path, objects: &Path, found: &mut HashSet<String>) -> Result<()> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if path == objects {
            continue;
        }
        if kind.is_dir() {
            collect_hashes(&path, objects, found)?;
        } else if kind.is_file() {
            // A root that cannot be read must stop the sweep: what it references is unknown.
            let bytes = fs_err::read(&path)?;
            hex_runs(&bytes, found);
        }
    }
    Ok(())
}

fn hex_runs(bytes: &[u8], found: &mut HashSet<String>) {
    let mut start = None;
    for (index, byte) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (byte.is_ascii_hexdigit(), start) {
            (true, None) => start = Some(index),
            (false, Some(from)) => {
                if index - from == 64 {
                    found.insert(String::from_utf8_lossy(&bytes[from..index]).to_ascii_lowercase());
                }
                start = None;
            }
            _ => {}
        }
    }
}

/// What [`ObjectStore::sweep`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects deleted.
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Objects kept (referenced, or younger than the grace period).
    pub kept: u64,
    /// Temporary files of interrupted writes deleted.
    pub temporary_files: u64,
}

/// Keeps the object store pinned against sweeps while held (see the module docs). Cloning
/// shares the pin; the default pins nothing.
#[derive(Clone, Default)]
pub struct ObjectPin(Option<Arc<PinLock>>);

impl std::fmt::Debug for ObjectPin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_some() {
            "ObjectPin(held)"
        } else {
            "ObjectPin(none)"
        })
    }
}

/// Pins compare equal: a pin says nothing about a snapshot's content.
impl PartialEq for ObjectPin {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for ObjectPin {}

/// A shared or exclusive `flock` on the store's pin file, released when dropped.
pub(crate) struct PinLock(std::fs::File);

impl PinLock {
    fn acquire(path: &Path) -> Result<Self> {
        let file = LockGuard::open(path)?;
        FileExt::lock_shared(&file)?;
        Ok(Self(file))
    }

    fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        let file = LockGuard::open(path)?;
        Ok(FileExt::try_lock_exclusive(&file)?.then_some(Self(file)))
    }
}

impl Drop for PinLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; a failed unlock cannot be reported here.
        let _ = FileExt::unlock(&self.0);
    }
}

/// One snapshot's writes into the store (see the module docs): objects are staged unsynced,
/// then [`Batch::commit`] makes them durable together. Dropping a batch without committing
/// deletes what it staged.
pub(crate) struct Batch<'a> {
    store: &'a ObjectStore,
    pin: Arc<PinLock>,
    cache: StatCache,
    staged: Vec<(tempfile::TempPath, String)>,
    staged_hashes: HashSet<String>,
    /// Folders holding objects this batch found already present, which another writer may
    /// not have synced yet.
    found_in: BTreeSet<PathBuf>,
}

/// What storing one file produced.
pub(crate) struct Put {
    pub(crate) hash: String,
    pub(crate) size: u64,
    /// Bytes added to the store (0 when the object was already there).
    pub(crate) added: u64,
    pub(crate) mode: u32,
}

impl Batch<'_> {
    /// Stores a regular file's bytes, or takes its hash from the stat cache when the file is
    /// unchanged since it was hashed. The inner error is the file's problem (not a regular
    /// file, too large, unreadable), for the caller to report and skip; the outer one is the
    /// store's (a full disk), which stops the snapshot.
    pub(crate) fn put_file(&mut self, path: &Path) -> Result<std::result::Result<Put, Unreadable>> {
        if let Ok(metadata) = fs_err::symlink_metadata(path)
            && metadata.is_file()
            && let Some(hash) = self.cache.lookup(path, &metadata)
            && self.store.has_object(&hash)
        {
            return Ok(Ok(Put {
                hash,
                size: metadata.len(),
                added: 0,
                mode: mode_of(&metadata),
            }));
        }
        let mut file = match open(path) {
            Ok(file) => file,
            Err(unreadable) => return Ok(Err(unreadable)),
        };
        // Taken before the bytes are read: a change while reading alters it, so the cache
        // entry can only ever be older than the content it names.
        let metadata = match file.metadata() {
            Ok(metadata) => metadata,
            Err(err) => return Ok(Err(Unreadable::Io(err.kind()))),
        };
        if metadata.len() > MAX_FILE_BYTES {
            return Ok(Err(Unreadable::TooLarge));
        }
        let mode = mode_of(&metadata);
        let key = StatKey::of(&metadata);
        let stored = if metadata.len() <= SMALL_FILE_BYTES {
            let mut bytes = Vec::with_capacity(metadata.len() as usize);
            if let Err(err) = file.read_to_end(&mut bytes) {
                return Ok(Err(Unreadable::Io(err.kind())));
            }
            self.put_bytes(&bytes)?
        } else {
            match self.put_large(path, &mut file)? {
                Ok(stored) => stored,
                Err(unreadable) => return Ok(Err(unreadable)),
            }
        };
        let (hash, size, added) = stored;
        if let Some(key) = key {
            self.cache.record(path, key, &hash);
        }
        Ok(Ok(Put {
            hash,
            size,
            added,
            mode,
        }))
    }

    /// Streams a large file: hashed first, copied only when the object is new.
    fn put_large(
        &mut self,
        path: &Path,
        file: &mut std::fs::File,
    ) -> Result<std::result::Result<(String, u64, u64), Unreadable>> {
        let (hash, size) = match copy_hashing(file, &mut std::io::sink()) {
            Ok(found) => found,
            Err(err) => return Ok(Err(Unreadable::Io(err.kind()))),
        };
        if self.present(&hash) {
            return Ok(Ok((hash, size, 0)));
        }
        // Copy while hashing again: if the file changed since the first read, the object is
        // filed under the hash of what was actually copied.
        let source = match open(path) {
            Ok(file) => file,
            Err(unreadable) => return Ok(Err(unreadable)),
        };
        let mut source = TrackedReader {
            inner: source,
            failed: None,
        };
        match self.stage(false, |sink| copy_hashing(&mut source, sink)) {
            Ok(stored) => Ok(Ok(stored)),
            Err(_) if source.failed.is_some() => Ok(Err(Unreadable::Io(
                source.failed.unwrap_or(std::io::ErrorKind::Other),
            ))),
            Err(err) => Err(err),
        }
    }

    /// Stores bytes (a small file, a link's target); returns hash, size and bytes added.
    pub(crate) fn put_bytes(&mut self, bytes: &[u8]) -> Result<(String, u64, u64)> {
        let hash = hex::encode(Sha256::digest(bytes));
        if self.present(&hash) {
            return Ok((hash, bytes.len() as u64, 0));
        }
        self.stage(true, |sink| {
            sink.write_all(bytes)?;
            Ok((hash.clone(), bytes.len() as u64))
        })
    }

    /// Whether the object is already stored or staged; a stored one's folder is synced at
    /// commit.
    fn present(&mut self, hash: &str) -> bool {
        if self.staged_hashes.contains(hash) {
            return true;
        }
        match self.store.find(hash) {
            Some(path) => {
                if let Some(folder) = path.parent() {
                    self.found_in.insert(folder.to_path_buf());
                }
                true
            }
            None => false,
        }
    }

    /// Writes a new object to a temporary file in the store, unsynced and read-only from the
    /// start. `checked`: the caller already knows the object is absent (its hash was known
    /// before writing); otherwise the hash of what was written is looked up again.
    fn stage(
        &mut self,
        checked: bool,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<(String, u64)>,
    ) -> Result<(String, u64, u64)> {
        let mut temp = temp_builder().tempfile_in(&self.store.dir)?;
        let (hash, size) = fill(temp.as_file_mut())?;
        if !checked && self.present(&hash) {
            return Ok((hash, size, 0));
        }
        self.staged_hashes.insert(hash.clone());
        self.staged.push((temp.into_temp_path(), hash.clone()));
        Ok((hash, size, size))
    }

    /// Makes every staged object durable and puts it in place (see the module docs), then
    /// saves the stat cache. The returned pin keeps sweeps away until the caller has written
    /// the manifest that references these objects.
    pub(crate) fn commit(mut self) -> Result<ObjectPin> {
        let dir = self.store.dir.clone();
        if !self.staged.is_empty() {
            sync_data(&dir, &self.staged)?;
            for (temp, hash) in std::mem::take(&mut self.staged) {
                temp.persist(self.store.object_path(&hash))
                    .map_err(|err| err.error)?;
            }
            self.found_in.insert(dir.clone());
        }
        for folder in &self.found_in {
            sync_dir(folder)?;
        }
        self.cache.save(&dir);
        Ok(ObjectPin(Some(Arc::clone(&self.pin))))
    }
}

fn open(path: &Path) -> std::result::Result<std::fs::File, Unreadable> {
    match open_regular(path) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(Unreadable::NotRegular),
        Err(err) => Err(Unreadable::Io(err.kind())),
    }
}

/// Makes the bytes of every staged file durable: one `syncfs` of the store's filesystem on
/// Linux (measured faster than a sync per file; see docs/BENCHMARKS.md), one `fdatasync`
/// per file elsewhere.
fn sync_data(dir: &Path, staged: &[(tempfile::TempPath, String)]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = staged;
        let folder = fs_err::File::open(dir)?;
        rustix::fs::syncfs(&folder).map_err(std::io::Error::from)?;
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        for (temp, _) in staged {
            fs_err::File::open(&**temp)?.sync_data()?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directory fsync makes the renames into it durable; only Unix can open a folder.
    #[cfg(unix)]
    fs_err::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Temporary object files, created read-only (objects never change; the open descriptor can
/// still write the bytes), saving a `chmod` per object.
fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(INCOMING_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o444));
    }
    builder
}

/// Remembers whether a failure came from reading the source, so a file that cannot be read
/// is skipped while a store that cannot be written stops the snapshot.
struct TrackedReader<R> {
    inner: R,
    failed: Option<std::io::ErrorKind>,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buffer).inspect_err(|err| {
            self.failed = Some(err.kind());
        })
    }
}

/// A SHA-256 in lowercase or uppercase hex.
pub(crate) fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn is_hash_prefix(name: &str) -> bool {
    name.bytes().all(|byte| byte.is_ascii_hexdigit())
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
