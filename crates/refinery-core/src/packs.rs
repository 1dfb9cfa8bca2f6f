//! Packs: one snapshot's small objects in one file, so a first snapshot of a tree of small
//! files creates one file in the store instead of one per file.
//!
//! Creating a file is what a first snapshot paid for: on this project's journal-less ext4 each
//! new inode costs a scan for recently deleted ones, far more than writing its bytes (see
//! docs/BENCHMARKS.md, "Snapshots"). A batch therefore appends every new small object to one
//! pack and makes it durable and visible with one sync and one rename.
//!
//! ```text
//! objects/packs/<64 hex>.pack   a pack; its name is the SHA-256 of its index records
//! objects/packs/.incoming-*     a pack being written (deleted on error, swept after a crash)
//! ```
//!
//! Format, integers little-endian:
//!
//! ```text
//! 0          "RFPACK\0\x01"                                     magic and version
//! 8          the objects' bytes, back to back
//! I          N index records sorted by hash: SHA-256 (32 bytes) | offset (u64) | length (u64)
//! I + 48 N   trailer: I (u64) | N (u64) | SHA-256 of the N records (32 bytes) | "RFPKEND\x01"
//! ```
//!
//! **Why one file with a trailing index** rather than git's pack and separate index: one
//! inode and one rename per batch (the very cost packs exist to avoid), no state in which a
//! pack is visible without its index, and the index is written after the objects, so a batch
//! never holds its objects in memory. Reading an index costs one open and three small reads;
//! each process does it once per pack (see [`PackIndex`]).
//!
//! **Integrity.** The index carries its own checksum, checked when it is loaded; every
//! object read is hashed and compared with its name, like a loose object. Damage in either
//! place is [`Error::DamagedPack`], naming the file and the byte offset; wrong bytes are never
//! returned.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sha2::{Digest, Sha256};

use crate::error::{Error, PackDamage, Result};

/// The packs folder inside the objects folder.
pub(crate) const PACKS_DIR: &str = "packs";
const EXTENSION: &str = ".pack";
const MAGIC: &[u8; 8] = b"RFPACK\0\x01";
const END_MAGIC: &[u8; 8] = b"RFPKEND\x01";
const RECORD_BYTES: u64 = 48;
const TRAILER_BYTES: u64 = 56;
/// Writes go through a buffer this large: a pack of 300 small files is a few dozen writes.
const WRITE_BUFFER: usize = 256 * 1024;

/// A SHA-256 as bytes.
pub(crate) type Digest32 = [u8; 32];

/// One object in a pack's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) hash: Digest32,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// Where one packed object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    pub(crate) pack: PathBuf,
    pub(crate) offset: u64,
    pub(crate) length: u64,
    /// The pack's folder entry is known durable: this process synced the folder after the
    /// pack was in it (see [`PackIndex::mark_durable`]).
    pub(crate) durable: bool,
}

/// The bytes of a hex hash, or `None` when it is not 64 hex digits. Every file of every walk
/// is looked up by its hash, so this is a table lookup per digit with one check at the end,
/// not a branch per digit.
pub(crate) fn digest_of(hash: &str) -> Option<Digest32> {
    let digits: &[u8; 64] = hash.as_bytes().try_into().ok()?;
    let mut digest = [0u8; 32];
    let mut seen = 0u8;
    for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        seen |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    // A digit that is not hex reads as 0xff, whose high bits survive the OR.
    (seen & 0xf0 == 0).then_some(digest)
}

/// Each byte's value as a hex digit (either case), 0xff for a byte that is not one.
static NIBBLE: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut index = 0;
    while index < 10 {
        table[b'0' as usize + index] = index as u8;
        index += 1;
    }
    let mut index = 0;
    while index < 6 {
        table[b'a' as usize + index] = 10 + index as u8;
        table[b'A' as usize + index] = 10 + index as u8;
        index += 1;
    }
    table
};

/// Whether a file name in the packs folder is a finished pack.
fn is_pack_name(name: &str) -> bool {
    name.strip_suffix(EXTENSION)
        .is_some_and(|stem| stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A pack being written: a temporary file in the packs folder, unsynced.
pub(crate) struct PackWriter {
    file: BufWriter<std::fs::File>,
    temp: tempfile::TempPath,
    records: Vec<Record>,
    written: u64,
}

impl PackWriter {
    /// Starts a pack in `dir` (which must exist). `temp` names the temporary file, read-only
    /// from the start like every object.
    pub(crate) fn create(dir: &Path, temp: &tempfile::Builder<'_, '_>) -> Result<Self> {
        let (file, temp) = temp.tempfile_in(dir)?.into_parts();
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, file);
        file.write_all(MAGIC)?;
        Ok(Self {
            file,
            temp,
            records: Vec::new(),
            written: MAGIC.len() as u64,
        })
    }

    /// Appends one object (the caller has hashed it and checked it is not already packed).
    pub(crate) fn add(&mut self, hash: Digest32, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes)?;
        let length = bytes.len() as u64;
        self.records.push(Record {
            hash,
            offset: self.written,
            length,
        });
        self.written += length;
        Ok(())
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Writes the index and trailer. The pack is complete but still unsynced and unnamed.
    pub(crate) fn finish(mut self) -> Result<FinishedPack> {
        self.records.sort_by_key(|record| record.hash);
        self.records.dedup_by(|a, b| a.hash == b.hash);
        let mut index = Vec::with_capacity(self.records.len() * RECORD_BYTES as usize);
        for record in &self.records {
            index.extend_from_slice(&record.hash);
            index.extend_from_slice(&record.offset.to_le_bytes());
            index.extend_from_slice(&record.length.to_le_bytes());
        }
        let checksum: Digest32 = Sha256::digest(&index).into();
        self.file.write_all(&index)?;
        self.file.write_all(&self.written.to_le_bytes())?;
        self.file
            .write_all(&(self.records.len() as u64).to_le_bytes())?;
        self.file.write_all(&checksum)?;
        self.file.write_all(END_MAGIC)?;
        let file = self
            .file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        Ok(FinishedPack {
            file,
            temp: self.temp,
            name: format!("{}{EXTENSION}", hex::encode(checksum)),
            records: self.records,
        })
    }
}

/// A complete pack under its temporary name.
pub(crate) struct FinishedPack {
    file: std::fs::File,
    temp: tempfile::TempPath,
    name: String,
    pub(crate) records: Vec<Record>,
}

impl FinishedPack {
    /// The open file, for a sync of its bytes.
    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Renames the pack into `dir` under its final name; returns that name. A pack of the
    /// same name already there has the same index, hence the same bytes: this one is
    /// dropped and the other serves.
    pub(crate) fn persist(self, dir: &Path) -> Result<String> {
        match self.temp.persist_noclobber(dir.join(&self.name)) {
            Ok(()) => {}
            Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(Error::Io(std::io::Error::new(
                    err.error.kind(),
                    format!(
                        "renaming a new pack into `{}`: {}",
                        dir.display(),
                        err.error
                    ),
                )));
            }
        }
        Ok(self.name)
    }
}

#[cfg(unix)]
fn inode_at(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map_or(0, |metadata| std::os::unix::fs::MetadataExt::ino(&metadata))
}

#[cfg(not(unix))]
fn inode_at(_path: &Path) -> u64 {
    0
}

fn damaged(pack: &Path, offset: u64, damage: PackDamage) -> Error {
    Error::DamagedPack {
        pack: pack.to_path_buf(),
        offset,
        damage,
    }
}

fn read_at(file: &mut (impl Read + Seek), offset: u64, buffer: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Reads and checks a pack's index. A pack that is not what a writer made is
/// [`Error::DamagedPack`]; a failure to read it at all is [`Error::Io`].
pub(crate) fn read_index(pack: &Path) -> Result<Vec<Record>> {
    let mut file = fs_err::File::open(pack)?;
    let length = file.metadata()?.len();
    if length < MAGIC.len() as u64 + TRAILER_BYTES {
        return Err(damaged(pack, 0, PackDamage::NotAPack));
    }
    let mut magic = [0u8; 8];
    read_at(&mut file, 0, &mut magic)?;
    let trailer_at = length - TRAILER_BYTES;
    let mut trailer = [0u8; TRAILER_BYTES as usize];
    read_at(&mut file, trailer_at, &mut trailer)?;
    if &magic != MAGIC || &trailer[48..] != END_MAGIC {
        let offset = if &magic == MAGIC { trailer_at } else { 0 };
        return Err(damaged(pack, offset, PackDamage::NotAPack));
    }
    let index_at = u64_at(&trailer, 0);
    let count = u64_at(&trailer, 8);
    let fits = count
        .checked_mul(RECORD_BYTES)
        .and_then(|bytes| bytes.checked_add(index_at))
        .is_some_and(|end| end == trailer_at && index_at >= MAGIC.len() as u64);
    if !fits {
        return Err(damaged(pack, trailer_at, PackDamage::Index));
    }
    let mut index = vec![0u8; (count * RECORD_BYTES) as usize];
    read_at(&mut file, index_at, &mut index)?;
    if Sha256::digest(&index).as_slice() != &trailer[16..48] {
        return Err(damaged(pack, index_at, PackDamage::Index));
    }
    let mut records = Vec::with_capacity(count as usize);
    for (number, chunk) in index.chunks_exact(RECORD_BYTES as usize).enumerate() {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&chunk[..32]);
        let record = Record {
            hash,
            offset: u64_at(chunk, 32),
            length: u64_at(chunk, 40),
        };
        let inside = record.offset >= MAGIC.len() as u64
            && record
                .offset
                .checked_add(record.length)
                .is_some_and(|end| end <= index_at);
        if !inside {
            let at = index_at + number as u64 * RECORD_BYTES;
            return Err(damaged(pack, at, PackDamage::Index));
        }
        records.push(record);
    }
    Ok(records)
}

/// Copies one packed object to `sink`, checking its hash. A pack that is no longer there
/// (another process's sweep rewrote it) is an [`Error::Io`] of kind `NotFound`, which the
/// caller answers by rescanning.
pub(crate) fn copy_packed(packed: &Packed, hash: &str, sink: &mut impl Write) -> Result<u64> {
    let mut file = fs_err::File::open(&packed.pack)?;
    file.seek(SeekFrom::Start(packed.offset))?;
    let mut source = Read::take(&mut file, packed.length);
    let damage = || {
        damaged(
            &packed.pack,
            packed.offset,
            PackDamage::Object {
                hash: hash.to_owned(),
            },
        )
    };
    let (actual, size) = crate::objects::copy_hashing(&mut source, sink)?;
    if size != packed.length || !actual.eq_ignore_ascii_case(hash) {
        return Err(damage());
    }
    Ok(size)
}

/// Every finished pack in `dir` with its inode (none when the folder does not exist).
pub(crate) fn list(dir: &Path) -> Result<Vec<(String, u64)>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_pack_name(&name) {
            names.push((name, inode_of(&entry)));
        }
    }
    Ok(names)
}

#[cfg(unix)]
fn inode_of(entry: &fs_err::DirEntry) -> u64 {
    std::os::unix::fs::DirEntryExt::ino(entry)
}

/// Without inodes no pack is ever taken for durable: every folder found is synced.
#[cfg(not(unix))]
fn inode_of(_entry: &fs_err::DirEntry) -> u64 {
    0
}

/// What one process knows of a store's packs: the index of every pack it has read, shared by
/// every [`crate::ObjectStore`] handle on the same folder (callers make handles freely, one
/// per call), and refreshed by a rescan of the folder when a hash is missed, so packs other
/// processes write later are found.
pub(crate) struct PackIndex {
    dir: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    scanned: bool,
    packs: HashMap<Arc<str>, Vec<Record>>,
    /// Packs whose index could not be read, with what was wrong.
    damaged: HashMap<Arc<str>, (u64, PackDamage)>,
    by_hash: HashMap<Digest32, (Arc<str>, u64, u64)>,
    /// The inode each loaded pack had when it was listed (0: unknown).
    inodes: HashMap<Arc<str>, u64>,
    /// Packs (by name and inode) whose folder entry this process made durable: a snapshot
    /// that finds its objects in one of them need not sync the folder again. A pack
    /// deleted and written anew under the same name has another inode, so it is not.
    durable: HashSet<(Arc<str>, u64)>,
}

impl Loaded {
    fn insert(&mut self, name: Arc<str>, records: Vec<Record>) {
        for record in &records {
            self.by_hash.entry(record.hash).or_insert((
                Arc::clone(&name),
                record.offset,
                record.length,
            ));
        }
        self.packs.insert(name, records);
    }

    fn is_durable(&self, name: &Arc<str>) -> bool {
        match self.inodes.get(name) {
            Some(&inode) if inode != 0 => self.durable.contains(&(Arc::clone(name), inode)),
            _ => false,
        }
    }

    fn rebuild(&mut self) {
        let packs = std::mem::take(&mut self.packs);
        self.by_hash.clear();
        for (name, records) in packs {
            self.insert(name, records);
        }
    }
}

impl std::fmt::Debug for PackIndex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PackIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether a lookup that misses rescans the folder first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnMiss {
    /// Answer from what is loaded (a writer deduplicating: a miss only costs a duplicate).
    Answer,
    /// Rescan, then answer (a reader: another process may have written the pack since).
    Rescan,
}

impl PackIndex {
    /// The index of the packs in `dir`, shared within this process.
    pub(crate) fn shared(dir: PathBuf) -> Arc<Self> {
        static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<PackIndex>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(all.entry(dir.clone()).or_insert_with(|| {
            Arc::new(Self {
                dir,
                state: Mutex::default(),
            })
        }))
    }

    /// The packs folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the folder again: loads packs not seen yet, forgets packs that are gone.
    pub(crate) fn rescan(&self) -> Result<()> {
        let listed = list(&self.dir)?;
        let mut state = self.state();
        let present: HashMap<&str, u64> = listed
            .iter()
            .map(|(name, inode)| (name.as_str(), *inode))
            .collect();
        // A name whose inode changed is another file now (deleted and written anew): it is
        // loaded again like a new one.
        let same = |name: &Arc<str>, inodes: &HashMap<Arc<str>, u64>| {
            present.get(&**name).is_some_and(|inode| {
                inodes
                    .get(name)
                    .is_none_or(|known| *known == 0 || known == inode)
            })
        };
        let before = state.packs.len() + state.damaged.len();
        let inodes = std::mem::take(&mut state.inodes);
        state.packs.retain(|name, _| same(name, &inodes));
        state
            .damaged
            .retain(|name, _| present.contains_key(&**name));
        state.inodes = inodes;
        if state.packs.len() + state.damaged.len() != before {
            state.rebuild();
        }
        let Loaded {
            packs,
            inodes,
            durable,
            ..
        } = &mut *state;
        inodes.retain(|name, _| packs.contains_key(name));
        durable.retain(|(name, inode)| present.get(&**name) == Some(inode));
        for (name, inode) in listed {
            if state.packs.contains_key(name.as_str()) || state.damaged.contains_key(name.as_str())
            {
                continue;
            }
            let name: Arc<str> = name.into();
            match read_index(&self.dir.join(&*name)) {
                Ok(records) => {
                    state.inodes.insert(Arc::clone(&name), inode);
                    state.insert(name, records);
                }
                Err(Error::DamagedPack { offset, damage, .. }) => {
                    state.damaged.insert(name, (offset, damage));
                }
                // Deleted between the listing and the read (a sweep): nothing to load.
                Err(Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        state.scanned = true;
        Ok(())
    }

    /// Where the object with this hash is packed, if it is.
    pub(crate) fn find(&self, hash: &Digest32, on_miss: OnMiss) -> Result<Option<Packed>> {
        if !self.state().scanned {
            self.rescan()?;
        } else if let Some(found) = self.lookup(hash) {
            return Ok(Some(found));
        } else if on_miss == OnMiss::Rescan {
            self.rescan()?;
        }
        Ok(self.lookup(hash))
    }

    /// Whether a loaded pack holds `hash`, without building its path: a walk asks this for
    /// every file its stat cache vouches for.
    pub(crate) fn contains(&self, hash: &Digest32) -> Result<bool> {
        if !self.state().scanned {
            self.rescan()?;
        }
        Ok(self.state().by_hash.contains_key(hash))
    }

    fn lookup(&self, hash: &Digest32) -> Option<Packed> {
        let state = self.state();
        let (name, offset, length) = state.by_hash.get(hash)?;
        Some(Packed {
            pack: self.dir.join(&**name),
            offset: *offset,
            length: *length,
            durable: state.is_durable(name),
        })
    }

    /// A pack this process just wrote and renamed into place.
    pub(crate) fn add(&self, name: &str, records: Vec<Record>) {
        // Its inode, so a later sync of the folder can mark it durable.
        let inode = inode_at(&self.dir.join(name));
        let mut state = self.state();
        if state.scanned && !state.packs.contains_key(name) {
            let name: Arc<str> = name.into();
            state.inodes.insert(Arc::clone(&name), inode);
            state.insert(name, records);
        }
    }

    /// The packs loaded now, by name and inode: what a sync of the folder begun after this
    /// call makes durable (their renames into it are done).
    pub(crate) fn loaded(&self) -> Vec<(Arc<str>, u64)> {
        let state = self.state();
        state
            .inodes
            .iter()
            .filter(|(_, inode)| **inode != 0)
            .map(|(name, inode)| (Arc::clone(name), *inode))
            .collect()
    }

    /// Records that the folder was synced after `packs` were listed in it.
    pub(crate) fn mark_durable(&self, packs: Vec<(Arc<str>, u64)>) {
        self.state().durable.extend(packs);
    }

    /// The error for one damaged pack, if any is known: a hash found nowhere may have been
    /// in it, and the user should hear about the damage rather than a missing object.
    pub(crate) fn damage(&self) -> Option<Error> {
        let state = self.state();
        let mut damaged: Vec<_> = state.damaged.iter().collect();
        damaged.sort_by(|a, b| a.0.cmp(b.0));
        damaged
            .first()
            .map(|(name, (offset, damage))| Error::DamagedPack {
                pack: self.dir.join(&***name),
                offset: *offset,
                damage: damage.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_64_hex_digits_of_either_case_and_nothing_else() {
        let hash = "00ff10Aa".repeat(8);
        let mut expected = [0u8; 32];
        hex::decode_to_slice(&hash, &mut expected).unwrap();
        assert_eq!(digest_of(&hash), Some(expected));
        assert_eq!(digest_of(&hash.to_lowercase()), Some(expected));
        for bad in [
            hash[..62].to_owned(),
            format!("{hash}00"),
            format!("{}g", &hash[..63]),
            format!("x{}", &hash[1..]),
            format!("{}é", &hash[..62]),
            String::new(),
        ] {
            assert_eq!(digest_of(&bad), None, "{bad}");
        }
    }

    fn pack_of(dir: &Path, objects: &[&[u8]]) -> PathBuf {
        let mut writer = PackWriter::create(dir, &tempfile::Builder::new()).unwrap();
        for bytes in objects {
            writer.add(Sha256::digest(bytes).into(), bytes).unwrap();
        }
        let name = writer.finish().unwrap().persist(dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_pack_round_trips_and_names_itself_by_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = pack_of(dir.path(), &[b"one", b"two", b""]);
        let records = read_index(&path).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records.windows(2).all(|pair| pair[0].hash < pair[1].hash));
        for bytes in [&b"one"[..], b"two", b""] {
            let hash = hex::encode(Sha256::digest(bytes));
            let record = records
                .iter()
                .find(|record| hex::encode(record.hash) == hash)
                .unwrap();
            let packed = Packed {
                pack: path.clone(),
                offset: record.offset,
                length: record.length,
                durable: false,
            };
            let mut out = Vec::new();
            copy_packed(&packed, &hash, &mut out).unwrap();
            assert_eq!(out, bytes);
        }
        // The same objects in the same order make the same pack: a second writer's rename
        // is harmless. In another order they make another pack.
        assert_eq!(pack_of(dir.path(), &[b"one", b"two", b""]), path);
        assert_ne!(pack_of(dir.path(), &[b"two", b"one", b""]), path);
    }

    #[test]
    fn truncated_or_altered_packs_are_damage_with_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = pack_of(dir.path(), &[b"alpha", b"beta"]);
        let good = fs_err::read(&path).unwrap();
        let check = |bytes: &[u8]| {
            fs_err::write(&path, bytes).unwrap();
            read_index(&path).unwrap_err()
        };
        let truncated = check(&good[..good.len() - 1]);
        assert!(
            matches!(
                truncated,
                Error::DamagedPack {
                    damage: PackDamage::NotAPack,
                    ..
                }
            ),
            "{truncated}"
        );
        // One flipped bit inside the index: the checksum catches it.
        let index_at = good.len() - TRAILER_BYTES as usize - 2 * RECORD_BYTES as usize;
        let mut flipped = good.clone();
        flipped[index_at + 40] ^= 1;
        match check(&flipped) {
            Error::DamagedPack {
                offset,
                damage: PackDamage::Index,
                ..
            } => assert_eq!(offset, index_at as u64),
            other => panic!("{other}"),
        }
        assert!(matches!(
            check(b"RFPACK\0\x01 not a pack at all, but long enough to have a trailer of 56 bytes"),
            Error::DamagedPack {
                damage: PackDamage::NotAPack,
                ..
            }
        ));
    }
}
