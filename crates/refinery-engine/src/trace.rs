//! Statistics of a builder's run, computed from its event stream.
//!
//! The trace analyzer model gets these numbers and a condensed trace, and returns lessons; the
//! numbers themselves are never the model's to make up. A lesson whose claims the numbers
//! contradict (failed tool calls when there were none, "3 Bash calls" when there were 0) is
//! dropped before it can reach the next builder ([`consistent_lessons`]): small models have
//! been seen to quote their prompt's example instead of the trace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use refinery_llm::AgentEvent;
use serde::{Deserialize, Serialize};

use crate::outputs::TraceLessons;

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

/// Tool names lessons mention, beyond the ones the trace itself holds: the API builder's tools
/// and the agent CLIs' (only names no sentence would use as an ordinary word).
const KNOWN_TOOLS: &[&str] = &[
    "read_file",
    "write_file",
    "list_files",
    "delete_file",
    "bash",
    "glob",
    "grep",
    "multiedit",
    "notebookread",
    "webfetch",
    "websearch",
    "shell",
];

/// `lessons` without the ones the statistics contradict, and the dropped ones (each with
/// why), for the round's record.
pub fn consistent_lessons(
    lessons: TraceLessons,
    stats: &TraceStats,
) -> (TraceLessons, Vec<String>) {
    let mut dropped = Vec::new();
    let mut keep = |items: Vec<String>| -> Vec<String> {
        items
            .into_iter()
            .filter(|lesson| match contradiction(lesson, stats) {
                Some(why) => {
                    dropped.push(format!("{lesson} [dropped: {why}]"));
                    false
                }
                None => true,
            })
            .collect()
    };
    let kept = TraceLessons {
        keep_doing: keep(lessons.keep_doing),
        stop_doing: keep(lessons.stop_doing),
        critical_errors: keep(lessons.critical_errors),
    };
    (kept, dropped)
}

/// Why `lesson` cannot be true of a run with `stats`, if it cannot.
fn contradiction(lesson: &str, stats: &TraceStats) -> Option<String> {
    let words: Vec<String> = lesson
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    let is_call = |word: &str| matches!(word, "call" | "calls" | "called" | "calling");
    let tool_named = |word: &str| {
        KNOWN_TOOLS.contains(&word) || stats.by_tool.keys().any(|tool| tool.to_lowercase() == word)
    };
    let mentions_calls = words
        .iter()
        .any(|word| is_call(word) || word == "tool" || word == "tools" || tool_named(word));
    if stats.tool_calls == 0 && mentions_calls {
        return Some("it speaks of tool calls; the builder made none".to_owned());
    }
    if let Some(why) = counted_calls(&words, stats) {
        return Some(why);
    }
    let failing =
        |word: &str| word.starts_with("fail") || word.starts_with("error") || word == "errored";
    if stats.tool_errors == 0
        && stats.agent_errors == 0
        && mentions_calls
        && words.iter().any(|word| failing(word))
    {
        return Some("it speaks of failed calls; no call failed".to_owned());
    }
    let repeating =
        |word: &str| word.starts_with("repeat") || word.starts_with("retr") || word == "identical";
    if stats.repeated_calls == 0 && mentions_calls && words.iter().any(|word| repeating(word)) {
        return Some("it speaks of repeated calls; no call was repeated".to_owned());
    }
    None
}

/// A count of calls the lesson states ("3 failed Bash calls", "12 tool calls") that differs
/// from the computed one.
fn counted_calls(words: &[String], stats: &TraceStats) -> Option<String> {
    for (index, word) in words.iter().enumerate() {
        let Ok(claimed) = word.parse::<u32>() else {
            continue;
        };
        // The count's noun is within the next three words: `N [failed] [Bash] calls`.
        let window = &words[index + 1..words.len().min(index + 5)];
        let Some(end) = window
            .iter()
            .position(|word| word == "call" || word == "calls")
        else {
            continue;
        };
        let between = &window[..end];
        let failed = between
            .iter()
            .any(|word| word.starts_with("fail") || word.starts_with("error"));
        let repeated = between
            .iter()
            .any(|word| word.starts_with("repeat") || word == "identical" || word == "duplicate");
        let tool = between.iter().find(|word| {
            stats
                .by_tool
                .keys()
                .any(|tool| tool.to_lowercase() == **word)
                || KNOWN_TOOLS.contains(&word.as_str())
        });
        let (actual, what) = if failed {
            (stats.tool_errors, "failed calls".to_owned())
        } else if repeated {
            (stats.repeated_calls, "repeated calls".to_owned())
        } else if let Some(tool) = tool {
            let count = stats
                .by_tool
                .iter()
                .find(|(name, _)| name.to_lowercase() == **tool)
                .map_or(0, |(_, count)| *count);
            (count, format!("{tool} calls"))
        } else {
            (stats.tool_calls, "tool calls".to_owned())
        };
        if claimed != actual {
            return Some(format!(
                "it counts {claimed} {what}; the trace has {actual}"
            ));
        }
    }
    None
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

    #[test]
    fn lessons_the_statistics_contradict_are_dropped() {
        let idle = TraceStats::default();
        let busy = TraceStats {
            tool_calls: 5,
            by_tool: [("write_file".to_owned(), 3), ("read_file".to_owned(), 2)].into(),
            tool_errors: 1,
            repeated_calls: 0,
            ..TraceStats::default()
        };
        let clean = TraceStats {
            tool_errors: 0,
            ..busy.clone()
        };
        let cases = [
            // The trial's lesson, quoted from the prompt's example, with no call made at all.
            (
                &idle,
                "Check the module path first [3 failed Bash calls: \"npm test\" exited 1]",
                false,
            ),
            (&idle, "Avoid repeating the same tool call", false),
            (&idle, "Use write_file to create the page", false),
            (&idle, "Claimed a file was written without writing it", true),
            (&idle, "Keep the headline short", true),
            (
                &busy,
                "Read the files before writing them [2 read_file calls]",
                true,
            ),
            (&busy, "Stop guessing paths [3 read_file calls]", false),
            (&busy, "Made 5 tool calls where 2 would do", true),
            (&busy, "Made 12 tool calls where 2 would do", false),
            (
                &busy,
                "One write_file call failed on a bad path [1 failed call]",
                true,
            ),
            (&busy, "Check paths [4 failed calls]", false),
            (
                &clean,
                "The write_file call failed; check paths first",
                false,
            ),
            (&clean, "Wrote the page in one write_file call", true),
            (
                &busy,
                "Retried the same read_file call over and over",
                false,
            ),
        ];
        for (stats, lesson, kept) in cases {
            let (_, dropped) = consistent_lessons(
                TraceLessons {
                    keep_doing: vec![lesson.to_owned()],
                    ..TraceLessons::default()
                },
                stats,
            );
            assert_eq!(dropped.is_empty(), kept, "{lesson}: {dropped:?}");
        }
        let (kept, dropped) = consistent_lessons(
            TraceLessons {
                keep_doing: vec!["Keep it short".to_owned()],
                stop_doing: vec!["3 failed Bash calls".to_owned()],
                critical_errors: vec!["Skipped verification".to_owned()],
            },
            &idle,
        );
        assert_eq!(kept.keep_doing, vec!["Keep it short"]);
        assert!(kept.stop_doing.is_empty());
        assert_eq!(kept.critical_errors, vec!["Skipped verification"]);
        assert_eq!(
            dropped,
            vec!["3 failed Bash calls [dropped: it speaks of tool calls; the builder made none]"]
        );
    }
}
