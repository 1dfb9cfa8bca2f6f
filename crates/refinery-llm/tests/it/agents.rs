//! The real agent CLIs against the fake model server, with a throwaway HOME.
//!
//! Each test scripts the fake so the CLI's model calls a file-writing tool, then asserts the
//! file, the collected usage, and the parsed events. A missing CLI skips with a printed
//! reason (a failure under `CI=true`). Set `REFINERY_RECORD_FIXTURES=1` to rewrite the
//! recorded event streams in `tests/fixtures/agent-events/` from these runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refinery_llm::{AgentCli, AgentEvent, AgentOutcome, AgentRequest, AgentRunner, Cost, Error};
use refinery_testkit::agent_cli::{self, AgentCliName, FAKE_KEY};
use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, TestContext};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Setup {
    context: TestContext,
    server: FakeModelServer,
    program: PathBuf,
    env: BTreeMap<String, String>,
}

async fn setup(cli: AgentCli) -> Option<Setup> {
    let name = match cli {
        AgentCli::Claude => AgentCliName::Claude,
        AgentCli::Codex => AgentCliName::Codex,
        AgentCli::Gemini => AgentCliName::Gemini,
        AgentCli::Copilot => AgentCliName::Copilot,
    };
    let program = agent_cli::require_agent_cli(name)?;
    let context = TestContext::new().unwrap();
    let server = FakeModelServer::start().await.unwrap();
    let env = match cli {
        AgentCli::Claude => agent_cli::claude_env(&context, &server, &program),
        AgentCli::Codex => agent_cli::codex_env(&context, &server, &program).unwrap(),
        AgentCli::Gemini => agent_cli::gemini_env(&context, &server, &program).unwrap(),
        AgentCli::Copilot => agent_cli::copilot_env(&context, &server, &program),
    };
    Some(Setup {
        context,
        server,
        program,
        env,
    })
}

/// The model's side of the conversation: call `tool` with `input` once, then say done.
fn script_write(server: &FakeModelServer, tool: &'static str, input: Value) {
    server.route(move |request: &RecordedRequest| {
        let offers_tool = request.tool_names().iter().any(|name| name == tool);
        if !offers_tool {
            // Side calls (titles, routing, summaries) get a short JSON-ish text.
            return Some(Reply::text(
                r#"{"reasoning":"fake","next_speaker":"user","model_choice":"flash"}"#,
            ));
        }
        if request.tool_results().is_empty() {
            Some(Reply::tool_call(tool, input.clone()).with_usage(1000, 100, 50))
        } else {
            Some(Reply::text("Created hello.txt as asked.").with_usage(1200, 300, 30))
        }
    });
}

fn request(setup: &Setup, cli: AgentCli) -> AgentRequest {
    let mut request = AgentRequest::new(
        cli,
        setup.context.project(),
        "Create hello.txt containing a greeting.",
    );
    request.program = Some(setup.program.clone());
    request.env = setup.env.clone();
    request.timeout = Duration::from_mins(2);
    request
}

async fn run(request: &AgentRequest) -> (Result<AgentOutcome, Error>, Vec<AgentEvent>) {
    let mut events = Vec::new();
    let mut on_event = |event: &AgentEvent| events.push(event.clone());
    let outcome = AgentRunner
        .run(request, &CancellationToken::new(), &mut on_event)
        .await;
    (outcome, events)
}

/// Rewrite the fixture from a raw run when asked; paths and ids are made stable first.
async fn maybe_record(cli: AgentCli, scenario: &str, setup: &Setup, request: &AgentRequest) {
    if std::env::var("REFINERY_RECORD_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let (args, stdin) = AgentRunner::arguments(request);
    let mut command = tokio::process::Command::new(&setup.program);
    command
        .args(&args)
        .current_dir(&request.workdir)
        .env_clear()
        .envs(&request.env);
    command.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt as _;
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let output = tokio::time::timeout(Duration::from_mins(2), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let root = setup.context.root().display().to_string();
    let text = String::from_utf8_lossy(&output.stdout)
        .replace(&root, "/tmp/refinery-test")
        .replace(FAKE_KEY, "<key>");
    let path = fixtures_dir().join(format!("{}-{scenario}.jsonl", cli.program()));
    fs_err::create_dir_all(fixtures_dir()).unwrap();
    fs_err::write(path, text).unwrap();
    let _ = fs_err::remove_file(setup.context.project().join("hello.txt"));
}

pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-events")
}

fn assert_wrote_file(cli: AgentCli, setup: &Setup, outcome: &AgentOutcome, events: &[AgentEvent]) {
    let written = fs_err::read_to_string(setup.context.project().join("hello.txt"))
        .unwrap_or_else(|error| panic!("{cli:?}: no hello.txt: {error}; events: {events:#?}"));
    assert!(written.contains("hello from"), "{cli:?}: {written}");
    assert!(
        outcome.text.contains("Created hello.txt"),
        "{cli:?}: final text {:?}",
        outcome.text
    );
    assert!(outcome.tool_calls >= 1, "{cli:?}");
    assert!(
        events
            .iter()
            .any(|event| matches!(event, AgentEvent::ToolUse { .. })),
        "{cli:?}"
    );
    assert!(
        events.iter().any(|event| matches!(
            event,
            AgentEvent::ToolResult {
                is_error: false,
                ..
            }
        )),
        "{cli:?}"
    );
    let serialized = serde_json::to_string(events).unwrap();
    assert!(
        !serialized.contains(FAKE_KEY),
        "{cli:?}: the key leaked into events"
    );
    let model_calls = setup.server.model_requests();
    assert!(
        model_calls.len() >= 2,
        "{cli:?}: {} model calls",
        model_calls.len()
    );
}

#[tokio::test]
async fn claude_writes_a_file_through_a_tool_call() {
    let Some(setup) = setup(AgentCli::Claude).await else {
        return;
    };
    let path = setup.context.project().join("hello.txt");
    script_write(
        &setup.server,
        "Write",
        json!({"file_path": path, "content": "hello from claude\n"}),
    );
    let mut request = request(&setup, AgentCli::Claude);
    request.allowed_tools = vec!["Write".to_string()];
    request.system_prompt = Some("You are terse.".to_string());
    request.max_turns = Some(4);
    maybe_record(AgentCli::Claude, "write-file", &setup, &request).await;
    let (outcome, events) = run(&request).await;
    let outcome = outcome.unwrap_or_else(|error| panic!("{error}"));
    assert_wrote_file(AgentCli::Claude, &setup, &outcome, &events);
    // Totals from the result event: the fake's two turns (1000 + 1200 input, 50 + 30 output).
    let usage = outcome.usage.unwrap();
    assert_eq!(usage.output_tokens, 80, "{usage:?}");
    assert_eq!(usage.input_tokens, 2200, "{usage:?}");
    assert_eq!(usage.cached_input_tokens, 400, "{usage:?}");
    assert!(
        matches!(outcome.cost, Cost::Usd(cost) if cost > 0.0),
        "{:?}",
        outcome.cost
    );
    assert!(outcome.session_id.is_some());
    let system_sent = setup
        .server
        .model_requests()
        .iter()
        .any(|request| request.body_text().contains("You are terse."));
    assert!(system_sent, "the system prompt did not reach the model");
}

#[tokio::test]
async fn codex_writes_a_file_through_a_tool_call() {
    let Some(setup) = setup(AgentCli::Codex).await else {
        return;
    };
    script_write(
        &setup.server,
        "exec_command",
        json!({"cmd": "printf 'hello from codex\\n' > hello.txt"}),
    );
    let request = request(&setup, AgentCli::Codex);
    maybe_record(AgentCli::Codex, "write-file", &setup, &request).await;
    let (outcome, events) = run(&request).await;
    let outcome = outcome.unwrap_or_else(|error| panic!("{error}"));
    assert_wrote_file(AgentCli::Codex, &setup, &outcome, &events);
    let usage = outcome.usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens
        ),
        (2200, 80, 400),
        "{usage:?}"
    );
    assert_eq!(outcome.cost, Cost::Unknown, "codex reports no cost");
}

#[tokio::test]
async fn gemini_writes_a_file_through_a_tool_call() {
    let Some(setup) = setup(AgentCli::Gemini).await else {
        return;
    };
    let path = setup.context.project().join("hello.txt");
    script_write(
        &setup.server,
        "write_file",
        json!({"file_path": path, "content": "hello from gemini\n"}),
    );
    let mut request = request(&setup, AgentCli::Gemini);
    request.model = Some("gemini-2.5-flash".to_string());
    maybe_record(AgentCli::Gemini, "write-file", &setup, &request).await;
    let (outcome, events) = run(&request).await;
    let outcome = outcome.unwrap_or_else(|error| panic!("{error}"));
    assert_wrote_file(AgentCli::Gemini, &setup, &outcome, &events);
    let usage = outcome.usage.unwrap();
    assert!(
        usage.input_tokens >= 2200 && usage.output_tokens >= 80,
        "{usage:?}"
    );
}

#[tokio::test]
async fn copilot_writes_a_file_through_a_tool_call() {
    let Some(setup) = setup(AgentCli::Copilot).await else {
        return;
    };
    let path = setup.context.project().join("hello.txt");
    script_write(
        &setup.server,
        "create",
        json!({"path": path, "file_text": "hello from copilot\n"}),
    );
    let request = request(&setup, AgentCli::Copilot);
    maybe_record(AgentCli::Copilot, "write-file", &setup, &request).await;
    let (outcome, events) = run(&request).await;
    let outcome = outcome.unwrap_or_else(|error| {
        panic!(
            "{error}\n{:#?}",
            setup
                .server
                .model_requests()
                .iter()
                .map(refinery_testkit::RecordedRequest::tool_names)
                .collect::<Vec<_>>()
        )
    });
    assert_wrote_file(AgentCli::Copilot, &setup, &outcome, &events);
    // From copilot's --usage-output-file: its JSONL has no token counts.
    let usage = outcome.usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens
        ),
        (2200, 80, 400),
        "{usage:?}"
    );
    assert_eq!(
        outcome.cost,
        Cost::Unknown,
        "copilot reports premium requests, not USD"
    );
}

/// Every CLI's run against a backend that answers 400 becomes `AgentFailed` with the CLI's
/// own message.
async fn assert_failed_run(cli: AgentCli) {
    let Some(setup) = setup(cli).await else {
        return;
    };
    setup.server.set_fallback(Reply::status(400));
    let mut request = request(&setup, cli);
    if cli == AgentCli::Gemini {
        request.model = Some("gemini-2.5-flash".to_string());
    }
    request.timeout = Duration::from_mins(1);
    maybe_record(cli, "api-error", &setup, &request).await;
    let started = Instant::now();
    let (outcome, _events) = run(&request).await;
    let error = outcome.expect_err("a 400 from the backend must fail the run");
    let Error::AgentFailed {
        cli: failed_cli,
        message,
        ..
    } = &error
    else {
        panic!("{cli:?}: expected AgentFailed, got {error:?}");
    };
    assert_eq!(*failed_cli, cli);
    assert!(
        message.contains("400") || message.contains("injected status"),
        "{cli:?}: message {message:?}"
    );
    assert!(!error.to_string().contains(FAKE_KEY));
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{cli:?}: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn claude_failed_run_is_a_typed_error() {
    assert_failed_run(AgentCli::Claude).await;
}

#[tokio::test]
async fn codex_failed_run_is_a_typed_error() {
    assert_failed_run(AgentCli::Codex).await;
}

#[tokio::test]
async fn gemini_failed_run_is_a_typed_error() {
    assert_failed_run(AgentCli::Gemini).await;
}

#[tokio::test]
async fn copilot_failed_run_is_a_typed_error() {
    assert_failed_run(AgentCli::Copilot).await;
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        if entry
            .file_name()
            .to_str()
            .is_none_or(|name| name.parse::<u32>().is_err())
        {
            continue;
        }
        if let Ok(cmdline) = fs_err::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// The scripted model starts a long `sleep` through the CLI's shell tool; the wall-clock
/// timeout must kill the CLI and that grandchild. A node CLI on a loaded machine can take
/// longer than `timeout` just to start, so an attempt whose shell call never began says
/// nothing about the kill; it is tried again with three times the timeout (twice at most).
async fn assert_timeout_kills_the_tree(
    cli: AgentCli,
    tool: &'static str,
    input: fn(&str) -> Value,
    timeout: Duration,
) {
    let mut timeout = timeout;
    for attempt in 0..3 {
        match timeout_attempt(cli, tool, input, timeout, attempt).await {
            Some(true) | None => return,
            Some(false) => timeout *= 3,
        }
    }
    panic!("{cli:?}: the model's shell call never started, even with a {timeout:?} timeout");
}

/// One attempt: `None` when the CLI is not installed, `Some(false)` when the shell call never
/// started before the timeout, `Some(true)` when it did and the whole tree was killed.
async fn timeout_attempt(
    cli: AgentCli,
    tool: &'static str,
    input: fn(&str) -> Value,
    timeout: Duration,
    attempt: u32,
) -> Option<bool> {
    let setup = setup(cli).await?;
    // A marker unique to this run, so parallel tests cannot confuse each other's sleeps.
    let marker = format!(
        "{}.{}{attempt}",
        600 + (std::process::id() % 300),
        cli as u32 + 1
    );
    let command = format!("echo start && sleep {marker} && echo done");
    script_write(&setup.server, tool, input(&command));
    let mut request = request(&setup, cli);
    request.timeout = timeout;
    match cli {
        AgentCli::Claude => request.allowed_tools = vec!["Bash".to_string()],
        AgentCli::Gemini => request.model = Some("gemini-2.5-flash".to_string()),
        AgentCli::Codex | AgentCli::Copilot => {}
    }
    let started = Instant::now();
    let mut saw_sleep = false;
    let mut events = Vec::new();
    let mut on_event = |event: &AgentEvent| {
        if let AgentEvent::ToolUse { .. } = event {
            saw_sleep = true;
        }
        events.push(event.clone());
    };
    let outcome = AgentRunner
        .run(&request, &CancellationToken::new(), &mut on_event)
        .await;
    let elapsed = started.elapsed();
    let error = outcome.expect_err("the run must time out");
    assert!(
        matches!(error, Error::AgentTimeout { .. }),
        "{cli:?}: {error:?}"
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(5),
        "{cli:?}: {elapsed:?}"
    );
    if !saw_sleep {
        return Some(false);
    }
    let pid = events.iter().find_map(|event| match event {
        AgentEvent::Spawned { pid } => Some(*pid),
        _ => None,
    });
    assert!(pid.is_some());
    // SIGKILL is delivered at once, but give the kernel a moment to reap.
    let mut left = processes_with(&marker);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = processes_with(&marker);
    }
    assert!(
        left.is_empty(),
        "{cli:?}: still running after the timeout: {left:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", pid.unwrap_or_default()))
            .join("cmdline")
            .exists()
            || {
                let stat =
                    fs_err::read_to_string(format!("/proc/{}/stat", pid.unwrap_or_default()))
                        .unwrap_or_default();
                stat.contains(") Z")
            },
        "{cli:?}: the CLI process survived"
    );
    Some(true)
}

#[tokio::test]
async fn claude_timeout_kills_the_process_tree() {
    assert_timeout_kills_the_tree(
        AgentCli::Claude,
        "Bash",
        |command| json!({"command": command, "description": "wait"}),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn codex_timeout_kills_the_process_tree() {
    assert_timeout_kills_the_tree(
        AgentCli::Codex,
        "exec_command",
        |command| json!({"cmd": command}),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn gemini_timeout_kills_the_process_tree() {
    assert_timeout_kills_the_tree(
        AgentCli::Gemini,
        "run_shell_command",
        |command| json!({"command": command, "description": "wait"}),
        // Gemini starts in 3–11 s idle; on a loaded 2-core machine, with another CLI test
        // starting beside it, the shell call came after 10 s.
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test]
async fn copilot_timeout_kills_the_process_tree() {
    assert_timeout_kills_the_tree(
        AgentCli::Copilot,
        "bash",
        |command| json!({"command": command, "description": "wait"}),
        // Copilot starts in about 4 s idle; under load, beside another CLI test, 7 s was not
        // always enough for its shell call to begin.
        Duration::from_secs(12),
    )
    .await;
}

#[tokio::test]
async fn cancelling_a_run_kills_the_cli() {
    let Some(setup) = setup(AgentCli::Codex).await else {
        return;
    };
    setup
        .server
        .set_fallback(Reply::text("too late").delayed(Duration::from_mins(1)));
    let request = request(&setup, AgentCli::Codex);
    let cancel = CancellationToken::new();
    let mut pid = None;
    let mut on_event = |event: &AgentEvent| {
        if let AgentEvent::Spawned { pid: spawned } = event {
            pid = Some(*spawned);
        }
    };
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let error = AgentRunner
        .run(&request, &cancel, &mut on_event)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = pid.unwrap();
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the CLI is still running: {stat}"
    );
    assert!(
        !setup.server.model_requests().is_empty(),
        "the run was cancelled before it reached the model"
    );
}

#[tokio::test]
async fn a_key_the_agent_prints_is_redacted() {
    let Some(setup) = setup(AgentCli::Claude).await else {
        return;
    };
    setup.server.set_fallback(Reply::text(format!(
        "Your key is {FAKE_KEY}, keep it safe."
    )));
    let request = request(&setup, AgentCli::Claude);
    let (outcome, events) = run(&request).await;
    let outcome = outcome.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(outcome.text, "Your key is [REDACTED], keep it safe.");
    assert!(!serde_json::to_string(&events).unwrap().contains(FAKE_KEY));
    assert!(!serde_json::to_string(&outcome).unwrap().contains(FAKE_KEY));
}

/// The argv and environment of every process in process group `group` right now, from
/// `/proc` (the runner makes each CLI lead its own group; launchers such as `env node` exec
/// again after the spawn, so one read at spawn time is not enough).
fn group_args_and_env(group: u32) -> Vec<(Vec<String>, Vec<String>)> {
    let split = |bytes: Vec<u8>| {
        bytes
            .split(|byte| *byte == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let in_group = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|field| field.parse::<u32>().ok())
            == Some(group);
        if in_group {
            let args = split(fs_err::read(entry.path().join("cmdline")).unwrap_or_default());
            let env = split(fs_err::read(entry.path().join("environ")).unwrap_or_default());
            if !args.is_empty() {
                found.push((args, env));
            }
        }
    }
    found
}

/// Every real CLI gets a 150 KiB brief (over Linux's 128 KiB limit for one argument) through stdin (its end reaches the model), no argument
/// over 100 KiB, only the environment it needs (a planted unrelated token and an AWS secret
/// key stay out of the child), and a key pasted into the brief is masked before the CLI sees
/// it.
#[tokio::test]
async fn briefs_go_through_stdin_and_children_get_a_filtered_environment() {
    for cli in AgentCli::ALL {
        let Some(setup) = setup(cli).await else {
            continue;
        };
        setup.server.set_fallback(Reply::text("Done."));
        // Assembled at run time: a GitHub token pasted into the task, and two variables the
        // CLI has no business seeing.
        let pasted = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2Q");
        let unrelated = ["unrelated-", "service-token-5150"].concat();
        let aws = ["Zq7Rk2Lw9Tn4Vb8Xc3Hy6", "Md1Pf5Sg0JaKu2E/h+Zx9"].concat();
        let marker = format!("BRIEF-TAIL-MARKER-{}", cli.program());
        let brief = format!(
            "Reply with one word. Context follows.\nToken in the notes: {pasted}\n{}\n{marker}\n",
            "lorem ipsum dolor sit amet ".repeat(150 * 1024 / 27)
        );
        let mut request = request(&setup, cli);
        request.prompt = brief;
        if cli == AgentCli::Gemini {
            // A pinned model: no router side calls (slow, and not what is tested here).
            request.model = Some("gemini-2.5-flash".to_owned());
        }
        request
            .env
            .insert("UNRELATED_SERVICE_TOKEN".to_owned(), unrelated.clone());
        request
            .env
            .insert("AWS_SECRET_ACCESS_KEY".to_owned(), aws.clone());
        // Sample the CLI's process group while it runs.
        let group = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (group, done) = (group.clone(), done.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let pid = group.load(std::sync::atomic::Ordering::SeqCst);
                    if pid != 0 {
                        samples.extend(group_args_and_env(pid));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                samples
            })
        };
        let mut on_event = |event: &AgentEvent| {
            if let AgentEvent::Spawned { pid } = event {
                group.store(*pid, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let outcome = AgentRunner
            .run(&request, &CancellationToken::new(), &mut on_event)
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let samples = sampler.join().unwrap();
        outcome.unwrap_or_else(|error| panic!("{cli:?}: {error}"));
        assert!(
            !samples.is_empty(),
            "{cli:?}: the process group was never sampled"
        );
        for (args, env) in &samples {
            let longest = args.iter().map(String::len).max().unwrap_or(0);
            assert!(
                longest <= refinery_llm::MAX_ARGUMENT,
                "{cli:?}: an argument of {longest} bytes"
            );
            assert!(
                !args
                    .iter()
                    .any(|arg| arg.contains(&marker) || arg.contains(&pasted)),
                "{cli:?}: the brief is on argv"
            );
            let env_text = env.join("\n");
            for planted in [&unrelated, &aws] {
                assert!(
                    !env_text.contains(planted.as_str()),
                    "{cli:?}: a planted secret reached the environment of {args:?}"
                );
            }
        }
        assert!(
            samples
                .iter()
                .any(|(_, env)| env.iter().any(|pair| pair.ends_with(FAKE_KEY))),
            "{cli:?}: its own key never reached it"
        );
        let requests = setup.server.model_requests();
        assert!(
            requests
                .iter()
                .any(|recorded| recorded.body_text().contains(&marker)),
            "{cli:?}: the end of the brief never reached the model"
        );
        for recorded in &requests {
            assert!(
                !recorded.body_text().contains(&pasted),
                "{cli:?}: the pasted token reached the model"
            );
        }
    }
}

/// Every IPv4/IPv6 address a traced CLI connected or sent a datagram to (`connect`, `sendto`,
/// `sendmmsg`: DNS lookups show up as the latter); Unix and netlink sockets are skipped.
fn connected_addresses(trace: &str) -> Vec<String> {
    let mut addresses = Vec::new();
    for line in trace.lines() {
        if let Some(start) = line.find("inet_addr(\"") {
            let rest = &line[start + 11..];
            addresses.push(rest[..rest.find('"').unwrap_or(rest.len())].to_string());
        } else if let Some(start) = line.find("inet_pton(AF_INET6, \"") {
            let rest = &line[start + 21..];
            addresses.push(rest[..rest.find('"').unwrap_or(rest.len())].to_string());
        }
    }
    addresses
}

/// Run each real CLI under `strace -f` (network syscalls) through the write-file scenario and
/// check it reached nothing but the loopback fake: no telemetry, update checks or DNS.
#[tokio::test]
async fn agent_clis_connect_only_to_loopback() {
    let Some(strace) = refinery_testkit::skip::require_program(
        "strace",
        &["/usr/bin/strace", "/bin/strace"],
        "apt-get install strace",
    ) else {
        return;
    };
    let scenarios: [(AgentCli, &'static str); 4] = [
        (AgentCli::Claude, "Write"),
        (AgentCli::Codex, "exec_command"),
        (AgentCli::Gemini, "write_file"),
        (AgentCli::Copilot, "create"),
    ];
    for (cli, tool) in scenarios {
        let Some(setup) = setup(cli).await else {
            continue;
        };
        let path = setup.context.project().join("hello.txt");
        let input = match cli {
            AgentCli::Codex => json!({"cmd": "printf 'hello from codex\\n' > hello.txt"}),
            AgentCli::Copilot => json!({"path": path, "file_text": "hello from copilot\n"}),
            AgentCli::Claude | AgentCli::Gemini => {
                json!({"file_path": path, "content": "hello from cli\n"})
            }
        };
        script_write(&setup.server, tool, input);
        let trace = setup.context.tmp().join("connect.trace");
        let wrapper = setup
            .context
            .write(
                "bin/traced-cli",
                &format!(
                    "#!/bin/sh\nexec {} -f -qq -s 200 -e trace=connect,sendto,sendmmsg,sendmsg -o {} {} \"$@\"\n",
                    strace.display(),
                    trace.display(),
                    setup.program.display()
                ),
            )
            .unwrap();
        fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut request = request(&setup, cli);
        request.program = Some(wrapper);
        match cli {
            AgentCli::Claude => request.allowed_tools = vec!["Write".to_string()],
            AgentCli::Gemini => request.model = Some("gemini-2.5-flash".to_string()),
            AgentCli::Codex | AgentCli::Copilot => {}
        }
        let (outcome, events) = run(&request).await;
        outcome.unwrap_or_else(|error| panic!("{cli:?} under strace: {error}\n{events:#?}"));
        assert!(
            path.exists(),
            "{cli:?}: the traced run did not write the file"
        );
        let addresses = connected_addresses(&fs_err::read_to_string(&trace).unwrap());
        assert!(
            !addresses.is_empty(),
            "{cli:?}: the trace shows no connection at all"
        );
        let foreign: Vec<&String> = addresses
            .iter()
            .filter(|address| !matches!(address.as_str(), "127.0.0.1" | "::1" | "::ffff:127.0.0.1"))
            .collect();
        assert!(
            foreign.is_empty(),
            "{cli:?} connected beyond loopback: {foreign:?}"
        );
    }
}

#[test]
fn the_trace_reader_sees_dns_and_connections() {
    // Lines as strace printed them when codex still looked up github.com before the fix.
    let trace = r#"29796 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
29841 sendto(49, "\314]\1\0", 32, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16) = 32
29747 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = 0
29747 connect(5, {sa_family=AF_INET, sin_port=htons(41234), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
29747 connect(3, {sa_family=AF_UNIX, sun_path="/tmp/x.sock"}, 110) = 0
29747 sendto(8, "\1", 1, MSG_NOSIGNAL, NULL, 0) = 1"#;
    assert_eq!(
        connected_addresses(trace),
        ["10.255.255.53", "10.0.0.2", "2606:4700::1", "127.0.0.1"]
    );
}
