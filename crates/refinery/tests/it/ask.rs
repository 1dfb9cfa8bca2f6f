//! `refinery ask` against the fake model server, through the built binary.

use std::collections::BTreeMap;
use std::process::Output;

use refinery_testkit::{FakeModelServer, Protocol, Reply, TestContext};
use serde_json::{Value, json};

use crate::llm_support::{refinery, text};

async fn ask(
    context: TestContext,
    env: BTreeMap<String, String>,
    args: Vec<String>,
) -> (Output, TestContext) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = refinery(&context, &env, &args);
        (output, context)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_streamed_answers() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::text("Plain answer.").with_usage(120, 20, 7));
    server.push(Reply::text("Streamed answer in pieces."));
    let context = TestContext::new().unwrap();
    let mut env = context.bare_env();
    env.insert(
        "ANTHROPIC_API_KEY".to_string(),
        "sk-ant-ask-test-0001".to_string(),
    );
    let url = server.url();
    let (output, context) = ask(
        context,
        env.clone(),
        args(&[
            "ask",
            "anthropic/claude-sonnet-4-5",
            "hello",
            "--base-url",
            &url,
        ]),
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "Plain answer.\n");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("120 input tokens (20 cached), 7 output tokens, cost $0.000"),
        "{stderr}"
    );

    let (output, _context) = ask(
        context,
        env,
        args(&[
            "ask",
            "anthropic/claude-sonnet-4-5",
            "hello",
            "--stream",
            "--base-url",
            &url,
            "--system",
            "Be brief.",
        ]),
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "Streamed answer in pieces.\n");
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].is_stream());
    assert!(requests[1].body_text().contains("Be brief."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_answers_are_validated_and_retried() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::text("not json at all"));
    server.push(Reply::text(r#"{"verdict": "pass"}"#));
    let context = TestContext::new().unwrap();
    let schema = json!({"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}}, "required": ["verdict"]});
    let schema_path = context
        .write("project/schema.json", &schema.to_string())
        .unwrap();
    let mut env = context.bare_env();
    env.insert(
        "OPENAI_API_KEY".to_string(),
        "sk-openai-ask-test-0002".to_string(),
    );
    let url = format!("{}/v1", server.url());
    let (output, _context) = ask(
        context,
        env,
        args(&[
            "ask",
            "openai/gpt-4.1-mini",
            "grade",
            "--schema",
            schema_path.to_str().unwrap(),
            "--base-url",
            &url,
            "--json",
        ]),
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["value"], json!({"verdict": "pass"}));
    assert_eq!(answer["schema_attempts"], 2);
    assert!(answer["cost_usd"].is_number(), "{answer}");
    assert_eq!(
        server.model_requests()[0].protocol,
        Some(Protocol::OpenAiResponses)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_base_url_variables_are_honoured() {
    let server = FakeModelServer::start().await.unwrap();
    let cases = [
        (
            "ANTHROPIC_BASE_URL",
            server.url(),
            "anthropic/claude-haiku-4-5",
            Protocol::AnthropicMessages,
        ),
        (
            "OPENAI_BASE_URL",
            format!("{}/v1", server.url()),
            "openai-chat/gpt-4o-mini",
            Protocol::OpenAiChat,
        ),
        (
            "GOOGLE_GEMINI_BASE_URL",
            server.url(),
            "gemini/gemini-2.5-flash",
            Protocol::Gemini,
        ),
    ];
    for (variable, url, model, protocol) in cases {
        let context = TestContext::new().unwrap();
        let mut env = context.bare_env();
        env.insert(variable.to_string(), url);
        for key in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"] {
            env.insert(key.to_string(), "key-for-base-url-test".to_string());
        }
        let before = server.model_requests().len();
        let (output, _context) = ask(context, env, args(&["ask", model, "hi"])).await;
        assert!(
            output.status.success(),
            "{variable}: {}",
            text(&output.stderr)
        );
        assert_eq!(text(&output.stdout), "done\n", "{variable}");
        let requests = server.model_requests();
        assert_eq!(requests.len(), before + 1, "{variable}");
        assert_eq!(requests[before].protocol, Some(protocol), "{variable}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let context = TestContext::new().unwrap();
    let env = crate::llm_support::doctor_env(&context);
    let cases: &[(&[&str], &str)] = &[
        (
            &["ask", "anthropic/claude-sonnet-4-5", "hi"],
            "no API key for `anthropic`: set `ANTHROPIC_API_KEY`",
        ),
        (&["ask", "gpt-5", "hi"], "invalid model name `gpt-5`"),
        (
            &["ask", "acme/model", "hi"],
            "unknown provider in `acme/model`",
        ),
        // No server answers on any usual port (all closed here): say how to get one.
        (
            &["ask", "local/m", "hi"],
            "no local model server answers for `local/m`: start one with `refinery local serve`",
        ),
        (
            &["ask", "local/m", "hi", "--base-url", "127.0.0.1:9"],
            "invalid base URL `127.0.0.1:9`",
        ),
    ];
    let mut context = context;
    for (arguments, expected) in cases {
        let (output, returned) = ask(context, env.clone(), args(arguments)).await;
        context = returned;
        assert_eq!(output.status.code(), Some(2), "{arguments:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{arguments:?}: {stderr}");
    }
}
