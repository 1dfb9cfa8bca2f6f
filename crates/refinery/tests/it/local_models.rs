//! Local model servers: a machine with only llama.cpp's server (the fake, answering as
//! llama.cpp does, `/props` included) gets it as the default backend in `doctor` and `refine`
//! alike; builders that do not make tool calls write files through the whole-file format
//! (JSON `files`, fenced blocks, or tool calls written as text), confined to the workspace; a
//! builder that writes nothing is reported as such; every request's `max_tokens` fits the
//! server's context, so the criteria writer against a server that honours its bounds finishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, TestContext};
use serde_json::{Value, json};

use crate::llm_support::{closed_url, text};
use crate::refine::{json_lines, role, summary};

const CRITERIA: &str = "E1: hello.py prints Hello, E2: The code is short";

fn evaluation(score: u8) -> Reply {
    Reply::text(
        json!({
            "scores": {
                "E1": {"score": score, "evidence": ["hello.py:1 prints it"], "reasoning": "checked"},
                "E2": {"score": score, "evidence": ["hello.py:1 one line"], "reasoning": "checked"}
            },
            "critique": "fine",
            "improvement_spec": [{"criterion": "E1", "change": "say more", "impact": "structural"}],
            "preserve": ["the print"]
        })
        .to_string(),
    )
}

fn lessons() -> Reply {
    Reply::text(json!({"do": ["wrote the file"], "dont": [], "critical_errors": []}).to_string())
}

/// A PATH with `git` alone: no agent CLI can be found, whatever this machine has installed.
fn git_only_path(context: &TestContext) -> String {
    let bin = context.home().join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    let git = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("git"))
        .find(|path| path.is_file())
        .expect("git on PATH");
    let link = bin.join("git");
    if !link.exists() {
        std::os::unix::fs::symlink(git, &link).unwrap();
    }
    bin.display().to_string()
}

/// No keys, no CLIs, every usual local port closed except where `llama_cpp` points.
fn machine_env(context: &TestContext, llama_cpp: &str) -> BTreeMap<String, String> {
    let mut env = context.bare_env();
    env.insert("PATH".to_owned(), git_only_path(context));
    env.insert("REFINERY_LLAMA_CPP_URL".to_owned(), llama_cpp.to_owned());
    for variable in [
        "REFINERY_OLLAMA_URL",
        "REFINERY_LMSTUDIO_URL",
        "REFINERY_VLLM_URL",
    ] {
        env.insert(variable.to_owned(), closed_url());
    }
    env
}

async fn refinery(context: &TestContext, env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let env = env.clone();
    let project: PathBuf = context.project();
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::support::BIN)
            .env_clear()
            .envs(&env)
            .current_dir(project)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn builders(server: &FakeModelServer) -> Vec<RecordedRequest> {
    server
        .model_requests()
        .into_iter()
        .filter(|request| role(request) == "builder")
        .collect()
}

/// The fake answers the judges; `builder` answers each builder request.
fn install(
    server: &FakeModelServer,
    builder: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
) {
    server.route(move |request| {
        Some(match role(request) {
            "builder" => builder(request),
            "evaluator" => evaluation(8),
            "trace" => lessons(),
            "guard" => Reply::text(
                json!({"preferences": {"E1": "tie", "E2": "tie"}, "reasoning": "the same"})
                    .to_string(),
            ),
            _ => Reply::text("Hello"),
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_llama_cpp_running_doctor_and_refine_both_use_it() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_context_window(8192);
    install(&server, |_| {
        Reply::text(
            json!({"files": [{"path": "hello.py", "content": "print('Hello')\n"}], "summary": "wrote hello.py"})
                .to_string(),
        )
    });
    let context = TestContext::new().unwrap();
    let env = machine_env(&context, &server.url());

    let output = refinery(&context, &env, &["doctor", "--json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["default_backend"]["name"], "local/fake-model");
    assert_eq!(report["default_backend"]["context_window"], 8192);
    let output = refinery(&context, &env, &["doctor"]).await;
    assert!(
        text(&output.stdout).contains(
            "Default backend (refine and evaluate without --builder/--evaluator): local/fake-model"
        ),
        "{}",
        text(&output.stdout)
    );

    // No backend flags at all.
    let output = refinery(
        &context,
        &env,
        &[
            "refine",
            "Write hello.py",
            "--criteria",
            CRITERIA,
            "--max-rounds",
            "1",
            "--yes",
            "--json",
        ],
    )
    .await;
    let events = json_lines(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let session = events
        .iter()
        .find(|event| event["event"] == "session")
        .unwrap();
    assert_eq!(session["builder"], "local/fake-model");
    assert_eq!(session["evaluator"], "local/fake-model");
    assert_eq!(
        fs_err::read_to_string(context.project().join("hello.py")).unwrap(),
        "print('Hello')\n"
    );
    // The builder of a local server gets the whole-file format: no tools, the files schema,
    // and every request's max_tokens fits the 8,192 tokens of context `/props` reported.
    let builder = &builders(&server)[0];
    assert!(
        builder.tool_names().is_empty(),
        "{:?}",
        builder.tool_names()
    );
    assert_eq!(
        builder.body["response_format"]["json_schema"]["name"],
        "files"
    );
    for request in server.model_requests() {
        let max_tokens = request.body["max_tokens"].as_u64().unwrap_or(u64::MAX);
        assert!(
            max_tokens < 8192,
            "{}: max_tokens {max_tokens}",
            role(&request)
        );
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|request| request.path == "/props")
    );

    // `ask` finds the server by itself and bounds its answer too.
    server.set_context_window(600);
    let output = refinery(&context, &env, &["ask", "local", "hello"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let asked = server.model_requests().pop().unwrap();
    assert_eq!(asked.body["model"], "fake-model");
    let max_tokens = asked.body["max_tokens"].as_u64().unwrap();
    assert!((256..=600).contains(&max_tokens), "max_tokens {max_tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_blocks_are_written_and_confined_and_no_files_is_reported() {
    let server = FakeModelServer::start().await.unwrap();
    // Round 1: fenced blocks, one of them aimed outside the workspace and one at Refinery's
    // state. Round 2: nothing but prose.
    install(&server, |request| {
        if request.body_text().contains("# Round 1 of") {
            Reply::text(
                "Here you go.\n\nhello.py\n```python\nprint('Hello')\n```\n\n../outside.txt\n```\nescaped\n```\n\n.refinery/evil.json\n```json\n{}\n```\n",
            )
        } else {
            Reply::text("I looked at the files and they are fine as they are.")
        }
    });
    let context = TestContext::new().unwrap();
    let env = machine_env(&context, &closed_url());
    let base = format!("{}/v1", server.url());
    let output = refinery(
        &context,
        &env,
        &[
            "refine",
            "Write hello.py",
            "--criteria",
            CRITERIA,
            "--builder",
            "local/fake-model",
            "--base-url",
            &base,
            "--max-rounds",
            "2",
            "--min-rounds",
            "2",
            "--yes",
            "--json",
        ],
    )
    .await;
    let events = json_lines(&output.stdout);
    assert!(
        output.status.code().is_some_and(|code| code != 1),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        fs_err::read_to_string(context.project().join("hello.py")).unwrap(),
        "print('Hello')\n"
    );
    let outside = context.project().parent().unwrap().join("outside.txt");
    assert!(!outside.exists(), "a block escaped the workspace");
    assert!(!context.project().join(".refinery/evil.json").exists());
    // The refused paths went back as tool errors in the round's trace.
    let trace = fs_err::read_to_string(glob_one(
        &context.project().join(".refinery/sessions"),
        "round_001/builder_events.jsonl",
    ))
    .unwrap();
    assert!(trace.contains("whole-file-file-block-1"), "{trace}");
    assert!(trace.contains("leaves the workspace"), "{trace}");

    let summary = summary(&events);
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{summary}");
    assert_eq!(rounds[0].get("builder_changed_nothing"), None);
    assert_eq!(rounds[1]["builder_changed_nothing"], true);
    assert!(
        events
            .iter()
            .any(|event| event["event"] == "builder_changed_nothing" && event["round"] == 2),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_builder_that_writes_calls_as_text_switches_to_whole_files() {
    let server = FakeModelServer::start().await.unwrap();
    // Offered tools, the model writes the call as text (as Qwen2.5-Coder does).
    install(&server, |_| {
        Reply::text(
            "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"hello.py\", \"content\": \"print('Hello')\\n\"}}\n```",
        )
    });
    let context = TestContext::new().unwrap();
    let mut env = machine_env(&context, &closed_url());
    env.insert("OPENAI_BASE_URL".to_owned(), format!("{}/v1", server.url()));
    let output = refinery(
        &context,
        &env,
        &[
            "refine",
            "Write hello.py",
            "--criteria",
            CRITERIA,
            "--builder",
            "openai-chat/fake-model",
            "--max-rounds",
            "2",
            "--min-rounds",
            "2",
            "--yes",
            "--json",
        ],
    )
    .await;
    assert!(
        output.status.code().is_some_and(|code| code != 1),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        fs_err::read_to_string(context.project().join("hello.py")).unwrap(),
        "print('Hello')\n"
    );
    let trace = fs_err::read_to_string(glob_one(
        &context.project().join(".refinery/sessions"),
        "round_001/builder_events.jsonl",
    ))
    .unwrap();
    assert!(trace.contains("whole-file-text-call-1"), "{trace}");
    // Round 1 offered the file tools; round 2 asked for whole files instead.
    let builders = builders(&server);
    assert_eq!(builders.len(), 2, "{builders:?}");
    assert!(builders[0].tool_names().contains(&"write_file".to_owned()));
    assert!(builders[1].tool_names().is_empty());
    assert_eq!(
        builders[1].body["response_format"]["json_schema"]["name"],
        "files"
    );
    assert!(
        builders[1]
            .body_text()
            .contains("The workspace's files now")
    );
}

/// The one file `relative` under the single session folder in `sessions`.
fn glob_one(sessions: &Path, relative: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = fs_err::read_dir(sessions)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join(relative))
        .filter(|path| path.exists())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_criteria_writer_finishes_against_a_server_that_honours_its_bounds() {
    const CONTEXT: u64 = 8192;
    let server = FakeModelServer::start().await.unwrap();
    server.set_context_window(8192);
    // Like llama.cpp with a small model: a request whose prompt plus `max_tokens` exceeds the
    // context (or that sets no bound) runs on until the context is full — here, past the
    // call timeout. A bounded request gets its answer at once.
    server.route(|request| {
        let prompt_tokens = request.body_text().len() as u64 / 4;
        let bounded = request.body["max_tokens"]
            .as_u64()
            .is_some_and(|max_tokens| prompt_tokens + max_tokens <= CONTEXT);
        let reply = match role(request) {
            "criteria" => Reply::text(
                json!({"criteria": [
                    {"text": "hello.py prints Hello", "category": "primary", "anti_patterns": ["prints nothing"], "verify_by": "run it"},
                    {"text": "The code is one short line", "category": "standard", "anti_patterns": ["needless imports"], "verify_by": "read it"},
                    {"text": "It runs on Python 3", "category": "stretch", "anti_patterns": ["Python 2 print"], "verify_by": "python3 hello.py"}
                ]})
                .to_string(),
            ),
            "builder" => Reply::text(
                json!({"files": [{"path": "hello.py", "content": "print('Hello')\n"}], "summary": "wrote it"})
                    .to_string(),
            ),
            "evaluator" => Reply::text(
                json!({
                    "scores": {
                        "E1": {"score": 8, "evidence": ["hello.py:1"], "reasoning": "ok"},
                        "E2": {"score": 8, "evidence": ["hello.py:1"], "reasoning": "ok"},
                        "E3": {"score": 8, "evidence": ["hello.py:1"], "reasoning": "ok"}
                    },
                    "critique": "fine",
                    "improvement_spec": [{"criterion": "E1", "change": "more", "impact": "structural"}],
                    "preserve": ["all"]
                })
                .to_string(),
            ),
            "trace" => lessons(),
            _ => Reply::status(400),
        };
        Some(if bounded {
            reply
        } else {
            reply.delayed(std::time::Duration::from_mins(2))
        })
    });
    let context = TestContext::new().unwrap();
    let env = machine_env(&context, &server.url());
    // Exit 0 with written criteria means no call ran into the 20 s timeout.
    let output = refinery(
        &context,
        &env,
        &[
            "refine",
            "Write hello.py",
            "--max-rounds",
            "1",
            "--call-timeout",
            "20",
            "--yes",
            "--json",
        ],
    )
    .await;
    let events = json_lines(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let criteria = events
        .iter()
        .find(|event| event["event"] == "criteria")
        .expect("criteria were written");
    assert_eq!(criteria["source"], "writer");
    let writer = server
        .model_requests()
        .into_iter()
        .find(|request| role(request) == "criteria")
        .unwrap();
    assert!(writer.body["response_format"]["json_schema"].is_object());
}
