//! Parsing each CLI's JSONL event stream into [`AgentEvent`]s.
//!
//! Shapes are those of claude 2.1.330 (`stream-json`), codex 0.169.0 (`exec --json`),
//! gemini 0.61.0 (`-o stream-json`) and copilot 1.0.102 (`--output-format json`), as
//! recorded in `tests/fixtures/agent-events/`. Unknown event types are ignored, so a newer
//! CLI that adds events keeps working; lines that are not JSON are ignored too (some CLIs
//! print warnings on stdout).

use serde_json::Value;

use super::{AgentCli, AgentEvent};
use crate::price::{Cost, Usage};

/// Turns lines of one run's stdout into events, and remembers what the outcome needs.
#[derive(Debug)]
pub struct EventParser {
    cli: AgentCli,
    pub(crate) session_id: Option<String>,
    /// Text since the last tool use: the candidate final answer when no result event says it.
    pub(crate) trailing_text: String,
    pub(crate) result: Option<(String, Option<Usage>, Cost, bool)>,
    pub(crate) step_usage: Option<Usage>,
    pub(crate) fatal_errors: Vec<String>,
    pub(crate) tool_calls: u32,
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn u64_field(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Tool output as text: a string, or the text blocks of a content array.
fn output_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|block| {
                str_field(block, "text").map_or_else(|| block.to_string(), ToString::to_string)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

/// Claude's usage object: `input_tokens` excludes cache reads and writes, which we count in.
fn claude_usage(usage: &Value) -> Usage {
    let cached = u64_field(usage, "cache_read_input_tokens");
    Usage {
        input_tokens: u64_field(usage, "input_tokens")
            + cached
            + u64_field(usage, "cache_creation_input_tokens"),
        output_tokens: u64_field(usage, "output_tokens"),
        cached_input_tokens: cached,
    }
}

impl EventParser {
    pub fn new(cli: AgentCli) -> Self {
        Self {
            cli,
            session_id: None,
            trailing_text: String::new(),
            result: None,
            step_usage: None,
            fatal_errors: Vec::new(),
            tool_calls: 0,
        }
    }

    /// Events for one stdout line (none for blank, non-JSON or uninteresting lines).
    pub fn parse_line(&mut self, line: &str) -> Vec<AgentEvent> {
        let line = line.trim();
        if !line.starts_with('{') {
            return Vec::new();
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return Vec::new();
        };
        let events = match self.cli {
            AgentCli::Claude => Self::claude(&value),
            AgentCli::Codex => Self::codex(&value),
            AgentCli::Gemini => self.gemini(&value),
            AgentCli::Copilot => {
                if let Some(session) = str_field(&value, "sessionId") {
                    self.session_id = Some(session.to_string());
                }
                self.copilot(&value)
            }
        };
        for event in &events {
            self.remember(event);
        }
        events
    }

    /// Account for an event that did not come from a stdout line (copilot's usage file).
    pub(crate) fn parse_event(&mut self, event: &AgentEvent) {
        self.remember(event);
    }

    fn remember(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::Started { session_id, .. } => {
                if session_id.is_some() {
                    self.session_id.clone_from(session_id);
                }
            }
            AgentEvent::Text { text } => self.trailing_text.push_str(text),
            AgentEvent::ToolUse { .. } => {
                self.tool_calls += 1;
                self.trailing_text.clear();
            }
            AgentEvent::Usage { usage } => self
                .step_usage
                .get_or_insert_with(Usage::default)
                .add(*usage),
            AgentEvent::Result {
                text,
                usage,
                cost,
                is_error,
                ..
            } => {
                self.result = Some((text.clone(), *usage, *cost, *is_error));
                if *is_error {
                    // An error result without text (copilot) still fails the run; the
                    // message then comes from an earlier error event or stderr.
                    self.fatal_errors.push(text.clone());
                }
            }
            AgentEvent::Error {
                message,
                fatal: true,
            } => self.fatal_errors.push(message.clone()),
            AgentEvent::Spawned { .. }
            | AgentEvent::ToolResult { .. }
            | AgentEvent::Error { fatal: false, .. } => {}
        }
    }

    fn claude(value: &Value) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        match str_field(value, "type") {
            Some("system") if str_field(value, "subtype") == Some("init") => {
                events.push(AgentEvent::Started {
                    session_id: str_field(value, "session_id").map(ToString::to_string),
                    model: str_field(value, "model").map(ToString::to_string),
                });
            }
            Some("assistant") => {
                for block in value
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match str_field(block, "type") {
                        Some("text") => events.push(AgentEvent::Text {
                            text: str_field(block, "text").unwrap_or_default().to_string(),
                        }),
                        Some("tool_use") => events.push(AgentEvent::ToolUse {
                            id: str_field(block, "id").unwrap_or_default().to_string(),
                            name: str_field(block, "name").unwrap_or_default().to_string(),
                            input: block.get("input").cloned().unwrap_or(Value::Null),
                        }),
                        _ => {}
                    }
                }
            }
            Some("user") => {
                for block in value
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if str_field(block, "type") == Some("tool_result") {
                        events.push(AgentEvent::ToolResult {
                            id: str_field(block, "tool_use_id")
                                .unwrap_or_default()
                                .to_string(),
                            output: output_text(block.get("content")),
                            is_error: block
                                .get("is_error")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        });
                    }
                }
            }
            Some("result") => {
                let is_error = value
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    || str_field(value, "subtype")
                        .is_some_and(|subtype| subtype.starts_with("error"));
                let mut text = str_field(value, "result").unwrap_or_default().to_string();
                if let Some(errors) = value.get("errors").and_then(Value::as_array)
                    && !errors.is_empty()
                {
                    let joined = errors
                        .iter()
                        .map(|error| output_text(Some(error)))
                        .collect::<Vec<_>>()
                        .join("; ");
                    text = if text.is_empty() {
                        joined
                    } else {
                        format!("{text}; {joined}")
                    };
                }
                events.push(AgentEvent::Result {
                    text,
                    usage: value.get("usage").map(claude_usage),
                    cost: value
                        .get("total_cost_usd")
                        .and_then(Value::as_f64)
                        .map_or(Cost::Unknown, Cost::Usd),
                    num_turns: value
                        .get("num_turns")
                        .and_then(Value::as_u64)
                        .map(|turns| turns as u32),
                    is_error,
                });
            }
            _ => {}
        }
        events
    }

    fn codex(value: &Value) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        let item = value.get("item").unwrap_or(&Value::Null);
        let item_id = str_field(item, "id").unwrap_or_default().to_string();
        match (str_field(value, "type"), str_field(item, "type")) {
            (Some("thread.started"), _) => events.push(AgentEvent::Started {
                session_id: str_field(value, "thread_id").map(ToString::to_string),
                model: None,
            }),
            (
                Some("item.started"),
                Some(kind @ ("command_execution" | "mcp_tool_call" | "file_change")),
            ) => {
                events.push(AgentEvent::ToolUse {
                    id: item_id,
                    name: codex_tool_name(kind, item),
                    input: item.clone(),
                });
            }
            (Some("item.completed"), Some("agent_message")) => {
                events.push(AgentEvent::Text {
                    text: str_field(item, "text").unwrap_or_default().to_string(),
                });
            }
            (Some("item.completed"), Some("command_execution")) => {
                events.push(AgentEvent::ToolResult {
                    id: item_id,
                    output: str_field(item, "aggregated_output")
                        .unwrap_or_default()
                        .to_string(),
                    is_error: item
                        .get("exit_code")
                        .and_then(Value::as_i64)
                        .is_some_and(|code| code != 0)
                        || str_field(item, "status") == Some("failed"),
                });
            }
            (Some("item.completed"), Some("file_change" | "mcp_tool_call")) => {
                events.push(AgentEvent::ToolResult {
                    id: item_id,
                    output: item
                        .get("changes")
                        .or_else(|| item.get("result"))
                        .map(Value::to_string)
                        .unwrap_or_default(),
                    is_error: str_field(item, "status") == Some("failed"),
                });
            }
            (Some("item.completed"), Some("error")) => events.push(AgentEvent::Error {
                message: str_field(item, "message").unwrap_or_default().to_string(),
                fatal: false,
            }),
            (Some("turn.completed"), _) => {
                let usage = value.get("usage").unwrap_or(&Value::Null);
                events.push(AgentEvent::Usage {
                    usage: Usage {
                        input_tokens: u64_field(usage, "input_tokens"),
                        output_tokens: u64_field(usage, "output_tokens"),
                        cached_input_tokens: u64_field(usage, "cached_input_tokens"),
                    },
                });
            }
            (Some("turn.failed"), _) => events.push(AgentEvent::Error {
                message: value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("turn failed")
                    .to_string(),
                fatal: true,
            }),
            (Some("error"), _) => events.push(AgentEvent::Error {
                message: str_field(value, "message").unwrap_or_default().to_string(),
                fatal: false,
            }),
            _ => {}
        }
        events
    }

    fn gemini(&self, value: &Value) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        match str_field(value, "type") {
            Some("init") => events.push(AgentEvent::Started {
                session_id: str_field(value, "session_id").map(ToString::to_string),
                model: str_field(value, "model").map(ToString::to_string),
            }),
            Some("message") if str_field(value, "role") == Some("assistant") => {
                events.push(AgentEvent::Text {
                    text: output_text(value.get("content")),
                });
            }
            Some("tool_use") => events.push(AgentEvent::ToolUse {
                id: str_field(value, "tool_id").unwrap_or_default().to_string(),
                name: str_field(value, "tool_name")
                    .unwrap_or_default()
                    .to_string(),
                input: value.get("parameters").cloned().unwrap_or(Value::Null),
            }),
            Some("tool_result") => events.push(AgentEvent::ToolResult {
                id: str_field(value, "tool_id").unwrap_or_default().to_string(),
                output: output_text(
                    value
                        .get("output")
                        .or_else(|| value.pointer("/error/message")),
                ),
                is_error: str_field(value, "status").is_some_and(|status| status != "success"),
            }),
            Some("error") => events.push(AgentEvent::Error {
                message: str_field(value, "message").unwrap_or_default().to_string(),
                fatal: str_field(value, "severity") != Some("warning"),
            }),
            Some("result") => {
                let stats = value.get("stats").unwrap_or(&Value::Null);
                let is_error = str_field(value, "status").is_some_and(|status| status != "success");
                let text = value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map_or_else(|| self.trailing_text.clone(), ToString::to_string);
                events.push(AgentEvent::Result {
                    text,
                    usage: stats.get("input_tokens").map(|_| Usage {
                        input_tokens: u64_field(stats, "input_tokens"),
                        output_tokens: u64_field(stats, "output_tokens"),
                        cached_input_tokens: u64_field(stats, "cached"),
                    }),
                    cost: Cost::Unknown,
                    num_turns: None,
                    is_error,
                });
            }
            _ => {}
        }
        events
    }

    fn copilot(&self, value: &Value) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        let data = value.get("data").unwrap_or(value);
        match str_field(value, "type") {
            Some("session.start") => events.push(AgentEvent::Started {
                session_id: str_field(data, "sessionId").map(ToString::to_string),
                model: str_field(data, "selectedModel").map(ToString::to_string),
            }),
            Some("assistant.message") => {
                let content = str_field(data, "content").unwrap_or_default();
                if !content.is_empty() {
                    events.push(AgentEvent::Text {
                        text: content.to_string(),
                    });
                }
                for request in data
                    .get("toolRequests")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    events.push(AgentEvent::ToolUse {
                        id: str_field(request, "toolCallId")
                            .unwrap_or_default()
                            .to_string(),
                        name: str_field(request, "name").unwrap_or_default().to_string(),
                        input: request.get("arguments").cloned().unwrap_or(Value::Null),
                    });
                }
            }
            Some("tool.execution_complete") => events.push(AgentEvent::ToolResult {
                id: str_field(data, "toolCallId")
                    .unwrap_or_default()
                    .to_string(),
                output: data
                    .pointer("/result/content")
                    .or_else(|| data.pointer("/error/message"))
                    .map(|value| output_text(Some(value)))
                    .unwrap_or_default(),
                is_error: data.get("success").and_then(Value::as_bool) == Some(false),
            }),
            Some("assistant.usage") => events.push(AgentEvent::Usage {
                usage: Usage {
                    input_tokens: u64_field(data, "inputTokens"),
                    output_tokens: u64_field(data, "outputTokens"),
                    cached_input_tokens: u64_field(data, "cacheReadTokens"),
                },
            }),
            Some("session.error") => events.push(AgentEvent::Error {
                message: str_field(data, "message")
                    .unwrap_or("session error")
                    .to_string(),
                fatal: true,
            }),
            Some("result") => {
                let exit_code = value.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                events.push(AgentEvent::Result {
                    text: self.trailing_text.clone(),
                    usage: None,
                    cost: Cost::Unknown,
                    num_turns: None,
                    is_error: exit_code != 0,
                });
            }
            _ => {}
        }
        events
    }
}

fn codex_tool_name(kind: &str, item: &Value) -> String {
    match kind {
        "mcp_tool_call" => format!(
            "mcp__{}__{}",
            str_field(item, "server").unwrap_or_default(),
            str_field(item, "tool").unwrap_or_default()
        ),
        other => other.to_string(),
    }
}
