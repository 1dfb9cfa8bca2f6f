//! The vocabulary: what can be made ([`MediaMode`]), what a backend is asked to do
//! ([`Task`]), who does it ([`Backend`]), and the default model for each pair.
//!
//! Defaults are a table here, overridable per backend and task from the environment
//! (`REFINERY_MEDIA_<BACKEND>_<TASK>_MODEL`) or per call (`model`). Any model id is passed
//! through unchanged: providers rename and retire models faster than we release.

use std::fmt;
use std::str::FromStr;

use refinery_llm::{Provider, WireApi};
use serde::{Deserialize, Serialize};

/// What `generate_media` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    Image,
    Video,
    Audio,
}

impl MediaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::Image => "image",
            MediaMode::Video => "video",
            MediaMode::Audio => "audio",
        }
    }

    pub(crate) fn task(self) -> Task {
        match self {
            MediaMode::Image => Task::Image,
            MediaMode::Video => Task::Video,
            MediaMode::Audio => Task::Audio,
        }
    }
}

impl fmt::Display for MediaMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for MediaMode {
    type Err = crate::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "image" => Ok(MediaMode::Image),
            "video" => Ok(MediaMode::Video),
            "audio" => Ok(MediaMode::Audio),
            other => Err(crate::Error::invalid(
                "mode",
                format!("`{other}` is not a mode; use image, video or audio"),
            )),
        }
    }
}

/// One thing a backend is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Image,
    Video,
    Audio,
    /// Look at images, video or audio and answer (`read_media`).
    Vision,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::Image, Task::Video, Task::Audio, Task::Vision];

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Image => "image",
            Task::Video => "video",
            Task::Audio => "audio",
            Task::Vision => "vision",
        }
    }

    fn env_word(self) -> &'static str {
        match self {
            Task::Image => "IMAGE",
            Task::Video => "VIDEO",
            Task::Audio => "AUDIO",
            Task::Vision => "VISION",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A provider that serves media endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    OpenAi,
    Gemini,
    Xai,
    Anthropic,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::OpenAi,
        Backend::Gemini,
        Backend::Xai,
        Backend::Anthropic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::OpenAi => "openai",
            Backend::Gemini => "gemini",
            Backend::Xai => "xai",
            Backend::Anthropic => "anthropic",
        }
    }

    /// The chat provider whose key, base-URL variable and URL form this backend shares.
    pub(crate) fn provider(self) -> Provider {
        match self {
            Backend::OpenAi => Provider::OpenAi,
            Backend::Gemini => Provider::Gemini,
            Backend::Xai => Provider::Xai,
            Backend::Anthropic => Provider::Anthropic,
        }
    }

    pub(crate) fn wire_api(self) -> WireApi {
        self.provider().wire_api()
    }

    fn env_word(self) -> &'static str {
        match self {
            Backend::OpenAi => "OPENAI",
            Backend::Gemini => "GEMINI",
            Backend::Xai => "XAI",
            Backend::Anthropic => "ANTHROPIC",
        }
    }

    /// The default model for `task`, or `None` when this backend cannot do it.
    pub fn default_model(self, task: Task) -> Option<&'static str> {
        // Current ids as of 2026-12-01 (see docs/MEDIA.md). OpenAI retired gpt-image-1.5 on
        // 2026-12-01 and retires gpt-4o-mini-tts on 2027-01-06; Sora's API is gone, so OpenAI
        // has no video default.
        match (self, task) {
            (Backend::OpenAi, Task::Image) => Some("gpt-image-2.6-flare"),
            (Backend::OpenAi, Task::Audio) => Some("gpt-4o-mini-tts"),
            (Backend::OpenAi, Task::Vision) => Some("gpt-5.4"),
            (Backend::Gemini, Task::Image) => Some("gemini-3.1-flash-image-preview"),
            (Backend::Gemini, Task::Video) => Some("veo-3.1-generate-preview"),
            (Backend::Gemini, Task::Audio) => Some("gemini-3.8-flash-tts"),
            (Backend::Gemini, Task::Vision) => Some("gemini-3-flash-preview"),
            (Backend::Xai, Task::Image) => Some("grok-imagine-image"),
            (Backend::Xai, Task::Video) => Some("grok-imagine-video"),
            (Backend::Anthropic, Task::Vision) => Some("claude-sonnet-4-5"),
            (Backend::OpenAi | Backend::Anthropic, Task::Video)
            | (Backend::Xai, Task::Audio | Task::Vision)
            | (Backend::Anthropic, Task::Image | Task::Audio) => None,
        }
    }

    /// The variable that overrides [`Self::default_model`].
    pub fn model_variable(self, task: Task) -> String {
        format!(
            "REFINERY_MEDIA_{}_{}_MODEL",
            self.env_word(),
            task.env_word()
        )
    }

    /// Backends tried, in order, when none is named.
    pub fn preference(task: Task) -> &'static [Backend] {
        match task {
            Task::Image => &[Backend::OpenAi, Backend::Gemini, Backend::Xai],
            Task::Video => &[Backend::Gemini, Backend::Xai],
            Task::Audio => &[Backend::OpenAi, Backend::Gemini],
            Task::Vision => &[Backend::Anthropic, Backend::OpenAi, Backend::Gemini],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = crate::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(Backend::OpenAi),
            "gemini" | "google" | "imagen" | "veo" => Ok(Backend::Gemini),
            "xai" | "grok" => Ok(Backend::Xai),
            "anthropic" | "claude" => Ok(Backend::Anthropic),
            other => Err(crate::Error::invalid(
                "backend",
                format!("`{other}` is not a backend; use openai, gemini, xai or anthropic"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preferred_backend_has_a_default_model() {
        for task in Task::ALL {
            for backend in Backend::preference(task) {
                assert!(backend.default_model(task).is_some(), "{backend} {task}");
            }
        }
    }

    #[test]
    fn names_parse() {
        let cases = [
            ("OpenAI", Some(Backend::OpenAi)),
            ("google", Some(Backend::Gemini)),
            ("grok", Some(Backend::Xai)),
            ("claude", Some(Backend::Anthropic)),
            ("elevenlabs", None),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Backend>().ok(), expected, "{text}");
        }
        assert_eq!(
            Backend::Gemini.model_variable(Task::Video),
            "REFINERY_MEDIA_GEMINI_VIDEO_MODEL"
        );
        assert!("gif".parse::<MediaMode>().is_err());
    }
}
