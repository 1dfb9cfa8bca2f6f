//! Second-stage settings: turns raw flags and environment into resolved paths, so commands
//! get a ready [`StateDir`] and never look at the environment themselves.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use refinery_core::StateDir;

use crate::cli::GlobalArgs;

/// Resolves the workspace (flag, else the current folder) and the state folder (flag or
/// `REFINERY_STATE_DIR`, else `<workspace>/.refinery`). Relative paths are taken from the
/// current folder, as a user typing them expects. A state folder that is the workspace or
/// one of its parents (`--state-dir .`) is refused before anything is written.
pub(crate) fn resolve_store(global: &GlobalArgs) -> anyhow::Result<StateDir> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let workspace = match &global.workspace {
        Some(path) => absolute(&cwd, path),
        None => cwd.clone(),
    };
    if !workspace.is_dir() {
        anyhow::bail!(
            "workspace `{}` is not a folder; pass an existing folder with --workspace",
            workspace.display()
        );
    }
    let state_dir = match &global.state_dir {
        Some(path) => absolute(&cwd, path),
        None => workspace.join(".refinery"),
    };
    Ok(StateDir::checked(state_dir, workspace)?)
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// The workspace alone (flag, else the current folder), for commands with no state to read.
pub(crate) fn resolve_workspace(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    Ok(resolve_store(global)?.workspace().to_path_buf())
}

/// A snapshot of the process environment as an explicit map. Libraries get this map and
/// never read (or change) the process environment themselves.
pub(crate) fn process_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars_os()
        .map(|(key, value)| {
            (
                key.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Keys from `env` and the `.env` files of the workspace and HOME. Loading adds every
/// secret-named value to the process scrubber, so no output, log line or state file can carry
/// one.
pub(crate) fn load_credentials(
    env: &std::collections::BTreeMap<String, String>,
    workspace: &Path,
) -> anyhow::Result<refinery_llm::Credentials> {
    let home = env
        .get("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from);
    let credentials = refinery_llm::Credentials::load(env, Some(workspace), home.as_deref())
        .context("reading keys")?;
    Ok(credentials)
}
