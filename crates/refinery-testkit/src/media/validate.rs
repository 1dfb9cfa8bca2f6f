//! Request checks, as strict as the real endpoints: required fields, allowed values,
//! unknown parameters refused (OpenAI and xAI do), base64 that must decode, images whose
//! bytes must match their declared type (Anthropic checks), and auth headers present.
//! A failed check answers 400 (401 for auth) in the provider's own error shape.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::server::RecordedRequest;

/// A rejection: status and body.
pub(crate) type Rejection = (u16, Value);

pub(crate) fn openai_error(message: &str) -> Rejection {
    (
        400,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

pub(crate) fn gemini_error(message: &str) -> Rejection {
    (
        400,
        json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
    )
}

pub(crate) fn xai_error(message: &str) -> Rejection {
    (
        400,
        json!({"code": "Client specified an invalid argument", "error": message}),
    )
}

fn anthropic_error(message: &str) -> Rejection {
    (
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
    )
}

pub(crate) fn decode_b64(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// Bearer auth (OpenAI, xAI).
pub(crate) fn bearer(request: &RecordedRequest) -> Result<(), Rejection> {
    if request.credential("authorization").is_some() {
        Ok(())
    } else {
        Err((
            401,
            json!({"error": {"message": "You didn't provide an API key.", "type": "invalid_request_error", "code": "missing_api_key"}}),
        ))
    }
}

/// Google API key (`x-goog-api-key` or `?key=`).
pub(crate) fn google_key(request: &RecordedRequest) -> Result<(), Rejection> {
    if request.credential("x-goog-api-key").is_some() || request.path.contains("key=") {
        Ok(())
    } else {
        Err((
            403,
            json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers. Please use an API key.", "status": "PERMISSION_DENIED"}}),
        ))
    }
}

/// Keys of `body` outside `allowed`, OpenAI style: the first one is reported.
pub(crate) fn unknown_parameter(body: &Value, allowed: &[&str]) -> Option<String> {
    body.as_object()?
        .keys()
        .find(|key| !allowed.contains(&key.as_str()))
        .cloned()
}

fn string<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

/// `/v1/images/generations` for OpenAI's image models.
pub(crate) fn openai_image(body: &Value) -> Result<(), Rejection> {
    const ALLOWED: &[&str] = &[
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "user",
        "style",
        "response_format",
        "stream",
        "partial_images",
    ];
    if let Some(unknown) = unknown_parameter(body, ALLOWED) {
        return Err(openai_error(&format!("Unknown parameter: '{unknown}'.")));
    }
    let model = string(body, "model").unwrap_or("dall-e-2");
    match string(body, "prompt") {
        Some(prompt) if !prompt.trim().is_empty() && prompt.len() <= 32_000 => {}
        _ => return Err(openai_error("Missing required parameter: 'prompt'.")),
    }
    if model.starts_with("gpt-image") && body.get("response_format").is_some() {
        return Err(openai_error("Unknown parameter: 'response_format'."));
    }
    if let Some(n) = body.get("n")
        && !n.as_u64().is_some_and(|n| (1..=10).contains(&n))
    {
        return Err(openai_error(
            "Invalid 'n': must be an integer from 1 to 10.",
        ));
    }
    if let Some(size) = body.get("size") {
        let valid = size.as_str().is_some_and(|size| {
            size == "auto"
                || size
                    .split_once('x')
                    .is_some_and(|(w, h)| w.parse::<u32>().is_ok() && h.parse::<u32>().is_ok())
        });
        if !valid {
            return Err(openai_error("Invalid value for 'size'."));
        }
    }
    check_enum(
        body,
        "quality",
        &["auto", "low", "medium", "high", "standard", "hd"],
        openai_error,
    )?;
    check_enum(
        body,
        "output_format",
        &["png", "jpeg", "webp"],
        openai_error,
    )
}

fn check_enum(
    body: &Value,
    field: &str,
    allowed: &[&str],
    error: fn(&str) -> Rejection,
) -> Result<(), Rejection> {
    match body.get(field) {
        None => Ok(()),
        Some(value) if value.as_str().is_some_and(|value| allowed.contains(&value)) => Ok(()),
        Some(value) => Err(error(&format!(
            "Invalid value for '{field}': {value}. Supported values are: {}.",
            allowed.join(", ")
        ))),
    }
}

/// `/v1/audio/speech`.
pub(crate) fn openai_speech(body: &Value) -> Result<(), Rejection> {
    const ALLOWED: &[&str] = &[
        "model",
        "input",
        "voice",
        "response_format",
        "speed",
        "instructions",
        "stream_format",
    ];
    if let Some(unknown) = unknown_parameter(body, ALLOWED) {
        return Err(openai_error(&format!("Unknown parameter: '{unknown}'.")));
    }
    let model = string(body, "model")
        .ok_or_else(|| openai_error("Missing required parameter: 'model'."))?;
    match string(body, "input") {
        Some(input) if !input.is_empty() && input.chars().count() <= 4096 => {}
        _ => return Err(openai_error("'input' must be 1 to 4096 characters.")),
    }
    if string(body, "voice").is_none_or(str::is_empty) {
        return Err(openai_error("Missing required parameter: 'voice'."));
    }
    if body.get("instructions").is_some() && model.starts_with("tts-1") {
        return Err(openai_error(
            "Instructions are not supported for this model.",
        ));
    }
    check_enum(
        body,
        "response_format",
        &["mp3", "opus", "aac", "flac", "wav", "pcm"],
        openai_error,
    )
}

/// `/v1/images/generations` for xAI (`grok-*`): no size, quality or style.
pub(crate) fn xai_image(body: &Value) -> Result<(), Rejection> {
    const ALLOWED: &[&str] = &[
        "model",
        "prompt",
        "n",
        "response_format",
        "aspect_ratio",
        "user",
        "image",
    ];
    if let Some(unknown) = unknown_parameter(body, ALLOWED) {
        return Err(xai_error(&format!("Argument not supported: {unknown}")));
    }
    if string(body, "prompt").is_none_or(|prompt| prompt.trim().is_empty()) {
        return Err(xai_error("prompt is required"));
    }
    check_enum(body, "response_format", &["url", "b64_json"], xai_error)
}

/// `/v1/videos/generations` (xAI).
pub(crate) fn xai_video(body: &Value) -> Result<(), Rejection> {
    const ALLOWED: &[&str] = &[
        "model",
        "prompt",
        "duration",
        "aspect_ratio",
        "resolution",
        "image",
        "user",
    ];
    if let Some(unknown) = unknown_parameter(body, ALLOWED) {
        return Err(xai_error(&format!("Argument not supported: {unknown}")));
    }
    if string(body, "prompt").is_none_or(|prompt| prompt.trim().is_empty()) {
        return Err(xai_error("prompt is required"));
    }
    if let Some(duration) = body.get("duration")
        && !duration
            .as_u64()
            .is_some_and(|seconds| (1..=15).contains(&seconds))
    {
        return Err(xai_error("duration must be between 1 and 15 seconds"));
    }
    check_enum(body, "resolution", &["480p", "720p"], xai_error)?;
    if let Some(url) = body.pointer("/image/url").and_then(Value::as_str) {
        data_url(url).map_err(|message| xai_error(&message))?;
    }
    Ok(())
}

/// A `data:image/…;base64,…` URL that decodes to the type it names.
pub(crate) fn data_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    let (mime, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .ok_or_else(|| "image URL must be http(s) or a base64 data URL".to_string())?;
    let bytes = decode_b64(data).ok_or_else(|| "invalid base64 image data".to_string())?;
    matches_type(mime, &bytes)
}

/// Bytes whose signature agrees with `mime`.
pub(crate) fn matches_type(mime: &str, bytes: &[u8]) -> Result<(), String> {
    let ok = match mime {
        "image/png" => bytes.starts_with(b"\x89PNG"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/webp" => bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"),
        "image/gif" => bytes.starts_with(b"GIF8"),
        "video/mp4" => bytes.get(4..8) == Some(b"ftyp"),
        "audio/wav" => bytes.get(8..12) == Some(b"WAVE"),
        "audio/mpeg" => bytes.starts_with(b"ID3") || bytes.first() == Some(&0xFF),
        other => return Err(format!("unsupported MIME type `{other}`")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the data does not match the declared type `{mime}`"
        ))
    }
}

/// Vision content inside a chat request: every image must be well formed. Returns the
/// number of images checked, or a rejection in the request's protocol shape.
pub(crate) fn vision(request: &RecordedRequest) -> Result<usize, Rejection> {
    let body = &request.body;
    let mut count = 0;
    let path = request.path.split('?').next().unwrap_or_default();
    if path.ends_with("/messages") {
        for block in content_blocks(body, "messages", "content") {
            if block.get("type").and_then(Value::as_str) == Some("image") {
                count += 1;
                anthropic_image(block).map_err(|message| anthropic_error(&message))?;
            }
        }
    } else if path.ends_with("/responses") {
        for block in content_blocks(body, "input", "content") {
            if block.get("type").and_then(Value::as_str) == Some("input_image") {
                count += 1;
                let url = block
                    .get("image_url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                data_url(url).map_err(|message| openai_error(&message))?;
            }
        }
    } else if path.contains(":generateContent") {
        for part in content_blocks(body, "contents", "parts") {
            if let Some(inline) = part.get("inlineData") {
                count += 1;
                let mime = inline
                    .get("mimeType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let data = inline
                    .get("data")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let bytes = decode_b64(data).ok_or_else(|| gemini_error("Invalid value at 'contents[0].parts[1].inline_data.data' (TYPE_BYTES), Base64 decoding failed"))?;
                matches_type(mime, &bytes).map_err(|message| gemini_error(&message))?;
            }
        }
    }
    Ok(count)
}

fn content_blocks<'a>(body: &'a Value, list: &str, field: &str) -> impl Iterator<Item = &'a Value> {
    body.get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |message| message.get(field).and_then(Value::as_array))
        .flatten()
}

/// Anthropic's rules for a base64 image block.
fn anthropic_image(block: &Value) -> Result<(), String> {
    let source = block.get("source").ok_or("image block without `source`")?;
    if source.get("type").and_then(Value::as_str) != Some("base64") {
        return Err("only base64 image sources are accepted by this fake".to_string());
    }
    let mime = source
        .get("media_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&mime) {
        return Err(format!(
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp' (got `{mime}`)"
        ));
    }
    let data = source
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if data.len() > 5 * 1024 * 1024 {
        return Err("image exceeds 5 MB maximum".to_string());
    }
    let bytes = decode_b64(data).ok_or("invalid base64 data")?;
    matches_type(mime, &bytes)
        .map_err(|_| format!("Image does not match the provided media type {mime}"))
}

/// One field of a `multipart/form-data` body.
pub(crate) struct FormPart {
    pub(crate) name: String,
    pub(crate) content_type: Option<String>,
    pub(crate) bytes: Vec<u8>,
}

/// The fields of a `multipart/form-data` body.
pub(crate) fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<FormPart>> {
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = find(rest, delimiter.as_bytes())?;
        let section = rest[..end].strip_prefix(b"\r\n").unwrap_or(&rest[..end]);
        let section = section.strip_suffix(b"\r\n").unwrap_or(section);
        let split = find(section, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&section[..split]).to_string();
        let content = section[split + 4..].to_vec();
        let name = headers
            .split(';')
            .find_map(|piece| piece.trim().strip_prefix("name="))
            .map(|name| {
                name.trim_matches('"')
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })?;
        let content_type = headers.lines().find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|value| value.trim().to_string())
        });
        parts.push(FormPart {
            name,
            content_type,
            bytes: content,
        });
    }
    Some(parts)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
