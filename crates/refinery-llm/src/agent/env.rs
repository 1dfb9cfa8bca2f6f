//! The environment an agent CLI runs with: what it needs to start and to authenticate, and
//! nothing else.
//!
//! An agent runs a model that reads and writes files and runs shell commands; whatever is in
//! its environment, the model can print. So the child gets a filtered copy of the map it is
//! given (never the whole environment of Refinery):
//!
//! - for every CLI: `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `TERM`, `COLORTERM`,
//!   `NO_COLOR`, `FORCE_COLOR`, `TZ`, `LANG`, `LANGUAGE`, `LC_*`, `TMPDIR`/`TMP`/`TEMP`,
//!   `XDG_*` folders, the TLS trust settings (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
//!   `NODE_EXTRA_CA_CERTS`), `NODE_OPTIONS`, and git's identity and config variables
//!   (`GIT_*`);
//! - for each CLI, its own settings and its own credentials (see [`cli_rule`]);
//! - any variable named in `REFINERY_AGENT_ENV` (comma- or space-separated names), for what
//!   a setup needs beyond this list — a proxy, a custom CA, a gateway header.
//!
//! Proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are not passed
//! unless named in `REFINERY_AGENT_ENV`: Refinery's own HTTP client ignores them too, so a
//! loopback endpoint stays loopback. A variable whose name marks it secret
//! ([`refinery_secrets::is_secret_name`]) is passed only when it is one of the CLI's own
//! credentials, or named in `REFINERY_AGENT_ENV`; matching a family prefix (`CLAUDE_*`,
//! `GIT_*`, …) is not enough.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::AgentCli;

/// Extra variable names to pass to every agent CLI.
pub const PASS_ENV_VARIABLE: &str = "REFINERY_AGENT_ENV";

const COMMON: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "TMP",
    "TEMP",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "NODE_OPTIONS",
];

const COMMON_PREFIXES: &[&str] = &["LC_", "XDG_", "GIT_"];

/// What one CLI may see besides [`COMMON`].
struct CliRule {
    /// Settings by exact name.
    settings: &'static [&'static str],
    /// Settings by prefix (never secret-named ones).
    prefixes: &'static [&'static str],
    /// Credentials: passed although their names mark them secret.
    credentials: &'static [&'static str],
}

/// Each CLI's own variables (from its documentation; see `docs/BACKENDS.md`).
fn cli_rule(cli: AgentCli) -> CliRule {
    match cli {
        AgentCli::Claude => CliRule {
            settings: &[
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_MODEL",
                "ANTHROPIC_SMALL_FAST_MODEL",
                "ANTHROPIC_DEFAULT_OPUS_MODEL",
                "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                "ANTHROPIC_CUSTOM_HEADERS",
                "ANTHROPIC_VERTEX_PROJECT_ID",
                "CLOUD_ML_REGION",
                "AWS_REGION",
                "AWS_PROFILE",
                "MCP_TIMEOUT",
                "MCP_TOOL_TIMEOUT",
                "MAX_THINKING_TOKENS",
                "BASH_DEFAULT_TIMEOUT_MS",
                "BASH_MAX_TIMEOUT_MS",
                "IS_SANDBOX",
                "USE_BUILTIN_RIPGREP",
            ],
            prefixes: &["CLAUDE_", "DISABLE_", "ENABLE_"],
            credentials: &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "CLAUDE_CODE_OAUTH_TOKEN",
                "AWS_BEARER_TOKEN_BEDROCK",
            ],
        },
        AgentCli::Codex => CliRule {
            settings: &[
                "OPENAI_BASE_URL",
                "OPENAI_ORG_ID",
                "OPENAI_ORGANIZATION",
                "OPENAI_PROJECT",
            ],
            prefixes: &["CODEX_"],
            credentials: &["OPENAI_API_KEY", "CODEX_API_KEY"],
        },
        AgentCli::Gemini => CliRule {
            settings: &[
                "GOOGLE_GEMINI_BASE_URL",
                "GOOGLE_VERTEX_BASE_URL",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_LOCATION",
                "GOOGLE_GENAI_USE_VERTEXAI",
                "GOOGLE_GENAI_USE_GCA",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ],
            prefixes: &["GEMINI_"],
            credentials: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        },
        AgentCli::Copilot => CliRule {
            settings: &["GH_HOST"],
            prefixes: &["COPILOT_"],
            credentials: &[
                "COPILOT_PROVIDER_API_KEY",
                "COPILOT_PROVIDER_BEARER_TOKEN",
                "COPILOT_GITHUB_TOKEN",
                "GH_TOKEN",
                "GITHUB_TOKEN",
                "GH_ENTERPRISE_TOKEN",
                "GITHUB_ENTERPRISE_TOKEN",
            ],
        },
    }
}

/// The variables the child of `cli` gets from `env`.
pub(crate) fn child_env(cli: AgentCli, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let rule = cli_rule(cli);
    let mut credentials: BTreeSet<String> =
        rule.credentials.iter().map(ToString::to_string).collect();
    if cli == AgentCli::Codex {
        credentials.extend(codex_env_keys(env));
    }
    let named: BTreeSet<String> = env
        .get(PASS_ENV_VARIABLE)
        .map(|list| {
            list.split([',', ' ', '\n', '\t'])
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    env.iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            if named.contains(name) || credentials.contains(name) {
                return true;
            }
            if refinery_secrets::is_secret_name(name) {
                return false;
            }
            COMMON.contains(&name)
                || rule.settings.contains(&name)
                || COMMON_PREFIXES
                    .iter()
                    .chain(rule.prefixes)
                    .any(|prefix| name.starts_with(prefix))
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The variables codex's config names as a provider's key (`env_key = "NAME"`) in
/// `$CODEX_HOME/config.toml` (default `~/.codex`). A plain line scan: a custom provider's key
/// variable must reach codex, and nothing else is read from the file.
fn codex_env_keys(env: &BTreeMap<String, String>) -> Vec<String> {
    let home = env
        .get("CODEX_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".codex"))
        });
    let Some(text) = home.and_then(|dir| fs_err::read_to_string(dir.join("config.toml")).ok())
    else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            if key.trim() != "env_key" {
                return None;
            }
            let name = value.trim().trim_matches(['"', '\'']);
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            valid.then(|| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn each_cli_gets_its_own_credentials_and_nothing_secret_of_others() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("config.toml"),
            "[model_providers.x]\nenv_key = \"X_PROVIDER_KEY\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
        )
        .unwrap();
        let all = env(&[
            ("PATH", "/bin"),
            ("HOME", "/home/u"),
            ("LC_ALL", "C.UTF-8"),
            ("GIT_AUTHOR_NAME", "me"),
            ("GIT_ASKPASS_TOKEN", "t0ken-for-git-0001"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("ANTHROPIC_API_KEY", "a-key-0001"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1"),
            ("CLAUDE_CODE_TMPDIR", "/tmp/c"),
            ("CLAUDE_SECRET_THING", "nope-0001"),
            ("OPENAI_API_KEY", "o-key-0001"),
            ("CODEX_HOME", &dir.path().display().to_string()),
            ("X_PROVIDER_KEY", "x-key-0001"),
            ("GEMINI_API_KEY", "g-key-0001"),
            ("GEMINI_CLI_TRUST_WORKSPACE", "true"),
            ("COPILOT_PROVIDER_API_KEY", "c-key-0001"),
            ("COPILOT_OFFLINE", "true"),
            ("GITHUB_TOKEN", "gh-token-0001"),
            ("AWS_SECRET_ACCESS_KEY", "aws-0001"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("UNRELATED_SERVICE_TOKEN", "u-0001"),
        ]);
        let names = |cli| child_env(cli, &all).into_keys().collect::<Vec<_>>();
        let expect = |own: &[&str]| {
            let mut names: Vec<String> = ["GIT_AUTHOR_NAME", "HOME", "LC_ALL", "PATH"]
                .iter()
                .chain(own)
                .map(ToString::to_string)
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(AgentCli::Claude),
            expect(&[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
                "CLAUDE_CODE_TMPDIR"
            ])
        );
        assert_eq!(
            names(AgentCli::Codex),
            expect(&["CODEX_HOME", "OPENAI_API_KEY", "X_PROVIDER_KEY"])
        );
        assert_eq!(
            names(AgentCli::Gemini),
            expect(&["GEMINI_API_KEY", "GEMINI_CLI_TRUST_WORKSPACE"])
        );
        assert_eq!(
            names(AgentCli::Copilot),
            expect(&[
                "COPILOT_OFFLINE",
                "COPILOT_PROVIDER_API_KEY",
                "GITHUB_TOKEN"
            ])
        );
        let mut with_list = all.clone();
        with_list.insert(
            PASS_ENV_VARIABLE.to_owned(),
            "HTTPS_PROXY, UNRELATED_SERVICE_TOKEN".to_owned(),
        );
        let passed = child_env(AgentCli::Gemini, &with_list);
        assert!(passed.contains_key("HTTPS_PROXY"));
        assert!(passed.contains_key("UNRELATED_SERVICE_TOKEN"));
        assert!(!passed.contains_key(PASS_ENV_VARIABLE));
    }
}
