//! API keys and provider settings from an explicit environment map and `.env` files.
//!
//! Lookup order, first hit wins: the environment map (the caller passes the process
//! environment, or a test's own map; we never read or change the process environment
//! here), then `<project>/.env`, then `<home>/.env`. Only the known key variables and the
//! base-URL variables are taken from `.env` files for use; other lines are ignored.
//!
//! Loading is also how secrets get masked: the value of every variable whose name marks it
//! secret ([`refinery_secrets::is_secret_name`]: `*_KEY`, `*_TOKEN`, `*SECRET*`,
//! `*PASSWORD*`, …), in the map and in both `.env` files, known key or not, is added to the
//! process scrubber ([`refinery_secrets::process_scrubber`]), which every boundary applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Provider;
use crate::secret::ApiKey;

/// Every key variable Refinery knows, in report order.
pub const KEY_VARIABLES: [&str; 7] = [
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "ELEVENLABS_API_KEY",
];

/// Non-secret settings also read from `.env` files.
pub const SETTING_VARIABLES: [&str; 7] = [
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "GOOGLE_GEMINI_BASE_URL",
    "XAI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "OLLAMA_BASE_URL",
    "REFINERY_LOCAL_BASE_URL",
];

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeySource {
    Environment,
    DotEnv { path: PathBuf },
}

/// Whether a key is present, by name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    pub name: &'static str,
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<KeySource>,
}

/// The keys and settings available to this run.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: BTreeMap<&'static str, (ApiKey, KeySource)>,
    settings: BTreeMap<&'static str, String>,
}

impl Credentials {
    /// Keys and settings from `env`, then `<project_dir>/.env`, then `<home_dir>/.env`.
    pub fn load(
        env: &BTreeMap<String, String>,
        project_dir: Option<&Path>,
        home_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut credentials = Self::default();
        credentials.absorb(env, &KeySource::Environment);
        for dir in [project_dir, home_dir].into_iter().flatten() {
            let path = dir.join(".env");
            if let Some(values) = read_dotenv(&path)? {
                credentials.absorb(&values, &KeySource::DotEnv { path: path.clone() });
            }
        }
        Ok(credentials)
    }

    /// Only the given map, no files.
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        let mut credentials = Self::default();
        credentials.absorb(env, &KeySource::Environment);
        credentials
    }

    fn absorb(&mut self, values: &BTreeMap<String, String>, source: &KeySource) {
        refinery_secrets::remember_secret_vars(
            values
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        for name in KEY_VARIABLES {
            if let Some(value) = values
                .get(name)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
            {
                self.keys
                    .entry(name)
                    .or_insert_with(|| (ApiKey::new(value), source.clone()));
            }
        }
        for name in SETTING_VARIABLES {
            if let Some(value) = values
                .get(name)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
            {
                self.settings
                    .entry(name)
                    .or_insert_with(|| value.to_string());
            }
        }
    }

    pub fn key(&self, name: &str) -> Option<&ApiKey> {
        self.keys.get(name).map(|(key, _)| key)
    }

    /// The first key found for a provider, with its variable name.
    pub fn provider_key(&self, provider: Provider) -> Option<(&'static str, &ApiKey)> {
        provider
            .key_variables()
            .iter()
            .find_map(|name| self.key(name).map(|key| (*name, key)))
    }

    /// A non-secret setting such as `OPENAI_BASE_URL`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }

    /// Presence of every known key, by name.
    pub fn key_report(&self) -> Vec<KeyStatus> {
        KEY_VARIABLES
            .iter()
            .map(|name| {
                let found = self.keys.get(name);
                KeyStatus {
                    name,
                    present: found.is_some(),
                    source: found.map(|(_, source)| source.clone()),
                }
            })
            .collect()
    }

    /// All key values, for a caller that must pass them to a child process.
    pub fn exposed_keys(&self) -> impl Iterator<Item = (&'static str, &ApiKey)> {
        self.keys.iter().map(|(name, (key, _))| (*name, key))
    }
}

fn read_dotenv(path: &Path) -> Result<Option<BTreeMap<String, String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let iter = dotenvy::from_path_iter(path).map_err(|error| dotenv_error(path, &error))?;
    let mut values = BTreeMap::new();
    for item in iter {
        let (name, value) = item.map_err(|error| dotenv_error(path, &error))?;
        values.insert(name, value);
    }
    Ok(Some(values))
}

/// dotenvy's parse errors quote the offending line, which may hold a key: keep only the
/// position.
fn dotenv_error(path: &Path, error: &dotenvy::Error) -> Error {
    let message = match error {
        dotenvy::Error::LineParse(_, index) => {
            format!("syntax error at character {index} of a line")
        }
        dotenvy::Error::Io(io) => io.kind().to_string(),
        dotenvy::Error::EnvVar(_) => "invalid variable".to_string(),
        _ => "unreadable file".to_string(),
    };
    Error::DotEnv {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_string(), (*value).to_string()))
            .collect()
    }

    #[test]
    fn precedence_env_then_project_then_home() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let home = dir.path().join("home");
        fs_err::create_dir_all(&project).unwrap();
        fs_err::create_dir_all(&home).unwrap();
        fs_err::write(
            project.join(".env"),
            "OPENAI_API_KEY=sk-project-openai-1\nXAI_API_KEY=xai-project-1234\n",
        )
        .unwrap();
        fs_err::write(
            home.join(".env"),
            "# comment\nOPENAI_API_KEY=sk-home-openai-1\nGEMINI_API_KEY=gem-home-12345\nOTHER=ignored\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\n",
        )
        .unwrap();
        let env = map(&[
            ("XAI_API_KEY", "xai-env-123456"),
            ("ANTHROPIC_API_KEY", "  "),
            ("PATH", "/bin"),
        ]);
        let credentials = Credentials::load(&env, Some(&project), Some(&home)).unwrap();
        let cases = [
            ("XAI_API_KEY", Some("xai-env-123456")),
            ("OPENAI_API_KEY", Some("sk-project-openai-1")),
            ("GEMINI_API_KEY", Some("gem-home-12345")),
            ("ANTHROPIC_API_KEY", None),
            ("OTHER", None),
        ];
        for (name, expected) in cases {
            assert_eq!(
                credentials.key(name).map(ApiKey::expose),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            credentials.var("OPENAI_BASE_URL"),
            Some("http://127.0.0.1:9/v1")
        );
        let report = credentials.key_report();
        let present: Vec<&str> = report
            .iter()
            .filter(|status| status.present)
            .map(|status| status.name)
            .collect();
        assert_eq!(present, ["OPENAI_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"]);
        let json = serde_json::to_string(&report).unwrap();
        for secret in ["xai-env-123456", "sk-project-openai-1", "gem-home-12345"] {
            assert!(!json.contains(secret));
            assert!(!format!("{credentials:?}").contains(secret));
        }
    }

    #[test]
    fn gemini_provider_accepts_either_variable() {
        let credentials = Credentials::from_env(&map(&[("GOOGLE_API_KEY", "google-key-1234")]));
        assert_eq!(
            credentials
                .provider_key(Provider::Gemini)
                .map(|(name, _)| name),
            Some("GOOGLE_API_KEY")
        );
        assert!(credentials.provider_key(Provider::Anthropic).is_none());
    }

    #[test]
    fn bad_dotenv_error_does_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join(".env"),
            "ANTHROPIC_API_KEY='sk-ant-unterminated-secret\n",
        )
        .unwrap();
        let error = Credentials::load(&BTreeMap::new(), Some(dir.path()), None).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(".env"), "{text}");
        assert!(!text.contains("sk-ant-unterminated-secret"), "{text}");
    }

    #[test]
    fn every_secret_named_value_is_masked_by_the_process_scrubber() {
        let dir = tempfile::tempdir().unwrap();
        let in_dotenv = ["dotenv-", "deploy-token-4242"].concat();
        let in_env = ["env-", "db-password-9191"].concat();
        fs_err::write(
            dir.path().join(".env"),
            format!("DEPLOY_TOKEN={in_dotenv}\nPLAIN_SETTING=visible-value-1234\n"),
        )
        .unwrap();
        let env = map(&[("DB_PASSWORD", &in_env), ("HOME_DIR", "/home/someone-long")]);
        let credentials = Credentials::load(&env, Some(dir.path()), None).unwrap();
        // Neither is a key Refinery uses, but both are masked everywhere from now on.
        assert!(credentials.key("DEPLOY_TOKEN").is_none());
        let scrubber = refinery_secrets::process_scrubber();
        assert_eq!(
            scrubber.scrub(&format!(
                "{in_dotenv} {in_env} visible-value-1234 /home/someone-long"
            )),
            "[REDACTED] [REDACTED] visible-value-1234 /home/someone-long"
        );
    }
}
