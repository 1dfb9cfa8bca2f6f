//! User files are sacred, with git's own view of the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use pretty_assertions::assert_eq;
use time::OffsetDateTime;

use refinery_core::{SessionSettings, StateDir};
use refinery_engine::git_view::{ensure_session_scope, git_listing, git_listing_within};

const ENV_LOCAL: &[u8] = b"STRIPE_SECRET=sk_live_local_only_value\n";
const NOTES: &[u8] = b"salary negotiation notes\n";
const TRACKED_IGNORED: &[u8] = b"tracked before the ignore rule was added\n";

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, bytes).unwrap();
}

fn read(root: &Path, relative: &str) -> Vec<u8> {
    fs_err::read(root.join(relative)).unwrap()
}

fn blobs(objects: &Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut stack = vec![objects.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                found.push(fs_err::read(entry.path()).unwrap());
            }
        }
    }
    found
}

/// A repository as a user has it: committed code, a committed file that a later ignore rule
/// matches, ignored secrets and notes, an untracked new file.
fn repository() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs_err::canonicalize(dir.path()).unwrap().join("repo");
    fs_err::create_dir_all(&root).unwrap();
    git(&root, &["init", "-q"]);
    write(&root, "src/app.py", b"print('v1')\n");
    write(&root, "generated/schema.sql", TRACKED_IGNORED);
    git(&root, &["add", "."]);
    git(&root, &["commit", "-qm", "start"]);
    write(&root, ".gitignore", b".env.local\nprivate/\ngenerated/\n");
    write(&root, ".env.local", ENV_LOCAL);
    write(&root, "private/notes.txt", NOTES);
    write(&root, "draft.md", b"untracked, not ignored\n");
    (dir, root)
}

#[test]
fn a_builder_that_unignores_files_cannot_make_a_revert_or_resume_touch_them() {
    let (_dir, root) = repository();
    let listing = git_listing(&root).expect("a git work tree");
    assert!(
        listing.ignored.iter().any(|path| path == "private/"),
        "{listing:?}"
    );

    // The run starts: session, scope from git, baseline.
    let state = root.join(".refinery");
    let store = StateDir::checked(&state, &root).unwrap();
    let now = OffsetDateTime::UNIX_EPOCH;
    let session = store
        .init_session("trust", SessionSettings::default(), now)
        .unwrap();
    let scope = ensure_session_scope(&session, &root, now).unwrap();
    let objects = store.objects();
    let baseline = scope.snapshot(&objects, &[".".to_owned()]).unwrap();
    let stored: Vec<&str> = baseline.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        stored,
        vec![
            ".gitignore",
            "draft.md",
            "generated/schema.sql",
            "src/app.py"
        ],
        "git's view: tracked (even if now ignored) plus untracked-not-ignored"
    );

    // Round 1: the builder rewrites the ignore rules and edits code.
    write(&root, ".gitignore", b"# nothing ignored any more\n");
    write(&root, "src/app.py", b"print('v2 broke it')\n");
    write(&root, "src/helper.py", b"def help(): pass\n");
    let submission = session
        .new_answer("round 1", &[".".to_owned()], now)
        .unwrap();
    let submitted: Vec<&str> = submission.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        submitted,
        vec![
            ".gitignore",
            "draft.md",
            "generated/schema.sql",
            "src/app.py",
            "src/helper.py"
        ]
    );

    // The regression guard reverts the round.
    let report = scope
        .restore_exact(
            &objects,
            &baseline.entries,
            &baseline.entries,
            &session.round_dir(1).join("discarded.json"),
        )
        .unwrap();
    assert_eq!(report.deleted, vec!["src/helper.py"]);

    // The run is killed here and resumed: the scope comes back from the session, and the
    // resume's own restore (to the last finished state) changes nothing else.
    drop(scope);
    let resumed = store.existing_session(session.id().as_str()).unwrap();
    let scope = ensure_session_scope(&resumed, &root, now).unwrap();
    write(&root, ".gitignore", b"\n");
    scope
        .restore_exact(
            &objects,
            &baseline.entries,
            &baseline.entries,
            &resumed.round_dir(2).join("discarded.json"),
        )
        .unwrap();

    assert_eq!(
        read(&root, ".gitignore"),
        b".env.local\nprivate/\ngenerated/\n"
    );
    assert_eq!(read(&root, "src/app.py"), b"print('v1')\n");
    assert!(!root.join("src/helper.py").exists());
    assert_eq!(read(&root, ".env.local"), ENV_LOCAL);
    assert_eq!(read(&root, "private/notes.txt"), NOTES);
    assert_eq!(read(&root, "generated/schema.sql"), TRACKED_IGNORED);
    assert_eq!(read(&root, "draft.md"), b"untracked, not ignored\n");
    // Small objects are packed, many to a file: look for the bytes inside every file.
    let contains = |blob: &[u8], needle: &[u8]| blob.windows(needle.len()).any(|w| w == needle);
    for blob in blobs(&state.join("objects")) {
        assert!(
            !contains(&blob, ENV_LOCAL),
            ".env.local reached the object store"
        );
        assert!(
            !contains(&blob, NOTES),
            "private notes reached the object store"
        );
    }
    // The state folder hides itself from git, so `git add -A` never commits a snapshot.
    assert_eq!(read(&root, ".refinery/.gitignore"), b"*\n");
}

#[test]
fn outside_a_repository_the_scope_comes_from_the_gitignore_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs_err::canonicalize(dir.path()).unwrap().join("plain");
    fs_err::create_dir_all(&root).unwrap();
    let inside = Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(&root)
        .output()
        .unwrap();
    if inside.status.success() {
        println!("skipped: the temporary folder is inside a git work tree on this machine");
        return;
    }
    assert!(git_listing(&root).is_none());
}

#[test]
fn a_fifo_named_gitignore_never_blocks_the_scope() {
    // git itself opens every `.gitignore` for reading and would wait on a fifo forever.
    let (_dir, root) = repository();
    fs_err::remove_file(root.join(".gitignore")).unwrap();
    let made = Command::new("mkfifo")
        .arg(root.join(".gitignore"))
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    assert!(git_listing_within(&root, std::time::Duration::from_secs(1)).is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The session still gets a scope, from the readable ignore files, and says what it
    // could not read.
    let store = StateDir::checked(root.join(".refinery"), &root).unwrap();
    let now = OffsetDateTime::UNIX_EPOCH;
    let session = store
        .init_session("fifo", SessionSettings::default(), now)
        .unwrap();
    let scope = session.freeze_scope(None, now).unwrap();
    assert!(
        scope.notes().iter().any(|note| note.path == ".gitignore"),
        "{:?}",
        scope.notes()
    );
    let snapshot = scope.snapshot(&store.objects(), &[".".to_owned()]).unwrap();
    assert!(
        snapshot
            .entries
            .iter()
            .any(|entry| entry.path == "src/app.py")
    );
    assert!(
        snapshot
            .entries
            .iter()
            .all(|entry| entry.path != ".env.local")
    );
}
