//! Tool inputs and the one result shape, shared by the MCP tools and `refinery media`.
//!
//! Argument names follow MassGen's `generate_media` / `read_media` where they exist
//! (`backend_type` is accepted for `backend`); arguments MassGen takes but Refinery does
//! not implement are refused with a message, never silently dropped (docs/compat.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// `generate_media` input.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct GenerateMediaParams {
    /// What to make: a description of the image or video, or the text to speak.
    #[serde(default)]
    pub prompt: Option<String>,
    /// `image` (default), `video` or `audio`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `openai`, `gemini` or `xai`; by default the first with a key.
    #[serde(default, alias = "backend_type")]
    pub backend: Option<String>,
    /// A provider model id; unknown ids are passed through.
    #[serde(default)]
    pub model: Option<String>,
    /// Image size such as `1024x1024` (OpenAI, xAI), or a resolution such as `720p` (video).
    #[serde(default)]
    pub size: Option<String>,
    /// Aspect ratio such as `16:9` (Gemini, Imagen, Veo, xAI).
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    /// Image quality (`low`, `medium`, `high`, `auto`; OpenAI).
    #[serde(default)]
    pub quality: Option<String>,
    /// Video length in seconds (Veo 4–8, xAI 1–15; clamped, with a warning).
    #[serde(default)]
    pub duration: Option<i64>,
    /// Voice name for speech (OpenAI `alloy`…, Gemini `Kore`…).
    #[serde(default)]
    pub voice: Option<String>,
    /// Tone directions for speech (OpenAI `gpt-4o-mini-tts` and Gemini TTS).
    #[serde(default)]
    pub instructions: Option<String>,
    /// Images in the workspace to edit or start from (PNG, JPEG or WebP, ≤ 20 MB each).
    #[serde(default)]
    pub input_images: Option<Vec<String>>,
    /// Folder for the file (default `media/`), or a file name such as `assets/hero.png`.
    /// Always inside the workspace; an existing file is never replaced.
    #[serde(default)]
    pub storage_path: Option<String>,
    /// Things the image or video must not contain (Imagen, Veo).
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Audio container: `mp3` (default) or `wav`.
    #[serde(default)]
    pub audio_format: Option<String>,
    /// Not supported (batch generation): call once per prompt.
    #[serde(default)]
    #[schemars(skip)]
    pub prompts: Option<Vec<String>>,
    /// Only `speech` is supported.
    #[serde(default)]
    #[schemars(skip)]
    pub audio_type: Option<String>,
    /// Not supported (conversation continuation).
    #[serde(default)]
    #[schemars(skip)]
    pub continue_from: Option<String>,
}

/// `read_media` input.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ReadMediaParams {
    /// Files in the workspace to look at together (images, video, audio).
    #[serde(default)]
    pub file_paths: Option<Vec<String>>,
    /// What to look for; by default a critical review (what is broken first, then what works).
    #[serde(default)]
    pub prompt: Option<String>,
    /// `anthropic`, `openai` or `gemini`; by default the first with a key that can read the files.
    #[serde(default, alias = "backend_type")]
    pub backend: Option<String>,
    /// A provider model id; unknown ids are passed through.
    #[serde(default)]
    pub model: Option<String>,
    /// Not supported (conversation continuation).
    #[serde(default)]
    #[schemars(skip)]
    pub continue_from: Option<String>,
}

/// The result of either tool, success or failure: the same fields every time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MediaResponse {
    /// Whether the call did what was asked.
    pub success: bool,
    /// `generate_media` or `read_media`.
    pub operation: String,
    /// `image`, `video`, `audio`, or `read`.
    pub mode: String,
    /// The backend used (or that failed).
    pub backend: Option<String>,
    /// The model used.
    pub model: Option<String>,
    /// The written file, relative to the workspace.
    pub file_path: Option<String>,
    /// Its name.
    pub filename: Option<String>,
    /// Its MIME type (checked against the file's bytes).
    pub mime_type: Option<String>,
    /// Its size in bytes.
    pub file_size: Option<u64>,
    /// `read_media`: the model's answer.
    pub answer: Option<String>,
    /// `read_media`: the files that were looked at.
    pub files: Vec<String>,
    /// Things the caller should know (a clamped duration, a changed extension…).
    pub warnings: Vec<String>,
    /// Wall-clock seconds the call took.
    pub duration_seconds: f64,
    /// On failure: what went wrong and what to do.
    pub error: Option<String>,
    /// On failure: a stable code (`safety_block`, `rate_limited`, `job_timed_out`, …).
    pub code: Option<String>,
    /// On failure: whether trying again later may work.
    pub retryable: Option<bool>,
}

impl MediaResponse {
    pub(crate) fn started(operation: &str, mode: &str) -> Self {
        Self {
            operation: operation.to_string(),
            mode: mode.to_string(),
            ..Self::default()
        }
    }

    /// Records the elapsed time and, on failure, the error fields.
    pub(crate) fn finish(
        mut self,
        started: std::time::Instant,
        outcome: Result<(), Error>,
    ) -> Self {
        self.duration_seconds = started.elapsed().as_secs_f64();
        if let Err(error) = outcome {
            tracing::debug!(operation = %self.operation, code = error.code(), "media call failed");
            self.success = false;
            self.error = Some(error.to_string());
            self.code = Some(error.code().to_string());
            self.retryable = Some(error.is_retryable());
        }
        self
    }
}
