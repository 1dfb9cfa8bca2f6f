//! `generate_media`: one request (or one long-running job) per call, per backend module,
//! each returning the raw bytes and what the provider said they are. The checks and the
//! write happen in one place, [`crate::Media::generate`], so every backend gets them.

mod gemini;
mod openai;
mod xai;

use std::time::Instant;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::{Format, FormatKind};
use crate::http::Http;
use crate::inputs::Payload;
use crate::kinds::{Backend, MediaMode};
use crate::progress::Steps;

/// A validated `generate_media` request.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) mode: MediaMode,
    pub(crate) prompt: String,
    pub(crate) size: Option<String>,
    pub(crate) aspect_ratio: Option<String>,
    pub(crate) quality: Option<String>,
    pub(crate) duration: Option<i64>,
    pub(crate) voice: Option<String>,
    pub(crate) instructions: Option<String>,
    pub(crate) negative_prompt: Option<String>,
    pub(crate) input_images: Vec<Payload>,
    /// The file format the caller wants, when it has a say (image extension, audio format).
    pub(crate) wanted: Option<Format>,
}

/// What a backend produced, before it is checked and written.
pub(crate) struct Generated {
    pub(crate) bytes: Vec<u8>,
    /// What the provider said the bytes are; `None` when its protocol does not say.
    pub(crate) claimed: Option<Format>,
    pub(crate) warnings: Vec<String>,
}

/// One backend call in progress.
pub(crate) struct Call<'a> {
    pub(crate) http: Http<'a>,
    pub(crate) backend: Backend,
    pub(crate) model: String,
    pub(crate) spec: &'a Spec,
    pub(crate) steps: Steps<'a>,
}

impl Call<'_> {
    /// POSTs `body` as JSON to `path` under the backend's endpoint and reads the JSON answer.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.http.config.endpoint(self.backend).url(path);
        let response = self
            .http
            .send(self.backend, |client| client.post(&url).json(body))
            .await?;
        self.http.json(self.backend, response).await
    }

    /// GETs `path` under the backend's endpoint (a job's status) and reads the JSON answer.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value> {
        let url = self.http.config.endpoint(self.backend).url(path);
        let response = self
            .http
            .send(self.backend, |client| client.get(&url))
            .await?;
        self.http.json(self.backend, response).await
    }
}

/// Dispatches to the backend that does `spec.mode`.
pub(crate) async fn run(call: &mut Call<'_>) -> Result<Generated> {
    let unsupported = |hint| Error::UnsupportedMode {
        backend: call.backend,
        mode: call.spec.mode.to_string(),
        hint,
    };
    match (call.backend, call.spec.mode) {
        (Backend::OpenAi, MediaMode::Image) => openai::image(call).await,
        (Backend::OpenAi, MediaMode::Audio) => openai::speech(call).await,
        (Backend::OpenAi, MediaMode::Video) => Err(unsupported(
            "OpenAI's video API (Sora) is gone; use `gemini` (Veo) or `xai`",
        )),
        (Backend::Gemini, MediaMode::Image) if call.model.starts_with("imagen") => {
            gemini::imagen(call).await
        }
        (Backend::Gemini, MediaMode::Image) => gemini::image(call).await,
        (Backend::Gemini, MediaMode::Video) => gemini::veo(call).await,
        (Backend::Gemini, MediaMode::Audio) => gemini::speech(call).await,
        (Backend::Xai, MediaMode::Image) => xai::image(call).await,
        (Backend::Xai, MediaMode::Video) => xai::video(call).await,
        (Backend::Xai, MediaMode::Audio) => Err(unsupported("use `openai` or `gemini` for speech")),
        (Backend::Anthropic, _) => Err(unsupported(
            "Anthropic only reads media; generate with `openai`, `gemini` or `xai`",
        )),
    }
}

/// Decodes a base64 payload, or says the provider sent garbage.
pub(crate) fn decode(backend: Backend, data: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| Error::BadPayload {
            backend,
            expected: what.to_string(),
            found: "the base64 data does not decode".to_string(),
        })
}

/// The bytes' real format, refused when it is not the mode's kind or not what was claimed.
pub(crate) fn check(backend: Backend, mode: MediaMode, generated: &Generated) -> Result<Format> {
    let expected_kind = match mode {
        MediaMode::Image => FormatKind::Image,
        MediaMode::Video => FormatKind::Video,
        MediaMode::Audio => FormatKind::Audio,
    };
    let expected = generated.claimed.map_or_else(
        || format!("{mode} file"),
        |format| format.mime_type().to_string(),
    );
    let found = Format::sniff(&generated.bytes);
    match found {
        Some(format)
            if format.kind() == expected_kind
                && generated.claimed.is_none_or(|claimed| claimed == format) =>
        {
            Ok(format)
        }
        Some(format) => Err(Error::BadPayload {
            backend,
            expected,
            found: format!("the bytes are a {} file", format.extension()),
        }),
        None => Err(Error::BadPayload {
            backend,
            expected,
            found: format!(
                "{} bytes with no known file signature",
                generated.bytes.len()
            ),
        }),
    }
}

/// The deadline and pacing of one long-running job.
pub(crate) struct JobClock {
    started: Instant,
}

impl JobClock {
    pub(crate) fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Reports progress and waits one poll interval, or fails once the next poll would be
    /// past the job deadline.
    pub(crate) async fn wait(&self, call: &mut Call<'_>, job: &str) -> Result<()> {
        let timeouts = call.http.config.timeouts;
        let waited = self.started.elapsed();
        if waited + timeouts.poll_interval > timeouts.job {
            return Err(Error::JobTimedOut {
                backend: call.backend,
                job: job.to_string(),
                waited,
            });
        }
        call.steps.report(format!(
            "{} job `{job}` still running ({}s)",
            call.backend,
            waited.as_secs()
        ));
        call.http.pause(timeouts.poll_interval).await
    }
}

/// `value` clamped to `range`, with a warning when it moved.
pub(crate) fn clamp_duration(
    requested: Option<i64>,
    default: i64,
    allowed: &[i64],
    warnings: &mut Vec<String>,
    backend: Backend,
) -> i64 {
    let Some(requested) = requested else {
        return default;
    };
    let chosen = allowed
        .iter()
        .copied()
        .min_by_key(|candidate| (candidate - requested).abs())
        .unwrap_or(default);
    if chosen != requested {
        warnings.push(format!(
            "duration {requested}s is not available on {backend}; made {chosen}s instead"
        ));
    }
    chosen
}

/// A `data:` URL for an input image.
pub(crate) fn data_url(payload: &Payload) -> String {
    format!(
        "data:{};base64,{}",
        payload.format.mime_type(),
        base64::engine::general_purpose::STANDARD.encode(&payload.bytes)
    )
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
