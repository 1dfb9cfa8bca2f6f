//! Files kept for people and reports next to a durable source of the same facts, written on
//! a thread of their own.
//!
//! On an ordinary disk a new file costs about half a millisecond whether or not it is synced
//! (measured, docs/BENCHMARKS.md), and a refine round writes six such copies: the builder's
//! brief and events, the round's file, the handoff, the lessons and `run.json`. The run that
//! writes them never reads them back (what a resume needs is in the run's log,
//! [`crate::latest`]), so it hands them to this writer and goes on with the round.
//!
//! What stays as before: each file is replaced atomically (a temporary file and a rename,
//! never half a file), secrets are masked as in every record, copies of one writer land in
//! the order they were handed over (the newest copy of a file is the one left on disk), and a
//! failure is not lost: the first one is returned by the next [`Copies::check`] or
//! [`Copies::flush`], so a disk that fails still fails the run. What changes: a process
//! killed in the milliseconds before the writer caught up loses those copies, as a power loss
//! loses unsynced ones; a run flushes at its end, and dropping the last handle waits too.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil;

/// One write, run on the writer's thread.
type Task = Box<dyn FnOnce() -> Result<()> + Send>;

enum Job {
    Run(Task),
    /// Answered once every job before it is done.
    Flush(mpsc::SyncSender<()>),
}

/// A handle on one writer of copies; clones share it. See the module docs.
#[derive(Clone, Default)]
pub struct Copies {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copies").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// The queue and its thread, started by the first copy.
    worker: Mutex<Option<Worker>>,
    /// The first failure not yet returned.
    failure: Arc<Mutex<Option<Error>>>,
}

struct Worker {
    queue: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

impl Copies {
    /// A writer; its thread starts with the first copy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `bytes` to `path` ([`fsutil::write_record`]: secrets masked, atomic, unsynced).
    pub fn write(&self, path: PathBuf, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        self.run(move || fsutil::write_record(&path, &bytes));
    }

    /// Writes `value` to `path` as pretty JSON ([`fsutil::write_json_record`]).
    pub fn write_json<T: Serialize + Send + 'static>(&self, path: PathBuf, value: T) {
        self.run(move || fsutil::write_json_record(&path, &value));
    }

    /// Runs `task` on the writer's thread after every copy handed over before it; a failure is
    /// kept for the next [`Copies::check`] or [`Copies::flush`]. Where no thread can be
    /// started, `task` runs here and now.
    pub fn run(&self, task: impl FnOnce() -> Result<()> + Send + 'static) {
        let task: Task = Box::new(task);
        let mut worker = lock(&self.inner.worker);
        if worker.is_none() {
            *worker = self.start();
        }
        let task = match worker.as_ref() {
            Some(running) => match running.queue.send(Job::Run(task)) {
                // The writer has stopped (a task panicked): this one is written here.
                Err(mpsc::SendError(Job::Run(task))) => task,
                Ok(()) | Err(mpsc::SendError(Job::Flush(_))) => return,
            },
            None => task,
        };
        drop(worker);
        if let Err(error) = task() {
            keep_first(&self.inner.failure, error);
        }
    }

    /// The first failure since the last check, if any (without waiting for the queue).
    pub fn check(&self) -> Result<()> {
        match lock(&self.inner.failure).take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Waits until every copy handed over so far is written, then [`Copies::check`]s.
    pub fn flush(&self) -> Result<()> {
        let (done, finished) = mpsc::sync_channel(1);
        let sent = lock(&self.inner.worker)
            .as_ref()
            .is_some_and(|running| running.queue.send(Job::Flush(done)).is_ok());
        if sent {
            // A writer that died (a panic in a task) drops the answer: nothing is left to wait for.
            let _ = finished.recv();
        }
        self.check()
    }

    fn start(&self) -> Option<Worker> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let failure = Arc::clone(&self.inner.failure);
        let thread = std::thread::Builder::new()
            .name("refinery-copies".to_owned())
            .spawn(move || {
                for job in jobs {
                    match job {
                        Job::Run(task) => {
                            if let Err(error) = task() {
                                keep_first(&failure, error);
                            }
                        }
                        Job::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .ok()?;
        Some(Worker { queue, thread })
    }
}

impl Drop for Inner {
    /// The last handle waits for the queue: no copy is left unwritten by a run that ends.
    fn drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Worker { queue, thread }) = worker {
            drop(queue);
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn keep_first(failure: &Mutex<Option<Error>>, error: Error) {
    lock(failure).get_or_insert(error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_land_in_order_and_a_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let copies = Copies::new();
        for n in 0..50 {
            copies.write(dir.path().join("a.md"), format!("version {n}"));
            copies.write_json(dir.path().join("b.json"), serde_json::json!({ "n": n }));
        }
        copies.flush().unwrap();
        assert_eq!(
            fs_err::read_to_string(dir.path().join("a.md")).unwrap(),
            "version 49"
        );
        let b: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(dir.path().join("b.json")).unwrap())
                .unwrap();
        assert_eq!(b["n"], 49);
    }

    #[test]
    fn dropping_the_last_handle_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let copies = Copies::new();
        let clone = copies.clone();
        copies.write(dir.path().join("x.md"), "kept");
        drop(copies);
        drop(clone);
        assert_eq!(
            fs_err::read_to_string(dir.path().join("x.md")).unwrap(),
            "kept"
        );
    }

    #[test]
    fn a_failed_copy_is_returned_once_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the copy's folder should be: the write cannot happen.
        fs_err::write(dir.path().join("blocked"), "a file").unwrap();
        let copies = Copies::new();
        copies.write(dir.path().join("blocked").join("x.md"), "lost");
        copies.write(dir.path().join("ok.md"), "written");
        let error = copies.flush().unwrap_err();
        assert!(error.to_string().contains("blocked"), "{error}");
        // The copies after the failure were still written, and the failure is reported once.
        assert!(dir.path().join("ok.md").is_file());
        copies.flush().unwrap();
        copies.check().unwrap();
    }

    #[test]
    fn secrets_are_masked_in_copies() {
        let dir = tempfile::tempdir().unwrap();
        let copies = Copies::new();
        let key = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
        copies.write(dir.path().join("k.md"), format!("key: {key}"));
        copies.flush().unwrap();
        let text = fs_err::read_to_string(dir.path().join("k.md")).unwrap();
        assert!(!text.contains(&key), "{text}");
    }
}
