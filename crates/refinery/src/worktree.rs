//! Runs in their own git worktree (`refinery refine --worktree`) and the git plumbing that
//! finds, commits and removes them (`refinery runs`).
//!
//! A worktree run never touches the user's working tree, index or branch: it starts from
//! `HEAD` in a new worktree under the repository's git folder
//! (`<git-common-dir>/refinery/worktrees/<session>`) on a new branch `refinery/<session>`, keeps
//! its state in that worktree's `.refinery/`, and at the end commits the delivered round on its
//! branch. Nothing is pushed or merged. Git's own ref creation is what keeps two runs started at
//! the same second apart: the run first creates its branch (which fails when another run has
//! the name, and then the next id is tried), and only then checks it out in a worktree; a
//! worktree that cannot be added gives its branch back, so no orphan branch is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use refinery_core::SessionId;
use refinery_core::fsutil::{read_json, write_json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Branches of worktree runs live under this prefix.
pub(crate) const BRANCH_PREFIX: &str = "refinery/";
/// In a worktree's state folder: what the run was started from.
const ORIGIN_FILE: &str = "worktree.json";
/// Ids tried before giving up (a same-second, same-label collision).
const ID_ATTEMPTS: u32 = 50;

/// Where a worktree run came from, kept in its state folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Origin {
    /// The session, which names the branch and the folder.
    pub session: String,
    /// `refinery/<session>`.
    pub branch: String,
    /// The commit the branch started from.
    pub base: String,
}

/// A worktree run just created, before its session starts.
pub(crate) struct NewWorktree {
    pub id: SessionId,
    pub path: PathBuf,
    pub origin: Origin,
}

impl NewWorktree {
    /// The folder in this worktree that corresponds to `user_workspace` in the user's
    /// checkout (the same path relative to the repository's top).
    pub(crate) fn workspace_for(&self, user_workspace: &Path) -> anyhow::Result<PathBuf> {
        workspace_in(&self.path, user_workspace)
    }
}

/// The folder in the worktree at `worktree` that corresponds to `user_workspace` in the user's
/// checkout (the same path relative to the repository's top).
pub(crate) fn workspace_in(worktree: &Path, user_workspace: &Path) -> anyhow::Result<PathBuf> {
    let top = fs_err::canonicalize(checkout_root(user_workspace)?)?;
    let workspace = fs_err::canonicalize(user_workspace)?;
    let relative = workspace.strip_prefix(&top).unwrap_or(Path::new(""));
    Ok(worktree.join(relative))
}

/// The top of the checkout that holds `dir`.
pub(crate) fn checkout_root(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?))
}

/// Runs `git` in `dir`; its stdout, trimmed, or an error with git's own message.
pub(crate) fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .with_context(|| "running git (install git)".to_owned())?;
    if !output.status.success() {
        bail!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The state folder of a worktree.
pub(crate) fn state_dir(worktree: &Path) -> PathBuf {
    worktree.join(".refinery")
}

/// A worktree run's branch and folder, as [`create_noting`] shows them to its caller before
/// either exists.
pub(crate) struct Reserved<'a> {
    pub id: &'a SessionId,
    pub branch: &'a str,
    pub path: &'a Path,
}

/// Starts a worktree run from `repo`'s `HEAD`. Refuses uncommitted changes (the run would not
/// see them, and carrying them over silently would surprise): commit or stash them first.
pub(crate) fn create(repo: &Path, label: &str, now: OffsetDateTime) -> anyhow::Result<NewWorktree> {
    create_noting(repo, label, now, |_| Ok(()))
}

/// [`create`], telling `noted` the branch and folder it is about to make, before making
/// either: a caller that saves them there can find (and give back) a start that a kill cut
/// short at any later point ([`discard_unstarted`]). A failing `noted` is the error, with
/// nothing made.
pub(crate) fn create_noting(
    repo: &Path,
    label: &str,
    now: OffsetDateTime,
    mut noted: impl FnMut(&Reserved<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<NewWorktree> {
    let top = git(repo, &["rev-parse", "--show-toplevel"]).with_context(|| {
        format!(
            "{} is not inside a git repository; --worktree needs one with at least one commit",
            repo.display()
        )
    })?;
    let base = git(repo, &["rev-parse", "--verify", "HEAD^{commit}"]).with_context(
        || "the repository has no commit yet; --worktree starts from HEAD, so commit once first",
    )?;
    // `--no-optional-locks`: a plain `git status` may rewrite the user's index to refresh it.
    let changes = git(
        Path::new(&top),
        &["--no-optional-locks", "status", "--porcelain"],
    )?;
    if !changes.is_empty() {
        bail!(
            "the working tree of {top} has uncommitted changes; a --worktree run starts from HEAD ({}) and would not see them: commit or stash them first, or run without --worktree",
            &base[..base.len().min(12)]
        );
    }
    let common = git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    let parent = Path::new(&common).join("refinery").join("worktrees");
    fs_err::create_dir_all(&parent)?;
    let first = SessionId::generate(now, label);
    for attempt in 1..=ID_ATTEMPTS {
        let id = if attempt == 1 {
            first.clone()
        } else {
            SessionId::parse(&format!("{first}-{attempt}"))?
        };
        let branch = format!("{BRANCH_PREFIX}{id}");
        let path = parent.join(id.as_str());
        if path.exists() || branch_exists(Path::new(&top), &branch) {
            // Another run holds this id (its branch or its folder): try the next one.
            continue;
        }
        // Noted before the branch exists, so no kill from here on can leave a branch its
        // caller has no record of.
        noted(&Reserved {
            id: &id,
            branch: &branch,
            path: &path,
        })?;
        if !reserve_branch(Path::new(&top), &branch, &base)? {
            // Taken meanwhile by another run: the next attempt's note replaces this one.
            continue;
        }
        if let Err(err) = add_worktree(Path::new(&top), &path, &branch) {
            // The branch is ours and nothing is checked out on it yet: give it back, so a
            // failed start never leaves an orphan branch behind.
            let _ = git(Path::new(&top), &["branch", "--quiet", "-D", &branch]);
            return Err(err);
        }
        let origin = Origin {
            session: id.to_string(),
            branch,
            base,
        };
        write_json(&state_dir(&path).join(ORIGIN_FILE), &origin)?;
        return Ok(NewWorktree { id, path, origin });
    }
    bail!("could not find a free session id for the worktree after {ID_ATTEMPTS} tries")
}

/// Gives back a start that a kill cut short after [`create_noting`] told its caller of it
/// (any of it may not exist yet): the worktree at `path` if it holds nothing (a plain `git worktree remove`, which refuses a
/// worktree with changes) or if git was still adding it (locked "initializing": git's own
/// half-made checkout, which only a double `--force` removes), then `branch` if nothing is
/// checked out on it any more (git refuses otherwise) and it has no commit `HEAD` lacks.
/// Whatever does not qualify is left as it is.
pub(crate) fn discard_unstarted(repo: &Path, path: &Path, branch: &str) -> anyhow::Result<()> {
    let top = checkout_root(repo)?;
    let path_text = path.to_string_lossy();
    if path.exists() {
        let mut args = vec!["worktree", "remove"];
        if still_being_added(&top, path)? {
            args.extend(["--force", "--force"]);
        }
        args.push(&path_text);
        let _ = git(&top, &args);
    }
    let _ = git(&top, &["worktree", "prune"]);
    if branch_exists(&top, branch)
        && git(&top, &["rev-list", "--count", &format!("HEAD..{branch}")])? == "0"
    {
        let _ = git(&top, &["branch", "--quiet", "-D", branch]);
    }
    Ok(())
}

/// Whether the worktree at `path` is one `git worktree add` had not finished: git locks it
/// as "initializing" until its checkout is done.
fn still_being_added(top: &Path, path: &Path) -> anyhow::Result<bool> {
    let listing = git(top, &["worktree", "list", "--porcelain"])?;
    let wanted = fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(listing.split("\n\n").any(|block| {
        let mut lines = block.lines();
        let named = lines
            .next()
            .and_then(|line| line.strip_prefix("worktree "))
            .is_some_and(|listed| {
                fs_err::canonicalize(listed).unwrap_or_else(|_| PathBuf::from(listed)) == wanted
            });
        named && lines.any(|line| line == "locked initializing")
    }))
}

/// Creates `branch` at `base` unless it exists. Git's ref lock makes this the one atomic step
/// two runs started in the same second race on: `Ok(false)` means another run has the name.
/// Other failures (a ref lock held for a moment by a concurrent git command) are tried again
/// briefly before they count as errors.
fn reserve_branch(top: &Path, branch: &str, base: &str) -> anyhow::Result<bool> {
    retry_briefly(|| {
        if branch_exists(top, branch) {
            return Ok(false);
        }
        match git(top, &["branch", "--quiet", "--no-track", branch, base]) {
            Ok(_) => Ok(true),
            Err(_) if branch_exists(top, branch) => Ok(false),
            Err(err) => Err(err),
        }
    })
}

/// Checks `branch` (already created and owned by this run) out in a new worktree at `path`,
/// trying again briefly when a concurrent git command holds a lock for a moment.
fn add_worktree(top: &Path, path: &Path, branch: &str) -> anyhow::Result<()> {
    let path_text = path.to_string_lossy();
    retry_briefly(|| {
        git(top, &["worktree", "add", "--quiet", &path_text, branch])
            .map(drop)
            .inspect_err(|_| {
                // A half-made worktree would make the next attempt fail on "already exists".
                let _ = git(top, &["worktree", "remove", "--force", &path_text]);
                let _ = fs_err::remove_dir_all(path);
            })
    })
}

/// Runs `attempt`, and again after short pauses while it fails (a lock a concurrent git
/// command holds for a moment); the last error when every attempt failed.
fn retry_briefly<T>(mut attempt: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut result = attempt();
    for pause_ms in [50, 200, 500] {
        if result.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        result = attempt();
    }
    result
}

fn branch_exists(repo: &Path, branch: &str) -> bool {
    git(
        repo,
        &[
            "show-ref",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
}

/// The origin of the worktree whose state folder is `state_dir`, if it is a worktree run.
pub(crate) fn origin(state_dir: &Path) -> anyhow::Result<Option<Origin>> {
    Ok(read_json(&state_dir.join(ORIGIN_FILE))?)
}

/// The branch's last commit when the branch has moved past the commit it started from (a
/// run of it committed), else `None`.
pub(crate) fn last_own_commit(checkout: &Path) -> anyhow::Result<Option<String>> {
    let Some(origin) = origin(&state_dir(checkout))? else {
        return Ok(None);
    };
    let head = git(checkout, &["rev-parse", "HEAD"])?;
    Ok((head != origin.base).then_some(head))
}

/// Commits everything in `worktree` (its state folder ignores itself) with `message`. The
/// commit's id, or `None` when the delivered files equal the branch's last commit.
pub(crate) fn commit_all(worktree: &Path, message: &str) -> anyhow::Result<Option<String>> {
    git(worktree, &["add", "--all"])?;
    if git(worktree, &["diff", "--cached", "--quiet"]).is_ok() {
        return Ok(None);
    }
    // A machine without a git identity still gets its commit, under Refinery's name; a user's
    // own identity wins when there is one.
    let mut args: Vec<&str> = Vec::new();
    if git(worktree, &["config", "user.email"]).is_err() {
        args.extend([
            "-c",
            "user.name=Refinery",
            "-c",
            "user.email=refinery@localhost",
        ]);
    }
    args.extend(["commit", "--quiet", "-F", "-"]);
    let mut child = Command::new("git")
        .arg("-C")
        .arg(worktree)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running git commit")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(message.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "`git commit` failed in {}: {}",
            worktree.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(Some(git(worktree, &["rev-parse", "HEAD"])?))
}

/// One worktree of the repository that belongs to a run.
#[derive(Clone, Debug)]
pub(crate) struct RunWorktree {
    pub path: PathBuf,
    pub branch: String,
    pub session: String,
}

/// Every worktree on a `refinery/` branch, from `git worktree list` (works from the main
/// working tree and from any worktree of the repository).
pub(crate) fn list(repo: &Path) -> anyhow::Result<Vec<RunWorktree>> {
    let porcelain = git(repo, &["worktree", "list", "--porcelain"])?;
    let mut runs = Vec::new();
    let mut path: Option<PathBuf> = None;
    for line in porcelain.lines() {
        if let Some(rest) = line.strip_prefix("worktree ") {
            path = Some(PathBuf::from(rest));
        } else if let Some(rest) = line.strip_prefix("branch refs/heads/")
            && let Some(session) = rest.strip_prefix(BRANCH_PREFIX)
            && let Some(path) = path.take()
        {
            runs.push(RunWorktree {
                path,
                branch: rest.to_owned(),
                session: session.to_owned(),
            });
        }
    }
    Ok(runs)
}

/// Whether `worktree` holds changes not committed on its branch.
pub(crate) fn has_uncommitted(worktree: &Path) -> anyhow::Result<bool> {
    Ok(!git(worktree, &["status", "--porcelain"])?.is_empty())
}

/// Removes the worktree and deletes its branch.
pub(crate) fn remove(repo: &Path, run: &RunWorktree) -> anyhow::Result<()> {
    // `--force`: the worktree's own state folder is ignored but present; the caller has
    // already refused unsaved work.
    git(
        repo,
        &["worktree", "remove", "--force", &run.path.to_string_lossy()],
    )?;
    git(repo, &["branch", "--quiet", "-D", &run.branch])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("repo");
        fs_err::create_dir_all(&top).unwrap();
        fs_err::write(top.join("a.txt"), "a").unwrap();
        for args in [
            &["init", "--quiet"][..],
            &["add", "a.txt"],
            &[
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@example.invalid",
                "commit",
                "--quiet",
                "-m",
                "one",
            ],
        ] {
            git(&top, args).unwrap();
        }
        (dir, top)
    }

    #[test]
    fn a_start_cut_short_is_given_back_but_nothing_of_value_is() {
        let (dir, top) = repo();
        // Cut short after the branch and the worktree were made: both go.
        let path = dir.path().join("wt-empty");
        git(&top, &["branch", "--quiet", "refinery/empty", "HEAD"]).unwrap();
        add_worktree(&top, &path, "refinery/empty").unwrap();
        discard_unstarted(&top, &path, "refinery/empty").unwrap();
        assert!(!path.exists());
        assert!(!branch_exists(&top, "refinery/empty"));

        // One git was still adding when the kill came (locked "initializing") goes too.
        let path = dir.path().join("wt-half");
        git(&top, &["branch", "--quiet", "refinery/half", "HEAD"]).unwrap();
        add_worktree(&top, &path, "refinery/half").unwrap();
        fs_err::write(path.join("partial.txt"), "half a checkout").unwrap();
        git(
            &top,
            &[
                "worktree",
                "lock",
                "--reason",
                "initializing",
                &path.to_string_lossy(),
            ],
        )
        .unwrap();
        discard_unstarted(&top, &path, "refinery/half").unwrap();
        assert!(!path.exists());
        assert!(!branch_exists(&top, "refinery/half"));

        // A worktree holding a file of its own stays, and so does its branch.
        let path = dir.path().join("wt-work");
        git(&top, &["branch", "--quiet", "refinery/work", "HEAD"]).unwrap();
        add_worktree(&top, &path, "refinery/work").unwrap();
        fs_err::write(path.join("new.txt"), "work").unwrap();
        discard_unstarted(&top, &path, "refinery/work").unwrap();
        assert!(path.join("new.txt").is_file());
        assert!(branch_exists(&top, "refinery/work"));

        // A branch with a commit HEAD lacks stays, even with no worktree.
        let tree = git(&top, &["rev-parse", "HEAD^{tree}"]).unwrap();
        let commit = git(
            &top,
            &[
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@example.invalid",
                "commit-tree",
                &tree,
                "-p",
                "HEAD",
                "-m",
                "own",
            ],
        )
        .unwrap();
        git(&top, &["branch", "--quiet", "refinery/own", &commit]).unwrap();
        discard_unstarted(&top, &dir.path().join("wt-none"), "refinery/own").unwrap();
        assert!(branch_exists(&top, "refinery/own"));
    }
}
