//! A restore cannot escape its destination: tampered manifests are refused before anything
//! is written, and nothing is ever written through a link already in the destination.

use pretty_assertions::assert_eq;
use time::macros::datetime;

use refinery_core::restore::{check_manifest, restore_into};
use refinery_core::snapshot::{EntryKind, take_snapshot};
use refinery_core::{
    ManifestEntry, ObjectStore, RestoreMode, SessionSettings, StateDir, WorkspaceScope,
};

use crate::support::Workspace;

/// An object holding `bytes` (a file's content, or a link's target text).
fn object(ws: &Workspace, bytes: &[u8]) -> String {
    let source = ws.beside("object-source");
    fs_err::create_dir_all(&source).unwrap();
    fs_err::write(source.join("blob"), bytes).unwrap();
    let snapshot = take_snapshot(&ws.objects(), &source, &[], &["blob".to_owned()]).unwrap();
    snapshot.entries[0].hash.clone()
}

fn entry(path: &str, kind: EntryKind, hash: &str) -> ManifestEntry {
    ManifestEntry {
        path: path.to_owned(),
        kind,
        hash: hash.to_owned(),
        size: 0,
        mode: 0o644,
    }
}

fn is_empty_or_missing(dir: &std::path::Path) -> bool {
    fs_err::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

#[test]
fn tampered_manifests_are_refused_before_anything_is_written() {
    let ws = Workspace::new();
    let objects = ws.objects();
    let file = object(&ws, b"payload\n");
    let to_etc = object(&ws, b"/etc");
    let up = object(&ws, b"../..");
    let dot_dot = object(&ws, b"..");
    let sibling = object(&ws, b"b");
    let cases: Vec<(&str, Vec<ManifestEntry>)> = vec![
        // The attack from the issue: a link to /etc, then a file through it.
        (
            "link to /etc then a file under it",
            vec![
                entry("a", EntryKind::Symlink, &to_etc),
                entry("a/x", EntryKind::File, &file),
            ],
        ),
        (
            "absolute link",
            vec![entry("l", EntryKind::Symlink, &to_etc)],
        ),
        (
            "link up and out",
            vec![entry("d/l", EntryKind::Symlink, &up)],
        ),
        // Each link looks harmless alone; followed through the manifest, `a` leaves.
        (
            "link chain",
            vec![
                entry("a", EntryKind::Symlink, &sibling),
                entry("b", EntryKind::Symlink, &dot_dot),
            ],
        ),
        (
            "parent path",
            vec![entry("../escape.txt", EntryKind::File, &file)],
        ),
        (
            "absolute path",
            vec![entry("/tmp/escape.txt", EntryKind::File, &file)],
        ),
        (
            "dot path",
            vec![entry("./a/../../x", EntryKind::File, &file)],
        ),
        ("empty part", vec![entry("a//b", EntryKind::File, &file)]),
        (
            "listed twice",
            vec![
                entry("a", EntryKind::File, &file),
                entry("a", EntryKind::File, &file),
            ],
        ),
        (
            "file under a file",
            vec![
                entry("a", EntryKind::File, &file),
                entry("a/b", EntryKind::File, &file),
            ],
        ),
        (
            "bad hash",
            vec![entry("a", EntryKind::File, "../../etc/passwd")],
        ),
        (
            "missing object",
            vec![entry("a", EntryKind::File, &"ab".repeat(32))],
        ),
    ];
    for (name, entries) in cases {
        assert!(check_manifest(&objects, &entries).is_err(), "{name}");
        let dest = ws.beside(&format!("dest-{}", name.replace(' ', "-")));
        let err = restore_into(&objects, &entries, &dest, RestoreMode::IntoEmpty).unwrap_err();
        assert!(
            matches!(err.code(), "bad_manifest" | "damaged_object"),
            "{name}: {err}"
        );
        assert!(is_empty_or_missing(&dest), "{name}: something was written");
    }
    assert!(!ws.beside("escape.txt").exists());
    assert!(!std::path::Path::new("/tmp/escape.txt").exists());
}

#[cfg(unix)]
#[test]
fn links_already_in_the_destination_are_never_followed() {
    let ws = Workspace::new();
    let objects = ws.objects();
    let outside = ws.beside("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let file = object(&ws, b"payload\n");
    let dest = ws.beside("dest");
    fs_err::create_dir_all(&dest).unwrap();
    // Planted before the restore: a folder link pointing out of the destination.
    std::os::unix::fs::symlink(&outside, dest.join("a")).unwrap();
    let entries = vec![entry("a/x", EntryKind::File, &file)];
    let err = restore_into(&objects, &entries, &dest, RestoreMode::Overwrite).unwrap_err();
    assert_eq!(err.code(), "unsafe_destination", "{err}");
    assert!(is_empty_or_missing(&outside), "written through the link");
    // A link where a file goes is replaced, not written through.
    let target = outside.join("victim.txt");
    fs_err::write(&target, b"outside, must survive\n").unwrap();
    std::os::unix::fs::symlink(&target, dest.join("f")).unwrap();
    restore_into(
        &objects,
        &[entry("f", EntryKind::File, &file)],
        &dest,
        RestoreMode::Overwrite,
    )
    .unwrap();
    assert_eq!(fs_err::read(&target).unwrap(), b"outside, must survive\n");
    assert_eq!(fs_err::read(dest.join("f")).unwrap(), b"payload\n");
    assert!(
        !fs_err::symlink_metadata(dest.join("f"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_folder_that_holds_files_is_refused_unless_forced() {
    let ws = Workspace::new();
    let objects = ws.objects();
    let file = object(&ws, b"restored\n");
    let dest = ws.beside("busy");
    fs_err::create_dir_all(&dest).unwrap();
    fs_err::write(dest.join("mine.txt"), b"the user's\n").unwrap();
    let entries = vec![
        entry("mine.txt", EntryKind::File, &file),
        entry("new.txt", EntryKind::File, &file),
    ];
    let err = restore_into(&objects, &entries, &dest, RestoreMode::IntoEmpty).unwrap_err();
    assert_eq!(err.code(), "destination_not_empty");
    assert_eq!(
        fs_err::read(dest.join("mine.txt")).unwrap(),
        b"the user's\n"
    );
    assert!(!dest.join("new.txt").exists());
    restore_into(&objects, &entries, &dest, RestoreMode::Overwrite).unwrap();
    assert_eq!(fs_err::read(dest.join("mine.txt")).unwrap(), b"restored\n");
}

#[cfg(unix)]
#[test]
fn restored_files_never_get_more_than_permission_bits() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    let file = object(&ws, b"#!/bin/sh\n");
    let mut setuid = entry("tool", EntryKind::File, &file);
    setuid.mode = 0o4755;
    let dest = ws.beside("modes");
    restore_into(&ws.objects(), &[setuid], &dest, RestoreMode::IntoEmpty).unwrap();
    let mode = fs_err::metadata(dest.join("tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn a_session_restore_of_an_edited_manifest_writes_nothing() {
    let ws = Workspace::new();
    ws.write("a.txt", b"a\n");
    let store = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-11-24 03:00 UTC);
    let session = store
        .init_session("restore", SessionSettings::default(), now)
        .unwrap();
    session.new_answer("r1", &[".".to_owned()], now).unwrap();
    let manifest_path = session.round_dir(1).join("submission.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&manifest_path).unwrap()).unwrap();
    let hash = manifest["files"][0]["hash"].clone();
    let link = object(&ws, b"/etc");
    manifest["files"] = serde_json::json!([
        {"path": "a", "kind": "symlink", "hash": link, "size": 4, "mode": 511},
        {"path": "a/x", "kind": "file", "hash": hash, "size": 2, "mode": 420},
    ]);
    fs_err::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let dest = ws.beside("restored");
    let err = session
        .restore_round(1, &dest, RestoreMode::IntoEmpty)
        .unwrap_err();
    assert_eq!(err.code(), "bad_manifest", "{err}");
    assert!(is_empty_or_missing(&dest));
}

#[cfg(unix)]
#[test]
fn a_workspace_restore_leaves_a_planted_link_alone_and_says_so() {
    let ws = Workspace::new();
    ws.write("lib/util.py", b"v1\n");
    let scope = WorkspaceScope::from_walk(&ws.root, &ws.state_dirs()).unwrap();
    let objects: ObjectStore = ws.objects();
    let baseline = scope.snapshot(&objects, &[".".to_owned()]).unwrap();
    // The builder swaps the folder for a link out of the workspace.
    let outside = ws.beside("elsewhere");
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::remove_dir_all(ws.root.join("lib")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.root.join("lib")).unwrap();
    let report = scope
        .restore_exact(
            &objects,
            &baseline.entries,
            &baseline.entries,
            &ws.beside("b.json"),
        )
        .unwrap();
    assert!(is_empty_or_missing(&outside), "written through the link");
    assert!(
        report
            .kept
            .iter()
            .any(|kept| kept.path == "lib/util.py" && kept.reason.contains("symbolic link")),
        "{report:?}"
    );
}
