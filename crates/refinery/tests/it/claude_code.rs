//! Running the real Claude Code (from npm) with this plugin against `refinery-testkit`'s
//! loopback fake model server, with a scripted model.
//!
//! Isolation: the kit's `TestContext` (throwaway HOME, project, TMPDIR) and `claude_env`
//! (fake key, base URL on 127.0.0.1, no telemetry or updates, its own config dir), plus this
//! build of `refinery` first on PATH so the plugin's hook and MCP servers are the code under
//! test, and `GIT_CEILING_DIRECTORIES` so a `.git` above the temp folder never counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use refinery_testkit::agent_cli::{AgentCliName, claude_env, require_agent_cli};
use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, TestContext, ToolCallSpec};
use serde_json::Value;

/// One scripted model turn.
pub(crate) enum Step {
    /// Call a tool with this input.
    Tool(String, Value),
    /// Answer with text and end the turn.
    Text(String),
    /// Answer with this reply as it is: for requests that are not Claude Code's own (the
    /// models a `refinery` command started from the Bash tool calls on the same fake).
    Reply(Reply),
}

pub(crate) fn tool(name: &str, input: Value) -> Step {
    Step::Tool(name.to_owned(), input)
}

pub(crate) fn text(text: &str) -> Step {
    Step::Text(text.to_owned())
}

pub(crate) struct ClaudeHarness {
    pub(crate) context: TestContext,
    pub(crate) server: FakeModelServer,
    pub(crate) claude: PathBuf,
}

impl ClaudeHarness {
    /// The harness, or `None` (with the reason printed) when Claude Code is not installed;
    /// under `CI=true` a missing CLI fails instead.
    pub(crate) async fn start() -> Option<Self> {
        let claude = require_agent_cli(AgentCliName::Claude)?;
        Some(Self {
            context: TestContext::new().unwrap(),
            server: FakeModelServer::start().await.unwrap(),
            claude,
        })
    }

    /// Answers every model turn with `script(turn, body)`, where `turn` counts the assistant
    /// messages already in that conversation (a subagent's conversation starts at 0 again).
    /// Tool call ids are unique across the run, as the real API's are.
    pub(crate) fn script(&self, script: impl Fn(usize, &Value) -> Step + Send + Sync + 'static) {
        self.script_requests(move |turn, request| script(turn, &request.body));
    }

    /// [`Self::script`] with the whole request (its model, its path) for the script.
    pub(crate) fn script_requests(
        &self,
        script: impl Fn(usize, &RecordedRequest) -> Step + Send + Sync + 'static,
    ) {
        let ids = AtomicUsize::new(0);
        self.server.route(move |request: &RecordedRequest| {
            let turn = request.body["messages"].as_array().map_or(0, |messages| {
                messages.iter().filter(|m| m["role"] == "assistant").count()
            });
            Some(match script(turn, request) {
                Step::Tool(name, arguments) => Reply::tool_calls(vec![ToolCallSpec {
                    id: format!("toolu_scripted_{:04}", ids.fetch_add(1, Ordering::Relaxed)),
                    name,
                    arguments,
                }]),
                Step::Text(text) => Reply::text(text),
                Step::Reply(reply) => reply,
            })
        });
    }

    pub(crate) fn project(&self) -> PathBuf {
        self.context.project()
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.context.home()
    }

    /// The environment every child of a test gets (see the module doc).
    pub(crate) fn env(&self) -> BTreeMap<String, String> {
        let mut env = claude_env(&self.context, &self.server, &self.claude);
        let refinery_dir = Path::new(crate::support::BIN).parent().unwrap();
        let path = env.get("PATH").cloned().unwrap_or_default();
        env.insert(
            "PATH".to_owned(),
            format!("{}:{path}", refinery_dir.display()),
        );
        env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
        env.insert("MCP_TIMEOUT".to_owned(), "30000".to_owned());
        env.insert(
            "GIT_CEILING_DIRECTORIES".to_owned(),
            self.context.root().display().to_string(),
        );
        env
    }

    /// `program args…` in the project folder with [`Self::env`] and nothing else.
    pub(crate) fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.project())
            .env_clear()
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `claude args…` with the plugin loaded.
    pub(crate) fn claude(&self, args: &[&str]) -> Command {
        let mut command = self.command(&self.claude, args);
        command.arg("--plugin-dir").arg(plugin_dir());
        command
    }

    /// The transcript Claude Code wrote for `claude_session`.
    pub(crate) fn transcript(&self, claude_session: &str) -> PathBuf {
        let projects = self.home().join(".claude/projects");
        fs_err::read_dir(&projects)
            .unwrap()
            .map(|entry| {
                entry
                    .unwrap()
                    .path()
                    .join(format!("{claude_session}.jsonl"))
            })
            .find(|path| path.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no transcript for {claude_session} under {}",
                    projects.display()
                )
            })
    }
}

/// The texts of the tool results Claude Code sent back in a request, oldest first (a result's
/// content is a string or a list of text blocks).
pub(crate) fn tool_result_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| match &block["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect(),
            other => other.to_string(),
        })
        .collect()
}

pub(crate) fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin")
}

/// Runs `command` on a blocking thread (the fake server needs the runtime meanwhile),
/// killing it after `timeout`. Output is drained by threads so a chatty child never blocks.
pub(crate) async fn run(command: Command, timeout: Duration) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(command, timeout))
        .await
        .unwrap()
}

pub(crate) fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
    use std::io::Read as _;
    let mut child = command.spawn().unwrap();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Copies a transcript (and its subagent transcripts) into `$REFINERY_RECORD_TRANSCRIPTS`
/// when that variable is set: how the `refinery trace` fixtures are refreshed.
pub(crate) fn record_transcript(transcript: &Path, name: &str) {
    let Some(dir) = std::env::var_os("REFINERY_RECORD_TRANSCRIPTS") else {
        return;
    };
    let dest = Path::new(&dir);
    fs_err::create_dir_all(dest).unwrap();
    fs_err::copy(transcript, dest.join(format!("{name}.jsonl"))).unwrap();
    let subagents = transcript.with_extension("").join("subagents");
    if subagents.is_dir() {
        let target = dest.join(name).join("subagents");
        fs_err::create_dir_all(&target).unwrap();
        for entry in fs_err::read_dir(&subagents).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "jsonl") {
                fs_err::copy(&path, target.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// The tool results the model received, in order: (is_error, text).
pub(crate) fn tool_results(body: &Value) -> Vec<(bool, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| {
            let text = match &block["content"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (block["is_error"] == true, text)
        })
        .collect()
}
