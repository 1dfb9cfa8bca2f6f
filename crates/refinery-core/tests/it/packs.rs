//! Packs of small objects: a first snapshot creates a handful of files however many it
//! stores, packed objects restore byte-identical, damage is an error naming the pack and the
//! offset, packs written by another process are found, and a sweep deletes or rewrites packs
//! without losing a referenced object.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use refinery_core::snapshot::restore;
use refinery_core::{Error, ObjectStore, PackDamage, Snapshot, WorkspaceScope};
use sha2::{Digest as _, Sha256};

use crate::support::Workspace;

const CHILD_ENV: &str = "REFINERY_PACK_CHILD";

fn snapshot(ws: &Workspace, paths: &[&str]) -> Snapshot {
    let paths: Vec<String> = paths.iter().map(|path| (*path).to_owned()).collect();
    WorkspaceScope::from_walk(&ws.root, &ws.state_dirs())
        .unwrap()
        .snapshot(&ws.objects(), &paths)
        .unwrap()
}

fn hash_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn packs_in(objects: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = match fs_err::read_dir(objects.join("packs")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "pack"))
            .collect(),
        Err(_) => Vec::new(),
    };
    packs.sort();
    packs
}

/// Every file and folder under `dir`, counted.
fn entries_under(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        count += 1;
        if entry.file_type().unwrap().is_dir() {
            count += entries_under(&entry.path());
        }
    }
    count
}

#[test]
fn a_first_snapshot_of_many_small_files_creates_a_few_files_not_one_per_file() {
    let ws = Workspace::new();
    for index in 0..200 {
        ws.write(
            &format!("pages/section_{}/page_{index}.html", index % 7),
            format!("<p>page {index}</p>").as_bytes(),
        );
    }
    let taken = snapshot(&ws, &["."]);
    assert_eq!(taken.entries.len(), 200);
    // The pin lock, the packs folder and its one pack, the stat cache's folder and file.
    let created = entries_under(&ws.state.join("objects"));
    assert!(
        created <= 6,
        "{created} entries under objects/ for 200 files"
    );
    assert_eq!(packs_in(&ws.state.join("objects")).len(), 1);
}

#[test]
fn packed_and_loose_objects_restore_byte_identical() {
    let ws = Workspace::new();
    let large: Vec<u8> = (0..=(1024 * 1024)).map(|n| (n % 251) as u8).collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty.txt", Vec::new()),
        ("a.txt", b"alpha\n".to_vec()),
        ("nested/b.bin", vec![0, 255, 1, 254, 0, 0]),
        ("same-as-a.txt", b"alpha\n".to_vec()),
        ("large.bin", large.clone()),
    ];
    for (path, bytes) in &files {
        ws.write(path, bytes);
    }
    let taken = snapshot(&ws, &["."]);
    let objects = ws.state.join("objects");
    // Small objects are in the pack, not loose; the large one is a loose file.
    assert_eq!(packs_in(&objects).len(), 1);
    assert!(!objects.join(hash_of(b"alpha\n")).exists());
    assert!(objects.join(hash_of(&large)).is_file());
    let dest = ws.beside("restored");
    restore(&ws.objects(), &taken.entries, &dest).unwrap();
    for (path, bytes) in &files {
        assert_eq!(&fs_err::read(dest.join(path)).unwrap(), bytes, "{path}");
    }
    assert_eq!(ws.objects().verify_packs().unwrap(), 3);
}

#[test]
fn flat_loose_objects_of_earlier_versions_are_read_and_not_stored_again() {
    let ws = Workspace::new();
    let bytes = b"stored loose by Refinery 0.4\n";
    let objects = ws.state.join("objects");
    fs_err::create_dir_all(&objects).unwrap();
    fs_err::write(objects.join(hash_of(bytes)), bytes).unwrap();
    ws.write("old.txt", bytes);
    let taken = snapshot(&ws, &["old.txt"]);
    assert_eq!(taken.new_bytes, 0);
    assert!(packs_in(&objects).is_empty());
    let dest = ws.beside("restored");
    restore(&ws.objects(), &taken.entries, &dest).unwrap();
    assert_eq!(fs_err::read(dest.join("old.txt")).unwrap(), bytes);
}

#[test]
fn a_damaged_object_in_a_pack_is_an_error_naming_the_pack_and_offset() {
    let ws = Workspace::new();
    ws.write("one.txt", b"the first object, intact");
    ws.write("two.txt", b"the second object, to be damaged");
    let taken = snapshot(&ws, &["."]);
    let pack = packs_in(&ws.state.join("objects")).pop().unwrap();
    let mut bytes = fs_err::read(&pack).unwrap();
    let needle = b"to be damaged";
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap();
    bytes[at] ^= 0x20;
    make_writable(&pack);
    fs_err::write(&pack, &bytes).unwrap();

    let hash = hash_of(b"the second object, to be damaged");
    let err = ws.objects().read_object(&hash).unwrap_err();
    let object_at = (at - "the second object, ".len()) as u64;
    match &err {
        Error::DamagedPack {
            pack: named,
            offset,
            damage: PackDamage::Object { hash: damaged },
        } => {
            assert_eq!(named, &pack);
            assert_eq!(*offset, object_at);
            assert_eq!(damaged, &hash);
        }
        other => panic!("expected a damaged pack, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&pack.display().to_string()) && message.contains("byte"),
        "{message}"
    );
    // A restore stops on it too, and the intact object still reads.
    let dest = ws.beside("restored");
    let err = restore(&ws.objects(), &taken.entries, &dest).unwrap_err();
    assert!(matches!(err, Error::DamagedPack { .. }), "{err}");
    assert_eq!(
        ws.objects()
            .read_object(&hash_of(b"the first object, intact"))
            .unwrap(),
        b"the first object, intact"
    );
    assert!(matches!(
        ws.objects().verify_packs(),
        Err(Error::DamagedPack { .. })
    ));
}

#[test]
fn a_pack_with_a_damaged_index_is_named_when_its_objects_are_asked_for() {
    let ws = Workspace::new();
    ws.write("one.txt", b"indexed object");
    let taken = snapshot(&ws, &["."]);
    // A copy of the store that this process has never read, with one index byte flipped.
    let copy = ws.beside("copied-objects");
    copy_dir(&ws.state.join("objects"), &copy);
    let pack = packs_in(&copy).pop().unwrap();
    let mut bytes = fs_err::read(&pack).unwrap();
    let index_at = bytes.len() - 56 - 48;
    bytes[index_at + 3] ^= 1;
    make_writable(&pack);
    fs_err::write(&pack, &bytes).unwrap();
    let err = ObjectStore::new(&copy)
        .read_object(&taken.entries[0].hash)
        .unwrap_err();
    match err {
        Error::DamagedPack {
            pack: named,
            offset,
            damage: PackDamage::Index,
        } => {
            assert_eq!(named, pack);
            assert_eq!(offset, index_at as u64);
        }
        other => panic!("expected a damaged index, got {other}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

fn make_writable(path: &Path) {
    let mut permissions = fs_err::metadata(path).unwrap().permissions();
    #[allow(
        clippy::permissions_set_readonly_false,
        reason = "a test damaging a pack"
    )]
    permissions.set_readonly(false);
    fs_err::set_permissions(path, permissions).unwrap();
}

/// Not a test of its own: run by the next test as another process, it snapshots the
/// workspace it is given into the same store.
#[test]
fn pack_writer_in_another_process() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    let state = root.join(".refinery");
    WorkspaceScope::from_walk(&root, std::slice::from_ref(&state))
        .unwrap()
        .snapshot(
            &ObjectStore::new(state.join("objects")),
            &["late.txt".to_owned()],
        )
        .unwrap();
}

#[test]
fn a_pack_another_process_wrote_after_this_one_loaded_its_index_is_found() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let ws = Workspace::new();
    ws.write("early.txt", b"packed by this process");
    let early = snapshot(&ws, &["early.txt"]);
    // This process has now read the packs folder.
    assert!(ws.objects().read_object(&early.entries[0].hash).is_ok());
    ws.write("late.txt", b"packed by another process, later");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "packs::pack_writer_in_another_process",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &ws.root)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(packs_in(&ws.state.join("objects")).len(), 2);
    let late = hash_of(b"packed by another process, later");
    assert_eq!(
        ws.objects().read_object(&late).unwrap(),
        b"packed by another process, later"
    );
}

/// Writes `name` listing `hashes`, the way a manifest names its objects.
fn manifest(dir: &Path, name: &str, hashes: &[String]) {
    fs_err::create_dir_all(dir).unwrap();
    fs_err::write(dir.join(name), hashes.join("\n")).unwrap();
}

#[test]
fn a_sweep_deletes_unreferenced_packs_rewrites_partly_referenced_ones_and_keeps_the_rest() {
    let ws = Workspace::new();
    let objects = ws.state.join("objects");
    let roots = ws.beside("manifests");
    let contents: Vec<(&str, &[u8])> = vec![
        ("a.txt", b"kept: in a fully referenced pack"),
        ("b.txt", b"kept too"),
        ("c.txt", b"an orphan alone in its pack"),
        ("d.txt", b"referenced, in a pack with an orphan"),
        ("e.txt", b"the orphan beside it"),
    ];
    for (path, bytes) in &contents {
        ws.write(path, bytes);
    }
    let hash = |index: usize| hash_of(contents[index].1);
    drop(snapshot(&ws, &["a.txt", "b.txt"]));
    manifest(&roots, "one.json", &[hash(0), hash(1)]);
    drop(snapshot(&ws, &["c.txt"]));
    drop(snapshot(&ws, &["d.txt", "e.txt"]));
    manifest(&roots, "two.json", &[hash(3)]);
    assert_eq!(packs_in(&objects).len(), 3);

    let store = ObjectStore::new(&objects);
    let young = store
        .sweep(std::slice::from_ref(&roots), Duration::from_hours(1))
        .unwrap()
        .unwrap();
    assert_eq!((young.removed, young.packs_removed), (0, 0), "{young:?}");
    assert_eq!(packs_in(&objects).len(), 3);

    let report = store
        .sweep(std::slice::from_ref(&roots), Duration::ZERO)
        .unwrap()
        .unwrap();
    assert_eq!(report.removed, 2, "{report:?}");
    assert_eq!(
        report.removed_bytes,
        (contents[2].1.len() + contents[4].1.len()) as u64
    );
    assert_eq!((report.packs_removed, report.packs_written), (2, 1));
    assert_eq!(packs_in(&objects).len(), 2);
    for index in [0, 1, 3] {
        assert_eq!(store.read_object(&hash(index)).unwrap(), contents[index].1);
        assert_eq!(
            ObjectStore::new(&objects)
                .read_object(&hash(index))
                .unwrap(),
            contents[index].1
        );
    }
    for index in [2, 4] {
        assert!(store.read_object(&hash(index)).is_err(), "{index}");
    }
    assert_eq!(store.verify_packs().unwrap(), 3);
    // A second sweep finds nothing more to do.
    let again = store
        .sweep(std::slice::from_ref(&roots), Duration::ZERO)
        .unwrap()
        .unwrap();
    assert_eq!((again.removed, again.packs_removed), (0, 0), "{again:?}");
}

#[test]
fn a_sweep_keeps_and_reports_a_pack_it_cannot_read() {
    let ws = Workspace::new();
    let objects = ws.state.join("objects");
    ws.write("a.txt", b"in a pack whose index will be damaged");
    drop(snapshot(&ws, &["a.txt"]));
    let pack = packs_in(&objects).pop().unwrap();
    let mut bytes = fs_err::read(&pack).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    make_writable(&pack);
    fs_err::write(&pack, &bytes).unwrap();
    let report = ObjectStore::new(&objects)
        .sweep(&[ws.beside("no-manifests")], Duration::ZERO)
        .unwrap()
        .unwrap();
    assert_eq!(report.damaged_packs, vec![pack.clone()], "{report:?}");
    assert_eq!(report.packs_removed, 0);
    assert!(pack.is_file());
}
