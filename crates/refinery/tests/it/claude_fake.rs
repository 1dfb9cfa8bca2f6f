//! A minimal scripted fake of the Anthropic Messages API on 127.0.0.1, and a helper that
//! runs the real `claude` CLI against it with a throwaway HOME.
//!
//! This stands in for `refinery-testkit` (on the `llm` branch, not on `main` yet); once that
//! lands, these tests should move onto its fake. It implements only what Claude Code 2.1.330
//! needs: `HEAD /`, `GET` model lists, `count_tokens`, and `POST /v1/messages` with SSE or
//! JSON. Every `/v1/messages` body is recorded for assertions. Each conversation turn is
//! answered by a script: turn k of the main conversation (k assistant messages so far) gets
//! `script(k, body)`. Requests without tools (titles, summaries) get a short text.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One scripted model turn.
pub(crate) enum Turn {
    /// Call a tool with this input.
    Tool(&'static str, Value),
    /// Answer with text and end the turn.
    Text(&'static str),
}

type Script = dyn Fn(usize, &Value) -> Turn + Send + Sync;

pub(crate) struct FakeAnthropic {
    pub(crate) base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl FakeAnthropic {
    pub(crate) fn start(script: impl Fn(usize, &Value) -> Turn + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let ids = Arc::new(AtomicUsize::new(0));
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (requests, script, ids) =
                                (requests.clone(), script.clone(), ids.clone());
                            std::thread::spawn(move || {
                                let _ = serve(stream, &requests, &*script, &ids);
                            });
                        }
                        // Non-blocking accept so the thread notices `stop`; bounded poll.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Self {
            base_url,
            requests,
            stop,
        }
    }

    /// Every `/v1/messages` request body received so far.
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Value>>,
    script: &Script,
    ids: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let respond_json = |writer: &mut TcpStream, value: &Value| {
        let data = value.to_string();
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{data}",
            data.len()
        )
    };
    if method == "HEAD" {
        return write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }
    if method == "GET" {
        return respond_json(
            &mut writer,
            &json!({"data": [{"id": "claude-fake-1", "display_name": "Fake"}], "has_more": false}),
        );
    }
    if path.contains("count_tokens") {
        return respond_json(&mut writer, &json!({"input_tokens": 1000}));
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(body.clone());
    let has_tools = body["tools"]
        .as_array()
        .is_some_and(|tools| !tools.is_empty());
    let turn = if has_tools {
        let index = body["messages"].as_array().map_or(0, |messages| {
            messages.iter().filter(|m| m["role"] == "assistant").count()
        });
        script(index, &body)
    } else {
        Turn::Text("ok")
    };
    let serial = ids.fetch_add(1, Ordering::Relaxed);
    let message_id = format!("msg_fake_{serial:04}");
    let (block, stop_reason) = match &turn {
        Turn::Tool(name, input) => (
            json!({"type": "tool_use", "id": format!("toolu_fake_{serial:04}"), "name": name, "input": input}),
            "tool_use",
        ),
        Turn::Text(text) => (json!({"type": "text", "text": text}), "end_turn"),
    };
    let usage = json!({"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    let model = body["model"].as_str().unwrap_or("claude-fake-1").to_owned();
    if body["stream"] != true {
        return respond_json(
            &mut writer,
            &json!({"id": message_id, "type": "message", "role": "assistant", "model": model,
                    "content": [block], "stop_reason": stop_reason, "stop_sequence": null, "usage": usage}),
        );
    }
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    );
    let mut event = |name: &str, data: Value| {
        let _ = write!(out, "event: {name}\ndata: {data}\n\n");
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": message_id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    );
    match &turn {
        Turn::Tool(name, input) => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": block["id"], "name": name, "input": {}}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
            );
        }
        Turn::Text(text) => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
            );
        }
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    writer.write_all(out.as_bytes())?;
    writer.flush()
}

/// The real `claude` from npm, or `None` (with the reason printed) when it is not installed.
/// Under `CI=true` a missing CLI fails the test: CI installs it.
pub(crate) fn claude_binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("REFINERY_AGENT_CLI_DIR") {
        candidates.push(PathBuf::from(dir).join("claude"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates
            .push(PathBuf::from(home).join(".cache/refinery/agent-clis/node_modules/.bin/claude"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("claude")));
    }
    let found = candidates.into_iter().find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the `claude` CLI is missing under CI=true; .ci/run installs @anthropic-ai/claude-code"
        );
        eprintln!(
            "skipped: the `claude` CLI is not installed (npm @anthropic-ai/claude-code@2.1.330)"
        );
    }
    found
}

/// Isolation applied to every real `claude` run: a throwaway HOME and config dir, temporary
/// files under the test folder, the API pointed at the loopback fake with a fake key, no
/// auto-update or non-essential traffic, and `refinery` (this build) first on PATH.
pub(crate) struct ClaudeRun<'a> {
    pub(crate) claude: &'a Path,
    pub(crate) home: &'a Path,
    pub(crate) workspace: &'a Path,
    pub(crate) base_url: &'a str,
}

impl ClaudeRun<'_> {
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.command_for(self.claude, args)
    }

    /// `program` with the same isolated environment (e.g. `refinery tmux launch`, which
    /// starts Claude Code inside tmux with it).
    pub(crate) fn command_for(&self, program: &Path, args: &[&str]) -> Command {
        let refinery_dir = Path::new(crate::support::BIN).parent().unwrap();
        let node_dir = which_dir("node");
        let mut path = vec![refinery_dir.to_path_buf()];
        path.extend(node_dir);
        path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        let tmp = self.home.join("tmp");
        fs_err::create_dir_all(&tmp).unwrap();
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.workspace)
            .env_clear()
            .env("PATH", std::env::join_paths(path).unwrap())
            .env("HOME", self.home)
            .env("TMPDIR", &tmp)
            .env("CLAUDE_CODE_TMPDIR", &tmp)
            .env("LANG", "C.UTF-8")
            .env("ANTHROPIC_BASE_URL", self.base_url)
            .env("ANTHROPIC_API_KEY", "sk-ant-fake-0000000000")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("ENABLE_TOOL_SEARCH", "false")
            .env("MCP_TIMEOUT", "20000")
            .env("GIT_CEILING_DIRECTORIES", self.workspace.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

fn which_dir(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join(name).is_file())
}

/// Runs `command`, killing it after `timeout`. Output is drained by threads so a chatty
/// child can never block on a full pipe.
pub(crate) fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
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
                "claude did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
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
