//! Every provider over real HTTP against the fake: text (plain and streamed), structured
//! output (valid, and invalid then valid), a tool-call round trip, usage and cost.

use pretty_assertions::assert_eq;
use refinery_llm::{
    ChatModel, ChatRequest, Cost, FinishReason, Message, StreamEvent, ToolSpec, Usage,
    chat_structured,
};
use refinery_testkit::{FakeModelServer, Protocol, Reply};
use serde_json::json;

use crate::support::{PLANTED_KEY, fast_options, model};

/// (model name, protocol the fake must see, path fragment, USD per million: input, cached input, output)
struct Case {
    name: &'static str,
    protocol: Protocol,
    path: &'static str,
    prices: Option<(f64, f64, f64)>,
}

const CASES: &[Case] = &[
    Case {
        name: "anthropic/claude-sonnet-4-5",
        protocol: Protocol::AnthropicMessages,
        path: "/v1/messages",
        prices: Some((3.0, 0.3, 15.0)),
    },
    Case {
        name: "openai/gpt-4o-mini",
        protocol: Protocol::OpenAiResponses,
        path: "/v1/responses",
        prices: Some((0.15, 0.075, 0.6)),
    },
    Case {
        name: "openai-chat/gpt-4.1",
        protocol: Protocol::OpenAiChat,
        path: "/v1/chat/completions",
        prices: Some((2.0, 0.5, 8.0)),
    },
    Case {
        name: "gemini/gemini-2.5-flash",
        protocol: Protocol::Gemini,
        path: "/v1beta/models/gemini-2.5-flash:",
        prices: Some((0.3, 0.075, 2.5)),
    },
    Case {
        name: "xai/grok-4",
        protocol: Protocol::OpenAiChat,
        path: "/v1/chat/completions",
        prices: Some((3.0, 0.75, 15.0)),
    },
    Case {
        name: "openrouter/meta/llama-4",
        protocol: Protocol::OpenAiChat,
        path: "/v1/chat/completions",
        prices: None,
    },
    Case {
        name: "local/smollm2",
        protocol: Protocol::OpenAiChat,
        path: "/v1/chat/completions",
        prices: Some((0.0, 0.0, 0.0)),
    },
    Case {
        name: "ollama/llama3.2",
        protocol: Protocol::OpenAiChat,
        path: "/v1/chat/completions",
        prices: Some((0.0, 0.0, 0.0)),
    },
];

fn expected_cost(case: &Case, usage: Usage) -> Cost {
    match case.prices {
        None => Cost::Unknown,
        Some((input, cached, output)) => Cost::Usd(
            ((usage.input_tokens - usage.cached_input_tokens) as f64 * input
                + usage.cached_input_tokens as f64 * cached
                + usage.output_tokens as f64 * output)
                / 1e6,
        ),
    }
}

fn assert_cost(case: &Case, cost: Cost, usage: Usage) {
    match (cost, expected_cost(case, usage)) {
        (Cost::Usd(got), Cost::Usd(want)) => assert!(
            (got - want).abs() < 1e-12,
            "{}: cost {got} != {want}",
            case.name
        ),
        (got, want) => assert_eq!(got, want, "{}", case.name),
    }
}

#[tokio::test]
async fn text_plain_and_streamed_with_usage_and_cost() {
    for case in CASES {
        let server = FakeModelServer::start().await.unwrap();
        server.push(Reply::text("Hello from the fake model.").with_usage(1200, 200, 300));
        server.push(Reply::text("Streamed hello, in pieces.").with_usage(1000, 0, 50));
        let model = model(&server, case.name);
        let request = ChatRequest::new("Say hello").with_system("You are terse.");

        let response = model.chat(&request, &fast_options()).await.unwrap();
        assert_eq!(response.text, "Hello from the fake model.", "{}", case.name);
        assert_eq!(response.finish_reason, FinishReason::Stop, "{}", case.name);
        let usage = Usage {
            input_tokens: 1200,
            output_tokens: 300,
            cached_input_tokens: 200,
        };
        assert_eq!(response.usage, usage, "{}", case.name);
        assert_cost(case, response.cost, usage);
        assert_eq!(response.attempts, 1);

        let mut deltas = Vec::new();
        let mut sink = |event: StreamEvent| deltas.push(event);
        let streamed = model
            .chat_stream(&request, &fast_options(), &mut sink)
            .await
            .unwrap();
        assert_eq!(streamed.text, "Streamed hello, in pieces.", "{}", case.name);
        let texts: Vec<String> = deltas
            .iter()
            .map(|event| match event {
                StreamEvent::TextDelta(text) => text.clone(),
                StreamEvent::Retrying { .. } => panic!("unexpected retry"),
            })
            .collect();
        assert!(
            texts.len() >= 3,
            "{}: expected several deltas, got {texts:?}",
            case.name
        );
        assert_eq!(texts.concat(), streamed.text);
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 50,
            cached_input_tokens: 0,
        };
        assert_eq!(streamed.usage, usage, "{}", case.name);
        assert_cost(case, streamed.cost, usage);

        let requests = server.model_requests();
        assert_eq!(requests.len(), 2, "{}", case.name);
        for (request, stream) in requests.iter().zip([false, true]) {
            assert_eq!(request.protocol, Some(case.protocol), "{}", case.name);
            assert!(
                request.path.contains(case.path),
                "{}: path {}",
                case.name,
                request.path
            );
            assert_eq!(
                request.is_stream(),
                stream,
                "{}: {}",
                case.name,
                request.path
            );
            assert!(
                request.body_text().contains("You are terse."),
                "{}: system prompt missing",
                case.name
            );
            assert!(request.body_text().contains("Say hello"), "{}", case.name);
            assert!(!request.body_text().contains(PLANTED_KEY), "{}", case.name);
            let auth = request
                .header("x-api-key")
                .or(request.header("authorization"))
                .or(request.header("x-goog-api-key"));
            assert_eq!(
                auth,
                Some("<redacted>"),
                "{}: the key must be sent in a header",
                case.name
            );
        }
    }
}

fn verdict_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "verdict": {"type": "string", "enum": ["pass", "fail"]}
        },
        "required": ["score", "verdict"],
        "additionalProperties": false
    })
}

#[tokio::test]
async fn structured_output_valid_and_invalid_then_valid() {
    for case in CASES {
        let server = FakeModelServer::start().await.unwrap();
        server.push(Reply::text(r#"{"score": 8, "verdict": "pass"}"#));
        server.push(Reply::text(r#"{"score": 42, "verdict": "maybe"}"#).with_usage(100, 0, 10));
        server.push(Reply::text(r#"{"score": 3, "verdict": "fail"}"#).with_usage(150, 0, 10));
        let model = model(&server, case.name);
        let request = ChatRequest::new("Grade this").with_schema("verdict", verdict_schema());

        let first = chat_structured(&model, request.clone(), &fast_options(), None)
            .await
            .unwrap();
        assert_eq!(
            first.value,
            json!({"score": 8, "verdict": "pass"}),
            "{}",
            case.name
        );
        assert_eq!(first.schema_attempts, 1);

        let mut events = Vec::new();
        let mut sink = |event: StreamEvent| events.push(event);
        let second = chat_structured(&model, request.clone(), &fast_options(), Some(&mut sink))
            .await
            .unwrap();
        assert_eq!(
            second.value,
            json!({"score": 3, "verdict": "fail"}),
            "{}",
            case.name
        );
        assert_eq!(second.schema_attempts, 2, "{}", case.name);
        assert_eq!(
            second.usage,
            Usage {
                input_tokens: 250,
                output_tokens: 20,
                cached_input_tokens: 0
            },
            "{}",
            case.name
        );
        assert!(
            events
                .iter()
                .any(|event| matches!(event, StreamEvent::Retrying { .. })),
            "{}",
            case.name
        );

        let requests = server.model_requests();
        assert_eq!(requests.len(), 3, "{}", case.name);
        // The schema reached the provider in its own shape.
        assert!(
            requests[0].body_text().contains("\"verdict\""),
            "{}: schema not sent",
            case.name
        );
        // The retry fed the validation error back.
        let feedback = requests[2].body_text();
        assert!(
            feedback.contains("did not match the required JSON schema"),
            "{}: {feedback}",
            case.name
        );
        assert!(
            feedback.contains("/score"),
            "{}: validation detail missing: {feedback}",
            case.name
        );
    }
}

#[tokio::test]
async fn structured_output_gives_up_with_a_clear_error() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::text("I think it is good."));
    let model = model(&server, "anthropic/claude-sonnet-4-5");
    let request = ChatRequest::new("Grade this").with_schema("verdict", verdict_schema());
    let error = chat_structured(&model, request.clone(), &fast_options(), None)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("did not match the schema after 3 attempt(s)"),
        "{text}"
    );
    assert!(text.contains("not valid JSON"), "{text}");
    assert_eq!(server.model_requests().len(), 3);

    let bad_schema = ChatRequest::new("x").with_schema("bad", json!({"type": "no-such-type"}));
    let error = chat_structured(&model, bad_schema, &fast_options(), None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("invalid JSON schema"),
        "{error}"
    );
}

#[tokio::test]
async fn tool_call_round_trip() {
    let tool = ToolSpec {
        name: "write_file".to_string(),
        description: "Write a file".to_string(),
        parameters: json!({
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"]
        }),
    };
    for case in CASES {
        for stream in [false, true] {
            let server = FakeModelServer::start().await.unwrap();
            server.push(Reply::tool_call(
                "write_file",
                json!({"path": "hello.txt", "content": "hi there"}),
            ));
            server.push(Reply::text("Wrote the file."));
            let model = model(&server, case.name);
            let mut request = ChatRequest::new("Write hello.txt").with_tools(vec![tool.clone()]);

            let first = if stream {
                let mut sink = |_event: StreamEvent| {};
                model
                    .chat_stream(&request, &fast_options(), &mut sink)
                    .await
                    .unwrap()
            } else {
                model.chat(&request, &fast_options()).await.unwrap()
            };
            assert_eq!(first.tool_calls.len(), 1, "{} stream={stream}", case.name);
            let call = &first.tool_calls[0];
            assert_eq!(call.name, "write_file", "{}", case.name);
            assert_eq!(
                call.arguments,
                json!({"path": "hello.txt", "content": "hi there"}),
                "{} stream={stream}",
                case.name
            );
            assert_eq!(
                first.finish_reason,
                FinishReason::ToolCalls,
                "{} stream={stream}",
                case.name
            );

            request.messages.push(Message::Assistant {
                text: first.text.clone(),
                tool_calls: first.tool_calls.clone(),
            });
            request.messages.push(Message::ToolResult {
                call_id: call.id.clone(),
                name: call.name.clone(),
                content: "wrote 8 bytes".to_string(),
            });
            let second = model.chat(&request, &fast_options()).await.unwrap();
            assert_eq!(second.text, "Wrote the file.", "{}", case.name);

            let requests = server.model_requests();
            assert_eq!(requests.len(), 2);
            assert_eq!(
                requests[0].tool_names(),
                ["write_file"],
                "{}: tools offered",
                case.name
            );
            let results = requests[1].tool_results();
            assert_eq!(
                results.len(),
                1,
                "{} stream={stream}: {}",
                case.name,
                requests[1].body_text()
            );
            assert!(
                results[0].1.contains("wrote 8 bytes"),
                "{}: {results:?}",
                case.name
            );
            let expected_id = if case.protocol == Protocol::Gemini {
                "write_file"
            } else {
                call.id.as_str()
            };
            assert_eq!(results[0].0, expected_id, "{}", case.name);
        }
    }
}
