//! Model names (`provider/model`), the wire protocol each provider speaks, and base URLs.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};

/// Who serves the model. The first segment of a `provider/model` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// `anthropic/<model>`: Anthropic Messages API.
    Anthropic,
    /// `openai/<model>`: OpenAI Responses API.
    OpenAi,
    /// `openai-chat/<model>`: OpenAI Chat Completions API (also any compatible server).
    OpenAiChat,
    /// `gemini/<model>` (alias `google/`): Gemini `generateContent`.
    Gemini,
    /// `xai/<model>`: xAI (Chat Completions).
    Xai,
    /// `openrouter/<vendor>/<model>`: OpenRouter (Chat Completions).
    OpenRouter,
    /// `ollama/<model>`: a local Ollama server (Chat Completions), default `127.0.0.1:11434`.
    Ollama,
    /// `local/<model>`: any OpenAI-compatible server on this machine (llama.cpp, Ollama, LM
    /// Studio, vLLM, …); its base URL comes from `--base-url`, `REFINERY_LOCAL_BASE_URL` or a
    /// probe of the usual ports ([`crate::local`]).
    Local,
}

/// The HTTP protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireApi {
    AnthropicMessages,
    OpenAiResponses,
    OpenAiChat,
    Gemini,
}

impl Provider {
    pub const ALL: [Provider; 8] = [
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::OpenAiChat,
        Provider::Gemini,
        Provider::Xai,
        Provider::OpenRouter,
        Provider::Ollama,
        Provider::Local,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::OpenAiChat => "openai-chat",
            Provider::Gemini => "gemini",
            Provider::Xai => "xai",
            Provider::OpenRouter => "openrouter",
            Provider::Ollama => "ollama",
            Provider::Local => "local",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "anthropic" => Provider::Anthropic,
            "openai" => Provider::OpenAi,
            "openai-chat" => Provider::OpenAiChat,
            "gemini" | "google" => Provider::Gemini,
            "xai" => Provider::Xai,
            "openrouter" => Provider::OpenRouter,
            "ollama" => Provider::Ollama,
            "local" => Provider::Local,
            _ => return None,
        })
    }

    pub fn wire_api(self) -> WireApi {
        match self {
            Provider::Anthropic => WireApi::AnthropicMessages,
            Provider::OpenAi => WireApi::OpenAiResponses,
            Provider::Gemini => WireApi::Gemini,
            Provider::OpenAiChat
            | Provider::Xai
            | Provider::OpenRouter
            | Provider::Ollama
            | Provider::Local => WireApi::OpenAiChat,
        }
    }

    /// Environment variables holding this provider's key, in lookup order.
    pub fn key_variables(self) -> &'static [&'static str] {
        match self {
            Provider::Anthropic => &["ANTHROPIC_API_KEY"],
            Provider::OpenAi | Provider::OpenAiChat => &["OPENAI_API_KEY"],
            Provider::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            Provider::Xai => &["XAI_API_KEY"],
            Provider::OpenRouter => &["OPENROUTER_API_KEY"],
            Provider::Ollama | Provider::Local => &[],
        }
    }

    /// Whether a call without a key is an error (local servers need none).
    pub fn requires_key(self) -> bool {
        !self.key_variables().is_empty()
    }

    /// The environment variable the official SDKs read for a base URL, if any.
    pub fn base_url_variable(self) -> Option<&'static str> {
        match self {
            Provider::Anthropic => Some("ANTHROPIC_BASE_URL"),
            Provider::OpenAi | Provider::OpenAiChat => Some("OPENAI_BASE_URL"),
            Provider::Gemini => Some("GOOGLE_GEMINI_BASE_URL"),
            Provider::Xai => Some("XAI_BASE_URL"),
            Provider::OpenRouter => Some("OPENROUTER_BASE_URL"),
            Provider::Ollama => Some("OLLAMA_BASE_URL"),
            Provider::Local => Some(crate::local::LOCAL_BASE_URL_VARIABLE),
        }
    }

    /// The public endpoint, in the form the SDKs use for their base-URL variable.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::Anthropic => Some("https://api.anthropic.com"),
            Provider::OpenAi | Provider::OpenAiChat => Some("https://api.openai.com/v1"),
            Provider::Gemini => Some("https://generativelanguage.googleapis.com"),
            Provider::Xai => Some("https://api.x.ai/v1"),
            Provider::OpenRouter => Some("https://openrouter.ai/api/v1"),
            Provider::Ollama => Some("http://127.0.0.1:11434/v1"),
            Provider::Local => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.prefix())
    }
}

/// A parsed `provider/model` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ModelId {
    pub provider: Provider,
    /// The provider's own model name (may itself contain `/`, e.g. OpenRouter's `vendor/model`).
    pub model: String,
}

impl ModelId {
    pub fn parse(name: &str) -> Result<Self> {
        let invalid = || Error::InvalidModelName {
            name: name.to_string(),
        };
        let (prefix, model) = name.split_once('/').ok_or_else(invalid)?;
        if model.trim().is_empty() {
            return Err(invalid());
        }
        let provider = Provider::from_prefix(prefix).ok_or_else(|| Error::UnknownProvider {
            name: name.to_string(),
        })?;
        Ok(Self {
            provider,
            model: model.to_string(),
        })
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.provider, self.model)
    }
}

/// Turn a user-facing base URL (as the SDK variables hold it) into the endpoint prefix the
/// protocol client appends paths to (always ending in `/`).
///
/// - Anthropic: the SDK form has no `/v1` (`https://api.anthropic.com`); we add it.
/// - OpenAI-style: the SDK form includes `/v1`; a bare host (`http://127.0.0.1:8080`) gets
///   `/v1` added, because that is where every compatible server serves it.
/// - Gemini: the SDK form is the bare host; a bare host gets `/v1beta`.
pub fn endpoint_for(wire_api: WireApi, base_url: &str) -> Result<String> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(Error::InvalidBaseUrl {
            url: base_url.to_string(),
        });
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return Err(Error::InvalidBaseUrl {
            url: base_url.to_string(),
        });
    }
    let has_path = rest.contains('/');
    let endpoint = match wire_api {
        WireApi::AnthropicMessages => {
            if trimmed.ends_with("/v1") {
                trimmed.to_string()
            } else {
                format!("{trimmed}/v1")
            }
        }
        WireApi::OpenAiChat | WireApi::OpenAiResponses => {
            if has_path {
                trimmed.to_string()
            } else {
                format!("{trimmed}/v1")
            }
        }
        WireApi::Gemini => {
            if has_path {
                trimmed.to_string()
            } else {
                format!("{trimmed}/v1beta")
            }
        }
    };
    Ok(format!("{endpoint}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_model_names() {
        let cases: &[(&str, Option<(Provider, &str)>)] = &[
            (
                "anthropic/claude-sonnet-4-5",
                Some((Provider::Anthropic, "claude-sonnet-4-5")),
            ),
            ("openai/gpt-5", Some((Provider::OpenAi, "gpt-5"))),
            ("openai-chat/gpt-4o", Some((Provider::OpenAiChat, "gpt-4o"))),
            (
                "gemini/gemini-2.5-flash",
                Some((Provider::Gemini, "gemini-2.5-flash")),
            ),
            (
                "google/gemini-2.5-pro",
                Some((Provider::Gemini, "gemini-2.5-pro")),
            ),
            ("xai/grok-4", Some((Provider::Xai, "grok-4"))),
            (
                "openrouter/anthropic/claude-sonnet-4.5",
                Some((Provider::OpenRouter, "anthropic/claude-sonnet-4.5")),
            ),
            ("local/smollm2", Some((Provider::Local, "smollm2"))),
            ("ollama/llama3.2", Some((Provider::Ollama, "llama3.2"))),
            ("claude-sonnet", None),
            ("anthropic/", None),
            ("nope/model", None),
        ];
        for (name, expected) in cases {
            let parsed = ModelId::parse(name).ok().map(|id| (id.provider, id.model));
            assert_eq!(
                parsed,
                expected.map(|(provider, model)| (provider, model.to_string())),
                "name: {name}"
            );
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert!(matches!(
            ModelId::parse("gpt-5"),
            Err(Error::InvalidModelName { .. })
        ));
        assert!(matches!(
            ModelId::parse("acme/x"),
            Err(Error::UnknownProvider { .. })
        ));
    }

    #[test]
    fn endpoints_from_base_urls() {
        let cases = [
            (
                WireApi::AnthropicMessages,
                "https://api.anthropic.com",
                Some("https://api.anthropic.com/v1/"),
            ),
            (
                WireApi::AnthropicMessages,
                "http://127.0.0.1:9/",
                Some("http://127.0.0.1:9/v1/"),
            ),
            (
                WireApi::AnthropicMessages,
                "http://127.0.0.1:9/v1",
                Some("http://127.0.0.1:9/v1/"),
            ),
            (
                WireApi::OpenAiChat,
                "https://api.openai.com/v1",
                Some("https://api.openai.com/v1/"),
            ),
            (
                WireApi::OpenAiChat,
                "http://127.0.0.1:8080",
                Some("http://127.0.0.1:8080/v1/"),
            ),
            (
                WireApi::OpenAiResponses,
                "https://openrouter.ai/api/v1/",
                Some("https://openrouter.ai/api/v1/"),
            ),
            (
                WireApi::Gemini,
                "https://generativelanguage.googleapis.com",
                Some("https://generativelanguage.googleapis.com/v1beta/"),
            ),
            (
                WireApi::Gemini,
                "http://127.0.0.1:9/v1beta",
                Some("http://127.0.0.1:9/v1beta/"),
            ),
            (WireApi::OpenAiChat, "127.0.0.1:8080", None),
            (WireApi::OpenAiChat, "ftp://host", None),
            (WireApi::OpenAiChat, "http://", None),
        ];
        for (wire_api, base, expected) in cases {
            assert_eq!(
                endpoint_for(wire_api, base).ok().as_deref(),
                expected,
                "{wire_api:?} {base}"
            );
        }
    }
}
