//! Refinery's test kit (dev only, never published, only ever a `[dev-dependencies]` entry).
//!
//! - [`FakeModelServer`]: one scripted HTTP server on `127.0.0.1:0` speaking Anthropic
//!   Messages, OpenAI Chat Completions and Responses, and Gemini (`generateContent`,
//!   `streamGenerateContent?alt=sse`), streaming and not, with tool calls, usage, and
//!   injected faults (429 + `retry-after`, 500, 529, cut streams, a slow first byte). It
//!   records every request for assertions.
//! - The same server's media endpoints ([`media`]): OpenAI Images and Speech, Gemini image
//!   and speech output, Imagen, Veo (long-running operations and file downloads), xAI
//!   images and video jobs; requests checked as the real APIs check them, with faults
//!   ([`MediaFault`]: 429/5xx, safety blocks, jobs that never finish, malformed base64,
//!   wrong bytes, expired download links).
//! - [`safeguard`]: the Anthropic API's server-side review of tool calls, which Claude Code's
//!   auto permission mode waits for, answered only when a request asks for it.
//! - [`TestContext`]: a throwaway HOME, project folder, state dir and TMPDIR.
//! - [`agent_cli`]: find the real agent CLIs and build the environment that points each of
//!   them at a fake.
//! - [`chromium`]: headless Chromium over the DevTools protocol, for rendered pages.
//! - [`skip`]: the one way a test skips for a missing tool: visibly, and never under `CI=true`.
//!
//! It must never listen on, or send to, anything but the loopback address, and never read
//! or record a real credential.

pub mod agent_cli;
pub mod chromium;
mod context;
pub mod media;
mod reply;
pub mod safeguard;
mod server;
pub mod skip;
mod wire;

pub use context::TestContext;
pub use media::MediaFault;
pub use reply::{Cut, Fault, Reply, ToolCallSpec, Turn, UsageSpec};
pub use safeguard::SafeguardVerdict;
pub use server::{FakeModelServer, RecordedRequest, fingerprint};
pub use wire::Protocol;
