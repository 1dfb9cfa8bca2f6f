//! The [`ChatModel`] trait and the provider-neutral request and response types.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::ModelId;
use crate::price::{Cost, Usage};
use crate::retry::RetryPolicy;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        text: String,
    },
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of running a tool the model called.
    ToolResult {
        call_id: String,
        name: String,
        content: String,
    },
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Message::User { text: text.into() }
    }
}

/// A tool the model may call: a name, what it does, and a JSON schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// JSON-schema structured output: the provider is asked to follow `schema`, and we
/// validate the answer ourselves (see [`crate::chat_structured`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseSchema {
    pub name: String,
    pub schema: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatRequest {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub response_schema: Option<ResponseSchema>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

impl ChatRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            messages: vec![Message::user(prompt)],
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    #[must_use]
    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    #[must_use]
    pub fn with_schema(mut self, name: impl Into<String>, schema: Value) -> Self {
        self.response_schema = Some(ResponseSchema {
            name: name.into(),
            schema,
        });
        self
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    MaxTokens,
    Other,
}

/// A finished call: the answer, what it used and cost, and how many attempts it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatResponse {
    pub model: ModelId,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub cost: Cost,
    /// HTTP attempts, retries included.
    pub attempts: u32,
}

/// What a streaming call reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of answer text.
    TextDelta(String),
    /// The attempt failed after some output and the call is being retried: discard any
    /// text received so far; the next attempt starts from the beginning.
    Retrying {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
}

/// Limits and control for one call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Per attempt: time allowed until the answer (non-streaming) or until each stream
    /// event (streaming, so a slow first byte and an idle stream both count).
    pub request_timeout: Duration,
    /// Overall limit across all attempts and waits.
    pub deadline: Option<Duration>,
    pub retry: RetryPolicy,
    /// Extra attempts for structured output that fails validation.
    pub schema_retries: u32,
    pub cancel: CancellationToken,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_mins(2),
            deadline: Some(Duration::from_mins(10)),
            retry: RetryPolicy::default(),
            schema_retries: 2,
            cancel: CancellationToken::new(),
        }
    }
}

/// Callback receiving [`StreamEvent`]s.
pub type StreamSink<'a> = &'a mut (dyn FnMut(StreamEvent) + Send);

/// A model reached over an HTTP API.
///
/// Contract for implementors:
/// - Retries: retryable failures ([`crate::Error::is_retryable`]: 408/409/429/5xx/529,
///   connection errors, cut streams, per-attempt timeouts) are retried per
///   `options.retry`, waiting `retry-after` when the server sends it, else exponential
///   backoff with jitter. Other failures return at once.
/// - Time: each attempt is bounded by `options.request_timeout`; the whole call, waits
///   included, by `options.deadline` ([`crate::Error::DeadlineExceeded`]).
/// - Cancellation: when `options.cancel` fires, the call returns [`crate::Error::Cancelled`]
///   promptly, dropping the in-flight request.
/// - Usage and cost: the response carries the usage of the successful attempt and its cost
///   from the price table ([`Cost::Unknown`] when the model is not listed).
/// - Secrets: no error or log line contains the key, and nothing secret leaves in a request:
///   [`ApiChatModel`](crate::ApiChatModel) passes every text a model would read (the system
///   prompt, messages, tool results, earlier tool calls' arguments) through the process
///   scrubber at this boundary, whoever built the request; tool definitions and the response
///   schema are Refinery's own text.
pub trait ChatModel: Send + Sync {
    fn id(&self) -> &ModelId;

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<ChatResponse>>;

    /// Like [`ChatModel::chat`], reporting text as it arrives.
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        options: &'a CallOptions,
        sink: StreamSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse>>;
}
