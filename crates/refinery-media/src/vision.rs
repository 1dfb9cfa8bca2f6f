//! `read_media`: the files become one user message — a label per file, then its image(s),
//! inline video or audio — sent with a critical-first system prompt to Anthropic Messages
//! (image blocks), OpenAI Responses (`input_image`) or Gemini `generateContent`
//! (`inlineData`). All files go in one message so the model can compare them.

use serde_json::{Value, json};

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::format::FormatKind;
use crate::generate::b64;
use crate::http::Http;
use crate::inputs::{MediaFile, Payload, VIDEO_FRAMES, fit_image, inline_ok, video_frames};
use crate::kinds::Backend;

/// What `read_media` asks for when the caller gives no prompt.
pub(crate) const DEFAULT_PROMPT: &str = "Review these files as a demanding user would. List what is broken or wrong first (illegible or misspelt text, wrong counts or proportions, cropping, artefacts, silence or clipping, anything that misses an obvious intent), then what works. Be specific about where each problem is.";

/// Always sent: the reviewer's stance, in our own words.
const SYSTEM_PROMPT: &str = "You inspect media produced by an automated process and report what you actually perceive. Lead with defects, ordered by how much they hurt the result, and say where each one is. Separate problems that need a different approach from quick fixes. Never describe content you cannot perceive; if a file is unreadable or empty, say so.";

/// One piece of the user message.
pub(crate) enum Part {
    Text(String),
    Image(Payload),
    /// Video or audio a backend takes as is (Gemini).
    Inline(Payload),
}

/// Shapes `files` for `backend`, adding notes on anything changed on the way.
pub(crate) async fn prepare(
    config: &MediaConfig,
    backend: Backend,
    files: &[MediaFile],
    notes: &mut Vec<String>,
) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    for (index, file) in files.iter().enumerate() {
        parts.push(Part::Text(format!("File {}: `{}`", index + 1, file.label)));
        match file.format.kind() {
            FormatKind::Image => {
                let bytes = fs_err::read(&file.path)?;
                let (payload, note) = fit_image(bytes, file.format, &file.label)?;
                notes.extend(note);
                parts.push(Part::Image(payload));
            }
            // Gemini watches video and listens to audio as they are.
            FormatKind::Video | FormatKind::Audio
                if backend == Backend::Gemini && inline_ok(file) =>
            {
                parts.push(Part::Inline(Payload {
                    bytes: fs_err::read(&file.path)?,
                    format: file.format,
                }));
            }
            FormatKind::Video => {
                let frames = video_frames(config.ffmpeg(), file, config.timeouts.ffmpeg).await?;
                notes.push(format!(
                    "`{}` was sent as {} frames (of {VIDEO_FRAMES} spread evenly), taken with ffmpeg",
                    file.label,
                    frames.len()
                ));
                parts.push(Part::Text(format!(
                    "({} still frames from this video, in order)",
                    frames.len()
                )));
                parts.extend(frames.into_iter().map(Part::Image));
            }
            FormatKind::Audio => {
                return Err(Error::UnsupportedMode {
                    backend,
                    mode: format!("listening to `{}`", file.label),
                    hint: "audio is read by `gemini` only (files up to 18 MB)",
                });
            }
        }
    }
    Ok(parts)
}

/// Sends the prepared message and returns the model's answer.
pub(crate) async fn ask(
    http: &Http<'_>,
    backend: Backend,
    model: &str,
    prompt: &str,
    parts: &[Part],
) -> Result<String> {
    let endpoint = http.config.endpoint(backend);
    let (url, body) = match backend {
        Backend::Anthropic => (
            endpoint.url("messages"),
            anthropic_body(model, prompt, parts),
        ),
        Backend::OpenAi => (endpoint.url("responses"), openai_body(model, prompt, parts)),
        Backend::Gemini => (
            endpoint.url(&format!("models/{model}:generateContent")),
            gemini_body(prompt, parts),
        ),
        Backend::Xai => {
            return Err(Error::UnsupportedMode {
                backend,
                mode: "reading media".to_string(),
                hint: "use `anthropic`, `openai` or `gemini`",
            });
        }
    };
    let response = http
        .send(backend, |client| client.post(&url).json(&body))
        .await?;
    let answer = http.json(backend, response).await?;
    let text = match backend {
        Backend::Anthropic => anthropic_text(backend, &answer)?,
        Backend::OpenAi => openai_text(&answer),
        _ => gemini_text(backend, &answer)?,
    };
    if text.trim().is_empty() {
        return Err(Error::malformed(backend, "the answer has no text"));
    }
    Ok(text)
}

fn anthropic_body(model: &str, prompt: &str, parts: &[Part]) -> Value {
    let mut content: Vec<Value> = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => json!({"type": "text", "text": text}),
            Part::Image(image) | Part::Inline(image) => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": image.format.mime_type(), "data": b64(&image.bytes)},
            }),
        })
        .collect();
    content.push(json!({"type": "text", "text": prompt}));
    json!({
        "model": model,
        "max_tokens": 4096,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": content}],
    })
}

fn anthropic_text(backend: Backend, answer: &Value) -> Result<String> {
    if answer.get("stop_reason").and_then(Value::as_str) == Some("refusal") {
        return Err(Error::SafetyBlock {
            backend,
            reason: "the model declined to look at the content".to_string(),
        });
    }
    Ok(answer
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(""))
}

fn openai_body(model: &str, prompt: &str, parts: &[Part]) -> Value {
    let mut content: Vec<Value> = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => json!({"type": "input_text", "text": text}),
            Part::Image(image) | Part::Inline(image) => json!({
                "type": "input_image",
                "image_url": format!("data:{};base64,{}", image.format.mime_type(), b64(&image.bytes)),
            }),
        })
        .collect();
    content.push(json!({"type": "input_text", "text": prompt}));
    json!({
        "model": model,
        "instructions": SYSTEM_PROMPT,
        "input": [{"role": "user", "content": content}],
    })
}

fn openai_text(answer: &Value) -> String {
    answer
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

fn gemini_body(prompt: &str, parts: &[Part]) -> Value {
    let mut wire: Vec<Value> = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => json!({"text": text}),
            Part::Image(payload) | Part::Inline(payload) => json!({
                "inlineData": {"mimeType": payload.format.mime_type(), "data": b64(&payload.bytes)},
            }),
        })
        .collect();
    wire.push(json!({"text": prompt}));
    json!({
        "systemInstruction": {"parts": [{"text": SYSTEM_PROMPT}]},
        "contents": [{"role": "user", "parts": wire}],
    })
}

fn gemini_text(backend: Backend, answer: &Value) -> Result<String> {
    if let Some(reason) = answer
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Err(Error::SafetyBlock {
            backend,
            reason: format!("prompt blocked ({reason})"),
        });
    }
    Ok(answer
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(""))
}
