//! OpenAI: Images (`/v1/images/generations`, `/v1/images/edits` with input images) and
//! Speech (`/v1/audio/speech`).
//!
//! See: <https://platform.openai.com/docs/api-reference/images> — GPT image models always
//! answer with `b64_json` and reject `response_format`, so it is only sent to `dall-e-*`.

use serde_json::{Map, Value, json};

use super::{Call, Generated, decode};
use crate::error::{Error, Result};
use crate::format::Format;

fn output_format(call: &Call<'_>) -> Format {
    match call.spec.wanted {
        Some(format @ (Format::Jpeg | Format::Webp)) => format,
        _ => Format::Png,
    }
}

fn wire_format(format: Format) -> &'static str {
    match format {
        Format::Jpeg => "jpeg",
        Format::Webp => "webp",
        _ => "png",
    }
}

pub(super) async fn image(call: &mut Call<'_>) -> Result<Generated> {
    let format = output_format(call);
    let endpoint = call.http.config.endpoint(call.backend);
    let is_dalle = call.model.starts_with("dall-e");
    let body = if call.spec.input_images.is_empty() {
        let mut body = Map::new();
        body.insert("model".into(), json!(call.model));
        body.insert("prompt".into(), json!(call.spec.prompt));
        body.insert("n".into(), json!(1));
        if let Some(size) = &call.spec.size {
            body.insert("size".into(), json!(size));
        }
        if let Some(quality) = &call.spec.quality {
            body.insert("quality".into(), json!(quality));
        }
        if is_dalle {
            body.insert("response_format".into(), json!("b64_json"));
        } else {
            body.insert("output_format".into(), json!(wire_format(format)));
        }
        call.steps
            .report(format!("asking {} for an image", call.model));
        call.post_json("images/generations", &Value::Object(body))
            .await?
    } else {
        let url = endpoint.url("images/edits");
        call.steps.report(format!(
            "asking {} to edit {} image(s)",
            call.model,
            call.spec.input_images.len()
        ));
        let spec = call.spec;
        let model = call.model.clone();
        let response = call
            .http
            .send(call.backend, |client| {
                client.post(&url).multipart(edit_form(spec, &model, format))
            })
            .await?;
        call.http.json(call.backend, response).await?
    };
    let data = body
        .pointer("/data/0/b64_json")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed(call.backend, "no `data[0].b64_json` in the answer"))?;
    let claimed = body
        .get("output_format")
        .and_then(Value::as_str)
        .and_then(Format::from_extension)
        .unwrap_or(format);
    Ok(Generated {
        bytes: decode(call.backend, data, claimed.mime_type())?,
        claimed: Some(claimed),
        warnings: Vec::new(),
    })
}

fn edit_form(spec: &super::Spec, model: &str, format: Format) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .text("model", model.to_string())
        .text("prompt", spec.prompt.clone())
        .text("n", "1")
        .text("output_format", wire_format(format));
    if let Some(size) = &spec.size {
        form = form.text("size", size.clone());
    }
    if let Some(quality) = &spec.quality {
        form = form.text("quality", quality.clone());
    }
    for (index, image) in spec.input_images.iter().enumerate() {
        let part = reqwest::multipart::Part::bytes(image.bytes.clone())
            .file_name(format!("input_{index}.{}", image.format.extension()))
            .mime_str(image.format.mime_type())
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(image.bytes.clone()));
        form = form.part("image[]", part);
    }
    form
}

pub(super) async fn speech(call: &mut Call<'_>) -> Result<Generated> {
    let format = match call.spec.wanted {
        Some(Format::Wav) => Format::Wav,
        _ => Format::Mp3,
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(call.model));
    body.insert("input".into(), json!(call.spec.prompt));
    body.insert(
        "voice".into(),
        json!(call.spec.voice.as_deref().unwrap_or("alloy")),
    );
    body.insert(
        "response_format".into(),
        json!(if format == Format::Wav { "wav" } else { "mp3" }),
    );
    if let Some(instructions) = &call.spec.instructions {
        body.insert("instructions".into(), json!(instructions));
    }
    let body = Value::Object(body);
    let url = call.http.config.endpoint(call.backend).url("audio/speech");
    call.steps.report(format!("asking {} to speak", call.model));
    let response = call
        .http
        .send(call.backend, |client| client.post(&url).json(&body))
        .await?;
    let backend = call.backend;
    let bytes = call
        .http
        .cancellable(async {
            response.bytes().await.map_err(|_| Error::Connection {
                backend,
                attempts: 1,
                message: "the audio download broke off".to_string(),
            })
        })
        .await?;
    Ok(Generated {
        bytes: bytes.to_vec(),
        claimed: Some(format),
        warnings: Vec::new(),
    })
}
