//! The media endpoints of the fake server, on the same listener as the chat protocols so
//! one base URL per provider serves both (as the real hosts do):
//!
//! | provider | endpoints |
//! |---|---|
//! | OpenAI | `POST /v1/images/generations`, `POST /v1/images/edits` (multipart), `POST /v1/audio/speech` |
//! | Gemini | `POST …:generateContent` with `responseModalities` IMAGE or AUDIO, `POST …:predict` (Imagen), `POST …:predictLongRunning` (Veo), `GET …/operations/{id}`, `GET /v1beta/files/{id}:download` |
//! | xAI | `POST /v1/images/generations` (`grok-*` models), `POST /v1/videos/generations`, `GET /v1/videos/{id}`, `GET /xai-downloads/{id}.mp4` (a signed link: refuses any key) |
//!
//! Requests are checked as the real APIs check them (see `validate`), vision images inside
//! chat requests included. Faults are queued with [`crate::FakeModelServer::push_media_fault`]
//! and consumed by the next media *start* request (a generation, or a job submission,
//! whose job then carries the fault).

pub mod payloads;
mod validate;

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

use crate::server::RecordedRequest;
use validate::{Rejection, gemini_error, openai_error, xai_error};

/// A fault the media fake injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFault {
    /// An HTTP error status (a 429 also carries `retry-after: 0`).
    Status(u16),
    /// The provider's safety system refuses the content, in that provider's own shape.
    SafetyBlock,
    /// A job (Veo, xAI video) that stays pending forever.
    NeverFinishes,
    /// Base64 fields that do not decode (binary answers become junk bytes).
    MalformedBase64,
    /// A well-formed answer whose bytes are not the promised format.
    WrongBytes,
    /// A job whose finished file link has expired (403 on download).
    ExpiredDownload,
}

#[derive(Debug, Clone)]
struct Job {
    polls: u32,
    fault: Option<MediaFault>,
}

/// Media side of the fake's state.
#[derive(Debug)]
pub(crate) struct MediaState {
    faults: VecDeque<MediaFault>,
    jobs: HashMap<String, Job>,
    /// Polls a job answers "still running" before it is done.
    pending_polls: u32,
    sequence: u64,
    url: String,
}

impl MediaState {
    pub(crate) fn new(url: String) -> Self {
        Self {
            faults: VecDeque::new(),
            jobs: HashMap::new(),
            pending_polls: 2,
            sequence: 0,
            url,
        }
    }

    pub(crate) fn push_fault(&mut self, fault: MediaFault) {
        self.faults.push_back(fault);
    }

    pub(crate) fn set_pending_polls(&mut self, polls: u32) {
        self.pending_polls = polls;
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.sequence += 1;
        format!("{prefix}{:06}", self.sequence)
    }
}

/// What the media fake answers.
pub(crate) struct MediaReply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: &'static str,
    pub(crate) retry_after: bool,
}

impl MediaReply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
            retry_after: status == 429,
        }
    }

    fn bytes(body: Vec<u8>, content_type: &'static str) -> Self {
        Self {
            status: 200,
            body,
            content_type,
            retry_after: false,
        }
    }

    fn rejected((status, body): Rejection) -> Self {
        Self::json(status, &body)
    }
}

/// Which provider's error shape a status fault uses.
#[derive(Clone, Copy)]
enum Shape {
    OpenAi,
    Gemini,
    Xai,
}

fn status_body(shape: Shape, status: u16) -> Value {
    let message = match status {
        429 => "Rate limit reached; slow down",
        code if code >= 500 => "The server had an error while processing your request",
        _ => "Bad request",
    };
    match shape {
        Shape::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "code": null}})
        }
        Shape::Gemini => {
            json!({"error": {"code": status, "message": message, "status": if status == 429 { "RESOURCE_EXHAUSTED" } else { "UNAVAILABLE" }}})
        }
        Shape::Xai => json!({"code": "error", "error": message}),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A base64 field under `fault`.
fn encoded(fault: Option<MediaFault>, bytes: &[u8]) -> String {
    match fault {
        Some(MediaFault::MalformedBase64) => "@@this is not base64@@".to_string(),
        Some(MediaFault::WrongBytes) => b64(&payloads::junk()),
        _ => b64(bytes),
    }
}

/// Answers a media request, or `None` to let the chat fake handle it.
pub(crate) fn intercept(
    state: &mut MediaState,
    request: &RecordedRequest,
    raw_body: &[u8],
) -> Option<MediaReply> {
    let path = request
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let post = request.method == "POST";
    let get = request.method == "GET";
    let reply = if post && path.ends_with("/images/generations") {
        let is_xai = request
            .body
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|model| model.starts_with("grok"));
        if is_xai {
            xai_image(state, request)
        } else {
            openai_image(state, request)
        }
    } else if post && path.ends_with("/images/edits") {
        openai_edit(state, request, raw_body)
    } else if post && path.ends_with("/audio/speech") {
        openai_speech(state, request)
    } else if post && path.ends_with(":generateContent") && wants_media(&request.body) {
        gemini_generate(state, request)
    } else if post && path.ends_with(":predict") {
        imagen(state, request)
    } else if post && path.ends_with(":predictLongRunning") {
        veo_start(state, request, &path)
    } else if get && path.contains("/operations/") {
        veo_poll(state, request, &path)
    } else if get && path.contains("/files/") && path.ends_with(":download") {
        download(state, &path, Shape::Gemini, validate::google_key(request))
    } else if post && path.ends_with("/videos/generations") {
        xai_video_start(state, request)
    } else if get && path.contains("/videos/") {
        xai_video_poll(state, request, &path)
    } else if get && path.starts_with("/xai-downloads/") {
        // A signed storage link: real ones ignore auth, this one refuses it so a leaked
        // key shows up as a failed test.
        let refused = request.credential("authorization").map(|_| {
            (
                400,
                json!({"error": "a signed download link must not carry credentials"}),
            )
        });
        download(state, &path, Shape::Xai, refused.map_or(Ok(()), Err))
    } else if post && request.protocol.is_some() {
        return match validate::vision(request) {
            Ok(_) => None,
            Err(rejection) => Some(MediaReply::rejected(rejection)),
        };
    } else {
        return None;
    };
    Some(reply)
}

fn wants_media(body: &Value) -> bool {
    body.pointer("/generationConfig/responseModalities")
        .and_then(Value::as_array)
        .is_some_and(|modalities| {
            modalities
                .iter()
                .any(|modality| matches!(modality.as_str(), Some("IMAGE" | "AUDIO")))
        })
}

/// Runs the common start-of-request steps: auth, validation, then the next fault.
fn begin(
    state: &mut MediaState,
    auth: Result<(), Rejection>,
    valid: Result<(), Rejection>,
    shape: Shape,
) -> Result<Option<MediaFault>, MediaReply> {
    auth.map_err(MediaReply::rejected)?;
    valid.map_err(MediaReply::rejected)?;
    match state.faults.pop_front() {
        Some(MediaFault::Status(status)) => {
            Err(MediaReply::json(status, &status_body(shape, status)))
        }
        other => Ok(other),
    }
}

fn openai_image(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let fault = match begin(
        state,
        validate::bearer(request),
        validate::openai_image(&request.body),
        Shape::OpenAi,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            400,
            &json!({"error": {"message": "Your request was rejected by the safety system.", "type": "image_generation_user_error", "param": null, "code": "moderation_blocked"}}),
        );
    }
    let format = request
        .body
        .get("output_format")
        .and_then(Value::as_str)
        .unwrap_or("png");
    MediaReply::json(
        200,
        &json!({
            "created": 1_764_547_200,
            "data": [{"b64_json": encoded(fault, &payloads::picture(format))}],
            "output_format": format,
            "size": request.body.get("size").and_then(Value::as_str).unwrap_or("1024x1024"),
            "quality": request.body.get("quality").and_then(Value::as_str).unwrap_or("medium"),
            "usage": {"input_tokens": 50, "output_tokens": 1056, "total_tokens": 1106},
        }),
    )
}

fn openai_edit(state: &mut MediaState, request: &RecordedRequest, raw_body: &[u8]) -> MediaReply {
    let content_type = request
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    let valid = match validate::multipart(&content_type, raw_body) {
        None => Err(openai_error("Expected a multipart/form-data body.")),
        Some(parts) => edit_parts(&parts),
    };
    let fault = match begin(
        state,
        validate::bearer(request),
        valid.map(|_| ()),
        Shape::OpenAi,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            400,
            &json!({"error": {"message": "Your request was rejected by the safety system.", "type": "image_generation_user_error", "code": "moderation_blocked"}}),
        );
    }
    MediaReply::json(
        200,
        &json!({
            "created": 1_764_547_200,
            "data": [{"b64_json": encoded(fault, &payloads::picture("png"))}],
            "output_format": "png",
        }),
    )
}

fn edit_parts(parts: &[validate::FormPart]) -> Result<usize, Rejection> {
    let field = |name: &str| parts.iter().find(|part| part.name == name);
    if field("prompt").is_none_or(|part| part.bytes.is_empty()) {
        return Err(openai_error("Missing required parameter: 'prompt'."));
    }
    let images: Vec<_> = parts
        .iter()
        .filter(|part| part.name == "image" || part.name == "image[]")
        .collect();
    if images.is_empty() {
        return Err(openai_error("Missing required parameter: 'image'."));
    }
    for part in &images {
        let bytes = &part.bytes;
        let mime = part
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        if !["image/png", "image/jpeg", "image/webp"].contains(&mime) {
            return Err(openai_error(&format!(
                "Invalid file 'image': unsupported mimetype ('{mime}'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
            )));
        }
        validate::matches_type(mime, bytes).map_err(|message| openai_error(&message))?;
    }
    Ok(images.len())
}

fn openai_speech(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let fault = match begin(
        state,
        validate::bearer(request),
        validate::openai_speech(&request.body),
        Shape::OpenAi,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    match fault {
        Some(MediaFault::SafetyBlock) => MediaReply::json(
            400,
            &json!({"error": {"message": "This request has been blocked by our content filters.", "type": "invalid_request_error", "code": "content_policy_violation"}}),
        ),
        Some(MediaFault::MalformedBase64 | MediaFault::WrongBytes) => {
            MediaReply::bytes(payloads::junk(), "audio/mpeg")
        }
        _ => match request
            .body
            .get("response_format")
            .and_then(Value::as_str)
            .unwrap_or("mp3")
        {
            "wav" => MediaReply::bytes(payloads::wav(), "audio/wav"),
            _ => MediaReply::bytes(payloads::mp3(), "audio/mpeg"),
        },
    }
}

fn gemini_generate(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let audio = request
        .body
        .pointer("/generationConfig/responseModalities")
        .and_then(Value::as_array)
        .is_some_and(|modalities| modalities.iter().any(|modality| modality == "AUDIO"));
    let valid = if audio {
        gemini_tts_request(&request.body)
    } else {
        gemini_image_request(request)
    };
    let fault = match begin(state, validate::google_key(request), valid, Shape::Gemini) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            200,
            &json!({
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            }),
        );
    }
    let (mime, bytes) = if audio {
        // Headerless PCM cannot be checked by signature; a broken answer shows in its type.
        let mime = if fault == Some(MediaFault::WrongBytes) {
            "text/html"
        } else {
            "audio/L16;codec=pcm;rate=24000"
        };
        (mime, payloads::pcm_tone())
    } else {
        ("image/png", payloads::picture("png"))
    };
    let mut parts = Vec::new();
    if !audio {
        parts.push(json!({"text": "Here is the image you asked for."}));
    }
    parts.push(json!({"inlineData": {"mimeType": mime, "data": encoded(fault, &bytes)}}));
    MediaReply::json(
        200,
        &json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302},
        }),
    )
}

fn gemini_image_request(request: &RecordedRequest) -> Result<(), Rejection> {
    validate::vision(request)?;
    if let Some(ratio) = request
        .body
        .pointer("/generationConfig/imageConfig/aspectRatio")
    {
        const RATIOS: &[&str] = &[
            "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
        ];
        if !ratio.as_str().is_some_and(|ratio| RATIOS.contains(&ratio)) {
            return Err(gemini_error(&format!("Invalid aspect ratio {ratio}")));
        }
    }
    gemini_contents(&request.body)
}

fn gemini_contents(body: &Value) -> Result<(), Rejection> {
    let has_text = body
        .get("contents")
        .and_then(Value::as_array)
        .is_some_and(|contents| !contents.is_empty());
    if has_text {
        Ok(())
    } else {
        Err(gemini_error(
            "* GenerateContentRequest.contents: contents is not specified",
        ))
    }
}

fn gemini_tts_request(body: &Value) -> Result<(), Rejection> {
    gemini_contents(body)?;
    let modalities = body.pointer("/generationConfig/responseModalities");
    if modalities != Some(&json!(["AUDIO"])) {
        return Err(gemini_error(
            "Speech models only answer with the AUDIO modality",
        ));
    }
    let voice = body
        .pointer("/generationConfig/speechConfig/voiceConfig/prebuiltVoiceConfig/voiceName")
        .and_then(Value::as_str);
    if voice.is_none_or(str::is_empty) {
        return Err(gemini_error(
            "speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName is required",
        ));
    }
    Ok(())
}

fn imagen(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let valid = imagen_request(&request.body);
    let fault = match begin(state, validate::google_key(request), valid, Shape::Gemini) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            200,
            &json!({"predictions": [{"raiFilteredReason": "The image was filtered for violating the usage guidelines."}]}),
        );
    }
    MediaReply::json(
        200,
        &json!({"predictions": [{
            "bytesBase64Encoded": encoded(fault, &payloads::picture("png")),
            "mimeType": "image/png",
        }]}),
    )
}

fn imagen_request(body: &Value) -> Result<(), Rejection> {
    if body
        .pointer("/instances/0/prompt")
        .and_then(Value::as_str)
        .is_none_or(|prompt| prompt.trim().is_empty())
    {
        return Err(gemini_error("instances[0].prompt is required"));
    }
    if let Some(count) = body.pointer("/parameters/sampleCount")
        && !count.as_u64().is_some_and(|count| (1..=4).contains(&count))
    {
        return Err(gemini_error("sampleCount must be between 1 and 4"));
    }
    if let Some(ratio) = body.pointer("/parameters/aspectRatio")
        && !ratio
            .as_str()
            .is_some_and(|ratio| ["1:1", "3:4", "4:3", "9:16", "16:9"].contains(&ratio))
    {
        return Err(gemini_error("Unsupported aspect ratio"));
    }
    Ok(())
}

fn veo_start(state: &mut MediaState, request: &RecordedRequest, path: &str) -> MediaReply {
    let fault = match begin(
        state,
        validate::google_key(request),
        veo_request(&request.body),
        Shape::Gemini,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    let model = path
        .rsplit('/')
        .next()
        .and_then(|last| last.split(':').next())
        .unwrap_or("veo")
        .to_string();
    let id = state.next_id("op");
    state.jobs.insert(id.clone(), Job { polls: 0, fault });
    MediaReply::json(
        200,
        &json!({"name": format!("models/{model}/operations/{id}")}),
    )
}

fn veo_request(body: &Value) -> Result<(), Rejection> {
    if body
        .pointer("/instances/0/prompt")
        .and_then(Value::as_str)
        .is_none_or(|prompt| prompt.trim().is_empty())
    {
        return Err(gemini_error("instances[0].prompt is required"));
    }
    if let Some(seconds) = body.pointer("/parameters/durationSeconds")
        && !seconds
            .as_u64()
            .is_some_and(|seconds| [4, 6, 8].contains(&seconds))
    {
        return Err(gemini_error(
            "The requested duration is not supported; use 4, 6 or 8 seconds",
        ));
    }
    if let Some(ratio) = body.pointer("/parameters/aspectRatio")
        && !ratio
            .as_str()
            .is_some_and(|ratio| ["16:9", "9:16"].contains(&ratio))
    {
        return Err(gemini_error("aspectRatio must be 16:9 or 9:16"));
    }
    if let Some(image) = body.pointer("/instances/0/image") {
        let mime = image
            .get("mimeType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bytes = image
            .get("bytesBase64Encoded")
            .and_then(Value::as_str)
            .and_then(validate::decode_b64)
            .ok_or_else(|| gemini_error("instances[0].image.bytesBase64Encoded must be base64"))?;
        validate::matches_type(mime, &bytes).map_err(|message| gemini_error(&message))?;
    }
    Ok(())
}

/// Where a polled job stands.
enum JobState {
    Unknown,
    Running,
    /// Done, with the fault it was started under.
    Done(Option<MediaFault>),
}

/// Advances a job by one poll.
fn advance(state: &mut MediaState, id: &str) -> JobState {
    let pending = state.pending_polls;
    let Some(job) = state.jobs.get_mut(id) else {
        return JobState::Unknown;
    };
    job.polls += 1;
    if job.fault != Some(MediaFault::NeverFinishes) && job.polls > pending {
        JobState::Done(job.fault)
    } else {
        JobState::Running
    }
}

fn veo_poll(state: &mut MediaState, request: &RecordedRequest, path: &str) -> MediaReply {
    if let Err(rejection) = validate::google_key(request) {
        return MediaReply::rejected(rejection);
    }
    let id = path.rsplit('/').next().unwrap_or_default().to_string();
    let name = path.trim_start_matches("/v1beta/").to_string();
    let fault = match advance(state, &id) {
        JobState::Unknown => {
            return MediaReply::json(
                404,
                &json!({"error": {"code": 404, "message": format!("Operation {name} not found"), "status": "NOT_FOUND"}}),
            );
        }
        JobState::Running => return MediaReply::json(200, &json!({"name": name, "done": false})),
        JobState::Done(fault) => fault,
    };
    let type_url =
        "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse";
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            200,
            &json!({"name": name, "done": true, "response": {
                "@type": type_url,
                "generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["The video could not be generated because it may violate the usage guidelines."]},
            }}),
        );
    }
    let uri = format!("{}/v1beta/files/{id}:download?alt=media", state.url);
    MediaReply::json(
        200,
        &json!({"name": name, "done": true, "response": {
            "@type": type_url,
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
        }}),
    )
}

fn download(
    state: &mut MediaState,
    path: &str,
    shape: Shape,
    auth: Result<(), Rejection>,
) -> MediaReply {
    if let Err(rejection) = auth {
        return MediaReply::rejected(rejection);
    }
    let id = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(":download")
        .trim_end_matches(".mp4")
        .to_string();
    let Some(job) = state.jobs.get(&id) else {
        return MediaReply::json(
            404,
            &json!({"error": {"code": 404, "message": "File not found", "status": "NOT_FOUND"}}),
        );
    };
    match job.fault {
        Some(MediaFault::ExpiredDownload) => match shape {
            Shape::Xai => MediaReply {
                status: 403,
                body: b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>".to_vec(),
                content_type: "application/xml",
                retry_after: false,
            },
            _ => MediaReply::json(403, &json!({"error": {"code": 403, "message": "The file has expired or you do not have permission to access it.", "status": "PERMISSION_DENIED"}})),
        },
        Some(MediaFault::WrongBytes | MediaFault::MalformedBase64) => MediaReply::bytes(payloads::junk(), "video/mp4"),
        _ => MediaReply::bytes(payloads::mp4(), "video/mp4"),
    }
}

fn xai_image(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let fault = match begin(
        state,
        validate::bearer(request),
        validate::xai_image(&request.body),
        Shape::Xai,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::rejected(xai_error("Generated image rejected by content moderation."))
            .with_code("content_moderation");
    }
    MediaReply::json(
        200,
        &json!({"data": [{
            "b64_json": encoded(fault, &payloads::picture("jpeg")),
            "revised_prompt": request.body.get("prompt").cloned().unwrap_or(Value::Null),
        }]}),
    )
}

impl MediaReply {
    /// Sets xAI's top-level `code` field.
    fn with_code(mut self, code: &str) -> Self {
        if let Ok(mut value) = serde_json::from_slice::<Value>(&self.body) {
            value["code"] = json!(code);
            self.body = value.to_string().into_bytes();
        }
        self
    }
}

fn xai_video_start(state: &mut MediaState, request: &RecordedRequest) -> MediaReply {
    let fault = match begin(
        state,
        validate::bearer(request),
        validate::xai_video(&request.body),
        Shape::Xai,
    ) {
        Ok(fault) => fault,
        Err(reply) => return reply,
    };
    let id = state.next_id("vid-");
    state.jobs.insert(id.clone(), Job { polls: 0, fault });
    MediaReply::json(200, &json!({"request_id": id}))
}

fn xai_video_poll(state: &mut MediaState, request: &RecordedRequest, path: &str) -> MediaReply {
    if let Err(rejection) = validate::bearer(request) {
        return MediaReply::rejected(rejection);
    }
    let id = path.rsplit('/').next().unwrap_or_default().to_string();
    let fault = match advance(state, &id) {
        JobState::Unknown => {
            return MediaReply::rejected((
                404,
                json!({"code": "not_found", "error": format!("no request {id}")}),
            ));
        }
        JobState::Running => return MediaReply::json(200, &json!({"status": "pending"})),
        JobState::Done(fault) => fault,
    };
    if fault == Some(MediaFault::SafetyBlock) {
        return MediaReply::json(
            200,
            &json!({"status": "done", "model": "grok-imagine-video",
            "video": {"url": null, "duration": 0, "respect_moderation": false}}),
        );
    }
    MediaReply::json(
        200,
        &json!({"status": "done", "model": "grok-imagine-video", "video": {
            "url": format!("{}/xai-downloads/{id}.mp4", state.url),
            "duration": 6,
            "respect_moderation": true,
        }}),
    )
}
