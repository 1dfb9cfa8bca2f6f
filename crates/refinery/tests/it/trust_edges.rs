//! Process edges (issue 10, "robust process edges"): whatever the other end of a pipe or the
//! input does, the process neither panics, nor hangs, nor leaves its state saying "running".
//!
//! A closed stderr or stdout during `refine` and under an MCP server logging at debug level;
//! JSON-RPC lines that cannot be parsed, are nested 100,000 deep, hold `1e400` or are longer
//! than the line limit, each answered over real stdio by the spawned server; zero budgets and
//! timeouts refused before anything starts; fifos given as file arguments refused unread. (A
//! stream cut in the middle of an SSE event is retried: `refinery-llm`'s
//! `faults::a_stream_cut_inside_an_event_is_retried`.)

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use refinery_testkit::{FakeModelServer, Reply, TestContext};
use serde_json::{Value, json};

use crate::fake_roles::{MODEL, api_env, evaluation, lessons, role};
use crate::llm_support::text;

/// A fake that converges in one round: the builder writes `index.html`, the judge passes it.
fn converging_fake(server: &FakeModelServer) {
    server.route(|request| {
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": "<h1>Acme</h1>\n"}),
            ),
            "builder" => Reply::text("Wrote index.html."),
            "evaluator" => Reply::text(evaluation(&["E1"], "Good.")),
            "trace" => Reply::text(lessons("one pass")),
            _ => Reply::text("ok"),
        })
    });
}

fn command(context: &TestContext, env: &BTreeMap<String, String>, args: &[&str]) -> Command {
    let mut command = Command::new(crate::support::BIN);
    command
        .env_clear()
        .envs(env)
        .current_dir(context.project())
        .args(args);
    command
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, as when
/// the reader of `refinery … 2>&1 | head` has gone.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

/// Waits for `child` at most `limit`; a child still running then is killed and the test
/// fails (a blocked read is exactly what some of these tests guard against).
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?} (blocked)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn run_status(context: &TestContext) -> Value {
    let sessions = context.project().join(".refinery/sessions");
    let session = fs_err::read_dir(&sessions)
        .unwrap()
        .flatten()
        .next()
        .expect("a session")
        .path();
    serde_json::from_slice::<Value>(&fs_err::read(session.join("run.json")).unwrap()).unwrap()
        ["status"]
        .clone()
}

/// `refine` with debug logging into a closed stderr (and, separately, its `--json` events
/// into a closed stdout, and both into one closed pipe): it finishes its work, exits with the
/// run's own code, and `run.json` says how the run ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stderr_or_stdout_never_panics_nor_leaves_a_run_running() {
    for closed in ["stderr", "stdout", "both"] {
        let context = TestContext::new().unwrap();
        let server = FakeModelServer::start().await.unwrap();
        converging_fake(&server);
        let mut env = api_env(&context, &server);
        env.insert("RUST_LOG".to_owned(), "debug".to_owned());
        let mut refine = command(
            &context,
            &env,
            &[
                "refine",
                "Build a page",
                "--criteria",
                "E1: It has a heading",
                "--builder",
                MODEL,
                "--evaluator",
                MODEL,
                "--yes",
                "--json",
            ],
        );
        match closed {
            "stderr" => refine.stdout(Stdio::null()).stderr(closed_pipe()),
            "stdout" => refine.stdout(closed_pipe()).stderr(Stdio::null()),
            _ => {
                let (reader, writer) = std::io::pipe().unwrap();
                drop(reader);
                let copy = writer.try_clone().unwrap();
                refine.stdout(Stdio::from(writer)).stderr(Stdio::from(copy))
            }
        };
        let child = refine.spawn().unwrap();
        let output =
            tokio::task::spawn_blocking(move || finish(child, Duration::from_mins(2), "refine"))
                .await
                .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{closed} closed: exit {:?}",
            output.status
        );
        assert_eq!(
            run_status(&context)["status"],
            "converged",
            "{closed} closed"
        );
    }
}

/// Sends JSON-RPC lines to a spawned MCP server and reads its answers, each with a timeout.
struct Stdio2 {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stdio2 {
    fn spawn(context: &TestContext, env: &BTreeMap<String, String>, stderr: Stdio) -> Self {
        let mut child = command(context, env, &["mcp", "quality"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn send(&mut self, line: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    #[track_caller]
    fn answer(&self, what: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no answer to {what}"));
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("{what}: not JSON ({err}): {line}"))
    }

    fn initialize(&mut self) {
        self.send(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#);
        assert_eq!(self.answer("initialize")["id"], "init");
        self.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    fn close(mut self) -> Output {
        drop(self.child.stdin.take());
        finish(
            self.child,
            Duration::from_secs(20),
            "the MCP server after stdin closed",
        )
    }
}

/// An MCP server logging at debug level to a stderr nobody reads any more keeps serving, and
/// exits 0 when the client closes stdin (before: exit 101, a panic on the first log line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_with_debug_logs_and_no_stderr_keeps_serving() {
    let context = TestContext::new().unwrap();
    let mut env = context.env_with_path(&[]);
    env.insert("RUST_LOG".to_owned(), "debug".to_owned());
    let mut server = Stdio2::spawn(&context, &env, closed_pipe());
    server.initialize();
    server.send(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let tools = server.answer("tools/list");
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|tools| !tools.is_empty()),
        "{tools}"
    );
    server.send(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"init_session","arguments":{"label":"edges"}}}"#);
    let called = server.answer("init_session");
    assert_eq!(called["id"], 3, "{called}");
    assert_ne!(called["result"]["isError"], true, "{called}");
    let output = server.close();
    assert_eq!(output.status.code(), Some(0));
}

/// Every request line the server cannot use gets a JSON-RPC error over real stdio: not JSON
/// → -32700 with a null id; nested 100,000 deep, a number out of range, or longer than the
/// line limit → -32600 (with the request's id when it can be read); a notification gets no
/// answer. The server keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_json_rpc_lines_get_error_replies_over_stdio() {
    let context = TestContext::new().unwrap();
    let env = context.env_with_path(&[]);
    let mut server = Stdio2::spawn(&context, &env, Stdio::null());
    server.initialize();
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut too_long =
        br#"{"jsonrpc":"2.0","id":"long","method":"tools/list","params":{"pad":""#.to_vec();
    too_long.resize(refinery_mcp::MAX_LINE + 1024, b'x');
    too_long.extend_from_slice(br#""}}"#);
    let cases: Vec<(Vec<u8>, i64, Value)> = vec![
        (b"{this is not json".to_vec(), -32700, Value::Null),
        (b"\xff\xfe not utf-8".to_vec(), -32700, Value::Null),
        (br#"{"jsonrpc":"2.0","id":5,"method":"tools/list""#.to_vec(), -32700, Value::Null),
        (deep.into_bytes(), -32600, json!("deep")),
        (br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":1e400}}}"#.to_vec(), -32600, json!(7)),
        (too_long, -32600, Value::Null),
    ];
    for (line, code, id) in cases {
        server.send(&line);
        let answer = server.answer(&format!("a line answered with {code}"));
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    // A notification is never answered: the next answer is the next request's.
    server.send(
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1e400}}"#,
    );
    server.send(br#"{"jsonrpc":"2.0","id":"after","method":"tools/list"}"#);
    let after = server.answer("tools/list after the bad lines");
    assert_eq!(after["id"], "after", "{after}");
    assert!(after["result"]["tools"].is_array());
    assert_eq!(server.close().status.code(), Some(0));
}

/// Zero budgets and timeouts would stop every call at once: refused before anything starts
/// (no `git init`, no state folder, no model call), naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_budgets_and_timeouts_are_refused_before_anything_starts() {
    let server = FakeModelServer::start().await.unwrap();
    converging_fake(&server);
    let refine = |flag: &'static str, value: &'static str| {
        vec![
            "refine",
            "Build a page",
            "--criteria",
            "E1: It works",
            "--builder",
            MODEL,
            "--yes",
            flag,
            value,
        ]
    };
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (refine("--time-budget", "0"), 1, "--time-budget"),
        (refine("--time-budget", "0m"), 1, "--time-budget"),
        (refine("--call-timeout", "0"), 1, "--call-timeout"),
        (refine("--verify-timeout", "0"), 1, "--verify-timeout"),
        (refine("--cost-budget", "0"), 1, "--cost-budget"),
        (
            vec![
                "evaluate",
                ".",
                "--criteria",
                "E1: It works",
                "--evaluator",
                MODEL,
                "--yes",
                "--call-timeout",
                "0",
            ],
            1,
            "--call-timeout",
        ),
        (
            vec!["ask", MODEL, "hi", "--timeout", "0"],
            2,
            "more than zero",
        ),
        (
            vec!["tmux", "watch", "--pane", "%1", "--poll-ms", "0"],
            2,
            "more than zero",
        ),
        (
            vec!["tmux", "watch", "--pane", "%1", "--confirm-ms", "0"],
            2,
            "more than zero",
        ),
    ];
    for (args, code, needle) in cases {
        let context = TestContext::new().unwrap();
        let env = api_env(&context, &server);
        let child = command(&context, &env, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = finish(child, Duration::from_secs(30), "a zero limit");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !context.project().join(".refinery").exists(),
            "{args:?} left state behind"
        );
        assert!(
            !context.project().join(".git").exists(),
            "{args:?} ran git init"
        );
    }
    assert!(server.model_requests().is_empty());
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// A fifo named as a file argument is refused with an error, never opened for a read that
/// would wait forever for a writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_given_as_file_arguments_are_refused_not_read() {
    let server = FakeModelServer::start().await.unwrap();
    converging_fake(&server);
    let context = TestContext::new().unwrap();
    let env = api_env(&context, &server);
    let fifo = context.project().join("input.fifo");
    mkfifo(&fifo);
    let git = Command::new("git")
        .args(["init", "--quiet"])
        .current_dir(context.project())
        .status()
        .unwrap();
    assert!(git.success());
    let outside: PathBuf = context.root().join("outside.fifo");
    mkfifo(&outside);
    let fifo = fifo.display().to_string();
    let outside = outside.display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "refine",
            "Build a page",
            "--criteria-file",
            &fifo,
            "--builder",
            MODEL,
            "--yes",
        ],
        vec![
            "refine",
            "Build a page",
            "--criteria",
            "E1: x",
            "--prior-answer",
            &outside,
            "--builder",
            MODEL,
            "--yes",
        ],
        vec![
            "refine",
            &fifo,
            "--criteria",
            "E1: x",
            "--builder",
            MODEL,
            "--yes",
        ],
        vec![
            "evaluate",
            &fifo,
            "--criteria",
            "E1: x",
            "--evaluator",
            MODEL,
            "--yes",
        ],
        vec!["ask", MODEL, "hi", "--schema", &fifo],
        vec!["trace", &fifo],
        vec!["secrets", "scan", &fifo],
    ];
    for args in cases {
        let child = command(&context, &env, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = finish(child, Duration::from_secs(30), &format!("{args:?}"));
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("named pipe") || stderr.contains("not a regular file"),
            "{args:?}: {stderr}"
        );
    }
    assert!(server.model_requests().is_empty());
}
