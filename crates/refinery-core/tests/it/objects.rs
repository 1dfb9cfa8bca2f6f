//! The object store's promises: the stat cache never returns a stale hash, objects of the old
//! `objects/<2>/<62>` layout still restore, and a crash before a manifest leaves earlier
//! rounds intact while its orphans are swept, never while a writer holds the store.

use std::time::{Duration, SystemTime};

use refinery_core::snapshot::restore;
use refinery_core::{ObjectStore, SessionSettings, Snapshot, StateDir, WorkspaceScope};
use sha2::{Digest as _, Sha256};
use time::macros::datetime;

use crate::support::Workspace;

fn snapshot_all(ws: &Workspace) -> Snapshot {
    WorkspaceScope::from_walk(&ws.root, &ws.state_dirs())
        .unwrap()
        .snapshot(&ws.objects(), &[".".to_owned()])
        .unwrap()
}

fn hash_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hash_in(snapshot: &Snapshot, path: &str) -> String {
    snapshot
        .entries
        .iter()
        .find(|entry| entry.path == path)
        .unwrap()
        .hash
        .clone()
}

fn set_mtime(path: &std::path::Path, when: SystemTime) {
    fs_err::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Lets the clock pass the stat cache's racy margin for times just taken (a clock advance,
/// not a wait on another party).
fn let_times_settle() {
    std::thread::sleep(Duration::from_millis(150));
}

#[test]
fn a_same_size_rewrite_in_the_same_instant_is_read_again() {
    let ws = Workspace::new();
    let path = ws.write("page.html", b"first version");
    let first = snapshot_all(&ws);
    let mtime = fs_err::metadata(&path).unwrap().modified().unwrap();
    // Same size, same modification time: only the racy rule (and the change time) tell.
    fs_err::write(&path, b"other version").unwrap();
    set_mtime(&path, mtime);
    let second = snapshot_all(&ws);
    assert_eq!(hash_in(&first, "page.html"), hash_of(b"first version"));
    assert_eq!(hash_in(&second, "page.html"), hash_of(b"other version"));
}

#[test]
fn a_rewrite_with_the_modification_time_set_back_is_read_again() {
    let ws = Workspace::new();
    let path = ws.write("notes.md", b"alpha alpha");
    let old = SystemTime::now() - Duration::from_hours(1);
    set_mtime(&path, old);
    let_times_settle();
    // Hashed once, then trusted from the cache (the times are settled).
    snapshot_all(&ws);
    let cached = snapshot_all(&ws);
    assert_eq!(hash_in(&cached, "notes.md"), hash_of(b"alpha alpha"));
    fs_err::write(&path, b"omega omega").unwrap();
    set_mtime(&path, old);
    let after = snapshot_all(&ws);
    assert_eq!(hash_in(&after, "notes.md"), hash_of(b"omega omega"));
    let dest = ws.beside("restored");
    restore(&ws.objects(), &after.entries, &dest).unwrap();
    assert_eq!(fs_err::read(dest.join("notes.md")).unwrap(), b"omega omega");
}

#[test]
fn a_cached_file_whose_object_is_gone_is_stored_again() {
    let ws = Workspace::new();
    let path = ws.write("data.txt", b"keep me");
    set_mtime(&path, SystemTime::now() - Duration::from_hours(1));
    let_times_settle();
    snapshot_all(&ws);
    // The object went with its pack (deleted by hand: a sweep would have kept it).
    let packs = ws.state.join("objects").join("packs");
    for pack in fs_err::read_dir(&packs).unwrap() {
        fs_err::remove_file(pack.unwrap().path()).unwrap();
    }
    let again = snapshot_all(&ws);
    assert_eq!(again.new_bytes, 7);
    let dest = ws.beside("restored");
    restore(&ws.objects(), &again.entries, &dest).unwrap();
    assert_eq!(fs_err::read(dest.join("data.txt")).unwrap(), b"keep me");
}

#[test]
fn objects_of_the_old_fan_out_layout_restore_and_are_not_stored_twice() {
    let ws = Workspace::new();
    let bytes = b"written by an older Refinery\n";
    let hash = hash_of(bytes);
    let legacy = ws.state.join("objects").join(&hash[..2]).join(&hash[2..]);
    fs_err::create_dir_all(legacy.parent().unwrap()).unwrap();
    fs_err::write(&legacy, bytes).unwrap();
    ws.write("old.txt", bytes);
    let snapshot = snapshot_all(&ws);
    assert_eq!(snapshot.new_bytes, 0);
    assert!(!ws.state.join("objects").join(&hash).exists());
    fs_err::remove_file(ws.root.join("old.txt")).unwrap();
    let dest = ws.beside("restored");
    restore(&ws.objects(), &snapshot.entries, &dest).unwrap();
    assert_eq!(fs_err::read(dest.join("old.txt")).unwrap(), bytes);
    assert_eq!(ws.objects().read_object(&hash).unwrap(), bytes);
}

#[test]
fn a_crash_before_the_manifest_keeps_earlier_rounds_and_its_orphans_are_swept() {
    let ws = Workspace::new();
    ws.write("index.html", b"<h1>round one</h1>\n");
    ws.write("style.css", b"body {}\n");
    let state = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-12-02 06:00 UTC);
    let session = state
        .init_session("crash", SessionSettings::default(), now)
        .unwrap();
    session
        .new_answer("round 1", &[".".to_owned()], now)
        .unwrap();
    // The next round's snapshot is taken, then the process dies before its manifest: its
    // objects are in the store, named by nothing; an interrupted write left a temporary file.
    let objects = ws.state.join("objects");
    let packs = || fs_err::read_dir(objects.join("packs")).unwrap().count();
    assert_eq!(packs(), 1);
    ws.write("index.html", b"<h1>round two, never submitted</h1>\n");
    drop(snapshot_all(&ws));
    fs_err::write(objects.join(".incoming-deadbeef"), b"half an obj").unwrap();
    let orphan = hash_of(b"<h1>round two, never submitted</h1>\n");
    assert!(ws.objects().read_object(&orphan).is_ok());
    assert_eq!(packs(), 2);

    let store = ObjectStore::new(&objects);
    let roots = [ws.state.clone()];
    // The orphan is too young for an hour's grace; the dead temporary file goes at once.
    let young = store
        .sweep(&roots, Duration::from_hours(1))
        .unwrap()
        .unwrap();
    assert_eq!((young.removed, young.temporary_files), (0, 1), "{young:?}");
    let report = store.sweep(&roots, Duration::ZERO).unwrap().unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(ws.objects().read_object(&orphan).is_err());
    assert_eq!(packs(), 1);
    assert!(!objects.join(".incoming-deadbeef").exists());

    let dest = ws.beside("round1");
    session
        .restore_round(1, &dest, refinery_core::RestoreMode::IntoEmpty)
        .unwrap();
    assert_eq!(
        fs_err::read(dest.join("index.html")).unwrap(),
        b"<h1>round one</h1>\n"
    );
    assert_eq!(fs_err::read(dest.join("style.css")).unwrap(), b"body {}\n");
}

#[test]
fn a_sweep_deletes_nothing_while_a_snapshot_is_held() {
    let ws = Workspace::new();
    ws.write("a.txt", b"about to be referenced");
    let held = snapshot_all(&ws);
    let store = ws.objects();
    let busy = store
        .sweep(std::slice::from_ref(&ws.state), Duration::ZERO)
        .unwrap();
    assert_eq!(busy, None);
    assert!(ws.objects().read_object(&hash_in(&held, "a.txt")).is_ok());
    drop(held);
    let free = store
        .sweep(std::slice::from_ref(&ws.state), Duration::ZERO)
        .unwrap();
    assert_eq!(free.map(|report| report.removed), Some(1));
}
