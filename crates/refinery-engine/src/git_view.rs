//! Git's view of the workspace, for fixing a run's scope (`refinery_core::scope`).
//!
//! The core decides what a run may touch but never spawns a process, so this module asks
//! git: the tracked and untracked-but-not-ignored files, the ignored ones (whole folders
//! collapsed to `dir/`), and the ignore rules that live outside the workspace tree (parent
//! folders' `.gitignore` files up to the repository root, `$GIT_DIR/info/exclude`, and
//! `core.excludesFile`). Outside a git work tree, or when git is missing or fails, it says
//! so with `None` and the core falls back to the workspace's own `.gitignore` files.
//!
//! The engine's refine loop, `evaluate` and the MCP servers call [`ensure_session_scope`]
//! when a session starts; every snapshot and restore of that session then goes through the
//! scope it returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use refinery_core::scope::{GitListing, IgnoreRules, RulesBase, RulesKind};
use refinery_core::{Session, WorkspaceScope};
use time::OffsetDateTime;

/// How long one git command may take. `git ls-files` answers in well under a second even
/// for large repositories, but it opens every `.gitignore` for reading and so waits forever
/// on a fifo of that name: past this limit git is stopped and the scope comes from the
/// `.gitignore` files instead, which are read without ever blocking.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists git's view of `workspace`, or `None` when it is not inside a git work tree (or git
/// cannot be run, or does not answer within [`GIT_TIMEOUT`]).
pub fn git_listing(workspace: &Path) -> Option<GitListing> {
    git_listing_within(workspace, GIT_TIMEOUT)
}

/// [`git_listing`] with a time limit per git command.
pub fn git_listing_within(workspace: &Path, limit: Duration) -> Option<GitListing> {
    let git_text = |args: &[&str]| git_text(workspace, args, limit);
    let git_paths = |args: &[&str]| git_paths(workspace, args, limit);
    let facts = git_text(&[
        "rev-parse",
        "--show-toplevel",
        "--show-prefix",
        "--git-path",
        "info/exclude",
    ])?;
    let mut lines = facts.lines();
    let top = PathBuf::from(lines.next()?);
    let prefix = lines.next()?.trim_end_matches('/').to_owned();
    let exclude_file = workspace.join(lines.next()?);
    let included = git_paths(&[
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ])?;
    let ignored = git_paths(&[
        "ls-files",
        "-z",
        "--others",
        "--ignored",
        "--exclude-standard",
        "--directory",
    ])?;
    let mut outer_rules = Vec::new();
    let parts: Vec<&str> = if prefix.is_empty() {
        Vec::new()
    } else {
        prefix.split('/').collect()
    };
    // The repository root and every folder between it and the workspace.
    for depth in 0..parts.len() {
        let folder = parts[..depth]
            .iter()
            .fold(top.clone(), |path, part| path.join(part));
        let base = RulesBase::Above {
            levels: (parts.len() - depth) as u32,
            workspace_path: parts[depth..].join("/"),
        };
        if let Ok(Some(rules)) =
            IgnoreRules::read(&folder.join(".gitignore"), base, RulesKind::Directory)
        {
            outer_rules.push(rules);
        }
    }
    let root_base = if parts.is_empty() {
        RulesBase::Inside {
            folder: String::new(),
        }
    } else {
        RulesBase::Above {
            levels: parts.len() as u32,
            workspace_path: prefix.clone(),
        }
    };
    if let Ok(Some(rules)) = IgnoreRules::read(
        &exclude_file,
        root_base.clone(),
        RulesKind::RepositoryExclude,
    ) {
        outer_rules.push(rules);
    }
    // git's own default when core.excludesFile is unset (XDG_CONFIG_HOME aside).
    if let Some(global) = git_text(&[
        "config",
        "--get",
        "--path",
        "--default",
        "~/.config/git/ignore",
        "core.excludesFile",
    ]) && let Ok(Some(rules)) = IgnoreRules::read(
        &workspace.join(global.trim_end_matches('\n')),
        root_base,
        RulesKind::GlobalExclude,
    ) {
        outer_rules.push(rules);
    }
    Some(GitListing {
        included,
        ignored,
        outer_rules,
    })
}

/// The session's scope, fixing it now (from git's view, or the `.gitignore` files outside
/// git) if the session has none yet. Call it when a run or plugin session starts, before the
/// builder can touch anything.
pub fn ensure_session_scope(
    session: &Session,
    workspace: &Path,
    now: OffsetDateTime,
) -> refinery_core::Result<WorkspaceScope> {
    if let Some(scope) = session.scope()? {
        return Ok(scope);
    }
    session.freeze_scope(git_listing(workspace), now)
}

/// Runs one git command; `None` when it fails or outlives `limit` (then it is killed).
fn git(workspace: &Path, args: &[&str], limit: Duration) -> Option<Vec<u8>> {
    let child = Command::new("git")
        .args(args)
        .current_dir(workspace)
        // Reading only: never take the index lock a concurrent `git commit` needs.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = i32::try_from(child.id()).ok()?;
    let (send, receive) = mpsc::channel();
    // The thread owns the child and reaps it, also after a kill below.
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(limit) {
        Ok(Ok(output)) if output.status.success() => Some(output.stdout),
        Ok(_) => None,
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            None
        }
    }
}

fn git_text(workspace: &Path, args: &[&str], limit: Duration) -> Option<String> {
    String::from_utf8(git(workspace, args, limit)?).ok()
}

/// NUL-separated paths; a name that is not UTF-8 cannot be stored in a manifest and is
/// left to the scope's rules (where it can only be out).
fn git_paths(workspace: &Path, args: &[&str], limit: Duration) -> Option<Vec<String>> {
    let bytes = git(workspace, args, limit)?;
    Some(
        bytes
            .split(|byte| *byte == 0)
            .filter(|path| !path.is_empty())
            .filter_map(|path| std::str::from_utf8(path).ok().map(str::to_owned))
            .collect(),
    )
}
