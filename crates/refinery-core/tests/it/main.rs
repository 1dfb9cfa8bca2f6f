//! The core's safety rules, end to end through its public API on real folders.
//!
//! `user_files`: a run's scope — ignore-file edits never widen it, `.git`, `.env*` and the
//! state folder never enter a snapshot, a revert or resume never deletes or overwrites what
//! it must not, and odd files (fifos, sockets, unreadable files) are skipped, never fatal or
//! blocking. `restore`: a restore never escapes its destination, whatever the manifest says
//! or the destination holds. `objects`: the stat cache never returns a stale hash, old-layout
//! objects still restore, and a crash before a manifest only leaves orphans, which a sweep
//! removes (never while a writer holds the store).
//!
//! `crash`: writers killed with SIGKILL at random instants leave every session readable, its
//! state equal to its journal, and every manifest restorable byte-identical.
//!
//! Isolation: every test works in its own temporary folder; nothing reads the process
//! environment or the developer's files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test should fail loudly at the first surprise"
)]

mod crash;
mod objects;
mod packs;
mod restore;
mod support;
mod user_files;
