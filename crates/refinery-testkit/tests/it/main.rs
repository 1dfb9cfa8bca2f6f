//! The fake server's wire formats, faults and recording, checked with a plain HTTP client.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns panic on setup failure by design"
)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use refinery_testkit::{FakeModelServer, Protocol, Reply};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `(event name, data)` pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut name = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_stream_has_the_full_event_sequence_with_tool_use() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(
        Reply::tool_call("Write", json!({"file_path": "/x/a.txt", "content": "hi"}))
            .with_text("Writing it."),
    );
    let body = client()
        .post(format!("{}/v1/messages?beta=true", server.url()))
        .json(&json!({"model": "claude-x", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "go"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().unwrap())
        .collect();
    let text_deltas = names
        .iter()
        .filter(|name| **name == "content_block_delta")
        .count()
        - 2;
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", text_deltas));
    expected.extend([
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    for (value, name) in data.iter().zip(&names) {
        assert_eq!(
            value["type"], **name,
            "the data's type matches the event name"
        );
    }
    let tool_start = data
        .iter()
        .find(|value| value["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool_start["content_block"]["name"], "Write");
    let partial: String = data
        .iter()
        .filter(|value| value["delta"]["type"] == "input_json_delta")
        .map(|value| value["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"file_path": "/x/a.txt", "content": "hi"})
    );
    assert_eq!(data[data.len() - 2]["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn every_protocol_answers_in_its_own_shape() {
    let server = FakeModelServer::start().await.unwrap();
    let url = server.url();
    let cases = [
        (
            format!("{url}/v1/chat/completions"),
            json!({"model": "m", "stream": true}),
            "data: [DONE]",
        ),
        (
            format!("{url}/v1/chat/completions"),
            json!({"model": "m"}),
            "\"chat.completion\"",
        ),
        (
            format!("{url}/v1/responses"),
            json!({"model": "m", "stream": true}),
            "event: response.completed",
        ),
        (
            format!("{url}/v1/responses"),
            json!({"model": "m"}),
            "\"output_text\"",
        ),
        (
            format!("{url}/v1beta/models/g:streamGenerateContent?alt=sse"),
            json!({}),
            "\"candidates\":[{\"content\"",
        ),
        (
            format!("{url}/v1beta/models/g:generateContent"),
            json!({}),
            "\"usageMetadata\"",
        ),
        (
            format!("{url}/v1/messages"),
            json!({"model": "m"}),
            "\"end_turn\"",
        ),
    ];
    for (target, body, fragment) in &cases {
        let text = client()
            .post(target)
            .json(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(fragment), "{target}: {text}");
    }
    let protocols: Vec<Option<Protocol>> = server
        .requests()
        .iter()
        .map(|request| request.protocol)
        .collect();
    assert_eq!(
        protocols,
        [
            Some(Protocol::OpenAiChat),
            Some(Protocol::OpenAiChat),
            Some(Protocol::OpenAiResponses),
            Some(Protocol::OpenAiResponses),
            Some(Protocol::Gemini),
            Some(Protocol::Gemini),
            Some(Protocol::AnthropicMessages),
        ]
    );
}

#[tokio::test]
async fn faults_are_injected_as_scripted() {
    let server = FakeModelServer::start().await.unwrap();
    server.push_all([
        Reply::rate_limited(7),
        Reply::status(529),
        Reply::text("a long answer that will be cut").cut(3),
        Reply::text("slow").delayed(Duration::from_millis(300)),
    ]);
    let url = format!("{}/v1/messages", server.url());
    let body = json!({"model": "m", "stream": true});
    let response = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
    let response = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 529);
    let response = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => failed = true,
        }
    }
    assert!(failed, "a cut stream must end in a transport error");
    assert_eq!(sse_events(&received).len(), 3);
    assert!(!received.contains("message_stop"));
    let started = Instant::now();
    let response = client()
        .post(&url)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn requests_are_recorded_without_credentials_and_routes_win_over_the_queue() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::text("from the queue"));
    server.route(|request| {
        request
            .body_text()
            .contains("special")
            .then(|| Reply::text("from the route"))
    });
    let url = format!("{}/v1/messages", server.url());
    let answer = |prompt: &'static str| {
        let url = url.clone();
        async move {
            let value: Value = client()
                .post(&url)
                .header("x-api-key", "sk-ant-must-not-be-recorded")
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            value["content"][0]["text"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(answer("a special prompt").await, "from the route");
    assert_eq!(answer("plain").await, "from the queue");
    assert_eq!(answer("plain again").await, "done");
    // Side endpoints are answered but leave the script alone.
    let head = client().head(server.url()).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let requests = server
        .wait_for_model_requests(3, Duration::from_secs(1))
        .await;
    assert_eq!(requests.len(), 3);
    assert_eq!(server.requests().len(), 4);
    assert_eq!(requests[0].header("x-api-key"), Some("<redacted>"));
    assert!(!format!("{:?}", server.requests()).contains("sk-ant-must-not-be-recorded"));
}

#[tokio::test]
async fn tool_results_are_read_from_every_protocol() {
    let server = FakeModelServer::start().await.unwrap();
    let url = server.url();
    let bodies = [
        (
            format!("{url}/v1/messages"),
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok-a"}]}]}),
        ),
        (
            format!("{url}/v1/chat/completions"),
            json!({"messages": [{"role": "tool", "tool_call_id": "t2", "content": "ok-b"}]}),
        ),
        (
            format!("{url}/v1/responses"),
            json!({"input": [{"type": "function_call_output", "call_id": "t3", "output": "ok-c"}]}),
        ),
        (
            format!("{url}/v1beta/models/g:generateContent"),
            json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "t4", "response": {"r": "ok-d"}}}]}]}),
        ),
    ];
    for (target, body) in &bodies {
        client().post(target).json(body).send().await.unwrap();
    }
    let results: Vec<(String, String)> = server
        .model_requests()
        .iter()
        .flat_map(refinery_testkit::RecordedRequest::tool_results)
        .collect();
    assert_eq!(results[0], ("t1".to_string(), "ok-a".to_string()));
    assert_eq!(results[1], ("t2".to_string(), "ok-b".to_string()));
    assert_eq!(results[2], ("t3".to_string(), "ok-c".to_string()));
    assert_eq!(results[3].0, "t4");
    assert!(results[3].1.contains("ok-d"));
}

/// The server-side tool-call review Claude Code's auto mode waits for: answered in the final
/// `message_delta` (stream) or at the top level (JSON), keyed by the turn's tool-use ids, and
/// only when the request opts in with both the beta header and the `safeguards` field.
#[tokio::test]
async fn the_tool_call_review_is_answered_only_when_asked_for_both_ways() {
    use refinery_testkit::SafeguardVerdict;
    use refinery_testkit::safeguard::SAFEGUARD_BETA;

    let server = FakeModelServer::start().await.unwrap();
    let ask = |stream: bool, beta: &str, safeguards: bool| {
        let mut body = json!({"model": "claude-x", "stream": stream, "max_tokens": 10,
            "messages": [{"role": "user", "content": "go"}]});
        if safeguards {
            body["safeguards"] =
                json!([{"type": "dangerous_tool_use", "classifier_context": {"v": 1}}]);
        }
        client()
            .post(format!("{}/v1/messages?beta=true", server.url()))
            .header("anthropic-beta", format!("claude-code-20250219,{beta}"))
            .json(&body)
            .send()
    };
    let last_delta = |body: &str| -> Value {
        let events = sse_events(body);
        let (_, data) = events
            .iter()
            .find(|(name, _)| name.as_deref() == Some("message_delta"))
            .unwrap();
        serde_json::from_str::<Value>(data).unwrap()["delta"].clone()
    };
    let call = || Reply::tool_call("Bash", json!({"command": "git init -q"}));

    server.push(call());
    let body = ask(true, SAFEGUARD_BETA, true)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        last_delta(&body)["safeguard_results"],
        json!([{"type": "dangerous_tool_use", "status": {"type": "available",
            "tool_uses": {"call_bash": {"type": "evaluated", "outcome": "not_flagged"}}}}])
    );

    server.set_safeguard_verdict(SafeguardVerdict::Flagged {
        explanation: "leaves the project".to_owned(),
    });
    server.push(call());
    let reply: Value = ask(false, SAFEGUARD_BETA, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply["safeguard_results"][0]["status"]["tool_uses"]["call_bash"],
        json!({"type": "evaluated", "outcome": "flagged", "explanation": "leaves the project"})
    );

    // Not asked for both ways, or nothing to review: no results at all.
    for (beta, safeguards, reply) in [
        ("", true, call()),
        (SAFEGUARD_BETA, false, call()),
        (SAFEGUARD_BETA, true, Reply::text("no tools")),
    ] {
        server.push(reply);
        let body = ask(true, beta, safeguards)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            last_delta(&body).get("safeguard_results").is_none(),
            "{beta:?} {safeguards}: {body}"
        );
    }
}
