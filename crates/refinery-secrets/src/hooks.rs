//! `refinery secrets install`: plain git hooks for people who do not use the pre-commit
//! framework. Each hook is a two-line shell script that execs the binary, so updating the
//! binary updates the hook. A hook we did not write is never replaced without `--force`, and
//! even then it is kept as a backup.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::git::Git;

/// Written into every hook we install; its presence means "ours, safe to overwrite".
const MARKER: &str = "refinery-secrets hook";

/// Which hook to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// Scans the staged diff before each commit.
    PreCommit,
    /// Scans the outgoing commits before each push.
    PrePush,
}

impl HookKind {
    fn file_name(self) -> &'static str {
        match self {
            Self::PreCommit => "pre-commit",
            Self::PrePush => "pre-push",
        }
    }
}

/// What to install, where.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Any directory inside the repository.
    pub working_dir: PathBuf,
    /// The hooks to write.
    pub hooks: Vec<HookKind>,
    /// The program the hooks run (normally the absolute path of the running `refinery`).
    pub program: PathBuf,
    /// Replace hooks that we did not write (the old one is kept as `<hook>.refinery-backup`).
    pub force: bool,
}

/// One hook that was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledHook {
    /// The hook file.
    pub path: PathBuf,
    /// Where a replaced foreign hook was moved.
    pub backup: Option<PathBuf>,
}

/// Writes the hooks into the repository's hooks directory (`git rev-parse --git-path hooks`,
/// which honours `core.hooksPath`). Checks every hook before writing any, so a refusal leaves
/// nothing half-installed.
pub fn install(options: &InstallOptions) -> Result<Vec<InstalledHook>> {
    let git = Git::discover(&options.working_dir)?;
    let hooks_dir = git.hooks_dir()?;
    fs_err::create_dir_all(&hooks_dir)?;

    let mut plan = Vec::new();
    for &kind in &options.hooks {
        let path = hooks_dir.join(kind.file_name());
        let existing = match fs_err::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            // Unreadable or not UTF-8: certainly not ours.
            Err(_) => Some(String::new()),
        };
        let is_foreign = existing
            .as_deref()
            .is_some_and(|text| !text.contains(MARKER));
        if is_foreign && !options.force {
            return Err(Error::ForeignHook { path });
        }
        plan.push((kind, path, is_foreign));
    }

    let mut installed = Vec::new();
    for (kind, path, is_foreign) in plan {
        let backup = if is_foreign {
            let backup = path.with_file_name(format!("{}.refinery-backup", kind.file_name()));
            fs_err::rename(&path, &backup)?;
            Some(backup)
        } else {
            None
        };
        fs_err::write(&path, script(kind, &options.program))?;
        make_executable(&path)?;
        installed.push(InstalledHook { path, backup });
    }
    Ok(installed)
}

fn script(kind: HookKind, program: &Path) -> String {
    let program = shell_quote(&program.to_string_lossy());
    let (what, command) = match kind {
        HookKind::PreCommit => (
            "Blocks a commit whose staged changes add a secret.",
            format!("exec {program} secrets scan --staged"),
        ),
        // git passes the remote name and URL as arguments and the pushed refs on stdin,
        // which `exec` hands over unchanged.
        HookKind::PrePush => (
            "Blocks a push whose outgoing commits add a secret.",
            format!("exec {program} secrets scan --pre-push --remote \"$1\""),
        ),
    };
    format!(
        "#!/bin/sh\n\
         # {MARKER}: installed by `refinery secrets install`; rerun it to update.\n\
         # {what} Bypass once with --no-verify.\n\
         {command}\n"
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_the_program() {
        let text = script(HookKind::PrePush, Path::new("/opt/it's here/refinery"));
        assert!(text.starts_with("#!/bin/sh\n"));
        assert!(text.contains(MARKER));
        assert!(
            text.contains(r"exec '/opt/it'\''s here/refinery' secrets scan --pre-push --remote ")
        );
        let text = script(HookKind::PreCommit, Path::new("refinery"));
        assert!(text.contains("exec 'refinery' secrets scan --staged\n"));
    }
}
