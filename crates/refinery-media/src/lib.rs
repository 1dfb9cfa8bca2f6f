//! Refinery's media tools: generate images, video and speech, and look at media with a
//! vision model, over the providers' HTTP APIs (OpenAI, Google Gemini / Imagen / Veo, xAI,
//! and Anthropic for vision). Used by `refinery mcp media` and `refinery media`.
//!
//! - [`Media::generate`] / [`Media::read`] take the MCP tools' arguments
//!   ([`GenerateMediaParams`], [`ReadMediaParams`]) and always return one
//!   [`MediaResponse`] shape, success or failure.
//! - Long jobs (Veo, xAI video) are polled with a deadline, report progress through a
//!   [`ProgressSink`] and stop on a [`CancellationToken`].
//! - Files are written only inside the workspace, never over an existing file, whole or
//!   not at all, after their bytes were checked against the format the provider claimed.
//! - [`MediaConfig`] reads keys and base URLs the way the chat backends do, so one fake
//!   server or proxy serves both.
//!
//! It must never print (logs go through `tracing`), never read the process environment
//! (the caller passes a map), and never send a key anywhere but its own provider's auth
//! header: provider error text is masked before it is kept.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod capabilities;
mod config;
mod error;
mod format;
mod generate;
mod http;
mod inputs;
mod kinds;
mod output;
mod params;
mod progress;
mod service;
mod vision;

pub use capabilities::{MediaCapability, MediaReport};
pub use config::{MediaConfig, Timeouts};
pub use error::{Error, Result};
pub use format::{Format, FormatKind, wav_from_pcm16};
pub use kinds::{Backend, MediaMode, Task};
pub use output::DEFAULT_DIR;
pub use params::{GenerateMediaParams, MediaResponse, ReadMediaParams};
pub use progress::{NoProgress, ProgressSink, ProgressUpdate};
pub use service::Media;
pub use tokio_util::sync::CancellationToken;
