//! What a scripted fake model answers: protocol-neutral turns and injected faults.
//!
//! A [`Reply`] says *what* the model does (text, tool calls, usage) or *which fault* the
//! server injects; the fake renders it in whichever wire protocol the request arrived in.

use std::time::Duration;

use serde_json::Value;

/// Token counts the fake reports for one turn.
///
/// `input_tokens` is the whole prompt, `cached_input_tokens` the part of it served from a
/// prompt cache. Each protocol splits these the way its real API does (Anthropic reports the
/// uncached remainder in `input_tokens` and the cached part in `cache_read_input_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSpec {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
}

impl Default for UsageSpec {
    fn default() -> Self {
        Self {
            input_tokens: 100,
            cached_input_tokens: 10,
            output_tokens: 20,
        }
    }
}

/// One tool call the scripted model makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallSpec {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// One model turn: text (sent as several stream chunks) and/or tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub text_chunks: Vec<String>,
    pub tool_calls: Vec<ToolCallSpec>,
    pub usage: UsageSpec,
}

impl Turn {
    pub fn text(&self) -> String {
        self.text_chunks.concat()
    }
}

/// A fault the server injects instead of (or in the middle of) a normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An HTTP error status with an optional `retry-after` header value and a
    /// protocol-shaped error body (or `body`, when given).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<Value>,
    },
    /// Start the answer normally, then drop the connection after `after_frames` frames
    /// (SSE events for a stream, or half the JSON body for a non-streaming call).
    CutStream {
        turn: Turn,
        after_frames: usize,
        /// Where the stream stops: between events, or halfway through the next one.
        cut: Cut,
    },
}

/// Where a cut stream stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// After a whole event; the connection is reset.
    BetweenEvents,
    /// Halfway through the next event (its `data:` line unfinished); the connection is reset.
    InsideEventReset,
    /// Halfway through the next event, then the body ends normally, as a proxy or a server
    /// that gives up mid-write may do: the client sees a clean end with half an event.
    InsideEventClosed,
}

/// What the fake does with one model request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Turn(Turn),
    Fault(Fault),
    /// Wait before sending the first byte (response headers), then answer with the inner reply.
    Delayed {
        delay: Duration,
        reply: Box<Reply>,
    },
}

impl Reply {
    /// A plain text answer, streamed in chunks of about 8 characters.
    pub fn text(text: impl Into<String>) -> Self {
        let text: String = text.into();
        Reply::Turn(Turn {
            text_chunks: chunk_text(&text),
            tool_calls: Vec::new(),
            usage: UsageSpec::default(),
        })
    }

    /// One tool call with an id derived from the tool name.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        let name: String = name.into();
        let id = format!(
            "call_{}",
            name.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        Self::tool_calls(vec![ToolCallSpec {
            id,
            name,
            arguments,
        }])
    }

    /// Several tool calls in one turn.
    pub fn tool_calls(calls: Vec<ToolCallSpec>) -> Self {
        Reply::Turn(Turn {
            text_chunks: Vec::new(),
            tool_calls: calls,
            usage: UsageSpec::default(),
        })
    }

    /// An HTTP error status.
    pub fn status(status: u16) -> Self {
        Reply::Fault(Fault::Status {
            status,
            retry_after: None,
            body: None,
        })
    }

    /// An HTTP error status with this exact JSON body (e.g. one that echoes a key back).
    pub fn status_with_body(status: u16, body: Value) -> Self {
        Reply::Fault(Fault::Status {
            status,
            retry_after: None,
            body: Some(body),
        })
    }

    /// A 429 with a `retry-after` header (seconds, as the header allows).
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Reply::Fault(Fault::Status {
            status: 429,
            retry_after: Some(retry_after_seconds.to_string()),
            body: None,
        })
    }

    /// The given answer, cut off after `after_frames` frames.
    #[must_use]
    pub fn cut(self, after_frames: usize) -> Self {
        self.cut_at(after_frames, Cut::BetweenEvents)
    }

    /// The given answer, cut off after `after_frames` whole frames and half of the next
    /// (streams only; a plain body is cut in half as with [`Reply::cut`]).
    #[must_use]
    pub fn cut_at(self, after_frames: usize, cut: Cut) -> Self {
        match self {
            Reply::Turn(turn) => Reply::Fault(Fault::CutStream {
                turn,
                after_frames,
                cut,
            }),
            other => other,
        }
    }

    /// Delay the first byte of this reply.
    #[must_use]
    pub fn delayed(self, delay: Duration) -> Self {
        Reply::Delayed {
            delay,
            reply: Box::new(self),
        }
    }

    /// Set the usage reported for this turn.
    #[must_use]
    pub fn with_usage(
        mut self,
        input_tokens: u64,
        cached_input_tokens: u64,
        output_tokens: u64,
    ) -> Self {
        let usage = UsageSpec {
            input_tokens,
            cached_input_tokens,
            output_tokens,
        };
        match &mut self {
            Reply::Turn(turn) | Reply::Fault(Fault::CutStream { turn, .. }) => turn.usage = usage,
            Reply::Delayed { reply, .. } => {
                **reply = reply.as_ref().clone().with_usage(
                    input_tokens,
                    cached_input_tokens,
                    output_tokens,
                );
            }
            Reply::Fault(Fault::Status { .. }) => {}
        }
        self
    }

    /// Add text before the tool calls of this turn.
    #[must_use]
    pub fn with_text(mut self, text: &str) -> Self {
        if let Reply::Turn(turn) = &mut self {
            turn.text_chunks = chunk_text(text);
        }
        self
    }
}

fn chunk_text(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(8)
        .map(|chunk| chunk.iter().collect())
        .collect()
}
