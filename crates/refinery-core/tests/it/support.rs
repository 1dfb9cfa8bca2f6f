//! A workspace with a state folder in a temporary directory, and ways to look inside it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use refinery_core::ObjectStore;

pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(dir.path()).unwrap().join("ws");
        fs_err::create_dir_all(&root).unwrap();
        let state = root.join(".refinery");
        Self {
            root,
            state,
            _dir: dir,
        }
    }

    /// A folder beside the workspace (for restores and things outside it).
    pub(crate) fn beside(&self, name: &str) -> PathBuf {
        self.root.parent().unwrap().join(name)
    }

    pub(crate) fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, bytes).unwrap();
        path
    }

    pub(crate) fn read(&self, relative: &str) -> Vec<u8> {
        fs_err::read(self.root.join(relative)).unwrap()
    }

    pub(crate) fn objects(&self) -> ObjectStore {
        ObjectStore::new(self.state.join("objects"))
    }

    pub(crate) fn state_dirs(&self) -> Vec<PathBuf> {
        vec![self.state.clone()]
    }
}

/// The bytes of every object in the store.
pub(crate) fn stored_blobs(objects: &Path) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
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
                blobs.push(fs_err::read(entry.path()).unwrap());
            }
        }
    }
    blobs
}

/// Asserts that no object in the store contains `needle`.
#[track_caller]
pub(crate) fn assert_not_stored(objects: &Path, needle: &[u8]) {
    let found = stored_blobs(objects)
        .iter()
        .any(|blob| blob.windows(needle.len()).any(|window| window == needle));
    assert!(
        !found,
        "`{}` reached the object store",
        String::from_utf8_lossy(needle)
    );
}

/// Runs `work` on a thread and fails the test if it has not finished within `limit`: a
/// walk that blocks on a fifo must fail the test, not hang it.
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(work());
    });
    receive
        .recv_timeout(limit)
        .expect("the call blocked (a fifo was opened for reading?)")
}

/// Makes a fifo with the system's `mkfifo` (the workspace forbids `unsafe`, so no libc call).
pub(crate) fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Whether this process ignores file permissions (root): `chmod 000` then stops nothing.
pub(crate) fn permissions_are_ignored(probe: &Path) -> bool {
    fs_err::read(probe).is_ok()
}
