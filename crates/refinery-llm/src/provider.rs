//! [`ApiChatModel`]: every API provider through the `genai` crate, behind our [`ChatModel`].
//!
//! genai does the wire protocols (Anthropic Messages, OpenAI Responses and Chat
//! Completions, Gemini, xAI); this module owns what genai leaves to callers: the endpoint
//! and key (never read from the process environment by genai: we pass an explicit
//! [`genai::ServiceTarget`]), retries, timeouts, the deadline, cancellation, usage, cost,
//! and scrubbing the key from every error message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use genai::adapter::AdapterKind;
use genai::chat::{self as genai_chat, ChatStreamEvent, ContentPart, JsonSpec, MessageContent};
use genai::resolver::{AuthData, Endpoint};
use genai::{ModelIden, ServiceTarget};
use refinery_secrets::Scrubber;
use serde_json::Value;

use crate::chat::{
    CallOptions, ChatModel, ChatRequest, ChatResponse, FinishReason, Message, StreamEvent,
    StreamSink, ToolCall,
};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::model::{ModelId, Provider, endpoint_for};
use crate::price::{PriceTable, Usage};
use crate::retry::retry_after_from_headers;
use crate::secret::ApiKey;

/// Key sent to servers that need none (local servers); short, so it is not treated as a secret.
const NO_KEY: &str = "none";

/// Where and how to reach a model, resolved from a name, flags and credentials.
#[derive(Debug, Clone)]
pub struct ChatModelConfig {
    pub id: ModelId,
    /// The endpoint prefix (ends in `/`), already normalised by [`endpoint_for`].
    pub endpoint: String,
    pub key: Option<ApiKey>,
}

impl ChatModelConfig {
    /// Resolve a `provider/model` name: the base URL comes from `base_url` (the `--base-url`
    /// flag), else the provider's SDK variable (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`,
    /// `GOOGLE_GEMINI_BASE_URL`, …) in `credentials`, else the public endpoint. The key comes
    /// from `credentials`; a loopback base URL needs none.
    pub fn resolve(name: &str, base_url: Option<&str>, credentials: &Credentials) -> Result<Self> {
        let id = ModelId::parse(name)?;
        let provider = id.provider;
        let base = base_url
            .map(ToString::to_string)
            .or_else(|| {
                provider
                    .base_url_variable()
                    .and_then(|variable| credentials.var(variable))
                    .map(ToString::to_string)
            })
            .or_else(|| provider.default_base_url().map(ToString::to_string))
            .ok_or_else(|| Error::MissingBaseUrl {
                model: id.to_string(),
            })?;
        let endpoint = endpoint_for(provider.wire_api(), &base)?;
        let key = credentials
            .provider_key(provider)
            .map(|(_, key)| key.clone());
        if key.is_none() && provider.requires_key() && !is_loopback(&endpoint) {
            let variable = provider
                .key_variables()
                .first()
                .copied()
                .unwrap_or("API key");
            return Err(Error::MissingKey { provider, variable });
        }
        Ok(Self { id, endpoint, key })
    }
}

fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") || host.starts_with("127.")
}

/// A model behind an HTTP API.
pub struct ApiChatModel {
    id: ModelId,
    client: genai::Client,
    target: ServiceTarget,
    key: Option<ApiKey>,
    prices: Arc<PriceTable>,
}

impl std::fmt::Debug for ApiChatModel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApiChatModel")
            .field("id", &self.id)
            .field("endpoint", &self.target.endpoint.base_url())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn adapter_kind(provider: Provider) -> AdapterKind {
    match provider {
        Provider::Anthropic => AdapterKind::Anthropic,
        Provider::OpenAi => AdapterKind::OpenAIResp,
        Provider::Gemini => AdapterKind::Gemini,
        Provider::Xai => AdapterKind::Xai,
        // OpenRouter, Ollama and other local servers get the plain Chat Completions adapter:
        // it is the one llama.cpp enforces `response_format` JSON schemas with.
        Provider::OpenAiChat | Provider::OpenRouter | Provider::Ollama | Provider::Local => {
            AdapterKind::OpenAI
        }
    }
}

impl ApiChatModel {
    pub fn new(config: ChatModelConfig, prices: Arc<PriceTable>) -> Result<Self> {
        let ChatModelConfig { id, endpoint, key } = config;
        // A key handed in directly (not loaded through `Credentials`) is masked all the same.
        if let Some(key) = &key {
            refinery_secrets::remember_secrets([key.expose()]);
        }
        // Our own reqwest client: no proxy from the environment (a loopback call must stay
        // loopback), and no whole-request timeout (streams may be long; we time each read).
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| Error::Protocol {
                provider: id.provider,
                message: error.to_string(),
            })?;
        let client = genai::Client::builder()
            .with_reqwest(http)
            .build()
            .map_err(|error| Error::Protocol {
                provider: id.provider,
                message: error.to_string(),
            })?;
        let auth = AuthData::from_single(key.as_ref().map_or(NO_KEY, ApiKey::expose).to_string());
        let target = ServiceTarget {
            endpoint: Endpoint::from_owned(endpoint),
            auth,
            model: ModelIden::new(adapter_kind(id.provider), id.model.clone()),
        };
        Ok(Self {
            id,
            client,
            target,
            key,
            prices,
        })
    }

    /// Masks this model's key and everything the process scrubber knows (a server may echo
    /// any part of a request back in an error).
    fn redact(&self, text: &str) -> String {
        let text = self
            .key
            .as_ref()
            .map_or_else(|| text.to_string(), |key| key.redact(text));
        refinery_secrets::process_scrubber().scrub(&text)
    }

    async fn call(
        &self,
        request: &ChatRequest,
        options: &CallOptions,
        mut sink: Option<StreamSink<'_>>,
    ) -> Result<ChatResponse> {
        let started = Instant::now();
        // The boundary: whoever built the request, nothing secret is sent.
        // Built once and handed to the first attempt; a retry builds it again (its texts are
        // then found clean from memory), so the usual single attempt copies each text once.
        let mut prepared = Some(to_genai_request(
            request,
            &refinery_secrets::process_scrubber(),
        ));
        let chat_options = to_genai_options(request);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = options
                .deadline
                .map(|deadline| deadline.saturating_sub(started.elapsed()));
            let genai_request = prepared.take().unwrap_or_else(|| {
                to_genai_request(request, &refinery_secrets::process_scrubber())
            });
            let attempt_future = async {
                match sink.as_mut() {
                    Some(sink) => {
                        self.stream_attempt(genai_request, &chat_options, options, &mut **sink)
                            .await
                    }
                    None => {
                        self.plain_attempt(genai_request, &chat_options, options)
                            .await
                    }
                }
            };
            let outcome = tokio::select! {
                () = options.cancel.cancelled() => return Err(Error::Cancelled),
                outcome = tokio::time::timeout(remaining.unwrap_or(Duration::MAX), attempt_future) => outcome,
            };
            let failure = match outcome {
                Err(_elapsed) => {
                    return Err(Error::DeadlineExceeded {
                        deadline: options.deadline.unwrap_or_default(),
                        attempts: attempt,
                        last: format!(
                            "`{}` timed out after {}",
                            self.id.provider,
                            crate::error::seconds(options.deadline.unwrap_or_default())
                        ),
                    });
                }
                Ok(Ok(mut response)) => {
                    response.attempts = attempt;
                    response.cost = self.prices.cost(&self.id, response.usage);
                    return Ok(response);
                }
                Ok(Err(failure)) => failure,
            };
            if !failure.error.is_retryable() {
                return Err(failure.error);
            }
            if attempt >= options.retry.max_attempts {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    last: Box::new(failure.error),
                });
            }
            let delay = options
                .retry
                .delay(attempt, failure.retry_after, fastrand::f64());
            if let Some(deadline) = options.deadline
                && started.elapsed() + delay >= deadline
            {
                return Err(Error::DeadlineExceeded {
                    deadline,
                    attempts: attempt,
                    last: failure.error.to_string(),
                });
            }
            tracing::warn!(
                "{} failed on attempt {attempt} ({}); trying again in {}",
                self.id,
                failure.error,
                crate::error::seconds(delay)
            );
            if let Some(sink) = sink.as_mut() {
                sink(StreamEvent::Retrying {
                    attempt,
                    delay,
                    reason: failure.error.to_string(),
                });
            }
            tokio::select! {
                () = options.cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn plain_attempt(
        &self,
        request: genai_chat::ChatRequest,
        chat_options: &genai_chat::ChatOptions,
        options: &CallOptions,
    ) -> Result<ChatResponse, AttemptFailure> {
        let future = self
            .client
            .exec_chat(self.target.clone(), request, Some(chat_options));
        let response = tokio::time::timeout(options.request_timeout, future)
            .await
            .map_err(|_| AttemptFailure::from(self.timeout(options)))?
            .map_err(|error| self.classify(&error, Transport::BeforeAnswer))?;
        let text = response.texts().concat();
        let tool_calls: Vec<ToolCall> = response
            .tool_calls()
            .into_iter()
            .map(from_genai_tool_call)
            .collect();
        Ok(ChatResponse {
            model: self.id.clone(),
            text,
            finish_reason: finish_reason(response.stop_reason.as_ref(), !tool_calls.is_empty()),
            tool_calls,
            usage: from_genai_usage(&response.usage),
            cost: crate::price::Cost::Unknown,
            attempts: 0,
        })
    }

    async fn stream_attempt(
        &self,
        request: genai_chat::ChatRequest,
        chat_options: &genai_chat::ChatOptions,
        options: &CallOptions,
        sink: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, AttemptFailure> {
        let response = self
            .client
            .exec_chat_stream(self.target.clone(), request, Some(chat_options))
            .await
            .map_err(|error| self.classify(&error, Transport::BeforeAnswer))?;
        let mut stream = response.stream;
        let mut text = String::new();
        let mut received_any = false;
        let end = loop {
            let next = tokio::time::timeout(options.request_timeout, stream.next())
                .await
                .map_err(|_| AttemptFailure::from(self.timeout(options)))?;
            let transport = if received_any {
                Transport::MidStream
            } else {
                Transport::BeforeAnswer
            };
            match next {
                None => {
                    return Err(AttemptFailure::from(Error::StreamInterrupted {
                        provider: self.id.provider,
                        message: "the stream ended without its final event".to_string(),
                    }));
                }
                Some(Err(error)) => return Err(self.classify(&error, transport)),
                Some(Ok(ChatStreamEvent::Chunk(chunk))) => {
                    received_any = true;
                    text.push_str(&chunk.content);
                    sink(StreamEvent::TextDelta(chunk.content));
                }
                // Every protocol's last event says why the answer stopped; genai also ends
                // a stream that merely ran out (a connection closed cleanly halfway), and
                // then there is no reason: that answer is cut, not finished.
                Some(Ok(ChatStreamEvent::End(end))) if end.captured_stop_reason.is_none() => {
                    return Err(AttemptFailure::from(Error::StreamInterrupted {
                        provider: self.id.provider,
                        message: "the stream ended without its final event".to_string(),
                    }));
                }
                Some(Ok(ChatStreamEvent::End(end))) => break end,
                Some(Ok(
                    ChatStreamEvent::Start
                    | ChatStreamEvent::ReasoningChunk(_)
                    | ChatStreamEvent::ThoughtSignatureChunk(_)
                    | ChatStreamEvent::ToolCallChunk(_)
                    | ChatStreamEvent::Heartbeat,
                )) => received_any = true,
            }
        };
        let tool_calls: Vec<ToolCall> = end
            .captured_content
            .as_ref()
            .map(|content| {
                content
                    .tool_calls()
                    .into_iter()
                    .map(from_genai_tool_call)
                    .collect()
            })
            .unwrap_or_default();
        let usage = end
            .captured_usage
            .as_ref()
            .map(from_genai_usage)
            .unwrap_or_default();
        Ok(ChatResponse {
            model: self.id.clone(),
            text,
            finish_reason: finish_reason(end.captured_stop_reason.as_ref(), !tool_calls.is_empty()),
            tool_calls,
            usage,
            cost: crate::price::Cost::Unknown,
            attempts: 0,
        })
    }

    fn timeout(&self, options: &CallOptions) -> Error {
        Error::RequestTimeout {
            provider: self.id.provider,
            timeout: options.request_timeout,
        }
    }

    /// Sort a genai error into ours, keeping the server's `retry-after` and never the key.
    fn classify(&self, error: &genai::Error, transport: Transport) -> AttemptFailure {
        let provider = self.id.provider;
        if let Some((status, body, retry_after)) = status_parts(error) {
            return AttemptFailure {
                error: Error::Http {
                    provider,
                    status,
                    message: self.redact(&provider_message(&body)),
                },
                retry_after,
            };
        }
        let error = match error {
            // An event whose JSON ends early is an event cut in half: the connection ended
            // (cleanly, or at a proxy) in the middle of it. That is a cut stream, retried
            // like any other; JSON that is wrong rather than short stays a protocol error.
            genai::Error::StreamParse { serde_error, .. } if serde_error.is_eof() => {
                Error::StreamInterrupted {
                    provider,
                    message: self.redact(&error_chain(error)),
                }
            }
            genai::Error::WebModelCall { .. }
            | genai::Error::WebAdapterCall { .. }
            | genai::Error::WebStream { .. } => {
                let message = self.redact(&transport_cause(
                    root_of(error).unwrap_or(error),
                    self.target.endpoint.base_url(),
                ));
                match transport {
                    Transport::BeforeAnswer => Error::Connection { provider, message },
                    Transport::MidStream => Error::StreamInterrupted { provider, message },
                }
            }
            _ => Error::Protocol {
                provider,
                message: self.redact(&error_chain(error)),
            },
        };
        AttemptFailure::from(error)
    }
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    BeforeAnswer,
    MidStream,
}

/// One failed attempt, with the server's retry hint if it sent one.
struct AttemptFailure {
    error: Error,
    retry_after: Option<Duration>,
}

impl From<Error> for AttemptFailure {
    fn from(error: Error) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

fn status_parts(error: &genai::Error) -> Option<(u16, String, Option<Duration>)> {
    match error {
        genai::Error::HttpError {
            status,
            body,
            headers,
            ..
        } => Some((
            status.as_u16(),
            body.clone(),
            retry_after_from_headers(headers),
        )),
        genai::Error::WebModelCall { webc_error, .. }
        | genai::Error::WebAdapterCall { webc_error, .. } => match webc_error {
            genai::webc::Error::ResponseFailedStatus {
                status,
                body,
                headers,
            } => Some((
                status.as_u16(),
                body.clone(),
                retry_after_from_headers(headers),
            )),
            _ => None,
        },
        genai::Error::WebStream { error, .. } => {
            error.downcast_ref::<genai::Error>().and_then(status_parts)
        }
        _ => None,
    }
}

/// The human part of a provider error body (`error.message` in every protocol), else the
/// body itself, shortened.
fn provider_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value
            .pointer("/error/message")
            .or_else(|| value.get("message"))
            .or_else(|| value.pointer("/0/error/message"))
            .and_then(Value::as_str)
            .map(ToString::to_string)
    });
    let message = message.unwrap_or_else(|| body.trim().to_string());
    if message.chars().count() > 500 {
        format!("{}…", message.chars().take(500).collect::<String>())
    } else {
        message
    }
}

/// The error genai wraps without exposing it as a `source` (its web-client error holds the
/// reqwest error, whose own chain reaches the io error), so [`transport_cause`] can walk it.
fn root_of(error: &genai::Error) -> Option<&(dyn std::error::Error + 'static)> {
    match error {
        genai::Error::WebModelCall { webc_error, .. }
        | genai::Error::WebAdapterCall { webc_error, .. } => match webc_error {
            genai::webc::Error::Reqwest(inner) => Some(inner),
            _ => None,
        },
        genai::Error::WebStream { error, .. } => Some(error.as_ref()),
        _ => None,
    }
}

/// The root cause of a transport failure in a few words ("connection refused at
/// http://127.0.0.1:8080/v1/"), instead of the wrapper chain ("Reqwest error: error sending
/// request: client error (Connect): tcp connect error: Connection refused (os error 111)").
fn transport_cause(error: &(dyn std::error::Error + 'static), endpoint: &str) -> String {
    use std::io::ErrorKind;

    let mut deepest: &(dyn std::error::Error + 'static) = error;
    let mut io_kind = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = current {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        deepest = inner;
        current = inner.source();
    }
    let cause = match io_kind {
        Some(ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(ErrorKind::ConnectionReset) => "the server reset the connection".to_string(),
        Some(ErrorKind::ConnectionAborted) => "the server closed the connection".to_string(),
        Some(ErrorKind::TimedOut) => "the connection timed out".to_string(),
        Some(ErrorKind::UnexpectedEof) => "the server closed the connection early".to_string(),
        Some(ErrorKind::AddrNotAvailable | ErrorKind::NotFound) => {
            "the address cannot be reached".to_string()
        }
        _ => {
            let text = deepest.to_string().replace('\n', " ");
            // "dns error: failed to lookup address information: …" and friends stay as they are.
            text.trim().to_string()
        }
    };
    format!("{cause} at {endpoint}")
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string().replace('\n', " ")];
    let mut source = error.source();
    while let Some(inner) = source {
        parts.push(inner.to_string().replace('\n', " "));
        source = inner.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// The request in genai's types, every text a model reads scrubbed on the way: the system
/// prompt, messages, tool results and earlier tool calls' arguments (tool definitions and the
/// schema are our own text). One copy of each text, the one genai needs to own: a clean brief
/// is not copied once more to be scrubbed.
fn to_genai_request(request: &ChatRequest, scrubber: &Scrubber) -> genai_chat::ChatRequest {
    let scrub = |text: &str| scrubber.scrub_cow(text).into_owned();
    let messages = request
        .messages
        .iter()
        .map(|message| match message {
            Message::User { text } => genai_chat::ChatMessage::user(scrub(text)),
            Message::Assistant { text, tool_calls } => {
                if tool_calls.is_empty() {
                    return genai_chat::ChatMessage::assistant(scrub(text));
                }
                let mut parts = Vec::new();
                if !text.is_empty() {
                    parts.push(ContentPart::Text(scrub(text)));
                }
                parts.extend(tool_calls.iter().map(|call| {
                    let mut arguments = call.arguments.clone();
                    scrubber.scrub_json(&mut arguments);
                    ContentPart::ToolCall(genai_chat::ToolCall {
                        call_id: call.id.clone(),
                        fn_name: call.name.clone(),
                        fn_arguments: arguments,
                        thought_signatures: None,
                    })
                }));
                genai_chat::ChatMessage::assistant(MessageContent::from_parts(parts))
            }
            Message::ToolResult {
                call_id,
                name,
                content,
            } => genai_chat::ChatMessage::from(
                genai_chat::ToolResponse::new(call_id, scrub(content)).with_fn_name(name),
            ),
        })
        .collect();
    let mut genai_request = genai_chat::ChatRequest::new(messages);
    if let Some(system) = &request.system {
        genai_request = genai_request.with_system(scrub(system));
    }
    if !request.tools.is_empty() {
        genai_request = genai_request.with_tools(request.tools.iter().map(|tool| {
            genai_chat::Tool::new(tool.name.clone())
                .with_description(tool.description.clone())
                .with_schema(tool.parameters.clone())
        }));
    }
    genai_request
}

fn to_genai_options(request: &ChatRequest) -> genai_chat::ChatOptions {
    let mut options = genai_chat::ChatOptions::default()
        .with_capture_usage(true)
        .with_capture_content(true)
        .with_capture_tool_calls(true);
    if let Some(schema) = &request.response_schema {
        options =
            options.with_response_format(JsonSpec::new(schema.name.clone(), schema.schema.clone()));
    }
    if let Some(max_tokens) = request.max_tokens {
        options = options.with_max_tokens(max_tokens);
    }
    if let Some(temperature) = request.temperature {
        options = options.with_temperature(temperature);
    }
    options
}

fn from_genai_tool_call(call: &genai_chat::ToolCall) -> ToolCall {
    ToolCall {
        id: call.call_id.clone(),
        name: call.fn_name.clone(),
        arguments: call.fn_arguments.clone(),
    }
}

fn from_genai_usage(usage: &genai_chat::Usage) -> Usage {
    let count = |value: Option<i32>| {
        value
            .and_then(|value| u64::try_from(value).ok())
            .unwrap_or(0)
    };
    Usage {
        input_tokens: count(usage.prompt_tokens),
        output_tokens: count(usage.completion_tokens),
        cached_input_tokens: count(
            usage
                .prompt_tokens_details
                .as_ref()
                .and_then(|details| details.cached_tokens),
        ),
    }
}

/// The OpenAI Responses API reports `completed` even when the answer is a function call,
/// so tool calls in the answer decide.
fn finish_reason(reason: Option<&genai_chat::StopReason>, has_tool_calls: bool) -> FinishReason {
    if has_tool_calls {
        return FinishReason::ToolCalls;
    }
    match reason {
        Some(genai_chat::StopReason::Completed(_) | genai_chat::StopReason::StopSequence(_)) => {
            FinishReason::Stop
        }
        Some(genai_chat::StopReason::ToolCall(_)) => FinishReason::ToolCalls,
        Some(genai_chat::StopReason::MaxTokens(_)) => FinishReason::MaxTokens,
        Some(genai_chat::StopReason::ContentFilter(_) | genai_chat::StopReason::Other(_))
        | None => FinishReason::Other,
    }
}

impl ChatModel for ApiChatModel {
    fn id(&self) -> &ModelId {
        &self.id
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(self.call(request, options, None))
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        options: &'a CallOptions,
        sink: StreamSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(self.call(request, options, Some(sink)))
    }
}

/// Open the model named `provider/model` with the built-in price table.
pub fn open_chat_model(
    name: &str,
    base_url: Option<&str>,
    credentials: &Credentials,
) -> Result<ApiChatModel> {
    let config = ChatModelConfig::resolve(name, base_url, credentials)?;
    ApiChatModel::new(config, Arc::new(PriceTable::builtin()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        let cases = [
            ("http://127.0.0.1:8080/v1/", true),
            ("http://localhost:11434/v1/", true),
            ("http://[::1]:8080/v1/", true),
            ("http://127.0.0.2/", true),
            ("https://api.openai.com/v1/", false),
            ("http://10.0.0.1:8080/", false),
        ];
        for (endpoint, expected) in cases {
            assert_eq!(is_loopback(endpoint), expected, "{endpoint}");
        }
    }

    #[test]
    fn provider_messages() {
        let cases = [
            (
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                "slow down",
            ),
            (
                r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
                "overloaded",
            ),
            (r#"[{"error":{"message":"gemini list"}}]"#, "gemini list"),
            ("plain text body", "plain text body"),
        ];
        for (body, expected) in cases {
            assert_eq!(provider_message(body), expected);
        }
    }
}
