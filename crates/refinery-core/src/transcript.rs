//! Deterministic statistics from a Claude Code transcript (`~/.claude/projects/…/<id>.jsonl`),
//! for the execution-trace analyzer: tool calls by tool, failed calls, repeated calls, API
//! errors, tokens, duration and subagents.
//!
//! The transcript format is undocumented and changes between Claude Code releases, so the
//! reader is lenient by design: unknown record types pass through (they are only counted),
//! and a line that is not a JSON object is counted and reported, never fatal. Tokens are
//! counted once per API message id, because one response can be split over several
//! `assistant` lines that repeat the same usage.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How many malformed line numbers are listed (all are counted).
const MALFORMED_LINES_LISTED: usize = 10;
/// Tool names Claude Code uses to start a subagent (renamed from `Task` to `Agent`).
const SUBAGENT_TOOLS: [&str; 2] = ["Agent", "Task"];

/// Counts for one tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ToolCounts {
    /// Calls made.
    pub calls: u64,
    /// Calls whose result was an error.
    pub errors: u64,
    /// Calls identical (same input) to the call just before them: retries without a change.
    pub repeated: u64,
}

/// Tokens used, each API message counted once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
}

/// One subagent started from the transcript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubagentCall {
    /// The tool call that started it.
    pub tool_use_id: String,
    /// Its type (`refinery:round-evaluator`, `general-purpose`, …).
    pub subagent_type: String,
    /// The short description given to it.
    pub description: String,
    /// Whether its result came back as an error.
    pub failed: bool,
}

/// Everything `refinery trace` reports about one transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    /// Non-empty lines read.
    pub lines: u64,
    /// Lines that were not a JSON object.
    pub malformed_lines: u64,
    /// The first few malformed line numbers (1-based).
    pub malformed_line_numbers: Vec<u64>,
    /// Records by `type`, unknown types included.
    pub record_types: BTreeMap<String, u64>,
    /// Claude Code session ids seen.
    pub sessions: Vec<String>,
    /// Prompts typed or sent by a person or a driver (not tool results, not injected context,
    /// not messages Claude Code generated such as task notifications).
    pub prompts: u64,
    /// Distinct API responses.
    pub api_messages: u64,
    /// API errors Claude Code recorded (`isApiErrorMessage`).
    pub api_errors: u64,
    /// Tool calls by tool name.
    pub tools: BTreeMap<String, ToolCounts>,
    /// Total tool calls.
    pub tool_calls: u64,
    /// Total failed tool calls.
    pub tool_errors: u64,
    /// Total repeated identical calls.
    pub repeated_calls: u64,
    /// Tokens by kind.
    pub tokens: TokenCounts,
    /// API messages by model.
    pub models: BTreeMap<String, u64>,
    /// Subagents started.
    pub subagents: Vec<SubagentCall>,
    /// Records written inside subagents (`isSidechain`).
    pub sidechain_records: u64,
    /// First timestamp, RFC 3339.
    pub started_at: Option<String>,
    /// Last timestamp, RFC 3339.
    pub ended_at: Option<String>,
    /// Milliseconds from the first to the last timestamp.
    pub duration_ms: Option<u64>,
}

/// Reads a whole transcript. Never fails: what cannot be read is counted.
pub fn analyze(text: &str) -> TraceStats {
    let mut stats = TraceStats::default();
    let mut usage_by_message: HashMap<String, TokenCounts> = HashMap::new();
    let mut model_by_message: HashMap<String, String> = HashMap::new();
    let mut tool_names: HashMap<String, String> = HashMap::new();
    let mut previous_call: Option<(String, Value)> = None;
    let mut first: Option<OffsetDateTime> = None;
    let mut last: Option<OffsetDateTime> = None;

    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
            stats.malformed_lines += 1;
            if stats.malformed_line_numbers.len() < MALFORMED_LINES_LISTED {
                stats.malformed_line_numbers.push(index as u64 + 1);
            }
            continue;
        };
        let kind = record
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        *stats.record_types.entry(kind.to_owned()).or_default() += 1;
        if let Some(session) = record.get("sessionId").and_then(Value::as_str)
            && !stats.sessions.iter().any(|seen| seen == session)
        {
            stats.sessions.push(session.to_owned());
        }
        if record.get("isSidechain") == Some(&Value::Bool(true)) {
            stats.sidechain_records += 1;
        }
        if let Some(stamp) = record
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|raw| OffsetDateTime::parse(raw, &Rfc3339).ok())
        {
            first = Some(first.map_or(stamp, |seen| seen.min(stamp)));
            last = Some(last.map_or(stamp, |seen| seen.max(stamp)));
        }
        let message = record.get("message");
        match kind {
            "assistant" => {
                if record.get("isApiErrorMessage") == Some(&Value::Bool(true)) {
                    stats.api_errors += 1;
                    continue;
                }
                let Some(message) = message else { continue };
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    let usage = usage_of(message.get("usage"));
                    let entry = usage_by_message.entry(id.to_owned()).or_default();
                    *entry = max_usage(entry, &usage);
                    if let Some(model) = message.get("model").and_then(Value::as_str) {
                        model_by_message.insert(id.to_owned(), model.to_owned());
                    }
                }
                for block in content_blocks(message) {
                    if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                        continue;
                    }
                    let name = block
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("(unnamed)")
                        .to_owned();
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                    let counts = stats.tools.entry(name.clone()).or_default();
                    counts.calls += 1;
                    stats.tool_calls += 1;
                    let call = (name.clone(), input.clone());
                    if previous_call.as_ref() == Some(&call) {
                        counts.repeated += 1;
                        stats.repeated_calls += 1;
                    }
                    previous_call = Some(call);
                    if SUBAGENT_TOOLS.contains(&name.as_str()) {
                        let field = |key: &str| {
                            input
                                .get(key)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        stats.subagents.push(SubagentCall {
                            tool_use_id: id.to_owned(),
                            subagent_type: match field("subagent_type") {
                                kind if kind.is_empty() => "general-purpose".to_owned(),
                                kind => kind,
                            },
                            description: field("description"),
                            failed: false,
                        });
                    }
                    tool_names.insert(id.to_owned(), name);
                }
            }
            "user" => {
                let Some(message) = message else { continue };
                let is_meta = record.get("isMeta") == Some(&Value::Bool(true));
                let mut has_tool_result = false;
                for block in content_blocks(message) {
                    if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                        continue;
                    }
                    has_tool_result = true;
                    if block.get("is_error") != Some(&Value::Bool(true)) {
                        continue;
                    }
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let name = tool_names
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| "(unknown)".to_owned());
                    stats.tools.entry(name).or_default().errors += 1;
                    stats.tool_errors += 1;
                    if let Some(subagent) = stats
                        .subagents
                        .iter_mut()
                        .find(|subagent| subagent.tool_use_id == id)
                    {
                        subagent.failed = true;
                    }
                }
                let is_sidechain = record.get("isSidechain") == Some(&Value::Bool(true));
                // `origin` marks messages Claude Code wrote itself: task notifications, the
                // plan handed over after "clear context".
                let is_generated = record.get("origin").is_some_and(|origin| !origin.is_null());
                if !has_tool_result && !is_meta && !is_sidechain && !is_generated {
                    stats.prompts += 1;
                }
            }
            _ => {}
        }
    }

    stats.api_messages = usage_by_message.len() as u64;
    for usage in usage_by_message.values() {
        stats.tokens.input += usage.input;
        stats.tokens.output += usage.output;
        stats.tokens.cache_creation += usage.cache_creation;
        stats.tokens.cache_read += usage.cache_read;
    }
    for model in model_by_message.into_values() {
        *stats.models.entry(model).or_default() += 1;
    }
    if let (Some(first), Some(last)) = (first, last) {
        stats.started_at = first.format(&Rfc3339).ok();
        stats.ended_at = last.format(&Rfc3339).ok();
        stats.duration_ms = u64::try_from((last - first).whole_milliseconds()).ok();
    }
    stats
}

/// Tokens of one model as Anthropic bills them (the plugin's cost budget prices these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the 5-minute prompt cache.
    pub cache_write_5m: u64,
    /// Input tokens written to the 1-hour prompt cache, and cache writes whose duration the
    /// transcript does not say (priced at the dearer rate, so a budget is never undercounted).
    pub cache_write_1h: u64,
}

impl ModelUsage {
    pub(crate) fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cache_read: self.cache_read.max(other.cache_read),
            cache_write_5m: self.cache_write_5m.max(other.cache_write_5m),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
        }
    }

    /// Adds `other` to this one.
    pub fn add(&mut self, other: &Self) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write_5m += other.cache_write_5m;
        self.cache_write_1h += other.cache_write_1h;
    }
}

/// One API response in a transcript: its model and its (final) usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageUsage {
    /// The model that answered.
    pub model: String,
    /// What it used.
    pub usage: ModelUsage,
}

/// Transcripts larger than this are not read for spending (no real session comes near it).
const MAX_TRANSCRIPT_BYTES: u64 = 512 * 1024 * 1024;

/// Every API response of a Claude Code session, by message id: the transcript itself and the
/// subagent transcripts Claude Code keeps beside it (`<session>/subagents/*.jsonl`). A
/// response repeated on several lines (or in several files) is counted once, with its
/// largest usage. API errors Claude Code recorded itself cost nothing and are left out.
pub fn read_messages(transcript: &Path) -> Result<BTreeMap<String, MessageUsage>, String> {
    let mut messages = BTreeMap::new();
    collect_messages(&read_transcript(transcript)?, &mut messages);
    let subagents = transcript.with_extension("").join("subagents");
    if let Ok(entries) = fs_err::read_dir(&subagents) {
        let mut files: Vec<_> = entries
            .filter_map(std::result::Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        for file in files {
            collect_messages(&read_transcript(&file)?, &mut messages);
        }
    }
    Ok(messages)
}

fn read_transcript(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = match crate::scope::open_regular(path) {
        Ok(Some(file)) => file,
        Ok(None) => return Err(format!("transcript `{shown}` is not a regular file")),
        Err(err) => {
            return Err(format!(
                "transcript `{shown}` could not be read ({})",
                err.kind()
            ));
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_TRANSCRIPT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("transcript `{shown}` could not be read ({})", err.kind()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Adds the responses of one transcript's text to `messages`.
pub fn collect_messages(text: &str, messages: &mut BTreeMap<String, MessageUsage>) {
    for line in text.lines() {
        let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if record.get("type").and_then(Value::as_str) != Some("assistant")
            || record.get("isApiErrorMessage") == Some(&Value::Bool(true))
        {
            continue;
        }
        let Some(message) = record.get("message") else {
            continue;
        };
        let (Some(id), Some(model)) = (
            message.get("id").and_then(Value::as_str),
            message.get("model").and_then(Value::as_str),
        ) else {
            continue;
        };
        let usage = billed_usage(message.get("usage"));
        messages
            .entry(id.to_owned())
            .and_modify(|seen| seen.usage = seen.usage.max(usage))
            .or_insert_with(|| MessageUsage {
                model: model.to_owned(),
                usage,
            });
    }
}

fn billed_usage(usage: Option<&Value>) -> ModelUsage {
    let field = |value: Option<&Value>, key: &str| {
        value
            .and_then(|value| value.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let written = field(usage, "cache_creation_input_tokens");
    let split = usage.and_then(|usage| usage.get("cache_creation"));
    let five_minutes = field(split, "ephemeral_5m_input_tokens").min(written);
    ModelUsage {
        input: field(usage, "input_tokens"),
        output: field(usage, "output_tokens"),
        cache_read: field(usage, "cache_read_input_tokens"),
        cache_write_5m: five_minutes,
        cache_write_1h: written - five_minutes,
    }
}

/// Sums responses by model.
pub fn usage_by_model<'a>(
    messages: impl IntoIterator<Item = &'a MessageUsage>,
) -> BTreeMap<String, ModelUsage> {
    let mut totals: BTreeMap<String, ModelUsage> = BTreeMap::new();
    for message in messages {
        totals
            .entry(message.model.clone())
            .or_default()
            .add(&message.usage);
    }
    totals
}

fn content_blocks(message: &Value) -> impl Iterator<Item = &Value> {
    message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn usage_of(usage: Option<&Value>) -> TokenCounts {
    let field = |key: &str| {
        usage
            .and_then(|usage| usage.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    TokenCounts {
        input: field("input_tokens"),
        output: field("output_tokens"),
        cache_creation: field("cache_creation_input_tokens"),
        cache_read: field("cache_read_input_tokens"),
    }
}

/// Lines of one response carry snapshots of its usage; the largest value is the final one.
fn max_usage(a: &TokenCounts, b: &TokenCounts) -> TokenCounts {
    TokenCounts {
        input: a.input.max(b.input),
        output: a.output.max(b.output),
        cache_creation: a.cache_creation.max(b.cache_creation),
        cache_read: a.cache_read.max(b.cache_read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn assistant(id: &str, blocks: &Value, output: u64, at: &str) -> String {
        json!({"type": "assistant", "sessionId": "s1", "timestamp": at,
               "message": {"id": id, "model": "claude-x", "role": "assistant", "content": blocks,
                           "usage": {"input_tokens": 10, "output_tokens": output,
                                     "cache_creation_input_tokens": 5, "cache_read_input_tokens": 1}}})
        .to_string()
    }

    fn tool_use(id: &str, name: &str, input: &Value) -> Value {
        json!({"type": "tool_use", "id": id, "name": name, "input": input})
    }

    fn result(id: &str, is_error: bool, at: &str) -> String {
        json!({"type": "user", "sessionId": "s1", "timestamp": at,
               "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id,
                                                        "content": "x", "is_error": is_error}]}})
        .to_string()
    }

    #[test]
    fn counts_tools_errors_repeats_tokens_and_time() {
        let bash = json!({"command": "npm test"});
        let lines = [
            json!({"type": "user", "sessionId": "s1", "timestamp": "2026-11-24T01:00:00.000Z",
                   "message": {"role": "user", "content": "build it"}})
            .to_string(),
            json!({"type": "user", "isMeta": true, "sessionId": "s1", "timestamp": "2026-11-24T01:00:00.100Z",
                   "message": {"role": "user", "content": [{"type": "text", "text": "skill body"}]}})
            .to_string(),
            // One response split over two lines: tokens counted once, the larger snapshot.
            assistant("m1", &json!([{"type": "text", "text": "ok"}]), 1, "2026-11-24T01:00:01Z"),
            assistant("m1", &json!([tool_use("t1", "Bash", &bash)]), 20, "2026-11-24T01:00:01Z"),
            result("t1", true, "2026-11-24T01:00:02Z"),
            assistant("m2", &json!([tool_use("t2", "Bash", &bash)]), 20, "2026-11-24T01:00:03Z"),
            result("t2", true, "2026-11-24T01:00:04Z"),
            assistant("m3", &json!([tool_use("t3", "Agent", &json!({"subagent_type": "refinery:builder", "description": "build"}))]), 20, "2026-11-24T01:00:05Z"),
            "{not json".to_owned(),
            "[1, 2]".to_owned(),
            result("t3", false, "2026-11-24T01:00:30Z"),
            json!({"type": "assistant", "isApiErrorMessage": true, "timestamp": "2026-11-24T01:00:31Z",
                   "message": {"id": "synthetic", "model": "<synthetic>", "content": [{"type": "text", "text": "API Error: 500"}]}})
            .to_string(),
            json!({"type": "some-future-record", "timestamp": "2026-11-24T01:01:00Z"}).to_string(),
            json!({"type": "user", "origin": {"kind": "task-notification"}, "timestamp": "2026-11-24T01:00:40Z",
                   "message": {"role": "user", "content": "<task-notification>done</task-notification>"}})
            .to_string(),
            String::new(),
        ];
        let stats = analyze(&lines.join("\n"));
        assert_eq!(stats.lines, 14);
        assert_eq!(stats.malformed_lines, 2);
        assert_eq!(stats.malformed_line_numbers, vec![9, 10]);
        assert_eq!(stats.prompts, 1);
        assert_eq!(stats.api_messages, 3);
        assert_eq!(stats.api_errors, 1);
        assert_eq!(stats.tool_calls, 3);
        assert_eq!(stats.tool_errors, 2);
        assert_eq!(stats.repeated_calls, 1);
        assert_eq!(
            stats.tools["Bash"],
            ToolCounts {
                calls: 2,
                errors: 2,
                repeated: 1
            }
        );
        assert_eq!(
            stats.tokens,
            TokenCounts {
                input: 30,
                output: 60,
                cache_creation: 15,
                cache_read: 3
            }
        );
        assert_eq!(stats.models, BTreeMap::from([("claude-x".to_owned(), 3)]));
        assert_eq!(
            stats.subagents,
            vec![SubagentCall {
                tool_use_id: "t3".to_owned(),
                subagent_type: "refinery:builder".to_owned(),
                description: "build".to_owned(),
                failed: false
            }]
        );
        assert_eq!(stats.record_types["some-future-record"], 1);
        assert_eq!(stats.sessions, vec!["s1"]);
        assert_eq!(stats.duration_ms, Some(60_000));
        assert_eq!(stats.started_at.as_deref(), Some("2026-11-24T01:00:00Z"));
    }

    #[test]
    fn billed_usage_is_counted_once_per_message_with_cache_writes_split() {
        let line = |id: &str, output: u64| {
            json!({"type": "assistant", "message": {"id": id, "model": "claude-m", "usage": {
                "input_tokens": 10, "output_tokens": output, "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 30,
                "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10}}}})
            .to_string()
        };
        let no_split = json!({"type": "assistant", "message": {"id": "m3", "model": "claude-n",
            "usage": {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 7}}})
        .to_string();
        let error = json!({"type": "assistant", "isApiErrorMessage": true,
            "message": {"id": "e", "model": "<synthetic>", "usage": {"input_tokens": 99}}})
        .to_string();
        let text = [
            line("m1", 1),
            line("m1", 5),
            line("m2", 2),
            no_split,
            error,
            "{oops".to_owned(),
        ]
        .join("\n");
        let mut messages = BTreeMap::new();
        collect_messages(&text, &mut messages);
        assert_eq!(messages.len(), 3);
        let totals = usage_by_model(messages.values());
        assert_eq!(
            totals["claude-m"],
            ModelUsage {
                input: 20,
                output: 7,
                cache_read: 8,
                cache_write_5m: 40,
                cache_write_1h: 20
            }
        );
        // Without the split, cache writes are priced as the dearer 1-hour kind.
        assert_eq!(totals["claude-n"].cache_write_1h, 7);
    }

    #[test]
    fn garbage_and_empty_input_never_fail() {
        let table: [(&str, u64, u64); 4] = [
            ("", 0, 0),
            ("\n\n", 0, 0),
            ("\u{0}\u{1}binary", 1, 1),
            ("null\n42\n\"text\"\n{}", 4, 3),
        ];
        for (text, lines, malformed) in table {
            let stats = analyze(text);
            assert_eq!(
                (stats.lines, stats.malformed_lines),
                (lines, malformed),
                "{text:?}"
            );
            assert_eq!(stats.duration_ms, None);
        }
    }
}
