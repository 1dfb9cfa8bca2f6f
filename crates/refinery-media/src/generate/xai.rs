//! xAI: images (`/v1/images/generations`, OpenAI-shaped with `b64_json`) and video
//! (`/v1/videos/generations` → `request_id`, polled at `/v1/videos/{id}` until `done`,
//! then a download from a signed link on another host, which never gets the key).
//!
//! See: <https://docs.x.ai/docs/guides/image-generations>, <https://docs.x.ai/docs/guides/video-generation>

use serde_json::{Map, Value, json};

use super::{Call, Generated, JobClock, clamp_duration, data_url, decode};
use crate::error::{Error, Result};
use crate::format::Format;

pub(super) async fn image(call: &mut Call<'_>) -> Result<Generated> {
    if !call.spec.input_images.is_empty() {
        return Err(Error::UnsupportedMode {
            backend: call.backend,
            mode: "image editing".to_string(),
            hint: "use `openai` or `gemini` with input_images",
        });
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(call.model));
    body.insert("prompt".into(), json!(call.spec.prompt));
    body.insert("n".into(), json!(1));
    body.insert("response_format".into(), json!("b64_json"));
    if let Some(ratio) = &call.spec.aspect_ratio {
        body.insert("aspect_ratio".into(), json!(ratio));
    }
    call.steps
        .report(format!("asking {} for an image", call.model));
    let answer = call
        .post_json("images/generations", &Value::Object(body))
        .await?;
    let data = answer
        .pointer("/data/0/b64_json")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed(call.backend, "no `data[0].b64_json` in the answer"))?;
    // xAI does not always say which format it sent; the signature check then only
    // requires an image.
    let claimed = answer
        .pointer("/data/0/mime_type")
        .and_then(Value::as_str)
        .and_then(Format::from_mime);
    Ok(Generated {
        bytes: decode(call.backend, data, "image")?,
        claimed,
        warnings: Vec::new(),
    })
}

pub(super) async fn video(call: &mut Call<'_>) -> Result<Generated> {
    let mut warnings = Vec::new();
    let allowed: Vec<i64> = (1..=15).collect();
    let duration = clamp_duration(call.spec.duration, 6, &allowed, &mut warnings, call.backend);
    let mut body = Map::new();
    body.insert("model".into(), json!(call.model));
    body.insert("prompt".into(), json!(call.spec.prompt));
    body.insert("duration".into(), json!(duration));
    if let Some(ratio) = &call.spec.aspect_ratio {
        body.insert("aspect_ratio".into(), json!(ratio));
    }
    if let Some(resolution) = &call.spec.size {
        body.insert("resolution".into(), json!(resolution));
    }
    if let Some(image) = call.spec.input_images.first() {
        body.insert("image".into(), json!({"url": data_url(image)}));
    }
    call.steps
        .report(format!("starting a {duration}s {} job", call.model));
    let started = call
        .post_json("videos/generations", &Value::Object(body))
        .await?;
    let id = started
        .get("request_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed(call.backend, "no `request_id` in the answer"))?
        .to_string();
    let backend = call.backend;
    let clock = JobClock::start();
    let link = loop {
        let state = call.get_json(&format!("videos/{id}")).await?;
        if let Some(link) = finished_link(backend, &id, &state)? {
            break link;
        }
        clock.wait(call, &id).await?;
    };
    call.steps.report("downloading the video");
    // A signed link on xAI's storage host: fetched without any key.
    let bytes = call.http.download(backend, &link, false).await?;
    Ok(Generated {
        bytes,
        claimed: Some(Format::Mp4),
        warnings,
    })
}

/// `Some(url)` once the job is done, `None` while it runs, or why it failed.
fn finished_link(
    backend: crate::kinds::Backend,
    job: &str,
    state: &Value,
) -> Result<Option<String>> {
    let status = state
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("pending");
    match status {
        "done" => {
            if state
                .pointer("/video/respect_moderation")
                .and_then(Value::as_bool)
                == Some(false)
            {
                return Err(Error::SafetyBlock {
                    backend,
                    reason: "the video did not pass moderation".to_string(),
                });
            }
            state
                .pointer("/video/url")
                .and_then(Value::as_str)
                .map(|url| Some(url.to_string()))
                .ok_or_else(|| Error::malformed(backend, "a finished job with no `video.url`"))
        }
        "failed" | "expired" => {
            let code = state
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = state
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(status)
                .to_string();
            if code.contains("moderation") || code.contains("safety") {
                return Err(Error::SafetyBlock {
                    backend,
                    reason: message,
                });
            }
            Err(Error::JobFailed {
                backend,
                job: job.to_string(),
                message,
            })
        }
        _ => Ok(None),
    }
}
