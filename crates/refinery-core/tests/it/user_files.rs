//! User files are sacred: what a run may snapshot, restore or delete is fixed when it starts.

use std::time::Duration;

use pretty_assertions::assert_eq;
use time::macros::datetime;

use refinery_core::scope::{GitListing, OutOfScope};
use refinery_core::snapshot::take_snapshot;
use refinery_core::{SessionSettings, StateDir, WorkspaceScope};

use crate::support::{Workspace, assert_not_stored, mkfifo, permissions_are_ignored, within};

const ENV_LOCAL: &[u8] = b"DATABASE_PASSWORD=hunter2-local\n";
const NOTES: &[u8] = b"my private notes, never for a model\n";

/// A workspace whose ignore rules hide `.env.local` and `private/`, as a user set it up.
fn user_project(ws: &Workspace) {
    ws.write(".gitignore", b".env.local\nprivate/\n*.log\n");
    ws.write(".env.local", ENV_LOCAL);
    ws.write("private/notes.txt", NOTES);
    ws.write("debug.log", b"old log\n");
    ws.write("src/app.py", b"print('v1')\n");
    ws.write("README.md", b"# app\n");
}

/// What a builder might do in a round: un-ignore everything, then change and add files.
fn builder_edits(ws: &Workspace) {
    ws.write(".gitignore", b"# cleaned up\n");
    ws.write("src/app.py", b"print('v2')\n");
    ws.write("src/new.py", b"print('new')\n");
    ws.write(
        "private/todo.md",
        b"created by the builder inside an ignored folder\n",
    );
}

fn paths(snapshot: &refinery_core::Snapshot) -> Vec<&str> {
    snapshot
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect()
}

#[test]
fn gitignore_edits_during_a_run_never_widen_the_scope_and_a_revert_keeps_user_files() {
    let ws = Workspace::new();
    user_project(&ws);
    // The run starts: its scope is fixed from the rules as they are now.
    let scope = WorkspaceScope::from_walk(&ws.root, &ws.state_dirs()).unwrap();
    let objects = ws.objects();
    let baseline = scope.snapshot(&objects, &[".".to_owned()]).unwrap();
    assert_eq!(
        paths(&baseline),
        vec![".gitignore", "README.md", "src/app.py"]
    );

    builder_edits(&ws);
    let round = scope.snapshot(&objects, &[".".to_owned()]).unwrap();
    assert_eq!(
        paths(&round),
        vec![".gitignore", "README.md", "src/app.py", "src/new.py"],
        "un-ignoring files mid-run must not pull them in"
    );

    // The regression guard reverts to the start.
    let backup = ws.beside("discarded.json");
    let report = scope
        .restore_exact(&objects, &baseline.entries, &baseline.entries, &backup)
        .unwrap();
    assert_eq!(report.deleted, vec!["src/new.py"]);
    assert_eq!(ws.read(".gitignore"), b".env.local\nprivate/\n*.log\n");
    assert_eq!(ws.read("src/app.py"), b"print('v1')\n");
    // Every user file outside the scope is intact, byte for byte, and never stored.
    assert_eq!(ws.read(".env.local"), ENV_LOCAL);
    assert_eq!(ws.read("private/notes.txt"), NOTES);
    assert_eq!(ws.read("debug.log"), b"old log\n");
    assert_eq!(
        ws.read("private/todo.md"),
        b"created by the builder inside an ignored folder\n",
        "out of scope: not the run's to delete"
    );
    assert_not_stored(&ws.state.join("objects"), ENV_LOCAL);
    assert_not_stored(&ws.state.join("objects"), NOTES);
    // What the revert replaced was kept first.
    let kept: serde_json::Value = serde_json::from_slice(&fs_err::read(&backup).unwrap()).unwrap();
    let kept_paths: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept_paths,
        vec![".gitignore", "README.md", "src/app.py", "src/new.py"]
    );
    assert_eq!(
        objects
            .read_object(kept[2]["hash"].as_str().unwrap())
            .unwrap(),
        b"print('v2')\n"
    );
}

#[test]
fn a_resumed_session_uses_the_scope_of_its_start() {
    let ws = Workspace::new();
    user_project(&ws);
    let store = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-11-24 03:00 UTC);
    let session = store
        .init_session("scope", SessionSettings::default(), now)
        .unwrap();
    session.freeze_scope(None, now).unwrap();
    builder_edits(&ws);
    // A second freeze (a resume, a later tool call) keeps the first scope.
    let later = session.freeze_scope(None, now).unwrap();
    assert_eq!(
        later.check("private/notes.txt", false),
        Err(OutOfScope::Ignored)
    );
    let submission = session
        .new_answer("round 1", &[".".to_owned()], now)
        .unwrap();
    let stored: Vec<&str> = submission.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        stored,
        vec![".gitignore", "README.md", "src/app.py", "src/new.py"]
    );
    assert_not_stored(&ws.state.join("objects"), NOTES);
    assert_not_stored(&ws.state.join("objects"), ENV_LOCAL);
}

#[test]
fn the_scope_is_kept_by_the_journal_when_its_copy_is_lost_or_damaged() {
    let ws = Workspace::new();
    user_project(&ws);
    let store = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-11-24 03:00 UTC);
    // Fixed later by its own record, and fixed in the session's first record.
    let later = store
        .init_session("scope", SessionSettings::default(), now)
        .unwrap();
    later.freeze_scope(None, now).unwrap();
    let at_start = store
        .init_session_scoped("scoped", SessionSettings::default(), None, now)
        .unwrap();
    let journal = fs_err::read_to_string(at_start.dir().join("events.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(first["op"], "init_session");
    assert!(first["scope"].is_object(), "{first}");
    builder_edits(&ws);
    for session in [later, at_start] {
        lost_or_damaged_copies_keep_the_scope(&ws, &session, now);
    }
}

fn lost_or_damaged_copies_keep_the_scope(
    ws: &Workspace,
    session: &refinery_core::Session,
    now: time::OffsetDateTime,
) {
    let copy = session.dir().join("scope.json");
    assert!(copy.exists());
    for damage in [None, Some(&b"{ not json"[..])] {
        match damage {
            None => fs_err::remove_file(&copy).unwrap(),
            Some(bytes) => fs_err::write(&copy, bytes).unwrap(),
        }
        // Neither a lost nor a damaged copy lets the edited `.gitignore` widen the scope:
        // the journal's record is read, and the copy rewritten from it.
        let scope = session
            .scope()
            .unwrap()
            .expect("the journal keeps the scope");
        assert_eq!(
            scope.check("private/notes.txt", false),
            Err(OutOfScope::Ignored)
        );
        assert!(copy.exists());
        let again = session.freeze_scope(None, now).unwrap();
        assert_eq!(
            again.check("private/notes.txt", false),
            Err(OutOfScope::Ignored)
        );
    }
    let submission = session
        .new_answer(session.id().as_str(), &[".".to_owned()], now)
        .unwrap();
    assert!(
        submission
            .files
            .iter()
            .all(|f| f.path != "private/notes.txt"),
        "{:?}",
        submission.files
    );
    assert_not_stored(&ws.state.join("objects"), NOTES);
}

#[test]
fn a_damaged_scope_without_a_journal_record_is_an_error_not_a_new_scope() {
    let ws = Workspace::new();
    user_project(&ws);
    let store = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-11-24 03:00 UTC);
    let session = store
        .init_session("scope", SessionSettings::default(), now)
        .unwrap();
    // A session from before scopes were journaled: only the copy, and it is damaged.
    fs_err::write(session.dir().join("scope.json"), b"{ not json").unwrap();
    let err = session.scope().unwrap_err().to_string();
    assert!(err.contains("scope.json"), "{err}");
    assert!(
        session
            .new_answer("round 1", &[".".to_owned()], now)
            .is_err()
    );
}

#[test]
fn secrets_git_internals_and_state_never_enter_even_when_named() {
    let ws = Workspace::new();
    ws.write(".env", b"API_TOKEN=named-env-secret\n");
    ws.write(".env.production", b"PROD=named-prod-secret\n");
    ws.write("config/.envrc", b"export K=named-envrc-secret\n");
    ws.write(
        ".git/config",
        b"[remote] url = https://named-git-secret@example\n",
    );
    ws.write(".refinery/sessions/x/state.json", b"{\"named-state\": 1}");
    ws.write("app.txt", b"app\n");
    let scope = WorkspaceScope::from_walk(&ws.root, &ws.state_dirs()).unwrap();
    let named: Vec<String> = [
        ".env",
        ".env.production",
        "config/.envrc",
        ".git/config",
        ".git",
        ".refinery/sessions/x/state.json",
        "config",
        ".",
    ]
    .iter()
    .map(|path| (*path).to_owned())
    .collect();
    let snapshot = scope.snapshot(&ws.objects(), &named).unwrap();
    assert_eq!(paths(&snapshot), vec!["app.txt"]);
    for path in [".env", ".env.production", "config/.envrc", ".git/config"] {
        assert!(
            snapshot.skipped.iter().any(|skip| skip.path == path),
            "{path} should be reported: {:?}",
            snapshot.skipped
        );
    }
    for needle in [
        b"named-env-secret".as_slice(),
        b"named-prod-secret",
        b"named-envrc-secret",
        b"named-git-secret",
        b"named-state",
    ] {
        assert_not_stored(&ws.state.join("objects"), needle);
    }
    // The one-off helper follows the same rules.
    let one_off = take_snapshot(&ws.objects(), &ws.root, &ws.state_dirs(), &named).unwrap();
    assert_eq!(paths(&one_off), vec!["app.txt"]);
}

#[test]
fn git_listing_decides_what_was_in_scope_at_the_start() {
    let ws = Workspace::new();
    ws.write(".gitignore", b"build/\n");
    ws.write("build/keep.txt", b"tracked although ignored\n");
    ws.write("build/out.o", b"compiled\n");
    ws.write("vendor/lib.js", b"ignored by a global rule git applied\n");
    ws.write("src/a.rs", b"fn a() {}\n");
    let listing = GitListing {
        included: vec![
            ".gitignore".into(),
            "build/keep.txt".into(),
            "src/a.rs".into(),
        ],
        ignored: vec!["build/out.o".into(), "vendor/".into()],
        outer_rules: Vec::new(),
    };
    let scope = WorkspaceScope::from_git(&ws.root, &ws.state_dirs(), listing).unwrap();
    let snapshot = scope.snapshot(&ws.objects(), &[".".to_owned()]).unwrap();
    assert_eq!(
        paths(&snapshot),
        vec![".gitignore", "build/keep.txt", "src/a.rs"]
    );
    // Named explicitly, an ignored file is still refused, with the reason.
    let named = scope
        .snapshot(
            &ws.objects(),
            &["vendor/lib.js".to_owned(), "build/out.o".to_owned()],
        )
        .unwrap();
    assert!(named.entries.is_empty());
    assert!(
        named
            .skipped
            .iter()
            .all(|skip| skip.reason.contains("ignored")),
        "{:?}",
        named.skipped
    );
}

#[test]
fn a_revert_never_deletes_a_file_the_run_did_not_change() {
    let ws = Workspace::new();
    ws.write("keep.txt", b"the user's, untouched\n");
    ws.write("edit.txt", b"before\n");
    let scope = WorkspaceScope::from_walk(&ws.root, &ws.state_dirs()).unwrap();
    let objects = ws.objects();
    let baseline = scope.snapshot(&objects, &[".".to_owned()]).unwrap();
    // A target that lacks `keep.txt` (a partial snapshot, or one from before the user made
    // the file) must not delete it: the run never touched it.
    let target: Vec<_> = baseline
        .entries
        .iter()
        .filter(|entry| entry.path == "edit.txt")
        .cloned()
        .collect();
    ws.write("edit.txt", b"after\n");
    let report = scope
        .restore_exact(
            &objects,
            &target,
            &baseline.entries,
            &ws.beside("backup.json"),
        )
        .unwrap();
    assert_eq!(ws.read("keep.txt"), b"the user's, untouched\n");
    assert_eq!(ws.read("edit.txt"), b"before\n");
    assert!(report.deleted.is_empty(), "{report:?}");
    assert!(report.kept.iter().any(|kept| kept.path == "keep.txt"));
}

#[cfg(unix)]
#[test]
fn fifos_sockets_and_unreadable_files_are_skipped_never_fatal_or_blocking() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    ws.write("a.txt", b"readable\n");
    mkfifo(&ws.root.join(".gitignore"));
    fs_err::create_dir_all(ws.root.join("sub")).unwrap();
    mkfifo(&ws.root.join("sub/pipe.fifo"));
    let _socket = std::os::unix::net::UnixListener::bind(ws.root.join("app.sock")).unwrap();
    let locked = ws.write("locked.txt", b"no read permission\n");
    fs_err::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root_can_read = permissions_are_ignored(&locked);
    if root_can_read {
        println!(
            "running as root: chmod 000 does not stop reads, so only fifos and sockets are checked"
        );
    }
    let (objects, root, state_dirs) = (ws.objects(), ws.root.clone(), ws.state_dirs());
    let snapshot = within(Duration::from_secs(20), move || {
        take_snapshot(
            &objects,
            &root,
            &state_dirs,
            &[".".to_owned(), "sub/pipe.fifo".to_owned()],
        )
    })
    .unwrap();
    let reasons: Vec<(&str, &str)> = snapshot
        .skipped
        .iter()
        .map(|skip| (skip.path.as_str(), skip.reason.as_str()))
        .collect();
    for path in [".gitignore", "sub/pipe.fifo", "app.sock"] {
        assert!(
            reasons.iter().any(|(skipped, reason)| *skipped == path
                && (reason.contains("not a regular file") || reason.contains("fifo"))),
            "{path}: {reasons:?}"
        );
    }
    if !root_can_read {
        assert!(
            reasons.iter().any(|(path, reason)| *path == "locked.txt" && reason.contains("could not be read")),
            "{reasons:?}"
        );
    }
    assert!(paths(&snapshot).contains(&"a.txt"));
    // A session's new_answer "." survives the same folder.
    let store = StateDir::checked(&ws.state, &ws.root).unwrap();
    let now = datetime!(2026-11-24 03:00 UTC);
    let session = store
        .init_session("odd files", SessionSettings::default(), now)
        .unwrap();
    let submission = within(Duration::from_secs(20), move || {
        session.new_answer("all", &[".".to_owned()], now)
    })
    .unwrap();
    assert!(submission.files.iter().any(|file| file.path == "a.txt"));
    assert!(
        submission
            .skipped
            .iter()
            .any(|skip| skip.path == ".gitignore")
    );
}

#[test]
fn the_state_folder_is_never_the_workspace_or_a_parent_and_its_gitignore_is_ours_only() {
    let ws = Workspace::new();
    ws.write(".gitignore", b"node_modules/\n");
    for state in [
        ws.root.clone(),
        ws.root.join("."),
        ws.root.parent().unwrap().to_path_buf(),
    ] {
        let err = StateDir::checked(&state, &ws.root).unwrap_err();
        assert_eq!(err.code(), "bad_state_dir", "{}", state.display());
    }
    assert_eq!(ws.read(".gitignore"), b"node_modules/\n");
    // A folder the user already has keeps its own `.gitignore`, or gets none.
    ws.write("notes/.gitignore", b"!keep-me\n");
    ws.write("notes/todo.md", b"mine\n");
    ws.write("plain/todo.md", b"mine\n");
    let now = datetime!(2026-11-24 03:00 UTC);
    for (folder, expected) in [("notes", Some(b"!keep-me\n".as_slice())), ("plain", None)] {
        let store = StateDir::checked(ws.root.join(folder), &ws.root).unwrap();
        store
            .init_session("s", SessionSettings::default(), now)
            .unwrap();
        let written = fs_err::read(ws.root.join(folder).join(".gitignore")).ok();
        assert_eq!(written.as_deref(), expected, "{folder}");
    }
    // A folder Refinery creates gets one; so does an older Refinery folder without it.
    let fresh = StateDir::checked(&ws.state, &ws.root).unwrap();
    fresh
        .init_session("s", SessionSettings::default(), now)
        .unwrap();
    assert_eq!(ws.read(".refinery/.gitignore"), b"*\n");
    fs_err::remove_file(ws.state.join(".gitignore")).unwrap();
    fresh.prepare().unwrap();
    assert_eq!(ws.read(".refinery/.gitignore"), b"*\n");
}
