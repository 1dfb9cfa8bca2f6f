//! `refinery hook session-start`: the Claude Code plugin's SessionStart hook.
//!
//! Claude Code runs it at every session start with a JSON object on stdin (`session_id`,
//! `transcript_path`, `cwd`, `source`) and `CLAUDE_PID` in the environment. It binds the
//! Claude Code session to its own loop state (see `refinery_core::claude_session`), writes
//! `environment.json` through `refinery_llm::doctor` (key names, never values) and warns when the folder is not a git
//! repository.
//!
//! Output contract: stdout is read by Claude Code, so it is empty or one JSON object with a
//! short `systemMessage` (shown to the user) and, only when a loop continues, a short
//! `additionalContext` (seen by the model). A hook must never stop a session from starting,
//! so failures become a one-line `systemMessage` and exit 0.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use std::path::Path;
use std::time::Duration;

use refinery_core::{ClaudeSessionId, ClaudeSessionStart, StartSource, StateDir};
use refinery_llm::doctor::{self, DoctorOptions};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::process_env;

/// Claude Code hook input is a few hundred bytes; anything far larger is not hook input.
const MAX_INPUT_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
pub(crate) struct HookArgs {
    #[command(subcommand)]
    command: HookCommand,
}

#[derive(Debug, Subcommand)]
enum HookCommand {
    /// Bind this Claude Code session to its loop state and record the environment.
    SessionStart,
}

/// The fields of the SessionStart input we use; others are ignored.
#[derive(Debug, Deserialize)]
struct SessionStartInput {
    session_id: String,
    #[serde(default)]
    transcript_path: Option<String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    source: Option<String>,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &HookArgs) -> anyhow::Result<ExitStatus> {
    match args.command {
        HookCommand::SessionStart => {
            let reply = match session_start(global) {
                Ok(reply) => reply,
                Err(err) => Some(json!({
                    "systemMessage": format!("Refinery hook failed: {err:#}"),
                })),
            };
            if let Some(reply) = reply {
                output::line(&reply.to_string())?;
            }
            Ok(ExitStatus::Success)
        }
    }
}

fn session_start(global: &GlobalArgs) -> anyhow::Result<Option<Value>> {
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES)
        .read_to_end(&mut raw)
        .context("could not read the hook input from stdin")?;
    let input: SessionStartInput = serde_json::from_slice(&raw).context(
        "the hook input on stdin is not Claude Code's SessionStart JSON (it needs `session_id`)",
    )?;
    let claude_session_id = ClaudeSessionId::parse(&input.session_id)?;
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    // The project root first, as `.mcp.json` gives it to the MCP servers, so the hook and the
    // servers always share one state folder even after a `cd` inside the session.
    let project_dir = std::env::var_os("CLAUDE_PROJECT_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    let workspace = match (&global.workspace, project_dir, &input.cwd) {
        (Some(path), _, _) => cwd.join(path),
        (None, Some(path), _) => path,
        (None, None, Some(path)) => path.clone(),
        (None, None, None) => cwd.clone(),
    };
    let state_dir = global
        .state_dir
        .as_ref()
        .map_or_else(|| workspace.join(".refinery"), |path| cwd.join(path));
    let store = StateDir::checked(state_dir, &workspace)?;
    let now = OffsetDateTime::now_utc();
    let start = ClaudeSessionStart {
        claude_session_id: claude_session_id.clone(),
        source: StartSource::parse(input.source.as_deref().unwrap_or("startup")),
        transcript_path: input.transcript_path,
        claude_pid: std::env::var("CLAUDE_PID")
            .ok()
            .and_then(|pid| pid.trim().parse().ok()),
    };
    let binding = store.record_claude_session_start(&start, now)?;

    // The same environment.json as `refinery doctor` writes (one schema, one key detection in
    // refinery-llm), minus the slow probes: no `--version` runs, no local-server requests.
    let env = process_env();
    let home = env
        .get("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from);
    let git_repository = is_in_git_repository(&workspace, &git_ceilings(&env));
    let report = doctor::quick_report(&DoctorOptions {
        home_dir: home,
        probe_timeout: Duration::ZERO,
        ..DoctorOptions::new(env, workspace.clone(), None)
    })?;
    doctor::write_environment_file(store.root(), &report)?;

    let mut reply = serde_json::Map::new();
    if !git_repository {
        reply.insert(
            "systemMessage".to_owned(),
            Value::String(
                "Refinery: this folder is not a git repository; run `git init` so rounds can be compared and restored safely."
                    .to_owned(),
            ),
        );
    }
    if let (Some(session), Some(parent)) = (&binding.refinery_session, &binding.inherited_from) {
        reply.insert(
            "hookSpecificOutput".to_owned(),
            json!({
                "hookEventName": "SessionStart",
                "additionalContext": format!(
                    "Refinery: this session continues Refinery session `{session}` (from Claude Code session `{parent}`); its state is under .refinery/sessions/{session}/."
                ),
            }),
        );
    }
    Ok((!reply.is_empty()).then_some(Value::Object(reply)))
}

/// Folders the git search must not climb into (`GIT_CEILING_DIRECTORIES`, as git reads it).
fn git_ceilings(env: &std::collections::BTreeMap<String, String>) -> Vec<PathBuf> {
    env.get("GIT_CEILING_DIRECTORIES")
        .map(|raw| {
            std::env::split_paths(raw)
                .filter(|path| path.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `dir` or a parent holds `.git` (a folder, or a file for worktrees), without
/// climbing into a ceiling folder, as git does. No `git` process: the hook must stay fast
/// and work where git is not installed.
fn is_in_git_repository(dir: &Path, ceilings: &[PathBuf]) -> bool {
    for ancestor in dir.ancestors() {
        if ancestor != dir && ceilings.iter().any(|ceiling| ceiling == ancestor) {
            return false;
        }
        if ancestor.join(".git").exists() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_repositories_are_found_upwards_but_not_past_a_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("repo");
        let nested = workspace.join("sub");
        fs_err::create_dir_all(&nested).unwrap();
        let ceiling = [dir.path().to_path_buf()];
        assert!(!is_in_git_repository(&nested, &ceiling));
        fs_err::create_dir_all(workspace.join(".git")).unwrap();
        let table = [
            (&nested, vec![], true),
            (&nested, vec![workspace.clone()], false),
            (&workspace, vec![workspace.clone()], true),
            (&nested, ceiling.to_vec(), true),
        ];
        for (start, ceilings, expected) in table {
            assert_eq!(
                is_in_git_repository(start, &ceilings),
                expected,
                "{start:?} {ceilings:?}"
            );
        }
    }
}
