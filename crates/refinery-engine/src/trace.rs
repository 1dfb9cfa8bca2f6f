//! Statistics of a builder's run, computed from its event stream.
//!
//! The trace analyzer model gets these numbers and a condensed trace, and returns lessons; the
//! numbers themselves are never the model's to make up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use refinery_llm::AgentEvent;
use serde::{Deserialize, Serialize};

/// Most characters of condensed trace sent to the analyzer.
const CONDENSED_LIMIT: usize = 24 * 1024;

/// What the builder did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStats {
    /// Tool calls in total.
    pub tool_calls: u32,
    /// Tool calls by tool name.
    pub by_tool: BTreeMap<String, u32>,
    /// Tool results marked as errors.
    pub tool_errors: u32,
    /// Errors the agent itself reported (fatal or not).
    pub agent_errors: u32,
    /// Calls identical (same tool, same input) to an earlier call: retries and loops.
    pub repeated_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Wall-clock time in milliseconds.
    pub duration_ms: u64,
}

/// Counts `events`.
pub fn stats(events: &[AgentEvent], duration: Duration) -> TraceStats {
    let mut stats = TraceStats {
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        ..TraceStats::default()
    };
    let mut seen = BTreeSet::new();
    let mut result_usage = None;
    let mut step_input = 0;
    let mut step_output = 0;
    for event in events {
        match event {
            AgentEvent::ToolUse { name, input, .. } => {
                stats.tool_calls += 1;
                *stats.by_tool.entry(name.clone()).or_default() += 1;
                if !seen.insert(format!("{name}\u{0}{input}")) {
                    stats.repeated_calls += 1;
                }
            }
            AgentEvent::ToolResult { is_error: true, .. } => stats.tool_errors += 1,
            AgentEvent::Error { .. } => stats.agent_errors += 1,
            AgentEvent::Usage { usage } => {
                step_input += usage.input_tokens;
                step_output += usage.output_tokens;
            }
            AgentEvent::Result { usage, .. } => result_usage = *usage,
            _ => {}
        }
    }
    // A final result's totals win over the sum of steps (the CLIs that give both give
    // cumulative totals there).
    match result_usage {
        Some(usage) if usage.input_tokens + usage.output_tokens > 0 => {
            stats.input_tokens = usage.input_tokens;
            stats.output_tokens = usage.output_tokens;
        }
        _ => {
            stats.input_tokens = step_input;
            stats.output_tokens = step_output;
        }
    }
    stats
}

/// A compact, bounded transcript of the run for the analyzer: one line per event.
pub fn condensed(events: &[AgentEvent]) -> String {
    let mut out = String::new();
    for event in events {
        let line = match event {
            AgentEvent::Text { text } => format!("say: {}", clip(text, 300)),
            AgentEvent::ToolUse { name, input, .. } => {
                format!("call {name} {}", clip(&input.to_string(), 200))
            }
            AgentEvent::ToolResult {
                output, is_error, ..
            } => format!(
                "{} {}",
                if *is_error { "error" } else { "result" },
                clip(output, 200)
            ),
            AgentEvent::Error { message, fatal } => {
                format!(
                    "agent error{}: {}",
                    if *fatal { " (fatal)" } else { "" },
                    clip(message, 300)
                )
            }
            AgentEvent::Result { text, .. } => format!("final: {}", clip(text, 500)),
            AgentEvent::Spawned { .. } | AgentEvent::Started { .. } | AgentEvent::Usage { .. } => {
                continue;
            }
        };
        if out.len() + line.len() > CONDENSED_LIMIT {
            out.push_str("[… later events cut]\n");
            break;
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

fn clip(text: &str, limit: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= limit {
        flat
    } else {
        let cut: String = flat.chars().take(limit).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refinery_llm::{Cost, Usage};
    use serde_json::json;

    #[test]
    fn counts_calls_errors_repeats_and_tokens() {
        let call = |id: &str, path: &str| AgentEvent::ToolUse {
            id: id.to_owned(),
            name: "read_file".to_owned(),
            input: json!({"path": path}),
        };
        let events = vec![
            AgentEvent::Usage {
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                    ..Usage::default()
                },
            },
            call("1", "a"),
            AgentEvent::ToolResult {
                id: "1".to_owned(),
                output: "`a` does not exist".to_owned(),
                is_error: true,
            },
            call("2", "a"),
            call("3", "b"),
            AgentEvent::Usage {
                usage: Usage {
                    input_tokens: 20,
                    output_tokens: 7,
                    ..Usage::default()
                },
            },
            AgentEvent::Result {
                text: "done".to_owned(),
                usage: None,
                cost: Cost::Unknown,
                num_turns: None,
                is_error: false,
            },
        ];
        let stats = stats(&events, Duration::from_millis(1500));
        assert_eq!(stats.tool_calls, 3);
        assert_eq!(stats.by_tool["read_file"], 3);
        assert_eq!(stats.tool_errors, 1);
        assert_eq!(stats.repeated_calls, 1);
        assert_eq!((stats.input_tokens, stats.output_tokens), (30, 12));
        assert_eq!(stats.duration_ms, 1500);
        let text = condensed(&events);
        assert!(text.contains("error `a` does not exist"), "{text}");
        assert!(text.ends_with("final: done\n"), "{text}");
    }
}
