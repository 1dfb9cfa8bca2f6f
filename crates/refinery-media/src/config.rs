//! Settings resolved once, from an explicit environment map and the loaded
//! [`Credentials`]: where each backend lives (the same base-URL variables the chat
//! backends read, so one fake or proxy serves both), its key, model overrides, time limits
//! and the ffmpeg binary. Nothing here reads the process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use refinery_llm::{ApiKey, Credentials, RetryPolicy, endpoint_for};

use crate::error::{Error, Result};
use crate::kinds::{Backend, Task};

/// How one backend is reached.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Prefix ending in `/` that paths are appended to (`…/v1/`, `…/v1beta/`).
    pub(crate) base: String,
    /// `scheme://host:port` of `base`, to decide where a key may be sent.
    pub(crate) origin: String,
    pub(crate) key: Option<(&'static str, ApiKey)>,
}

impl Endpoint {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.trim_start_matches('/'))
    }
}

/// Time limits. Tests shorten them through the same variables users set.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One HTTP request (image generation can take a minute or two).
    pub request: Duration,
    /// A long-running job from submission to download.
    pub job: Duration,
    /// Wait between two polls of a job.
    pub poll_interval: Duration,
    /// One ffmpeg run.
    pub ffmpeg: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_mins(5),
            job: Duration::from_mins(10),
            poll_interval: Duration::from_secs(5),
            ffmpeg: Duration::from_mins(1),
        }
    }
}

/// Everything a [`crate::Media`] needs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub(crate) workspace: PathBuf,
    pub(crate) endpoints: BTreeMap<Backend, Endpoint>,
    pub(crate) models: BTreeMap<(Backend, Task), String>,
    pub(crate) timeouts: Timeouts,
    pub(crate) retry: RetryPolicy,
    pub(crate) ffmpeg: Option<PathBuf>,
    redaction: Vec<ApiKey>,
}

fn seconds(env: &BTreeMap<String, String>, name: &str) -> Result<Option<Duration>> {
    let Some(raw) = env
        .get(name)
        .map(|value| value.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    match raw.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(Some(Duration::from_secs_f64(value))),
        _ => Err(Error::invalid(
            "environment",
            format!("`{name}` must be a positive number of seconds, not `{raw}`"),
        )),
    }
}

fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{}", host.to_ascii_lowercase())
}

impl MediaConfig {
    /// Settings for a workspace from `env` (the process environment, or a test's map) and
    /// keys already loaded from the environment and `.env` files.
    pub fn new(
        workspace: &Path,
        credentials: &Credentials,
        env: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut endpoints = BTreeMap::new();
        for backend in Backend::ALL {
            let provider = backend.provider();
            let base_url = provider
                .base_url_variable()
                .and_then(|name| credentials.var(name).or(env.get(name).map(String::as_str)))
                .filter(|url| !url.trim().is_empty())
                .or(provider.default_base_url())
                .unwrap_or_default();
            let base = endpoint_for(backend.wire_api(), base_url).map_err(|_| {
                Error::invalid(
                    "environment",
                    format!("the base URL for `{backend}` is not `http(s)://host[:port][/path]`"),
                )
            })?;
            let key = credentials
                .provider_key(provider)
                .map(|(name, key)| (name, key.clone()));
            endpoints.insert(
                backend,
                Endpoint {
                    origin: origin_of(&base),
                    base,
                    key,
                },
            );
        }
        let mut models = BTreeMap::new();
        for backend in Backend::ALL {
            for task in Task::ALL {
                if let Some(model) = env
                    .get(&backend.model_variable(task))
                    .map(|value| value.trim())
                    .filter(|value| !value.is_empty())
                {
                    models.insert((backend, task), model.to_string());
                }
            }
        }
        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            request: seconds(env, "REFINERY_MEDIA_REQUEST_TIMEOUT")?.unwrap_or(defaults.request),
            job: seconds(env, "REFINERY_MEDIA_JOB_TIMEOUT")?.unwrap_or(defaults.job),
            poll_interval: seconds(env, "REFINERY_MEDIA_POLL_INTERVAL")?
                .unwrap_or(defaults.poll_interval),
            ffmpeg: defaults.ffmpeg,
        };
        Ok(Self {
            workspace: workspace.to_path_buf(),
            endpoints,
            models,
            timeouts,
            retry: RetryPolicy::default(),
            ffmpeg: find_ffmpeg(env),
            redaction: credentials
                .exposed_keys()
                .map(|(_, key)| key.clone())
                .collect(),
        })
    }

    /// Replace the retry policy (tests use fewer attempts).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The ffmpeg binary video frames are read with, if one was found.
    pub fn ffmpeg(&self) -> Option<&Path> {
        self.ffmpeg.as_deref()
    }

    pub(crate) fn endpoint(&self, backend: Backend) -> &Endpoint {
        // Every backend gets an endpoint in `new`; a missing one would be a bug here.
        &self.endpoints[&backend]
    }

    /// Whether `backend` has a key (or is on loopback, where local servers take none).
    pub fn has_key(&self, backend: Backend) -> bool {
        self.endpoint(backend).key.is_some()
    }

    /// The key variable name in use for `backend`, if any.
    pub fn key_variable(&self, backend: Backend) -> Option<&'static str> {
        self.endpoint(backend).key.as_ref().map(|(name, _)| *name)
    }

    /// The model used for `task` on `backend` unless a call names one.
    pub fn model_for(&self, backend: Backend, task: Task) -> Option<String> {
        self.models
            .get(&(backend, task))
            .cloned()
            .or_else(|| backend.default_model(task).map(ToString::to_string))
    }

    /// `text` with every loaded key value replaced by `[REDACTED]` (the placeholder the one scrubber uses everywhere).
    pub(crate) fn redact(&self, text: &str) -> String {
        self.redaction
            .iter()
            .fold(text.to_string(), |text, key| key.redact(&text))
    }
}

/// `REFINERY_FFMPEG`, else `ffmpeg` on `PATH`.
fn find_ffmpeg(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    if let Some(path) = env.get("REFINERY_FFMPEG").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    env.get("PATH")?
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join("ffmpeg"))
        .find(|candidate| candidate.is_file())
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
    fn endpoints_follow_the_chat_variables() {
        let env = map(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("XAI_BASE_URL", "http://127.0.0.1:9"),
            ("GEMINI_API_KEY", "gem-key-123456"),
            ("REFINERY_MEDIA_OPENAI_IMAGE_MODEL", "gpt-image-next"),
            ("REFINERY_MEDIA_POLL_INTERVAL", "0.05"),
        ]);
        let credentials = Credentials::from_env(&env);
        let config = MediaConfig::new(Path::new("/w"), &credentials, &env).unwrap();
        let cases = [
            (Backend::OpenAi, "http://127.0.0.1:9/v1/"),
            (Backend::Gemini, "http://127.0.0.1:9/v1beta/"),
            (Backend::Anthropic, "http://127.0.0.1:9/v1/"),
            (Backend::Xai, "http://127.0.0.1:9/v1/"),
        ];
        for (backend, base) in cases {
            assert_eq!(config.endpoint(backend).base, base, "{backend}");
            assert_eq!(config.endpoint(backend).origin, "http://127.0.0.1:9");
        }
        assert!(config.has_key(Backend::Gemini));
        assert!(!config.has_key(Backend::OpenAi));
        assert_eq!(
            config.model_for(Backend::OpenAi, Task::Image).as_deref(),
            Some("gpt-image-next")
        );
        assert_eq!(config.model_for(Backend::OpenAi, Task::Video), None);
        assert_eq!(config.timeouts.poll_interval, Duration::from_millis(50));
        assert_eq!(config.redact("x gem-key-123456 y"), "x [REDACTED] y");
    }

    #[test]
    fn bad_timeouts_are_refused() {
        let env = map(&[("REFINERY_MEDIA_JOB_TIMEOUT", "-3")]);
        let error = MediaConfig::new(Path::new("/w"), &Credentials::default(), &env).unwrap_err();
        assert!(
            error.to_string().contains("REFINERY_MEDIA_JOB_TIMEOUT"),
            "{error}"
        );
    }
}
