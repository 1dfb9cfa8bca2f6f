//! Rendering a [`Turn`] in each provider's wire format, streaming (SSE frames) and not.
//!
//! The shapes follow the real APIs closely enough that the official CLIs accept them
//! (see `shared/reference/wire-examples/`): Anthropic Messages, OpenAI Chat Completions,
//! OpenAI Responses and Gemini `generateContent` / `streamGenerateContent?alt=sse`.

use serde_json::{Value, json};

use crate::reply::{Turn, UsageSpec};

/// The wire protocol a request arrived in, decided by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    AnthropicMessages,
    OpenAiChat,
    OpenAiResponses,
    Gemini,
}

impl Protocol {
    /// The protocol for a model-turn request path, or `None` for side endpoints
    /// (`HEAD /`, model lists, token counting).
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with("/messages") {
            Some(Protocol::AnthropicMessages)
        } else if path.ends_with("/chat/completions") {
            Some(Protocol::OpenAiChat)
        } else if path.ends_with("/responses") {
            Some(Protocol::OpenAiResponses)
        } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Some(Protocol::Gemini)
        } else {
            None
        }
    }
}

fn stop_reason(turn: &Turn, protocol: Protocol) -> &'static str {
    let tools = !turn.tool_calls.is_empty();
    match protocol {
        Protocol::AnthropicMessages => {
            if tools {
                "tool_use"
            } else {
                "end_turn"
            }
        }
        Protocol::OpenAiChat => {
            if tools {
                "tool_calls"
            } else {
                "stop"
            }
        }
        Protocol::OpenAiResponses => "completed",
        Protocol::Gemini => "STOP",
    }
}

fn anthropic_usage(usage: UsageSpec) -> Value {
    json!({
        "input_tokens": usage.input_tokens.saturating_sub(usage.cached_input_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    })
}

fn openai_chat_usage(usage: UsageSpec) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    })
}

fn responses_usage(usage: UsageSpec) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

fn gemini_usage(usage: UsageSpec) -> Value {
    json!({
        "promptTokenCount": usage.input_tokens,
        "cachedContentTokenCount": usage.cached_input_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    })
}

fn anthropic_content(turn: &Turn) -> Vec<Value> {
    let mut content = Vec::new();
    let text = turn.text();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in &turn.tool_calls {
        content.push(
            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}),
        );
    }
    content
}

fn responses_output(turn: &Turn, ids: &Ids) -> Vec<Value> {
    let mut output = Vec::new();
    let text = turn.text();
    if !text.is_empty() {
        output.push(json!({
            "type": "message", "id": ids.message, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    for call in &turn.tool_calls {
        output.push(json!({
            "type": "function_call", "id": format!("fc_{}", call.id), "call_id": call.id,
            "name": call.name, "arguments": call.arguments.to_string(), "status": "completed",
        }));
    }
    output
}

fn gemini_parts(turn: &Turn) -> Vec<Value> {
    let mut parts = Vec::new();
    let text = turn.text();
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for call in &turn.tool_calls {
        parts.push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
    }
    parts
}

/// Identifiers used in one rendered answer (unique per request so CLIs don't dedupe turns).
pub(crate) struct Ids {
    pub(crate) message: String,
    pub(crate) response: String,
}

impl Ids {
    pub(crate) fn new(sequence: u64) -> Self {
        Self {
            message: format!("msg_fake{sequence:06}"),
            response: format!("resp_fake{sequence:06}"),
        }
    }
}

/// The non-streaming JSON answer. `safeguard_results` (Anthropic only, see
/// [`crate::safeguard`]) becomes a top-level key.
pub(crate) fn render_json(
    protocol: Protocol,
    turn: &Turn,
    model: &str,
    ids: &Ids,
    safeguard_results: Option<&Value>,
) -> Value {
    match protocol {
        Protocol::AnthropicMessages => {
            let mut message = json!({
                "id": ids.message, "type": "message", "role": "assistant", "model": model,
                "content": anthropic_content(turn), "stop_reason": stop_reason(turn, protocol),
                "stop_sequence": null, "usage": anthropic_usage(turn.usage),
            });
            if let Some(results) = safeguard_results {
                message["safeguard_results"] = results.clone();
            }
            message
        }
        Protocol::OpenAiChat => {
            let text = turn.text();
            let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
            if !turn.tool_calls.is_empty() {
                message["tool_calls"] = turn
                    .tool_calls
                    .iter()
                    .map(|call| {
                        json!({"id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": call.arguments.to_string()}})
                    })
                    .collect();
            }
            json!({
                "id": ids.message, "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": stop_reason(turn, protocol)}],
                "usage": openai_chat_usage(turn.usage),
            })
        }
        Protocol::OpenAiResponses => json!({
            "id": ids.response, "object": "response", "created_at": 0, "model": model, "status": "completed",
            "output": responses_output(turn, ids), "usage": responses_usage(turn.usage),
        }),
        Protocol::Gemini => json!({
            "candidates": [{"content": {"role": "model", "parts": gemini_parts(turn)},
                            "finishReason": stop_reason(turn, protocol), "index": 0}],
            "usageMetadata": gemini_usage(turn.usage), "modelVersion": model,
        }),
    }
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// Split a JSON argument string in two, so clients must join partial deltas.
fn split_half(text: &str) -> (String, String) {
    let chars: Vec<char> = text.chars().collect();
    let mid = chars.len() / 2;
    (chars[..mid].iter().collect(), chars[mid..].iter().collect())
}

/// The streaming answer as SSE frames, in order. `safeguard_results` (Anthropic only, see
/// [`crate::safeguard`]) goes in the final `message_delta`'s `delta`.
pub(crate) fn render_stream(
    protocol: Protocol,
    turn: &Turn,
    model: &str,
    ids: &Ids,
    safeguard_results: Option<&Value>,
) -> Vec<String> {
    match protocol {
        Protocol::AnthropicMessages => anthropic_stream(turn, model, ids, safeguard_results),
        Protocol::OpenAiChat => openai_chat_stream(turn, model, ids),
        Protocol::OpenAiResponses => responses_stream(turn, model, ids),
        Protocol::Gemini => gemini_stream(turn, model),
    }
}

fn anthropic_stream(
    turn: &Turn,
    model: &str,
    ids: &Ids,
    safeguard_results: Option<&Value>,
) -> Vec<String> {
    let mut frames = Vec::new();
    let mut start_usage = anthropic_usage(turn.usage);
    start_usage["output_tokens"] = json!(1);
    frames.push(sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": ids.message, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    ));
    frames.push(sse(Some("ping"), &json!({"type": "ping"})));
    let mut index = 0;
    let text_chunks: Vec<&String> = turn
        .text_chunks
        .iter()
        .filter(|chunk| !chunk.is_empty())
        .collect();
    if !text_chunks.is_empty() {
        frames.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        for chunk in text_chunks {
            frames.push(sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": chunk}}),
            ));
        }
        frames.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for call in &turn.tool_calls {
        frames.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
        ));
        let (first, second) = split_half(&call.arguments.to_string());
        for part in [first, second] {
            frames.push(sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        frames.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let mut delta = json!({"stop_reason": stop_reason(turn, Protocol::AnthropicMessages), "stop_sequence": null});
    if let Some(results) = safeguard_results {
        delta["safeguard_results"] = results.clone();
    }
    frames.push(sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": delta,
                "usage": {"output_tokens": turn.usage.output_tokens}}),
    ));
    frames.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
    frames
}

fn openai_chat_stream(turn: &Turn, model: &str, ids: &Ids) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": ids.message, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for text in turn.text_chunks.iter().filter(|chunk| !chunk.is_empty()) {
        frames.push(chunk(json!({"content": text}), Value::Null));
    }
    for (index, call) in turn.tool_calls.iter().enumerate() {
        let (first, second) = split_half(&call.arguments.to_string());
        frames.push(chunk(
            json!({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": first}}]}),
            Value::Null,
        ));
        frames.push(chunk(
            json!({"tool_calls": [{"index": index, "function": {"arguments": second}}]}),
            Value::Null,
        ));
    }
    frames.push(chunk(
        json!({}),
        json!(stop_reason(turn, Protocol::OpenAiChat)),
    ));
    frames.push(sse(
        None,
        &json!({"id": ids.message, "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [], "usage": openai_chat_usage(turn.usage)}),
    ));
    frames.push("data: [DONE]\n\n".to_string());
    frames
}

fn responses_stream(turn: &Turn, model: &str, ids: &Ids) -> Vec<String> {
    let mut frames = Vec::new();
    let mut sequence = 0_u64;
    let mut push = |mut data: Value| {
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        let name = data["type"].as_str().unwrap_or_default().to_string();
        frames.push(sse(Some(&name), &data));
    };
    let output = responses_output(turn, ids);
    push(json!({"type": "response.created", "response": {
        "id": ids.response, "object": "response", "created_at": 0, "model": model,
        "status": "in_progress", "output": []}}));
    push(json!({"type": "response.in_progress", "response": {
        "id": ids.response, "object": "response", "created_at": 0, "model": model,
        "status": "in_progress", "output": []}}));
    for (output_index, item) in output.iter().enumerate() {
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
            push(
                json!({"type": "response.output_item.added", "output_index": output_index, "item": added}),
            );
            push(
                json!({"type": "response.content_part.added", "output_index": output_index, "item_id": item["id"],
                        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for text in turn.text_chunks.iter().filter(|chunk| !chunk.is_empty()) {
                push(
                    json!({"type": "response.output_text.delta", "output_index": output_index,
                            "item_id": item["id"], "content_index": 0, "delta": text}),
                );
            }
            push(
                json!({"type": "response.output_text.done", "output_index": output_index,
                        "item_id": item["id"], "content_index": 0, "text": turn.text()}),
            );
            push(
                json!({"type": "response.content_part.done", "output_index": output_index, "item_id": item["id"],
                        "content_index": 0, "part": item["content"][0]}),
            );
        } else {
            let arguments = item["arguments"].as_str().unwrap_or_default().to_string();
            added["arguments"] = json!("");
            push(
                json!({"type": "response.output_item.added", "output_index": output_index, "item": added}),
            );
            let (first, second) = split_half(&arguments);
            for part in [first, second] {
                push(
                    json!({"type": "response.function_call_arguments.delta", "output_index": output_index,
                            "item_id": item["id"], "delta": part}),
                );
            }
            push(
                json!({"type": "response.function_call_arguments.done", "output_index": output_index,
                        "item_id": item["id"], "arguments": arguments}),
            );
        }
        push(
            json!({"type": "response.output_item.done", "output_index": output_index, "item": item}),
        );
    }
    push(json!({"type": "response.completed", "response": {
        "id": ids.response, "object": "response", "created_at": 0, "model": model, "status": "completed",
        "output": output, "usage": responses_usage(turn.usage)}}));
    frames
}

fn gemini_stream(turn: &Turn, model: &str) -> Vec<String> {
    let mut frames = Vec::new();
    let text_chunks: Vec<&String> = turn
        .text_chunks
        .iter()
        .filter(|chunk| !chunk.is_empty())
        .collect();
    let last_text = text_chunks.len();
    for (position, text) in text_chunks.into_iter().enumerate() {
        let is_last = position + 1 == last_text && turn.tool_calls.is_empty();
        let mut candidate =
            json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        let mut data = json!({"modelVersion": model});
        if is_last {
            candidate["finishReason"] = json!("STOP");
            data["usageMetadata"] = gemini_usage(turn.usage);
        }
        data["candidates"] = json!([candidate]);
        frames.push(sse(None, &data));
    }
    if !turn.tool_calls.is_empty() {
        let parts: Vec<Value> = turn
            .tool_calls
            .iter()
            .map(|call| json!({"functionCall": {"name": call.name, "args": call.arguments}}))
            .collect();
        frames.push(sse(
            None,
            &json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": gemini_usage(turn.usage), "modelVersion": model}),
        ));
    }
    frames
}

/// A protocol-shaped error body for an HTTP error status.
pub(crate) fn render_error(protocol: Option<Protocol>, status: u16) -> Value {
    let message = format!("fake server: injected status {status}");
    match protocol {
        Some(Protocol::AnthropicMessages) | None => {
            let kind = match status {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Some(Protocol::OpenAiChat | Protocol::OpenAiResponses) => {
            json!({"error": {"message": message, "type": "server_error", "code": status}})
        }
        Some(Protocol::Gemini) => {
            json!({"error": {"code": status, "message": message, "status": "UNAVAILABLE"}})
        }
    }
}
