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
    if !may_be_in_git(workspace) {
        return None;
    }
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
    // git's own default when core.excludesFile is unset (XDG_CONFIG_HOME aside).
    let global = git_text(&[
        "config",
        "--get",
        "--path",
        "--default",
        "~/.config/git/ignore",
        "core.excludesFile",
    ])
    .map(|path| workspace.join(path.trim_end_matches('\n')));
    let outer_rules = outer_rules(&top, &prefix, &exclude_file, global.as_deref());
    Some(GitListing {
        included,
        ignored,
        outer_rules,
    })
}

/// The ignore rules git applies to the workspace from outside its tree: the `.gitignore` of
/// the repository root and of every folder down to the workspace's parent (the workspace is
/// at `prefix` below `top`), the repository's exclude file, and the global one. Files that
/// cannot be read without blocking are left out here; git's own listing already applied them.
fn outer_rules(
    top: &Path,
    prefix: &str,
    exclude_file: &Path,
    global: Option<&Path>,
) -> Vec<IgnoreRules> {
    let parts: Vec<&str> = if prefix.is_empty() {
        Vec::new()
    } else {
        prefix.split('/').collect()
    };
    let levels = |depth: usize| u32::try_from(parts.len() - depth).unwrap_or(u32::MAX);
    let mut found = Vec::new();
    for depth in 0..parts.len() {
        let folder = parts[..depth]
            .iter()
            .fold(top.to_path_buf(), |path, part| path.join(part));
        let base = RulesBase::Above {
            levels: levels(depth),
            workspace_path: parts[depth..].join("/"),
        };
        found.extend(
            IgnoreRules::read(&folder.join(".gitignore"), base, RulesKind::Directory)
                .ok()
                .flatten(),
        );
    }
    let root_base = if parts.is_empty() {
        RulesBase::Inside {
            folder: String::new(),
        }
    } else {
        RulesBase::Above {
            levels: levels(0),
            workspace_path: prefix.to_owned(),
        }
    };
    found.extend(
        IgnoreRules::read(
            exclude_file,
            root_base.clone(),
            RulesKind::RepositoryExclude,
        )
        .ok()
        .flatten(),
    );
    if let Some(global) = global {
        found.extend(
            IgnoreRules::read(global, root_base, RulesKind::GlobalExclude)
                .ok()
                .flatten(),
        );
    }
    found
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

/// Whether git could find a repository for `workspace`: a `.git` entry in it or in a folder
/// above it, or git's own variables naming one. Without any, git only answers "not a git
/// repository", and asking costs a process (about a millisecond, at every session start).
fn may_be_in_git(workspace: &Path) -> bool {
    if git_location_set() {
        return true;
    }
    // Git looks from the physical folder; when that cannot be had, let git decide.
    let Ok(physical) = fs_err::canonicalize(workspace) else {
        return true;
    };
    physical
        .ancestors()
        .any(|folder| fs_err::symlink_metadata(folder.join(".git")).is_ok())
}

/// Whether git's own variables name a repository or work tree (then git finds it wherever the
/// workspace is).
fn git_location_set() -> bool {
    ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_asked_only_where_a_repository_can_be_found() {
        if git_location_set() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        fs_err::create_dir_all(&nested).unwrap();
        // Outside any repository, git is not asked (and the listing is None as git would say).
        // A stray `.git` above the temp folder makes git be asked, which is still correct.
        let stray = dir
            .path()
            .ancestors()
            .any(|folder| folder.join(".git").exists());
        assert_eq!(may_be_in_git(&nested), stray);
        assert!(git_listing(&nested).is_none());
        // A `.git` folder above, or a `.git` file (a worktree or submodule), is enough.
        fs_err::create_dir(dir.path().join("a/.git")).unwrap();
        assert!(may_be_in_git(&nested));
        fs_err::remove_dir(dir.path().join("a/.git")).unwrap();
        fs_err::write(nested.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(may_be_in_git(&nested));
        // A folder that does not exist is left to git to judge.
        assert!(may_be_in_git(&dir.path().join("missing")));
    }
}
