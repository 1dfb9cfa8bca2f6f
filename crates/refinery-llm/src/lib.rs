//! Refinery's model access: how the loop reaches a model.
//!
//! - [`ChatModel`] / [`ApiChatModel`]: API providers (Anthropic Messages, OpenAI Responses
//!   and Chat Completions, Gemini, xAI, OpenRouter, any OpenAI-compatible server such as
//!   llama.cpp or Ollama) with streaming, tool calls, JSON-schema structured output
//!   validated on our side ([`chat_structured`]), retries with backoff, timeouts, a
//!   deadline, cancellation, and usage and cost per call ([`PriceTable`]).
//! - [`AgentRunner`]: the headless agent CLIs (`claude -p`, `codex exec`, `gemini -p`,
//!   `copilot -p`) as subprocesses, their event streams parsed into one [`AgentEvent`].
//! - [`Credentials`]: keys from an explicit environment map and `.env` files.
//! - [`doctor`]: what is installed, which keys are set, which local servers answer, and the
//!   default backend ([`doctor::default_backend`]).
//! - [`local`]: local model servers (llama.cpp, Ollama, LM Studio, vLLM): where they listen,
//!   what they serve, their context.
//!
//! It must never print (logs go through `tracing`), never mutate the process environment,
//! and never let a key value reach a log line, an error, an event or a file: keys live in
//! [`ApiKey`], whose `Display` and `Debug` are masked.

pub mod agent;
mod chat;
mod credentials;
pub mod doctor;
mod error;
pub mod local;
mod model;
mod price;
mod provider;
mod retry;
mod schema_dialect;
mod secret;
mod structured;

pub use agent::{
    AgentCli, AgentEvent, AgentOutcome, AgentRequest, AgentRunner, EventParser, MAX_ARGUMENT,
    PASS_ENV_VARIABLE,
};
pub use chat::{
    CallOptions, ChatModel, ChatRequest, ChatResponse, FinishReason, Message, ResponseSchema,
    StreamEvent, StreamSink, ToolCall, ToolSpec,
};
pub use credentials::{Credentials, KEY_VARIABLES, KeySource, KeyStatus, SETTING_VARIABLES};
pub use error::{Error, Result};
pub use model::{ModelId, Provider, WireApi, endpoint_for};
pub use price::{AnthropicUsage, Cost, Price, PriceTable, Usage};
pub use provider::{ApiChatModel, ChatModelConfig, open_chat_model};
pub use retry::{RetryPolicy, retry_after_from_headers};
pub use schema_dialect::wire_schema;
pub use secret::ApiKey;
pub use structured::{StructuredResponse, chat_structured, prepare_validators};
