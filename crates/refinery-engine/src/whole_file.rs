//! The whole-file builder format: for models that do not make reliable tool calls.
//!
//! Small local models (measured: Qwen2.5-Coder 0.5B and 1.5B behind llama.cpp's server) never
//! emit a real tool call; they write the call as text (`{"name": "write_file", "arguments":
//! {...}}` in a JSON fence, or Hermes' `<tool_call>…</tool_call>`), or answer with the files
//! themselves in fenced blocks. This module reads both out of a builder's reply, the way
//! aider's "whole" edit format does: each changed file is a fenced block, headed by its path on
//! the line before the fence.
//!
//! A builder in this format is asked for a JSON object listing each changed file whole
//! (`{"files": [{"path", "content"}], "summary"}`) under a JSON schema ([`schema`]): servers
//! that enforce schemas (llama.cpp turns one into a grammar) then cannot answer anything else.
//! Measured on Qwen2.5-Coder-0.5B: with the schema it wrote the asked-for file in 6 of 6
//! tries; asked for fenced blocks in free text, it copied the example's path and content, or
//! wrote a block without a path, in most tries. Fenced blocks and text-written calls are still
//! read, for servers that ignore the schema and for tool-calling builders that fall back.
//!
//! It is pure text → [`FileEdit`]s ([`parse`]); [`apply`] then runs every edit through the
//! same [`Workspace`] tools an API builder gets, so the confinement rules (no absolute path
//! outside the workspace, no `..`, no links out, never the state folder or `.git`) are exactly
//! the file tools'.

use refinery_llm::ToolCall;
use serde_json::{Value, json};

use crate::tools::{ToolOutput, Workspace};

/// What the model is told when it must answer in this format.
pub const INSTRUCTIONS: &str = "\n\n## How to answer\n\nYou cannot run tools or commands: you change the workspace only through your reply. Reply with a JSON object: `files` lists every file to create or change, each with its `path` (relative to the workspace root) and its complete new `content`; files you do not list stay as they are. `summary` says in one or two sentences what you changed and why.\n";

/// The JSON schema of a whole-file reply. Bounded (item counts and string lengths) so that
/// constrained decoding ends instead of running on.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "minLength": 1, "maxLength": 200},
                        "content": {"type": "string", "maxLength": 60_000}
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false
                }
            },
            "summary": {"type": "string", "maxLength": 600}
        },
        "required": ["files", "summary"],
        "additionalProperties": false
    })
}

/// The brief's section with the workspace's files (`files`, as the judges' pack renders
/// them), cut to `budget` characters with a note saying so.
pub fn files_section(files: &str, budget: usize) -> String {
    let mut shown = files.trim_end().to_owned();
    let mut note = "";
    if shown.len() > budget {
        let mut cut = budget;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        note = "\n\n[… the rest is cut to fit the model's context]";
    }
    format!(
        "\n\n## The workspace's files now\n\nYou cannot open files, so here they are. Change them by writing them out in full as shown below.\n\n{shown}{note}\n"
    )
}

/// The `summary` of a JSON whole-file reply (what the builder says it did), if the reply is
/// one; the files themselves are not a summary.
pub fn summary_of(reply: &str) -> Option<String> {
    let start = reply.find('{')?;
    let mut stream = serde_json::Deserializer::from_str(&reply[start..]).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    value
        .get("files")
        .and(value.get("summary"))
        .and_then(Value::as_str)
        .map(ToString::to_string)
}

/// A change read from a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEdit {
    /// Create or replace a file.
    Write {
        /// Relative to the workspace, as the model wrote it.
        path: String,
        /// The whole new content.
        content: String,
    },
    /// Remove a file.
    Delete {
        /// Relative to the workspace, as the model wrote it.
        path: String,
    },
}

impl FileEdit {
    /// The path as the model wrote it.
    pub fn path(&self) -> &str {
        match self {
            FileEdit::Write { path, .. } | FileEdit::Delete { path } => path,
        }
    }

    /// The same edit as a call of the file tools.
    pub fn to_tool_call(&self, id: String) -> ToolCall {
        match self {
            FileEdit::Write { path, content } => ToolCall {
                id,
                name: "write_file".to_owned(),
                arguments: json!({"path": path, "content": content}),
            },
            FileEdit::Delete { path } => ToolCall {
                id,
                name: "delete_file".to_owned(),
                arguments: json!({"path": path}),
            },
        }
    }
}

/// How the edits were written in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Fenced blocks headed by their path.
    FileBlocks,
    /// Tool calls written as text (JSON objects or `<tool_call>` tags).
    TextToolCalls,
    /// A JSON `files` list ([`schema`]).
    JsonFiles,
}

/// The edits found in a reply, in the order they appear (a later edit of the same path wins
/// when applied), and how they were written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The edits.
    pub edits: Vec<FileEdit>,
    /// Whether any edit came from a text-written tool call.
    pub text_tool_calls: bool,
    /// Whether any edit came from a JSON `files` list.
    pub json_files: bool,
}

impl Parsed {
    /// How the edits were written (the first that applies of: text-written calls, a JSON
    /// `files` list, file blocks); `None` when there are none.
    pub fn source(&self) -> Option<Source> {
        if self.edits.is_empty() {
            None
        } else if self.text_tool_calls {
            Some(Source::TextToolCalls)
        } else if self.json_files {
            Some(Source::JsonFiles)
        } else {
            Some(Source::FileBlocks)
        }
    }

    fn absorb(&mut self, found: Found) {
        self.text_tool_calls |= found.calls;
        self.json_files |= found.files;
        self.edits.extend(found.edits);
    }
}

/// Edits found in JSON text, and in which shapes.
#[derive(Default)]
struct Found {
    edits: Vec<FileEdit>,
    calls: bool,
    files: bool,
}

/// Reads every file edit out of `reply`: text-written tool calls (`write_file`,
/// `delete_file`, and the agent CLIs' `Write` with `file_path`) anywhere in the text, and
/// fenced blocks whose path is on the line before the fence or in the fence's info string.
/// A fenced block that holds a tool call counts as that call, never as a file.
pub fn parse(reply: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let lines: Vec<&str> = reply.lines().collect();
    let mut index = 0;
    let mut outside = String::new();
    while index < lines.len() {
        let Some(fence) = Fence::open(lines[index]) else {
            outside.push_str(lines[index]);
            outside.push('\n');
            index += 1;
            continue;
        };
        let end = (index + 1..lines.len())
            .find(|&at| fence.closes(lines[at]))
            .unwrap_or(lines.len());
        let body = lines[index + 1..end].join("\n");
        let found = json_edits(&body);
        if found.edits.is_empty() {
            let heading = index
                .checked_sub(1)
                .and_then(|before| path_from_heading(lines[before]))
                .or_else(|| path_from_info(fence.info));
            if let Some(path) = heading {
                let mut content = body;
                content.push('\n');
                parsed.edits.push(FileEdit::Write { path, content });
            }
        } else {
            parsed.absorb(found);
        }
        index = end + 1;
    }
    parsed.absorb(json_edits(&outside));
    parsed
}

/// What happened to one edit.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The edit as a file-tool call; its id starts with [`ID_PREFIX`] (and says whether it
    /// came from a file block or a text-written call), so traces tell these apart from real
    /// tool calls.
    pub call: ToolCall,
    /// The file tool's answer (an error says why the path was refused).
    pub output: ToolOutput,
}

/// The start of the id of every call [`apply`] makes.
pub const ID_PREFIX: &str = "whole-file-";

/// Applies the parsed edits through the workspace's file tools, in order. Never touches
/// anything the file tools would refuse.
pub fn apply(workspace: &Workspace, parsed: &Parsed) -> Vec<Applied> {
    let kind = match parsed.source() {
        Some(Source::TextToolCalls) => "text-call",
        Some(Source::JsonFiles) => "json",
        _ => "file-block",
    };
    parsed
        .edits
        .iter()
        .enumerate()
        .map(|(number, edit)| {
            let call = edit.to_tool_call(format!("{ID_PREFIX}{kind}-{}", number + 1));
            let output = workspace.run(&call);
            Applied { call, output }
        })
        .collect()
}

/// An opening code fence: its marker character, length and info string.
struct Fence<'a> {
    marker: char,
    length: usize,
    info: &'a str,
}

impl<'a> Fence<'a> {
    fn open(line: &'a str) -> Option<Self> {
        let trimmed = line.trim_start();
        if line.len() - trimmed.len() > 3 {
            return None;
        }
        let marker = trimmed.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let length = trimmed.chars().take_while(|&c| c == marker).count();
        if length < 3 {
            return None;
        }
        let info = trimmed[length..].trim();
        // A backtick fence's info string may not contain a backtick (CommonMark).
        if marker == '`' && info.contains('`') {
            return None;
        }
        Some(Self {
            marker,
            length,
            info,
        })
    }

    /// A closing fence: the same marker, at least as long, nothing after it.
    fn closes(&self, line: &str) -> bool {
        let trimmed = line.trim();
        let count = trimmed.chars().take_while(|&c| c == self.marker).count();
        count >= self.length && trimmed.len() == count * self.marker.len_utf8()
    }
}

/// A path written as a heading line: `hello.py`, `**src/app.js**`, `### index.html`,
/// `` `a/b.rs`: ``, `File: notes.md`. `None` for prose.
fn path_from_heading(line: &str) -> Option<String> {
    let mut text = line.trim();
    text = text.trim_start_matches(['#', '>', '-', '*', ' ']).trim();
    for label in ["file:", "filename:", "path:", "file name:"] {
        if text.len() >= label.len() && text[..label.len()].eq_ignore_ascii_case(label) {
            text = text[label.len()..].trim();
        }
    }
    let text = text
        .trim_end_matches(':')
        .trim_matches(['*', '`', '"', '\'', ' ', '|', '<', '>'])
        .trim_end_matches(':')
        .trim();
    looks_like_path(text).then(|| text.to_owned())
}

/// A path in the fence's info string: ```` ```index.html ````, ```` ```python app.py ````,
/// ```` ```python:app.py ````.
fn path_from_info(info: &str) -> Option<String> {
    info.split([' ', ':'])
        .filter(|word| !word.is_empty())
        .find(|word| looks_like_path(word) && word.contains(['.', '/']))
        .map(ToString::to_string)
}

/// A relative-looking path: one word, with a file extension or a folder, no URL scheme.
fn looks_like_path(text: &str) -> bool {
    if text.is_empty() || text.len() > 255 || text.contains("://") {
        return false;
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control())
        || text.contains(['`', '*', '<', '>', '|', '"'])
    {
        return false;
    }
    let name = text.rsplit('/').next().unwrap_or(text);
    let has_extension = name.rsplit_once('.').is_some_and(|(stem, extension)| {
        !extension.is_empty()
            && extension.len() <= 10
            && extension.chars().all(|c| c.is_ascii_alphanumeric())
            && !stem.is_empty()
    });
    let is_dotfile = name.starts_with('.') && name.len() > 1;
    let known_bare = matches!(name, "Makefile" | "Dockerfile" | "LICENSE" | "Procfile");
    let in_folder = text.contains('/') && text.split('/').all(|part| !part.is_empty());
    !name.is_empty() && (has_extension || is_dotfile || known_bare || in_folder)
}

/// Every edit written as JSON in `text`: a `files` list ([`schema`]), or tool calls (alone,
/// in a list, or inside `<tool_call>` tags) naming a file tool.
fn json_edits(text: &str) -> Found {
    let mut found = Found::default();
    let mut rest = text;
    while let Some(start) = rest.find(['{', '[']) {
        let candidate = &rest[start..];
        let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                collect_calls(&value, &mut found);
                rest = &candidate[stream.byte_offset().max(1)..];
            }
            _ => rest = &candidate[1..],
        }
    }
    found
}

fn collect_calls(value: &Value, found: &mut Found) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_calls(item, found);
            }
        }
        Value::Object(object) => {
            // OpenAI's shape nests the call: {"type": "function", "function": {...}}.
            if let Some(inner) = object.get("function").filter(|inner| inner.is_object()) {
                collect_calls(inner, found);
                return;
            }
            if let Some(calls) = object.get("tool_calls") {
                collect_calls(calls, found);
                return;
            }
            if let Some(files) = object.get("files").and_then(Value::as_array) {
                for file in files {
                    if let Some(edit) = edit_from_call("write_file", file) {
                        found.files = true;
                        found.edits.push(edit);
                    }
                }
                return;
            }
            let Some(name) = object.get("name").and_then(Value::as_str) else {
                return;
            };
            let arguments = object
                .get("arguments")
                .or_else(|| object.get("parameters"))
                .or_else(|| object.get("input"))
                .cloned()
                .unwrap_or(Value::Null);
            // Some models write the arguments as a JSON string, as the wire format does.
            let arguments = match arguments {
                Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
                other => other,
            };
            if let Some(edit) = edit_from_call(name, &arguments) {
                found.calls = true;
                found.edits.push(edit);
            }
        }
        _ => {}
    }
}

fn edit_from_call(name: &str, arguments: &Value) -> Option<FileEdit> {
    let path = ["path", "file_path", "filename", "file"]
        .iter()
        .find_map(|key| arguments.get(*key).and_then(Value::as_str))?
        .to_owned();
    match name {
        "write_file" | "Write" | "create_file" | "write" => {
            let content = ["content", "contents", "text"]
                .iter()
                .find_map(|key| arguments.get(*key).and_then(Value::as_str))?
                .to_owned();
            Some(FileEdit::Write { path, content })
        }
        "delete_file" | "Delete" | "remove_file" => Some(FileEdit::Delete { path }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn write(path: &str, content: &str) -> FileEdit {
        FileEdit::Write {
            path: path.to_owned(),
            content: content.to_owned(),
        }
    }

    #[test]
    fn file_blocks_headed_by_their_path() {
        let cases: &[(&str, Vec<FileEdit>)] = &[
            (
                "Here it is.\n\nhello.py\n```python\nprint('hi')\n```\nDone.",
                vec![write("hello.py", "print('hi')\n")],
            ),
            (
                "**src/app.js**\n```js\nlet a = 1;\n\nlet b = 2;\n```\n### index.html\n```html\n<p>x</p>\n```\n| style.css |\n```css\np {}\n```",
                vec![
                    write("src/app.js", "let a = 1;\n\nlet b = 2;\n"),
                    write("index.html", "<p>x</p>\n"),
                    write("style.css", "p {}\n"),
                ],
            ),
            (
                "File: `notes.md`:\n````markdown\n# Notes\n```sh\nls\n```\n````\n",
                vec![write("notes.md", "# Notes\n```sh\nls\n```\n")],
            ),
            (
                "```python app.py\nx = 1\n```\n```html:page.html\n<b/>\n```",
                vec![write("app.py", "x = 1\n"), write("page.html", "<b/>\n")],
            ),
            (
                "~~~\nplain\n~~~\nMakefile\n~~~\nall:\n~~~",
                vec![write("Makefile", "all:\n")],
            ),
            // Prose before a fence, or an example without a path, writes nothing.
            (
                "Run this:\n```sh\nls -la\n```\nSee https://example.com/a.py\n```\nx\n```",
                vec![],
            ),
            // An unclosed fence runs to the end of the reply.
            ("a.txt\n```\nline", vec![write("a.txt", "line\n")]),
            ("no files at all", vec![]),
        ];
        for (reply, expected) in cases {
            let parsed = parse(reply);
            assert_eq!(&parsed.edits, expected, "{reply}");
            assert!(!parsed.text_tool_calls);
        }
    }

    #[test]
    fn tool_calls_written_as_text() {
        let cases: &[(&str, Vec<FileEdit>)] = &[
            (
                "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"prime.py\", \"content\": \"print(2)\\n\"}}\n```",
                vec![write("prime.py", "print(2)\n")],
            ),
            (
                "<tool_call>\n{\"name\": \"write_file\", \"arguments\": \"{\\\"path\\\": \\\"a.md\\\", \\\"content\\\": \\\"# A\\\"}\"}\n</tool_call>\nand {\"name\": \"delete_file\", \"arguments\": {\"path\": \"old.txt\"}}",
                vec![
                    write("a.md", "# A"),
                    FileEdit::Delete {
                        path: "old.txt".to_owned(),
                    },
                ],
            ),
            (
                "[{\"type\": \"function\", \"function\": {\"name\": \"Write\", \"parameters\": {\"file_path\": \"b.txt\", \"content\": \"b\"}}}]",
                vec![write("b.txt", "b")],
            ),
            // Other tools, broken JSON and missing arguments are ignored.
            (
                "{\"name\": \"read_file\", \"arguments\": {\"path\": \"x\"}} {\"name\": \"write_file\" {\"name\": \"write_file\", \"arguments\": {\"path\": \"y\"}}",
                vec![],
            ),
        ];
        for (reply, expected) in cases {
            let parsed = parse(reply);
            assert_eq!(&parsed.edits, expected, "{reply}");
            assert_eq!(
                parsed.source(),
                (!expected.is_empty()).then_some(Source::TextToolCalls)
            );
        }
    }

    #[test]
    fn a_json_files_list() {
        let reply = "{\n  \"files\": [\n    {\"path\": \"hello.py\", \"content\": \"print('Hello, world!')\"},\n    {\"path\": \"docs/a.md\", \"content\": \"# A\\n\"}\n  ],\n  \"summary\": \"E1\"\n}";
        let parsed = parse(reply);
        assert_eq!(
            parsed.edits,
            vec![
                write("hello.py", "print('Hello, world!')"),
                write("docs/a.md", "# A\n")
            ]
        );
        assert_eq!(parsed.source(), Some(Source::JsonFiles));
        // Also inside a fence, and whatever the model wraps around it.
        let fenced = format!("Here:\n```json\n{reply}\n```\n");
        assert_eq!(parse(&fenced).edits.len(), 2);
        assert_eq!(
            parse("{\"files\": [], \"summary\": \"nothing\"}").source(),
            None
        );
        assert_eq!(summary_of(reply).as_deref(), Some("E1"));
        assert_eq!(summary_of("{\"summary\": \"no files key\"}"), None);
        // The schema a server enforces is bounded, so constrained decoding ends.
        let schema = schema();
        assert_eq!(schema["properties"]["files"]["maxItems"], 20);
        assert!(schema["properties"]["summary"]["maxLength"].is_number());
    }

    #[test]
    fn edits_are_applied_inside_the_workspace_only() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("ws");
        fs_err::create_dir_all(root.join(".refinery")).unwrap();
        fs_err::write(root.join("old.txt"), "old").unwrap();
        let workspace = Workspace::new(
            &root,
            &[root.join(".refinery")],
            refinery_core::OffLimits::default(),
        )
        .unwrap();
        let reply = format!(
            "src/ok.txt\n```\nfine\n```\n../escape.txt\n```\nbad\n```\n{}\n```\nbad\n```\n.refinery/state.json\n```\n{{}}\n```\n.git/config\n```\nx\n```\n{{\"name\": \"delete_file\", \"arguments\": {{\"path\": \"old.txt\"}}}}",
            outer.path().join("abs.txt").display()
        );
        let parsed = parse(&reply);
        assert_eq!(parsed.edits.len(), 6, "{:?}", parsed.edits);
        let applied = apply(&workspace, &parsed);
        assert!(applied[0].call.id.starts_with("whole-file-text-call-"));
        let refused: Vec<&str> = applied
            .iter()
            .filter(|applied| applied.output.is_error)
            .map(|applied| applied.call.arguments["path"].as_str().unwrap())
            .collect();
        assert_eq!(refused.len(), 4, "{applied:?}");
        assert_eq!(
            fs_err::read_to_string(root.join("src/ok.txt")).unwrap(),
            "fine\n"
        );
        assert!(!root.join("old.txt").exists());
        assert!(!outer.path().join("escape.txt").exists());
        assert!(!outer.path().join("abs.txt").exists());
        assert!(!root.join(".refinery/state.json").exists());
        assert!(!root.join(".git").exists());
    }
}
