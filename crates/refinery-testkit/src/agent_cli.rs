//! Running the real agent CLIs (claude, codex, gemini, copilot) against a [`FakeModelServer`].
//!
//! Each `*_env` function prepares the throwaway HOME of a [`TestContext`] (config files the
//! CLI needs to accept a loopback base URL) and returns the complete environment for the
//! child: fake keys only, base URLs pointing at the fake, telemetry and updates off. The
//! facts behind each setting are in `shared/reference/agent-clis.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::context::TestContext;
use crate::server::FakeModelServer;

/// The agent CLIs the kit knows how to point at a fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCliName {
    Claude,
    Codex,
    Gemini,
    Copilot,
}

impl AgentCliName {
    pub fn program(self) -> &'static str {
        match self {
            AgentCliName::Claude => "claude",
            AgentCliName::Codex => "codex",
            AgentCliName::Gemini => "gemini",
            AgentCliName::Copilot => "copilot",
        }
    }
}

/// Folders searched for agent CLIs, in order: `REFINERY_AGENT_CLI_DIR`, the prefix `.ci/run`
/// installs into (`$HOME/.cache/refinery/agent-clis/node_modules/.bin`), then `PATH`.
pub fn agent_cli_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("REFINERY_AGENT_CLI_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/refinery/agent-clis/node_modules/.bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// Where the CLI is installed, if anywhere.
pub fn find_agent_cli(name: AgentCliName) -> Option<PathBuf> {
    agent_cli_dirs()
        .into_iter()
        .map(|dir| dir.join(name.program()))
        .find(|path| path.is_file())
}

/// The CLI's path, or `None` after printing why the test skips. Under `CI=true` a missing
/// CLI fails the test instead: CI installs all four, so absence there is a defect.
pub fn require_agent_cli(name: AgentCliName) -> Option<PathBuf> {
    if let Some(path) = find_agent_cli(name) {
        return Some(path);
    }
    crate::skip::skip(&format!(
        "`{}` not found in REFINERY_AGENT_CLI_DIR, ~/.cache/refinery/agent-clis or PATH (run `.ci/run` or install it from npm)",
        name.program()
    ));
    None
}

/// The fake key every CLI gets; tests assert it never shows up in output.
pub const FAKE_KEY: &str = "sk-fake-testkit-000000";

fn base_env(context: &TestContext, cli: &std::path::Path) -> BTreeMap<String, String> {
    let mut dirs = Vec::new();
    if let Some(parent) = cli.parent() {
        dirs.push(parent.to_path_buf());
    }
    context.env_with_path(&dirs)
}

/// Claude Code against the fake's Anthropic Messages endpoint.
pub fn claude_env(
    context: &TestContext,
    server: &FakeModelServer,
    cli: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = base_env(context, cli);
    let claude_tmp = context.tmp().join("claude");
    let _ = fs_err::create_dir_all(&claude_tmp);
    for (key, value) in [
        ("ANTHROPIC_BASE_URL", server.url()),
        ("ANTHROPIC_API_KEY", FAKE_KEY.to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ("DISABLE_AUTOUPDATER", "1".to_string()),
        ("DISABLE_TELEMETRY", "1".to_string()),
        ("ENABLE_TOOL_SEARCH", "false".to_string()),
        ("CLAUDE_CODE_TMPDIR", claude_tmp.display().to_string()),
        (
            "CLAUDE_CONFIG_DIR",
            context.home().join(".claude").display().to_string(),
        ),
    ] {
        env.insert(key.to_string(), value);
    }
    env
}

/// Codex against the fake's Responses endpoint, through a custom provider in `$CODEX_HOME/config.toml`.
pub fn codex_env(
    context: &TestContext,
    server: &FakeModelServer,
    cli: &std::path::Path,
) -> std::io::Result<BTreeMap<String, String>> {
    let codex_home = context.home().join(".codex");
    fs_err::create_dir_all(&codex_home)?;
    // Besides the provider: no update check, no analytics (ab.chatgpt.com), a loopback ChatGPT
    // backend, and none of the features that reach out on start (the plugin marketplace runs
    // `git ls-remote https://github.com/openai/plugins.git`; api.github.com, chatgpt.com), so a
    // traced run connects to nothing but the fake (checked with strace in refinery-llm's tests).
    let config = format!(
        "model = \"fake-model\"\nmodel_provider = \"fake\"\ncheck_for_update_on_startup = false\n\
         chatgpt_base_url = \"{url}/backend-api/\"\n\n[analytics]\nenabled = false\n\n\
         [model_providers.fake]\nname = \"Fake\"\nbase_url = \"{url}/v1\"\nenv_key = \"FAKE_OPENAI_API_KEY\"\n\
         wire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n\n\
         [features]\nplugins = false\nremote_plugin = false\nplugin_sharing = false\napps = false\n\
         in_app_updates = false\napi_key_model_discovery = false\napi_key_cyber_access_programs = false\n\
         skill_mcp_dependency_install = false\n",
        url = server.url()
    );
    fs_err::write(codex_home.join("config.toml"), config)?;
    let mut env = base_env(context, cli);
    env.insert("CODEX_HOME".to_string(), codex_home.display().to_string());
    env.insert("FAKE_OPENAI_API_KEY".to_string(), FAKE_KEY.to_string());
    Ok(env)
}

/// Gemini CLI against the fake's `streamGenerateContent`; the settings file selects API-key
/// auth, without which 0.61.0 rejects a custom base URL ("Invalid auth method selected.").
pub fn gemini_env(
    context: &TestContext,
    server: &FakeModelServer,
    cli: &std::path::Path,
) -> std::io::Result<BTreeMap<String, String>> {
    let gemini_home = context.home().join(".gemini");
    fs_err::create_dir_all(&gemini_home)?;
    fs_err::write(
        gemini_home.join("settings.json"),
        r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"general":{"disableAutoUpdate":true}}"#,
    )?;
    let mut env = base_env(context, cli);
    for (key, value) in [
        ("GOOGLE_GEMINI_BASE_URL", server.url()),
        ("GEMINI_API_KEY", FAKE_KEY.to_string()),
        ("GEMINI_CLI_TRUST_WORKSPACE", "true".to_string()),
    ] {
        env.insert(key.to_string(), value);
    }
    Ok(env)
}

/// Copilot CLI in BYOK mode against the fake's Anthropic Messages endpoint, offline.
pub fn copilot_env(
    context: &TestContext,
    server: &FakeModelServer,
    cli: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = base_env(context, cli);
    for (key, value) in [
        ("COPILOT_PROVIDER_BASE_URL", server.url()),
        ("COPILOT_PROVIDER_TYPE", "anthropic".to_string()),
        ("COPILOT_PROVIDER_API_KEY", FAKE_KEY.to_string()),
        ("COPILOT_MODEL", "claude-fake-1".to_string()),
        ("COPILOT_OFFLINE", "true".to_string()),
        ("COPILOT_ALLOW_ALL", "true".to_string()),
    ] {
        env.insert(key.to_string(), value);
    }
    env
}
