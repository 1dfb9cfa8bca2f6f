//! Faults over real HTTP: 429 + retry-after, 500, 529, cut streams, slow first byte,
//! deadline, cancellation, and errors that must not be retried.

use std::time::{Duration, Instant};

use refinery_llm::{CallOptions, ChatModel, ChatRequest, Error, RetryPolicy, StreamEvent};
use refinery_testkit::{Cut, FakeModelServer, Reply};

use crate::support::{PLANTED_KEY, fast_options, model};

const MODELS: &[&str] = &[
    "anthropic/claude-sonnet-4-5",
    "openai/gpt-4o-mini",
    "openai-chat/gpt-4.1",
    "gemini/gemini-2.5-flash",
];

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::rate_limited(1));
    server.push(Reply::text("after the wait"));
    let model = model(&server, "anthropic/claude-sonnet-4-5");
    let started = Instant::now();
    // Backoff alone would wait 10–20 ms; only the header explains a wait of a second.
    let response = model
        .chat(&ChatRequest::new("hi"), &fast_options())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.text, "after the wait");
    assert_eq!(response.attempts, 2);
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried after {elapsed:?}, before retry-after"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(server.model_requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_honours_retry_after_while_streaming() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::rate_limited(1));
    server.push(Reply::text("streamed after the wait"));
    let model = model(&server, "openai/gpt-4o-mini");
    let started = Instant::now();
    let mut events = Vec::new();
    let mut sink = |event: StreamEvent| events.push(event);
    let response = model
        .chat_stream(&ChatRequest::new("hi"), &fast_options(), &mut sink)
        .await
        .unwrap();
    assert_eq!(response.text, "streamed after the wait");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let retry = events.iter().find_map(|event| match event {
        StreamEvent::Retrying { delay, reason, .. } => Some((*delay, reason.clone())),
        StreamEvent::TextDelta(_) => None,
    });
    let (delay, reason) = retry.unwrap();
    assert_eq!(delay, Duration::from_secs(1));
    assert!(reason.contains("429"), "{reason}");
}

#[tokio::test]
async fn server_errors_500_and_529_are_retried_on_every_protocol() {
    for name in MODELS {
        for stream in [false, true] {
            let server = FakeModelServer::start().await.unwrap();
            server.push_all([
                Reply::status(500),
                Reply::status(529),
                Reply::text("third time lucky"),
            ]);
            let model = model(&server, name);
            let response = if stream {
                let mut sink = |_event: StreamEvent| {};
                model
                    .chat_stream(&ChatRequest::new("hi"), &fast_options(), &mut sink)
                    .await
            } else {
                model.chat(&ChatRequest::new("hi"), &fast_options()).await
            };
            let response =
                response.unwrap_or_else(|error| panic!("{name} stream={stream}: {error}"));
            assert_eq!(response.text, "third time lucky", "{name}");
            assert_eq!(response.attempts, 3, "{name} stream={stream}");
        }
    }
}

#[tokio::test]
async fn a_cut_stream_is_retried_and_partial_text_is_retracted() {
    for name in MODELS {
        let server = FakeModelServer::start().await.unwrap();
        server.push(Reply::text("This answer will be cut off in the middle of it.").cut(5));
        server.push(Reply::text("Complete answer."));
        let model = model(&server, name);
        let mut events = Vec::new();
        let mut sink = |event: StreamEvent| events.push(event);
        let response = model
            .chat_stream(&ChatRequest::new("hi"), &fast_options(), &mut sink)
            .await
            .unwrap();
        assert_eq!(response.text, "Complete answer.", "{name}");
        assert_eq!(response.attempts, 2, "{name}");
        // What a consumer sees: partial text, a retraction, then the full answer.
        let retry_at = events
            .iter()
            .position(|event| matches!(event, StreamEvent::Retrying { .. }));
        let retry_at =
            retry_at.unwrap_or_else(|| panic!("{name}: no Retrying event in {events:?}"));
        let after: String = events[retry_at..]
            .iter()
            .filter_map(|event| match event {
                StreamEvent::TextDelta(text) => Some(text.as_str()),
                StreamEvent::Retrying { .. } => None,
            })
            .collect();
        assert_eq!(after, "Complete answer.", "{name}");
        if let StreamEvent::Retrying { reason, .. } = &events[retry_at] {
            assert!(
                reason.contains("cut") || reason.contains("connection"),
                "{name}: {reason}"
            );
        }
    }
}

/// A stream cut in the middle of an event — its `data:` line half sent — is retried like a
/// cut between events, whether the connection is reset or the body ends cleanly there, on
/// every protocol.
#[tokio::test]
async fn a_stream_cut_inside_an_event_is_retried() {
    for name in MODELS {
        for cut in [Cut::InsideEventReset, Cut::InsideEventClosed] {
            let server = FakeModelServer::start().await.unwrap();
            server.push(
                Reply::text("This answer will be cut off inside one of its events.").cut_at(3, cut),
            );
            server.push(Reply::text("Complete answer."));
            let model = model(&server, name);
            let mut events = Vec::new();
            let mut sink = |event: StreamEvent| events.push(event);
            let response = model
                .chat_stream(&ChatRequest::new("hi"), &fast_options(), &mut sink)
                .await
                .unwrap_or_else(|error| panic!("{name} {cut:?}: {error}"));
            assert_eq!(response.text, "Complete answer.", "{name} {cut:?}");
            assert_eq!(response.attempts, 2, "{name} {cut:?}");
            assert_eq!(server.model_requests().len(), 2, "{name} {cut:?}");
        }
    }
}

#[tokio::test]
async fn a_cut_stream_without_retries_is_reported() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::text("This answer will be cut off in the middle.").cut(4));
    let model = model(&server, "anthropic/claude-sonnet-4-5");
    let options = CallOptions {
        retry: RetryPolicy::none(),
        ..fast_options()
    };
    let mut sink = |_event: StreamEvent| {};
    let error = model
        .chat_stream(&ChatRequest::new("hi"), &options, &mut sink)
        .await
        .unwrap_err();
    let Error::RetriesExhausted { attempts: 1, last } = &error else {
        panic!("unexpected {error:?}")
    };
    assert!(
        matches!(**last, Error::StreamInterrupted { .. }),
        "{last:?}"
    );
    assert!(
        error
            .to_string()
            .contains("stream from `anthropic` was cut"),
        "{error}"
    );
}

#[tokio::test]
async fn a_cut_body_is_retried_for_plain_calls() {
    for name in MODELS {
        let server = FakeModelServer::start().await.unwrap();
        server.push(Reply::text("half a body").cut(1));
        server.push(Reply::text("whole body"));
        let model = model(&server, name);
        let response = model
            .chat(&ChatRequest::new("hi"), &fast_options())
            .await
            .unwrap();
        assert_eq!(response.text, "whole body", "{name}");
        assert_eq!(response.attempts, 2, "{name}");
    }
}

#[tokio::test]
async fn a_slow_first_byte_hits_the_request_timeout_and_is_retried() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::text("too late").delayed(Duration::from_secs(3)));
    server.push(Reply::text("on time"));
    let model = model(&server, "gemini/gemini-2.5-flash");
    let options = CallOptions {
        request_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    for stream in [false, true] {
        if stream {
            server.push(Reply::text("too late").delayed(Duration::from_secs(3)));
            server.push(Reply::text("on time"));
        }
        let started = Instant::now();
        let response = if stream {
            let mut sink = |_event: StreamEvent| {};
            model
                .chat_stream(&ChatRequest::new("hi"), &options, &mut sink)
                .await
                .unwrap()
        } else {
            model.chat(&ChatRequest::new("hi"), &options).await.unwrap()
        };
        assert_eq!(response.text, "on time");
        assert_eq!(response.attempts, 2);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_exceeded_deadline_gives_a_clear_error() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::text("never in time").delayed(Duration::from_secs(5)));
    let model = model(&server, "openai-chat/gpt-4.1");
    let options = CallOptions {
        deadline: Some(Duration::from_millis(400)),
        ..fast_options()
    };
    let started = Instant::now();
    let error = model
        .chat(&ChatRequest::new("hi"), &options)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::DeadlineExceeded { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("within the call's 0.4 s deadline"),
        "{error}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_fails_at_once() {
    let server = FakeModelServer::start().await.unwrap();
    server.push(Reply::rate_limited(30));
    let model = model(&server, "anthropic/claude-sonnet-4-5");
    let options = CallOptions {
        deadline: Some(Duration::from_secs(2)),
        retry: RetryPolicy {
            max_delay: Duration::from_mins(1),
            ..fast_options().retry
        },
        ..fast_options()
    };
    let started = Instant::now();
    let error = model
        .chat(&ChatRequest::new("hi"), &options)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} for nothing",
        started.elapsed()
    );
    let text = error.to_string();
    assert!(
        text.contains("(1 attempt within the call's 2 s deadline)"),
        "{text}"
    );
    assert!(text.contains("HTTP 429"), "{text}");
}

#[tokio::test]
async fn cancellation_stops_a_call_promptly() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::text("slow").delayed(Duration::from_secs(10)));
    let model = model(&server, "anthropic/claude-sonnet-4-5");
    let options = fast_options();
    let cancel = options.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let error = model
        .chat(&ChatRequest::new("hi"), &options)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn client_errors_are_not_retried_and_never_show_the_key() {
    for name in MODELS {
        let server = FakeModelServer::start().await.unwrap();
        server.push(Reply::status(400));
        let model = model(&server, name);
        let error = model
            .chat(&ChatRequest::new("hi"), &fast_options())
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Http { status: 400, .. }),
            "{name}: {error:?}"
        );
        assert!(
            error.to_string().contains("injected status 400"),
            "{name}: {error}"
        );
        assert_eq!(
            server.model_requests().len(),
            1,
            "{name}: a 400 must not be retried"
        );
        assert!(!error.to_string().contains(PLANTED_KEY));
        assert!(!format!("{error:?}").contains(PLANTED_KEY));
        assert!(!format!("{model:?}").contains(PLANTED_KEY));
    }
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = FakeModelServer::start().await.unwrap();
    server.set_fallback(Reply::status(503));
    let model = model(&server, "xai/grok-4");
    let error = model
        .chat(&ChatRequest::new("hi"), &fast_options())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("`xai` answered HTTP 503"),
        "{error}"
    );
    assert_eq!(server.model_requests().len(), 4);
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error() {
    // Bind and drop a listener to get a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let credentials = crate::support::credentials();
    let model = refinery_llm::open_chat_model(
        "local/m",
        Some(&format!("http://127.0.0.1:{port}/v1")),
        &credentials,
    )
    .unwrap();
    let options = CallOptions {
        retry: RetryPolicy::none(),
        ..fast_options()
    };
    let error = model
        .chat(&ChatRequest::new("hi"), &options)
        .await
        .unwrap_err();
    let Error::RetriesExhausted { last, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(matches!(**last, Error::Connection { .. }), "{last:?}");
    // The cause first, each thing once, no wrapper chain.
    let text = error.to_string();
    assert_eq!(
        text,
        format!(
            "cannot reach `local`: connection refused at http://127.0.0.1:{port}/v1/ (gave up after 1 attempt)"
        )
    );
}
