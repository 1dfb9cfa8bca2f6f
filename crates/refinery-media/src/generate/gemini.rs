//! Google: Gemini `generateContent` with image output, Imagen `:predict`, Veo
//! `:predictLongRunning` (an operation polled until done, then a file download), and
//! Gemini speech (`responseModalities: ["AUDIO"]`), which answers raw 16-bit PCM that we
//! wrap in a WAV header.
//!
//! See: <https://ai.google.dev/gemini-api/docs/image-generation>,
//! <https://ai.google.dev/gemini-api/docs/video>, <https://ai.google.dev/gemini-api/docs/speech-generation>

use serde_json::{Map, Value, json};

use super::{Call, Generated, JobClock, b64, clamp_duration, decode};
use crate::error::{Error, Result};
use crate::format::{Format, pcm_rate, wav_from_pcm16};
use crate::kinds::Backend;

/// Finish reasons that mean the content was withheld.
const BLOCKED: &[&str] = &[
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
];

async fn generate_content(call: &mut Call<'_>, body: Value) -> Result<Value> {
    call.post_json(&format!("models/{}:generateContent", call.model), &body)
        .await
}

/// The first `inlineData` part of the first candidate, or why there is none.
fn inline_part(backend: Backend, answer: &Value) -> Result<(String, String)> {
    if let Some(reason) = answer
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Err(Error::SafetyBlock {
            backend,
            reason: format!("prompt blocked ({reason})"),
        });
    }
    let candidate = answer
        .pointer("/candidates/0")
        .ok_or_else(|| Error::malformed(backend, "no candidates in the answer"))?;
    let finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let inline = parts
        .iter()
        .find_map(|part| part.get("inlineData").or_else(|| part.get("inline_data")));
    match inline {
        Some(inline) => {
            let mime = inline
                .get("mimeType")
                .or_else(|| inline.get("mime_type"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let data = inline
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok((mime.to_string(), data.to_string()))
        }
        None if BLOCKED.contains(&finish) => Err(Error::SafetyBlock {
            backend,
            reason: format!("output withheld ({finish})"),
        }),
        None => Err(Error::malformed(
            backend,
            format!("no inline data in the answer (finish reason `{finish}`)"),
        )),
    }
}

pub(super) async fn image(call: &mut Call<'_>) -> Result<Generated> {
    let mut parts = vec![json!({"text": call.spec.prompt})];
    for image in &call.spec.input_images {
        parts.push(json!({"inlineData": {"mimeType": image.format.mime_type(), "data": b64(&image.bytes)}}));
    }
    let mut config = Map::new();
    config.insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
    if let Some(ratio) = &call.spec.aspect_ratio {
        config.insert("imageConfig".into(), json!({"aspectRatio": ratio}));
    }
    let body = json!({
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": config,
    });
    call.steps
        .report(format!("asking {} for an image", call.model));
    let answer = generate_content(call, body).await?;
    let (mime, data) = inline_part(call.backend, &answer)?;
    let claimed = Format::from_mime(&mime);
    Ok(Generated {
        bytes: decode(call.backend, &data, &mime)?,
        claimed,
        warnings: Vec::new(),
    })
}

pub(super) async fn imagen(call: &mut Call<'_>) -> Result<Generated> {
    let mut parameters = Map::new();
    parameters.insert("sampleCount".into(), json!(1));
    if let Some(ratio) = &call.spec.aspect_ratio {
        parameters.insert("aspectRatio".into(), json!(ratio));
    }
    if let Some(negative) = &call.spec.negative_prompt {
        parameters.insert("negativePrompt".into(), json!(negative));
    }
    let body = json!({"instances": [{"prompt": call.spec.prompt}], "parameters": parameters});
    call.steps
        .report(format!("asking {} for an image", call.model));
    let answer = call
        .post_json(&format!("models/{}:predict", call.model), &body)
        .await?;
    let prediction = answer.pointer("/predictions/0");
    let data = prediction
        .and_then(|prediction| prediction.get("bytesBase64Encoded"))
        .and_then(Value::as_str);
    let Some(data) = data else {
        // Imagen drops filtered images from `predictions`, sometimes leaving a reason.
        let reason = prediction
            .and_then(|prediction| prediction.get("raiFilteredReason"))
            .and_then(Value::as_str)
            .unwrap_or("every image was filtered");
        return Err(Error::SafetyBlock {
            backend: call.backend,
            reason: reason.to_string(),
        });
    };
    let mime = prediction
        .and_then(|prediction| prediction.get("mimeType"))
        .and_then(Value::as_str)
        .unwrap_or("image/png");
    Ok(Generated {
        bytes: decode(call.backend, data, mime)?,
        claimed: Format::from_mime(mime),
        warnings: Vec::new(),
    })
}

pub(super) async fn speech(call: &mut Call<'_>) -> Result<Generated> {
    let text = match &call.spec.instructions {
        Some(instructions) => format!("{instructions}: {}", call.spec.prompt),
        None => call.spec.prompt.clone(),
    };
    let voice = call.spec.voice.as_deref().unwrap_or("Kore");
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}},
        },
    });
    call.steps.report(format!("asking {} to speak", call.model));
    let answer = generate_content(call, body).await?;
    let (mime, data) = inline_part(call.backend, &answer)?;
    let essence = mime.to_ascii_lowercase();
    if !(essence.starts_with("audio/l16") || essence.starts_with("audio/pcm")) {
        return Err(Error::BadPayload {
            backend: call.backend,
            expected: "16-bit PCM audio (`audio/L16`)".to_string(),
            found: format!("inline data of type `{mime}`"),
        });
    }
    let pcm = decode(call.backend, &data, "16-bit PCM audio")?;
    if pcm.is_empty() {
        return Err(Error::malformed(call.backend, "the audio is empty"));
    }
    let mut warnings = Vec::new();
    if call.spec.wanted == Some(Format::Mp3) {
        warnings.push("Gemini speech is raw PCM; saved as WAV, not MP3".to_string());
    }
    // Gemini TTS sends `audio/L16;codec=pcm;rate=24000`: 24 kHz, mono, little-endian.
    let rate = pcm_rate(&mime).unwrap_or(24_000);
    Ok(Generated {
        bytes: wav_from_pcm16(&pcm, rate, 1),
        claimed: Some(Format::Wav),
        warnings,
    })
}

pub(super) async fn veo(call: &mut Call<'_>) -> Result<Generated> {
    let mut warnings = Vec::new();
    let duration = clamp_duration(
        call.spec.duration,
        8,
        &[4, 6, 8],
        &mut warnings,
        call.backend,
    );
    let mut instance = Map::new();
    instance.insert("prompt".into(), json!(call.spec.prompt));
    if let Some(image) = call.spec.input_images.first() {
        instance.insert(
            "image".into(),
            json!({"bytesBase64Encoded": b64(&image.bytes), "mimeType": image.format.mime_type()}),
        );
    }
    let mut parameters = Map::new();
    parameters.insert(
        "aspectRatio".into(),
        json!(call.spec.aspect_ratio.as_deref().unwrap_or("16:9")),
    );
    parameters.insert("durationSeconds".into(), json!(duration));
    if let Some(resolution) = &call.spec.size {
        parameters.insert("resolution".into(), json!(resolution));
    }
    if let Some(negative) = &call.spec.negative_prompt {
        parameters.insert("negativePrompt".into(), json!(negative));
    }
    let body = json!({"instances": [instance], "parameters": parameters});
    call.steps
        .report(format!("starting a {duration}s {} job", call.model));
    let started = call
        .post_json(&format!("models/{}:predictLongRunning", call.model), &body)
        .await?;
    let name = started
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed(call.backend, "no operation `name` in the answer"))?
        .to_string();
    let backend = call.backend;
    let clock = JobClock::start();
    let done = loop {
        let operation = call.get_json(&name).await?;
        if operation.get("done").and_then(Value::as_bool) == Some(true) {
            break operation;
        }
        clock.wait(call, &name).await?;
    };
    let video = finished_video(backend, &name, &done)?;
    call.steps.report("downloading the video");
    let bytes = match video {
        VeoVideo::Inline(data) => decode(backend, &data, "video/mp4")?,
        VeoVideo::Uri(uri) => call.http.download(backend, &uri, true).await?,
    };
    Ok(Generated {
        bytes,
        claimed: Some(Format::Mp4),
        warnings,
    })
}

enum VeoVideo {
    Uri(String),
    Inline(String),
}

/// The video of a finished operation, or why there is none.
fn finished_video(backend: Backend, job: &str, operation: &Value) -> Result<VeoVideo> {
    if let Some(error) = operation.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(Error::JobFailed {
            backend,
            job: job.to_string(),
            message: message.to_string(),
        });
    }
    let result = operation
        .pointer("/response/generateVideoResponse")
        .ok_or_else(|| {
            Error::malformed(
                backend,
                "a finished operation without `generateVideoResponse`",
            )
        })?;
    let filtered = result
        .get("raiMediaFilteredCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let video = result.pointer("/generatedSamples/0/video");
    if let Some(uri) = video
        .and_then(|video| video.get("uri"))
        .and_then(Value::as_str)
    {
        return Ok(VeoVideo::Uri(uri.to_string()));
    }
    if let Some(data) = video
        .and_then(|video| {
            video
                .get("encodedVideo")
                .or_else(|| video.get("bytesBase64Encoded"))
        })
        .and_then(Value::as_str)
    {
        return Ok(VeoVideo::Inline(data.to_string()));
    }
    if filtered > 0 {
        let reasons: Vec<&str> = result
            .get("raiMediaFilteredReasons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        return Err(Error::SafetyBlock {
            backend,
            reason: if reasons.is_empty() {
                "the video was filtered".to_string()
            } else {
                reasons.join("; ")
            },
        });
    }
    Err(Error::malformed(
        backend,
        "a finished operation with no video",
    ))
}
