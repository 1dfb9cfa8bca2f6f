//! Model-access benchmark: `ChatModel` call latency per protocol against the fake server, and
//! the wall time of a real agent-CLI run (tool call + answer) against the same fake.
//!
//! Run with `cargo bench -p refinery-llm --bench models` (or `--profile dev` for a quick run).
//! The fake adds 2 ms between SSE frames, so streamed totals include that on purpose (real
//! streams arrive in pieces too); plain calls have no artificial delay. Agent CLIs come from
//! the same places the tests look (`REFINERY_AGENT_CLI_DIR`, `~/.cache/refinery/agent-clis`,
//! `PATH`); a missing one is left out of the table. Results print as Markdown for
//! docs/BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark harness: fail loudly and print its table"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use refinery_llm::{
    AgentCli, AgentEvent, AgentRequest, AgentRunner, CallOptions, ChatModel as _, ChatRequest,
    Credentials, StreamEvent, open_chat_model,
};
use refinery_testkit::agent_cli::{self, AgentCliName};
use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, TestContext};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CALLS: usize = 50;
const AGENT_RUNS: usize = 3;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(samples: &[Duration], fraction: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    ms(sorted[index])
}

async fn chat_latency() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::text("A short answer of about forty characters."));
    let env: BTreeMap<String, String> = refinery_llm::KEY_VARIABLES
        .iter()
        .map(|name| ((*name).to_string(), "bench-key-000000".to_string()))
        .collect();
    let credentials = Credentials::from_env(&env);
    println!("### `ChatModel` against the fake server ({CALLS} calls each)\n");
    println!("| model | plain p50 | plain p95 | stream: first text p50 | stream: complete p50 |");
    println!("|---|---|---|---|---|");
    for name in [
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4.1",
        "openai-chat/gpt-4.1",
        "gemini/gemini-2.5-flash",
    ] {
        let model = open_chat_model(name, Some(&server.url()), &credentials).unwrap();
        let request = ChatRequest::new("hello");
        let options = CallOptions::default();
        // One warm-up call opens the connection pool.
        model.chat(&request, &options).await.unwrap();
        let mut plain = Vec::new();
        for _ in 0..CALLS {
            let started = Instant::now();
            model.chat(&request, &options).await.unwrap();
            plain.push(started.elapsed());
        }
        let mut first = Vec::new();
        let mut complete = Vec::new();
        for _ in 0..CALLS {
            let started = Instant::now();
            let mut first_at = None;
            let mut sink = |event: StreamEvent| {
                if matches!(event, StreamEvent::TextDelta(_)) && first_at.is_none() {
                    first_at = Some(started.elapsed());
                }
            };
            model
                .chat_stream(&request, &options, &mut sink)
                .await
                .unwrap();
            complete.push(started.elapsed());
            first.push(first_at.unwrap());
        }
        println!(
            "| `{name}` | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&plain, 0.5),
            percentile(&plain, 0.95),
            percentile(&first, 0.5),
            percentile(&complete, 0.5)
        );
    }
    println!();
}

async fn agent_runs() {
    println!(
        "### Real agent CLIs against the fake ({AGENT_RUNS} runs each: one tool call that writes a file, then an answer)\n"
    );
    println!("| CLI | min | median | max | model requests per run |");
    println!("|---|---|---|---|---|");
    let clis = [
        (AgentCli::Claude, AgentCliName::Claude, "Write"),
        (AgentCli::Codex, AgentCliName::Codex, "exec_command"),
        (AgentCli::Gemini, AgentCliName::Gemini, "write_file"),
        (AgentCli::Copilot, AgentCliName::Copilot, "create"),
    ];
    for (cli, name, tool) in clis {
        let Some(program) = agent_cli::find_agent_cli(name) else {
            println!("| {} | not installed | | | |", cli.program());
            continue;
        };
        let mut times = Vec::new();
        let mut requests = 0;
        for _ in 0..AGENT_RUNS {
            let context = TestContext::new().unwrap();
            let server = FakeModelServer::start().await.unwrap();
            let path = context.project().join("hello.txt");
            let input = match cli {
                AgentCli::Claude | AgentCli::Gemini => {
                    json!({"file_path": path, "content": "hi\n"})
                }
                AgentCli::Codex => json!({"cmd": "printf 'hi\\n' > hello.txt"}),
                AgentCli::Copilot => json!({"path": path, "file_text": "hi\n"}),
            };
            server.route(move |request: &RecordedRequest| {
                if !request.tool_names().iter().any(|offered| offered == tool) {
                    return Some(Reply::text(r#"{"next_speaker":"user"}"#));
                }
                Some(if request.tool_results().is_empty() {
                    Reply::tool_call(tool, input.clone())
                } else {
                    Reply::text("done")
                })
            });
            let env = match cli {
                AgentCli::Claude => agent_cli::claude_env(&context, &server, &program),
                AgentCli::Codex => agent_cli::codex_env(&context, &server, &program).unwrap(),
                AgentCli::Gemini => agent_cli::gemini_env(&context, &server, &program).unwrap(),
                AgentCli::Copilot => agent_cli::copilot_env(&context, &server, &program),
            };
            let mut request = AgentRequest::new(cli, context.project(), "Create hello.txt.");
            request.program = Some(program.clone());
            request.env = env;
            request.timeout = Duration::from_mins(2);
            if cli == AgentCli::Claude {
                request.allowed_tools = vec!["Write".to_string()];
            }
            if cli == AgentCli::Gemini {
                request.model = Some("gemini-2.5-flash".to_string());
            }
            let started = Instant::now();
            let mut ignore = |_event: &AgentEvent| {};
            AgentRunner
                .run(&request, &CancellationToken::new(), &mut ignore)
                .await
                .unwrap();
            times.push(started.elapsed());
            assert!(path.exists(), "{cli:?} did not write the file");
            requests = server.model_requests().len();
        }
        times.sort();
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} s | {requests} |",
            cli.program(),
            times[0].as_secs_f64(),
            times[times.len() / 2].as_secs_f64(),
            times[times.len() - 1].as_secs_f64()
        );
    }
    println!();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        chat_latency().await;
        agent_runs().await;
    });
}
