//! The content-addressed object store every snapshot shares, and how its writes are made
//! durable cheaply.
//!
//! ```text
//! objects/packs/<64 hex>.pack   small objects (up to 1 MiB), one pack per snapshot that added
//!                               any (see [`crate::packs`] for the format)
//! objects/<64 hex>              one larger object: SHA-256 of its bytes (never changed)
//! objects/<2 hex>/<62 hex>      a loose object written by Refinery before 0.4 (still read)
//! objects/.incoming-*           an object being written (removed on error; swept after a crash)
//! objects/packs/.incoming-*     the same for a pack
//! objects/.pin.lock             shared by every writer, exclusive for a sweep
//! objects/.stat-cache/          the stat cache (see [`crate::statcache`]); only a cache
//! ```
//!
//! **Packs, and one flat folder.** A first snapshot of a small tree used to create a file per
//! object (and before that up to 256 fan-out folders); creating files is what cost, not
//! writing bytes. Now a snapshot appends its new objects up to [`PACKED_MAX_BYTES`] to one
//! pack, so it creates one file however many files the tree has; larger objects (read
//! streaming, and worth deleting one by one) stay loose files in the flat `objects/` folder.
//! Loose objects of every earlier layout are still read and deduplicated against.
//!
//! **Durability, in one batch.** A snapshot ([`ObjectStore::begin`]) writes its new objects
//! (its pack, and a temporary file per large object) without syncing them. [`Batch::commit`]
//! then makes all of them durable at once (one `fdatasync` per file when there are few, as
//! there are with a pack; one `syncfs` of the store's filesystem on Linux when there are
//! many), renames each into place, and syncs each folder it renamed into once. Only after that
//! does the caller write the manifest (a round's `submission.json`), which is the commit
//! point. So a file at an object's or pack's final name always has durable bytes, and a crash
//! before the manifest leaves at most unreferenced objects, packs or temporary files, which
//! [`ObjectStore::sweep`] removes later. An object that a snapshot found already present
//! (written by another writer, perhaps not yet synced into its folder) makes the commit sync
//! that folder too; an object known through the stat cache needs nothing, because the cache
//! is only written after a commit made its objects durable.
//!
//! **Several processes.** Each batch writes its own pack, named by the SHA-256 of its index,
//! so writers never share a file and need no lock beyond the pin below. Each process keeps
//! the index of every pack it has seen ([`PackIndex`]); a writer rescans the packs folder when
//! it starts a snapshot, and a reader rescans it when a hash is missing, so packs that other
//! processes wrote since are found.
//!
//! **Sweeping safely.** A writer holds a shared lock on `.pin.lock` from the start of its
//! snapshot until the [`ObjectPin`] it returns is dropped (the caller keeps the snapshot until
//! its manifest is written). A sweep takes the same lock exclusively, and only if nobody holds
//! it: so it never deletes an object that a writer has just written or found and is about to
//! reference. As a second guard it also keeps objects younger than a grace period. A pack
//! none of whose objects is referenced is deleted whole; a pack only some of whose objects
//! are referenced is rewritten: its live objects are copied (each checked against its hash)
//! into a new pack, which is synced and renamed into place before the old one is deleted, so
//! a crash at any point leaves every referenced object in at least one complete pack.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::{LockGuard, sync_dir};
use crate::packs::{self, FinishedPack, OnMiss, PackIndex, PackWriter, Packed};
use crate::scope::open_regular;
use crate::snapshot::{MAX_FILE_BYTES, mode_of};
use crate::statcache::{StatCache, StatKey};
use crate::walk::Unreadable;

/// Files up to this size are read once into memory (hashed and written from the same
/// buffer); larger ones are streamed twice (hashed, then copied only if the object is new).
const SMALL_FILE_BYTES: u64 = 1024 * 1024;
/// Objects up to this size go into the snapshot's pack; larger ones stay loose files. The
/// same bound as [`SMALL_FILE_BYTES`]: those files are in memory already, so packing them
/// costs one buffered write; a loose object costs a new file (measured in docs/BENCHMARKS.md,
/// "Snapshots").
pub(crate) const PACKED_MAX_BYTES: u64 = SMALL_FILE_BYTES;
const INCOMING_PREFIX: &str = ".incoming-";
const PIN_FILE: &str = ".pin.lock";
/// Up to this many new files, a commit syncs each with `fdatasync`; beyond, one `syncfs`.
const FEW_FILES: usize = 8;

/// The shared content-addressed store.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    dir: PathBuf,
    packs: Arc<PackIndex>,
}

/// Where one object is.
enum Location {
    Loose(PathBuf),
    Packed(Packed),
}

impl ObjectStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let packs = PackIndex::shared(dir.join(packs::PACKS_DIR));
        Self { dir, packs }
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

    /// Where an object is: its pack, its loose file in either layout, or nowhere.
    fn locate(&self, hash: &str, on_miss: OnMiss) -> Result<Option<Location>> {
        let Some(digest) = packs::digest_of(hash) else {
            return Ok(None);
        };
        if let Some(packed) = self.packs.find(&digest, OnMiss::Answer)? {
            return Ok(Some(Location::Packed(packed)));
        }
        let loose = [self.object_path(hash), self.legacy_path(hash)]
            .into_iter()
            .find(|path| path.is_file());
        if let Some(path) = loose {
            return Ok(Some(Location::Loose(path)));
        }
        if on_miss == OnMiss::Rescan {
            return Ok(self.packs.find(&digest, on_miss)?.map(Location::Packed));
        }
        Ok(None)
    }

    /// Whether an object with this hash is stored, in a pack or loose, with no rescan on a
    /// miss (what [`ObjectStore::locate`] answers, without building a path for a packed one).
    fn contains(&self, hash: &str) -> Result<bool> {
        if let Some(digest) = packs::digest_of(hash)
            && self.packs.contains(&digest)?
        {
            return Ok(true);
        }
        Ok(self.locate(hash, OnMiss::Answer)?.is_some())
    }

    /// Whether an object with this hash is present (its bytes are checked when read). A miss
    /// rescans the packs, so objects another process packed since are found.
    pub(crate) fn has_object(&self, hash: &str) -> Result<bool> {
        Ok(self.locate(hash, OnMiss::Rescan)?.is_some())
    }

    /// The error for an object found nowhere: the damage of a pack that could not be read
    /// (the object may have been in it), or a missing object.
    pub(crate) fn missing(&self, hash: &str) -> Error {
        self.packs.damage().unwrap_or_else(|| Error::DamagedObject {
            hash: hash.to_owned(),
            objects_dir: self.dir.clone(),
        })
    }

    /// Copies an object to `dest`, checking its hash on the way. A damaged pack is an error
    /// naming it and the offset; bytes already copied to `dest` must then be discarded.
    pub(crate) fn copy_out(&self, hash: &str, dest: &mut impl Write) -> Result<u64> {
        // Twice at most: a pack deleted under us (another process's sweep rewrote it) is
        // looked up again after a rescan.
        for attempt in 0..2 {
            match self.locate(hash, OnMiss::Rescan)? {
                None => break,
                Some(Location::Loose(path)) => return self.copy_loose(&path, hash, dest),
                Some(Location::Packed(packed)) => match packs::copy_packed(&packed, hash, dest) {
                    Err(Error::Io(err))
                        if err.kind() == std::io::ErrorKind::NotFound && attempt == 0 =>
                    {
                        self.packs.rescan()?;
                    }
                    other => return other,
                },
            }
        }
        Err(self.missing(hash))
    }

    fn copy_loose(&self, path: &Path, hash: &str, dest: &mut impl Write) -> Result<u64> {
        let damaged = || Error::DamagedObject {
            hash: hash.to_owned(),
            objects_dir: self.dir.clone(),
        };
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
        // Under the pin no sweep can delete a pack, so what this scan finds stays true until
        // the commit: the stat cache and the deduplication may trust it.
        self.packs.rescan()?;
        Ok(Batch {
            store: self,
            pin: Arc::new(pin),
            cache: StatCache::load(&self.dir, root, started),
            staged: Vec::new(),
            pack: None,
            staged_hashes: HashSet::new(),
            found_in: BTreeSet::new(),
        })
    }

    /// Deletes the objects that no file under `roots` mentions and that are older than
    /// `grace`, every temporary file a crashed writer left, and the stat cache. A pack is
    /// deleted when none of its objects is mentioned, and rewritten without its unmentioned
    /// objects when some are (see the module docs). Returns `None`, deleting nothing, while
    /// any writer holds the store.
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
        self.sweep_packs(&referenced, now, grace, &mut report)?;
        Ok(Some(report))
    }

    /// The packs' part of a sweep (the exclusive pin is held).
    fn sweep_packs(
        &self,
        referenced: &HashSet<String>,
        now: SystemTime,
        grace: Duration,
        report: &mut SweepReport,
    ) -> Result<()> {
        let dir = self.packs.dir().to_path_buf();
        if !dir.is_dir() {
            return Ok(());
        }
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(INCOMING_PREFIX)
            {
                fs_err::remove_file(entry.path())?;
                report.temporary_files += 1;
            }
        }
        let mut keep = Vec::new();
        let mut rewrite = Vec::new();
        for (name, _) in packs::list(&dir)? {
            let path = dir.join(&name);
            let records = match packs::read_index(&path) {
                Ok(records) => records,
                // What a damaged pack holds is unknown: keep it, and say so.
                Err(Error::DamagedPack { .. }) => {
                    report.damaged_packs.push(path);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let live = records
                .iter()
                .filter(|record| referenced.contains(&hex::encode(record.hash)))
                .count();
            let young = is_young(&fs_err::metadata(&path)?, now, grace);
            if live == records.len() || young {
                report.kept += records.len() as u64;
                keep.extend(records.iter().map(|record| record.hash));
            } else {
                rewrite.push((path, records));
            }
        }
        if !rewrite.is_empty() {
            let kept: HashSet<packs::Digest32> = keep.into_iter().collect();
            self.rewrite_packs(&dir, &rewrite, referenced, &kept, report)?;
        }
        // This process's view of the packs is stale now.
        self.packs.rescan()
    }

    /// Copies the referenced objects of `rewrite` that are in no kept pack or loose file into
    /// one new pack, makes it durable and visible, then deletes the packs of `rewrite`.
    fn rewrite_packs(
        &self,
        dir: &Path,
        rewrite: &[(PathBuf, Vec<packs::Record>)],
        referenced: &HashSet<String>,
        kept: &HashSet<packs::Digest32>,
        report: &mut SweepReport,
    ) -> Result<()> {
        let mut writer = PackWriter::create(dir, &temp_builder())?;
        let mut carried = HashSet::new();
        for (path, records) in rewrite {
            for record in records {
                let hash = hex::encode(record.hash);
                let elsewhere = kept.contains(&record.hash)
                    || carried.contains(&record.hash)
                    || self.object_path(&hash).is_file()
                    || self.legacy_path(&hash).is_file();
                if !referenced.contains(&hash) {
                    report.removed += 1;
                    report.removed_bytes += record.length;
                } else if !elsewhere {
                    let packed = Packed {
                        pack: path.clone(),
                        offset: record.offset,
                        length: record.length,
                        durable: false,
                    };
                    let mut bytes = Vec::new();
                    packs::copy_packed(&packed, &hash, &mut bytes)?;
                    writer.add(record.hash, &bytes)?;
                    carried.insert(record.hash);
                    report.kept += 1;
                }
            }
        }
        if !writer.is_empty() {
            let finished = writer.finish()?;
            finished.file().sync_data()?;
            finished.persist(dir)?;
            sync_dir(dir)?;
        }
        for (path, _) in rewrite {
            fs_err::remove_file(path)?;
            report.packs_removed += 1;
        }
        sync_dir(dir)?;
        if !carried.is_empty() {
            report.packs_written += 1;
        }
        Ok(())
    }

    /// Reads every pack under its final name and checks every object in it against its
    /// hash; returns how many objects were checked. The first damage found is the error.
    pub fn verify_packs(&self) -> Result<u64> {
        let dir = self.packs.dir();
        let mut checked = 0;
        for (name, _) in packs::list(dir)? {
            let path = dir.join(&name);
            for record in packs::read_index(&path)? {
                let packed = Packed {
                    pack: path.clone(),
                    offset: record.offset,
                    length: record.length,
                    durable: false,
                };
                packs::copy_packed(&packed, &hex::encode(record.hash), &mut std::io::sink())?;
                checked += 1;
            }
        }
        Ok(checked)
    }
}

fn is_young(metadata: &std::fs::Metadata, now: SystemTime, grace: Duration) -> bool {
    metadata
        .modified()
        .ok()
        .and_then(|modified| now.duration_since(modified).ok())
        .is_none_or(|age| age < grace)
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
    if is_young(&metadata, now, grace) {
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
    /// Objects deleted, loose or packed.
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Objects kept (referenced, or younger than the grace period).
    pub kept: u64,
    /// Temporary files of interrupted writes deleted.
    pub temporary_files: u64,
    /// Packs deleted: wholly unreferenced, or rewritten without their unreferenced objects.
    pub packs_removed: u64,
    /// New packs written to hold the referenced objects of rewritten packs.
    pub packs_written: u64,
    /// Packs that could not be read (kept untouched: what they hold is unknown).
    pub damaged_packs: Vec<PathBuf>,
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
    /// Large objects, each in its own temporary file.
    staged: Vec<(tempfile::TempPath, String)>,
    /// Small objects, all in one pack (created with the first).
    pack: Option<PackWriter>,
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
    /// store's (a full disk), which stops the snapshot. `stat` is the file's own metadata
    /// (links not followed) when the caller has it, from its folder's listing.
    pub(crate) fn put_file(
        &mut self,
        path: &Path,
        stat: Option<std::fs::Metadata>,
    ) -> Result<std::result::Result<Put, Unreadable>> {
        let stat = match stat {
            Some(stat) => Ok(stat),
            None => fs_err::symlink_metadata(path),
        };
        if let Ok(metadata) = stat
            && metadata.is_file()
            && let Some(hash) = self.cache.lookup(path, &metadata)
            && self.store.contains(&hash)?
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
        if self.present(&hash)? {
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
        let digest: packs::Digest32 = Sha256::digest(bytes).into();
        let hash = hex::encode(digest);
        let size = bytes.len() as u64;
        if self.present(&hash)? {
            return Ok((hash, size, 0));
        }
        if size > PACKED_MAX_BYTES {
            return self.stage(true, |sink| {
                sink.write_all(bytes)?;
                Ok((hash.clone(), size))
            });
        }
        if self.pack.is_none() {
            self.pack = Some(self.start_pack()?);
        }
        if let Some(pack) = &mut self.pack {
            pack.add(digest, bytes)?;
        }
        self.staged_hashes.insert(hash.clone());
        Ok((hash, size, size))
    }

    /// Creates this batch's pack (and the packs folder, whose creation the commit then makes
    /// durable in the objects folder).
    fn start_pack(&mut self) -> Result<PackWriter> {
        let dir = self.store.packs.dir();
        match fs_err::create_dir(dir) {
            Ok(()) => {
                self.found_in.insert(self.store.dir.clone());
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
        PackWriter::create(dir, &temp_builder())
    }

    /// Whether the object is already stored or staged; a stored one's folder is synced at
    /// commit. Answers from the packs seen when the batch began: an object packed by another
    /// process since is stored again, which costs space, never correctness.
    fn present(&mut self, hash: &str) -> Result<bool> {
        if self.staged_hashes.contains(hash) {
            return Ok(true);
        }
        let folder = match self.store.locate(hash, OnMiss::Answer)? {
            None => return Ok(false),
            // This process synced the folder since the pack was in it.
            Some(Location::Packed(packed)) if packed.durable => None,
            Some(Location::Packed(packed)) => packed.pack.parent().map(Path::to_path_buf),
            Some(Location::Loose(path)) => path.parent().map(Path::to_path_buf),
        };
        self.found_in.extend(folder);
        Ok(true)
    }

    /// Writes a new large object to a temporary file in the store, unsynced and read-only
    /// from the start. `checked`: the caller already knows the object is absent (its hash
    /// was known before writing); otherwise the hash of what was written is looked up again.
    fn stage(
        &mut self,
        checked: bool,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<(String, u64)>,
    ) -> Result<(String, u64, u64)> {
        let mut temp = temp_builder().tempfile_in(&self.store.dir)?;
        let (hash, size) = fill(temp.as_file_mut())?;
        if !checked && self.present(&hash)? {
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
        let pack = self
            .pack
            .take()
            .filter(|pack| !pack.is_empty())
            .map(PackWriter::finish)
            .transpose()?;
        if !self.staged.is_empty() || pack.is_some() {
            sync_data(&dir, &self.staged, pack.as_ref())?;
        }
        if let Some(pack) = pack {
            let packs_dir = self.store.packs.dir().to_path_buf();
            let records = pack.records.clone();
            let name = pack.persist(&packs_dir)?;
            self.store.packs.add(&name, records);
            self.found_in.insert(packs_dir);
        }
        if !self.staged.is_empty() {
            for (temp, hash) in std::mem::take(&mut self.staged) {
                temp.persist(self.store.object_path(&hash))
                    .map_err(|err| err.error)?;
            }
            self.found_in.insert(dir.clone());
        }
        // Listed before the folder is synced: the sync makes their entries durable.
        let packs_dir = self.store.packs.dir();
        let listed = self
            .found_in
            .contains(packs_dir)
            .then(|| self.store.packs.loaded());
        for folder in &self.found_in {
            sync_dir(folder)?;
        }
        if let Some(listed) = listed {
            self.store.packs.mark_durable(listed);
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

/// Makes the bytes of every new file durable: one `fdatasync` per file when there are few
/// (a pack, perhaps a large object or two: this flushes nothing but our own writes), one
/// `syncfs` of the store's filesystem on Linux when there are many (measured far faster than
/// hundreds of `fdatasync`s; see docs/BENCHMARKS.md).
fn sync_data(
    dir: &Path,
    staged: &[(tempfile::TempPath, String)],
    pack: Option<&FinishedPack>,
) -> Result<()> {
    #[cfg(target_os = "linux")]
    if staged.len() + usize::from(pack.is_some()) > FEW_FILES {
        let folder = fs_err::File::open(dir)?;
        rustix::fs::syncfs(&folder).map_err(std::io::Error::from)?;
        return Ok(());
    }
    let _ = dir;
    if let Some(pack) = pack {
        pack.file().sync_data()?;
    }
    for (temp, _) in staged {
        fs_err::File::open(&**temp)?.sync_data()?;
    }
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

pub(crate) fn copy_hashing(
    source: &mut impl Read,
    sink: &mut impl Write,
) -> std::io::Result<(String, u64)> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    use crate::fsutil::folder_syncs;

    /// The folder syncs one batch storing `bytes` makes at its commit.
    fn syncs_to_store(store: &ObjectStore, root: &Path, bytes: &[u8]) -> usize {
        let before = folder_syncs();
        let mut batch = store.begin(root).unwrap();
        batch.put_bytes(bytes).unwrap();
        drop(batch.commit().unwrap());
        folder_syncs() - before
    }

    /// Packs `bytes` the way another process would, up to the rename: nothing synced.
    fn pack_elsewhere(store: &ObjectStore, bytes: &[u8]) -> PathBuf {
        let dir = store.packs.dir().to_path_buf();
        fs_err::create_dir_all(&dir).unwrap();
        let mut writer = PackWriter::create(&dir, &temp_builder()).unwrap();
        writer.add(Sha256::digest(bytes).into(), bytes).unwrap();
        let name = writer.finish().unwrap().persist(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn objects_found_in_a_pack_whose_folder_this_process_synced_sync_nothing_more() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("objects"));
        assert!(syncs_to_store(&store, temp.path(), b"first version") > 0);
        assert_eq!(syncs_to_store(&store, temp.path(), b"first version"), 0);
    }

    #[test]
    fn objects_found_in_a_pack_another_writer_may_not_have_synced_sync_its_folder() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("objects"));
        // A pack of this process's first, so the folder exists and was synced once.
        syncs_to_store(&store, temp.path(), b"ours");
        pack_elsewhere(&store, b"theirs");
        assert_eq!(syncs_to_store(&store, temp.path(), b"theirs"), 1);
        assert_eq!(syncs_to_store(&store, temp.path(), b"theirs"), 0);
    }

    #[test]
    fn a_pack_written_anew_under_a_known_name_is_not_taken_for_durable() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("objects"));
        syncs_to_store(&store, temp.path(), b"same bytes");
        assert_eq!(syncs_to_store(&store, temp.path(), b"same bytes"), 0);
        // Deleted and written again (another inode), the way a sweep and a second writer
        // could leave it.
        let pack = packs::list(store.packs.dir()).unwrap().pop().unwrap().0;
        let path = store.packs.dir().join(pack);
        let copy = temp.path().join("copy.pack");
        fs_err::copy(&path, &copy).unwrap();
        fs_err::remove_file(&path).unwrap();
        fs_err::rename(&copy, &path).unwrap();
        assert_eq!(syncs_to_store(&store, temp.path(), b"same bytes"), 1);
        assert_eq!(
            store
                .read_object(&hex::encode(Sha256::digest(b"same bytes")))
                .unwrap(),
            b"same bytes"
        );
    }
}
