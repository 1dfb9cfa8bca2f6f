//! What this machine and project offer the loop: API key *names*, agent CLIs, tools, git.
//!
//! Written to `environment.json` by the SessionStart hook so skills can choose backends
//! without reading `.env` files or the environment themselves. Values are read only to see
//! whether a key is non-empty and are dropped at once: nothing here stores, prints or
//! returns a value.
//!
//! This is deliberately minimal key detection for the hook; `refinery-llm` owns the full
//! credential logic and the two should be unified once it is on `main`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// API key variables we recognise, with the backend each one enables.
const KEY_NAMES: &[(&str, &str)] = &[
    ("ANTHROPIC_API_KEY", "anthropic"),
    ("OPENAI_API_KEY", "openai"),
    ("GEMINI_API_KEY", "gemini"),
    ("GOOGLE_API_KEY", "gemini"),
    ("XAI_API_KEY", "xai"),
    ("OPENROUTER_API_KEY", "openrouter"),
    ("GROQ_API_KEY", "groq"),
    ("MISTRAL_API_KEY", "mistral"),
    ("DEEPSEEK_API_KEY", "deepseek"),
];

/// Agent CLIs the loop can drive, by executable name.
const AGENT_CLIS: &[&str] = &["claude", "codex", "gemini", "copilot"];
/// Other tools skills use when present.
const TOOLS: &[&str] = &["git", "tmux", "docker"];

/// The content of `environment.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Environment {
    pub(crate) schema_version: u32,
    pub(crate) refinery_version: &'static str,
    pub(crate) workspace: PathBuf,
    pub(crate) git_repository: bool,
    /// Key name → where it was found (`environment` or a `.env` path). Never values.
    pub(crate) api_keys: BTreeMap<&'static str, Vec<String>>,
    /// Backends with a key or a CLI available.
    pub(crate) backends: BTreeMap<&'static str, bool>,
    pub(crate) agent_clis: BTreeMap<&'static str, bool>,
    pub(crate) tools: BTreeMap<&'static str, bool>,
    pub(crate) updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) claude_session_id: Option<String>,
}

/// Where to look; injected so tests never depend on the developer's machine.
pub(crate) struct Probe<'a> {
    pub(crate) workspace: &'a Path,
    pub(crate) home: Option<&'a Path>,
    pub(crate) path_var: Option<&'a std::ffi::OsStr>,
    /// Reads one environment variable.
    pub(crate) var: &'a dyn Fn(&str) -> Option<String>,
}

impl Probe<'_> {
    /// Folders the git search must not climb into (`GIT_CEILING_DIRECTORIES`, as git reads it).
    fn git_ceilings(&self) -> Vec<PathBuf> {
        (self.var)("GIT_CEILING_DIRECTORIES")
            .map(|raw| {
                std::env::split_paths(&raw)
                    .filter(|path| path.is_absolute())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(crate) fn detect(probe: &Probe<'_>, updated_at: String) -> Environment {
    let mut api_keys: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (name, _) in KEY_NAMES {
        if (probe.var)(name).is_some_and(|value| !value.trim().is_empty()) {
            api_keys
                .entry(name)
                .or_default()
                .push("environment".to_owned());
        }
    }
    let mut dotenv_files = vec![probe.workspace.join(".env")];
    if let Some(home) = probe.home {
        dotenv_files.push(home.join(".env"));
    }
    for file in dotenv_files {
        let Ok(text) = fs_err::read_to_string(&file) else {
            continue;
        };
        for found in key_names_in_dotenv(&text) {
            api_keys
                .entry(found)
                .or_default()
                .push(file.display().to_string());
        }
    }
    let on_path = |name: &str| probe.path_var.is_some_and(|path| is_on_path(path, name));
    let agent_clis: BTreeMap<&'static str, bool> = AGENT_CLIS
        .iter()
        .map(|name| (*name, on_path(name)))
        .collect();
    let tools = TOOLS.iter().map(|name| (*name, on_path(name))).collect();
    let backends = backends(&api_keys, &agent_clis);
    Environment {
        schema_version: 1,
        refinery_version: env!("CARGO_PKG_VERSION"),
        workspace: probe.workspace.to_path_buf(),
        git_repository: is_in_git_repository(probe.workspace, &probe.git_ceilings()),
        api_keys,
        backends,
        agent_clis,
        tools,
        updated_at,
        claude_session_id: None,
    }
}

/// Which backends can be used, from key names and CLIs.
fn backends(
    api_keys: &BTreeMap<&'static str, Vec<String>>,
    agent_clis: &BTreeMap<&'static str, bool>,
) -> BTreeMap<&'static str, bool> {
    let has_key = |backend: &str| {
        KEY_NAMES
            .iter()
            .any(|(name, owner)| *owner == backend && api_keys.contains_key(name))
    };
    let has_cli = |cli: &str| agent_clis.get(cli).copied().unwrap_or(false);
    let mut backends = BTreeMap::new();
    for (_, backend) in KEY_NAMES {
        backends.insert(*backend, has_key(backend));
    }
    backends.insert("claude_code", has_cli("claude"));
    backends.insert("codex", has_cli("codex"));
    backends.insert("gemini_cli", has_cli("gemini"));
    backends.insert("copilot", has_cli("copilot"));
    backends
}

/// The recognised key names set to a non-empty value in a `.env` text. Accepts
/// `NAME=value`, `export NAME=value`, quotes, spaces around `=`, and comments.
pub(crate) fn key_names_in_dotenv(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.split(" #").next().unwrap_or_default().trim();
        let value = value.trim_matches(|ch| ch == '"' || ch == '\'').trim();
        if value.is_empty() {
            continue;
        }
        if let Some((known, _)) = KEY_NAMES.iter().find(|(known, _)| *known == name.trim())
            && !found.contains(known)
        {
            found.push(*known);
        }
    }
    found
}

fn is_on_path(path_var: &std::ffi::OsStr, name: &str) -> bool {
    std::env::split_paths(path_var).any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = fs_err::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Whether `dir` or a parent holds `.git` (a folder, or a file for worktrees), without
/// climbing into a ceiling folder, as git does. No `git` process: the hook must stay fast
/// and work where git is not installed.
pub(crate) fn is_in_git_repository(dir: &Path, ceilings: &[PathBuf]) -> bool {
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
    use pretty_assertions::assert_eq;

    #[test]
    fn dotenv_key_names_are_found_without_values() {
        let table: &[(&str, &[&str])] = &[
            ("ANTHROPIC_API_KEY=sk-ant-123\n", &["ANTHROPIC_API_KEY"]),
            ("export OPENAI_API_KEY=\"sk-x\"\n", &["OPENAI_API_KEY"]),
            ("GEMINI_API_KEY = 'g-1' # mine\n", &["GEMINI_API_KEY"]),
            ("ANTHROPIC_API_KEY=\n", &[]),
            ("ANTHROPIC_API_KEY=\"\"\n", &[]),
            ("# ANTHROPIC_API_KEY=sk-commented\n", &[]),
            ("UNRELATED_TOKEN=abc\n", &[]),
            ("garbage line without equals\n", &[]),
            (
                "XAI_API_KEY=1\nXAI_API_KEY=2\nGOOGLE_API_KEY=3\n",
                &["XAI_API_KEY", "GOOGLE_API_KEY"],
            ),
        ];
        for (text, expected) in table {
            assert_eq!(key_names_in_dotenv(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn environment_lists_names_and_never_values() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("proj");
        let home = dir.path().join("home");
        let bin = dir.path().join("bin");
        for folder in [&workspace, &home, &bin] {
            fs_err::create_dir_all(folder).unwrap();
        }
        fs_err::write(
            workspace.join(".env"),
            "OPENAI_API_KEY=sk-proj-SECRETVALUE1\n",
        )
        .unwrap();
        fs_err::write(home.join(".env"), "XAI_API_KEY=xai-SECRETVALUE2\n").unwrap();
        let codex = bin.join("codex");
        fs_err::write(&codex, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::set_permissions(&codex, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ceiling = dir.path().display().to_string();
        let var = |name: &str| match name {
            "ANTHROPIC_API_KEY" => Some("sk-ant-SECRETVALUE3".to_owned()),
            "GIT_CEILING_DIRECTORIES" => Some(ceiling.clone()),
            _ => None,
        };
        let path_var = bin.clone().into_os_string();
        let probe = Probe {
            workspace: &workspace,
            home: Some(&home),
            path_var: Some(&path_var),
            var: &var,
        };
        let environment = detect(&probe, "2026-11-24T01:00:00Z".to_owned());
        let json = serde_json::to_string(&environment).unwrap();
        assert!(!json.contains("SECRETVALUE"), "{json}");
        assert_eq!(
            environment.api_keys.keys().copied().collect::<Vec<_>>(),
            ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "XAI_API_KEY"]
        );
        assert_eq!(environment.api_keys["ANTHROPIC_API_KEY"], ["environment"]);
        assert!(environment.backends["openai"] && environment.backends["codex"]);
        assert!(!environment.backends["gemini"] && !environment.backends["claude_code"]);
        assert!(environment.agent_clis["codex"] && !environment.agent_clis["claude"]);
        assert!(!environment.git_repository);
        fs_err::create_dir_all(workspace.join(".git")).unwrap();
        assert!(is_in_git_repository(&workspace.join("sub"), &[]));
        assert!(!is_in_git_repository(
            &workspace.join("sub"),
            std::slice::from_ref(&workspace)
        ));
        assert!(is_in_git_repository(
            &workspace,
            std::slice::from_ref(&workspace)
        ));
    }
}
