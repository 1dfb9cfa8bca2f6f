//! The fake model server: one HTTP/1.1 listener on `127.0.0.1:0` that speaks every protocol.
//!
//! Isolation: it binds only the loopback address with an OS-assigned port, records every
//! request (headers minus credentials, full body), and stops when dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::media::{MediaFault, MediaReply, MediaState};
use crate::reply::{Cut, Fault, Reply, Turn};
use crate::safeguard::{self, SafeguardVerdict};
use crate::wire::{self, Ids, Protocol};

/// Header names whose values the recorder never keeps: the fake must not become a place
/// where a key (even a fake one) is written down.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1beta/models/m:streamGenerateContent?alt=sse`.
    pub path: String,
    /// Lower-case header names; credential headers have the value `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Value::Null` when empty or not JSON.
    pub body: Value,
    pub protocol: Option<Protocol>,
    /// Credential headers as `(name, fingerprint)`: a one-way digest, so a test can tell
    /// *which* key was sent where without the fake ever keeping a key.
    pub credentials: Vec<(String, String)>,
}

/// The digest the fake records for a credential value: compare it with
/// `fingerprint(your_test_key)` (a `Bearer ` prefix is stripped first).
pub fn fingerprint(value: &str) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let value = value.strip_prefix("Bearer ").unwrap_or(value);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl RecordedRequest {
    /// The fingerprint of the credential sent in header `name`, if one was sent.
    pub fn credential(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.credentials
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether this request asks for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.path.contains(":streamGenerateContent")
            || self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The model the request names (from the body, or the Gemini path).
    pub fn model(&self) -> String {
        if let Some(model) = self.body.get("model").and_then(Value::as_str) {
            return model.to_string();
        }
        let path = self.path.split('?').next().unwrap_or_default();
        path.rsplit('/')
            .next()
            .and_then(|last| last.split(':').next())
            .unwrap_or("fake-model")
            .to_string()
    }

    /// The conversation's messages (Anthropic and OpenAI chat shapes); none for other shapes.
    fn messages(&self) -> impl Iterator<Item = &Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    /// The system instructions, in every protocol's shape: Anthropic's `system` (text or
    /// blocks), OpenAI's `system` / `developer` messages and Responses `instructions`, Gemini's
    /// `systemInstruction`. Lets a router tell roles apart without reading the whole body.
    pub fn system_text(&self) -> String {
        let mut out = String::new();
        let mut push = |value: &Value| match value {
            Value::String(text) => out.push_str(text),
            Value::Array(blocks) => {
                for block in blocks {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        out.push_str(text);
                    }
                }
            }
            _ => {}
        };
        if let Some(system) = self.body.get("system") {
            push(system);
        }
        if let Some(instructions) = self.body.get("instructions") {
            push(instructions);
        }
        if let Some(parts) = self.body.pointer("/systemInstruction/parts") {
            push(parts);
        }
        for message in self.messages() {
            let role = message.get("role").and_then(Value::as_str);
            if matches!(role, Some("system" | "developer"))
                && let Some(content) = message.get("content")
            {
                push(content);
            }
        }
        out
    }

    /// Names of the tools the request offers the model, in every protocol's shape.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for tool in self
            .body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                names.push(name.to_string());
            } else if let Some(name) = tool.pointer("/function/name").and_then(Value::as_str) {
                names.push(name.to_string());
            }
            for declaration in tool
                .get("functionDeclarations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = declaration.get("name").and_then(Value::as_str) {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    /// Tool results the conversation carries, as `(tool call id or name, result text)`.
    pub fn tool_results(&self) -> Vec<(String, String)> {
        let mut results = Vec::new();
        let text_of = |value: &Value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        for message in self.messages() {
            if message.get("role").and_then(Value::as_str) == Some("tool") {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                results.push((
                    id.to_string(),
                    text_of(message.get("content").unwrap_or(&Value::Null)),
                ));
            }
            for block in message
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    results.push((
                        id.to_string(),
                        text_of(block.get("content").unwrap_or(&Value::Null)),
                    ));
                }
            }
        }
        for item in self
            .body
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if item.get("type").and_then(Value::as_str) == Some("function_call_output") {
                let id = item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                results.push((
                    id.to_string(),
                    text_of(item.get("output").unwrap_or(&Value::Null)),
                ));
            }
        }
        for content in self
            .body
            .get("contents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for part in content
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(response) = part.get("functionResponse") {
                    let name = response
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    results.push((
                        name.to_string(),
                        text_of(response.get("response").unwrap_or(&Value::Null)),
                    ));
                }
            }
        }
        results
    }

    /// The whole request body as text, for substring assertions.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

type Router = Box<dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync>;

struct State {
    queue: VecDeque<Reply>,
    router: Option<Router>,
    fallback: Reply,
    /// Shared with the handler that answers each one: a large body is parsed once and never
    /// copied while a reply waits on it.
    requests: Vec<Arc<RecordedRequest>>,
    sequence: u64,
    /// `GET /props` answers llama.cpp's way with this context, when set.
    context_window: Option<u32>,
    /// The server-side review's verdict on tool calls, for requests that ask for it.
    safeguard_verdict: SafeguardVerdict,
}

/// A scripted fake model server on 127.0.0.1.
///
/// Each model-turn request (Anthropic `/v1/messages`, OpenAI `/v1/chat/completions` and
/// `/v1/responses`, Gemini `:generateContent` / `:streamGenerateContent`) takes its answer
/// from, in order: the router (if set and it returns `Some`), the queue, the fallback
/// (`Reply::text("done")` unless changed). Side endpoints (`HEAD /`, model lists, token
/// counts) answer fixed values and leave the queue alone. Every request is recorded.
pub struct FakeModelServer {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    media: Arc<Mutex<MediaState>>,
    shutdown: watch::Sender<bool>,
}

fn lock_media(state: &Mutex<MediaState>) -> MutexGuard<'_, MediaState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide the recorded requests from the next assertion.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeModelServer {
    /// Bind `127.0.0.1:0` and start serving on the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            queue: VecDeque::new(),
            router: None,
            fallback: Reply::text("done"),
            requests: Vec::new(),
            sequence: 0,
            context_window: None,
            safeguard_verdict: SafeguardVerdict::default(),
        }));
        let media = Arc::new(Mutex::new(MediaState::new(format!("http://{address}"))));
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let accept_state = Arc::clone(&state);
        let accept_media = Arc::clone(&media);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = shutdown_rx.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                // Without it, Nagle plus the client's delayed ACK holds small SSE frames back
                // for ~40 ms, and a stream arrives in one lump instead of in pieces.
                let _ = stream.set_nodelay(true);
                let connection_state = Arc::clone(&accept_state);
                let connection_media = Arc::clone(&accept_media);
                let mut connection_shutdown = shutdown_rx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(
                            Arc::clone(&connection_state),
                            Arc::clone(&connection_media),
                            request,
                        )
                    });
                    let connection =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = connection_shutdown.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            address,
            state,
            media,
            shutdown,
        })
    }

    /// Queue a fault for the next media start request (a generation or a job submission).
    pub fn push_media_fault(&self, fault: MediaFault) -> &Self {
        lock_media(&self.media).push_fault(fault);
        self
    }

    /// How many polls a media job answers "still running" before it is done (default 2).
    pub fn set_media_job_polls(&self, polls: u32) -> &Self {
        lock_media(&self.media).set_pending_polls(polls);
        self
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Queue one reply for the next model-turn request.
    pub fn push(&self, reply: Reply) -> &Self {
        lock(&self.state).queue.push_back(reply);
        self
    }

    /// Queue several replies in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) -> &Self {
        lock(&self.state).queue.extend(replies);
        self
    }

    /// Answer requests with a function of the request; returning `None` falls through to the queue.
    pub fn route(
        &self,
        router: impl Fn(&RecordedRequest) -> Option<Reply> + Send + Sync + 'static,
    ) -> &Self {
        lock(&self.state).router = Some(Box::new(router));
        self
    }

    /// Answer `GET /props` as llama.cpp's server does, with `tokens` of context per request
    /// (without it, `/props` is a 404, as on servers other than llama.cpp).
    pub fn set_context_window(&self, tokens: u32) -> &Self {
        lock(&self.state).context_window = Some(tokens);
        self
    }

    /// The verdict of the server-side tool-call review (see [`crate::safeguard`]) on every
    /// tool call of a turn whose request asks for it; not flagged unless changed.
    pub fn set_safeguard_verdict(&self, verdict: SafeguardVerdict) -> &Self {
        lock(&self.state).safeguard_verdict = verdict;
        self
    }

    /// What to answer when the queue is empty.
    pub fn set_fallback(&self, reply: Reply) -> &Self {
        lock(&self.state).fallback = reply;
        self
    }

    /// Every request received so far, side endpoints included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state)
            .requests
            .iter()
            .map(|request| RecordedRequest::clone(request))
            .collect()
    }

    /// Only the model-turn requests.
    pub fn model_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|request| request.protocol.is_some())
            .map(|request| RecordedRequest::clone(request))
            .collect()
    }

    /// How many model-turn requests arrived, without copying them.
    pub fn model_request_count(&self) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|request| request.protocol.is_some())
            .count()
    }

    /// Wait until at least `count` model-turn requests arrived, or `timeout` passed;
    /// returns the model requests seen so far either way.
    pub async fn wait_for_model_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.model_requests();
            if requests.len() >= count || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replies still queued.
    pub fn pending_replies(&self) -> usize {
        lock(&self.state).queue.len()
    }
}

impl Drop for FakeModelServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(
    state: Arc<Mutex<State>>,
    media: Arc<Mutex<MediaState>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), ToString::to_string);
    let credentials = request
        .headers()
        .iter()
        .filter(|(name, _)| CREDENTIAL_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                fingerprint(&String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect();
    let body_bytes = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let body = serde_json::from_slice(&body_bytes).unwrap_or(Value::Null);
    let protocol = if method == "POST" {
        Protocol::from_path(&path)
    } else {
        None
    };
    let recorded = Arc::new(RecordedRequest {
        method,
        path,
        headers,
        body,
        protocol,
        credentials,
    });

    let media_reply = crate::media::intercept(&mut lock_media(&media), &recorded, &body_bytes);
    if let Some(reply) = media_reply {
        lock(&state).requests.push(recorded);
        return Ok(media_response(reply));
    }

    let (reply, sequence, verdict) = {
        let mut state = lock(&state);
        state.requests.push(Arc::clone(&recorded));
        state.sequence += 1;
        let sequence = state.sequence;
        let verdict = safeguard::requested(&recorded).then(|| state.safeguard_verdict.clone());
        if protocol.is_none() {
            (None, sequence, verdict)
        } else {
            let routed = state.router.as_ref().and_then(|router| router(&recorded));
            let reply = routed
                .or_else(|| state.queue.pop_front())
                .unwrap_or_else(|| state.fallback.clone());
            (Some(reply), sequence, verdict)
        }
    };

    let Some(reply) = reply else {
        let context_window = lock(&state).context_window;
        if let Some(tokens) = context_window
            && recorded.method == "GET"
            && recorded.path.split('?').next() == Some("/props")
        {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"default_generation_settings": {"n_ctx": tokens}, "total_slots": 1}),
            ));
        }
        return Ok(side_endpoint(&recorded));
    };
    Ok(answer(reply, &recorded, sequence, verdict.as_ref()).await)
}

fn media_response(reply: MediaReply) -> Response<Body> {
    let mut response = Response::new(full(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    if reply.retry_after {
        headers.insert("retry-after", hyper::header::HeaderValue::from_static("0"));
    }
    response
}

fn side_endpoint(request: &RecordedRequest) -> Response<Body> {
    let path = request.path.split('?').next().unwrap_or_default();
    if request.method == "HEAD" {
        return Response::new(full(Bytes::new()));
    }
    if path.ends_with("/count_tokens") {
        return json_response(StatusCode::OK, &json!({"input_tokens": 42}));
    }
    if path.ends_with(":countTokens") {
        return json_response(StatusCode::OK, &json!({"totalTokens": 42}));
    }
    if request.method == "GET" && path.ends_with("/models") {
        return json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "display_name": "Fake"}],
                    "models": [], "has_more": false}),
        );
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"message": format!("fake server: no route for `{path}`")}}),
    )
}

async fn answer(
    reply: Reply,
    request: &RecordedRequest,
    sequence: u64,
    verdict: Option<&SafeguardVerdict>,
) -> Response<Body> {
    let mut reply = reply;
    while let Reply::Delayed {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let protocol = request.protocol;
    match reply {
        Reply::Turn(turn) => render_turn(&turn, request, sequence, verdict, None),
        Reply::Fault(Fault::CutStream {
            turn,
            after_frames,
            cut,
        }) => render_turn(&turn, request, sequence, verdict, Some((after_frames, cut))),
        Reply::Fault(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = body.unwrap_or_else(|| wire::render_error(protocol, status.as_u16()));
            let mut response = json_response(status, &body);
            if let Some(value) = retry_after
                && let Ok(value) = hyper::header::HeaderValue::from_str(&value)
            {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        Reply::Delayed { .. } => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "unreachable"}),
        ),
    }
}

/// Delay between SSE frames: small, but long enough that a client sees several reads.
const FRAME_GAP: Duration = Duration::from_millis(2);

/// Pause between the last frame of a cut stream (or half body) and the connection drop.
const CUT_GRACE: Duration = Duration::from_millis(50);

fn render_turn(
    turn: &Turn,
    request: &RecordedRequest,
    sequence: u64,
    verdict: Option<&SafeguardVerdict>,
    cut_after: Option<(usize, Cut)>,
) -> Response<Body> {
    let Some(protocol) = request.protocol else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not a model request"}),
        );
    };
    let ids = Ids::new(sequence);
    let model = request.model();
    let safeguard_results = verdict.and_then(|verdict| safeguard::results(turn, verdict));
    if request.is_stream() {
        let frames = wire::render_stream(protocol, turn, &model, &ids, safeguard_results.as_ref());
        let keep = cut_after.map_or(frames.len(), |(after, _)| after.min(frames.len()));
        let cut = cut_after.map(|(_, cut)| cut);
        // Half of the next event: its `data:` line stops mid-JSON, without the blank line
        // that would end the event.
        let half_event = match cut {
            Some(Cut::InsideEventReset | Cut::InsideEventClosed) => frames.get(keep).map(|frame| {
                let mut half = frame.len() / 2;
                while !frame.is_char_boundary(half) {
                    half -= 1;
                }
                frame[..half].to_owned()
            }),
            Some(Cut::BetweenEvents) | None => None,
        };
        let mut frames: Vec<String> = frames.into_iter().take(keep).collect();
        frames.extend(half_event);
        let reset = matches!(cut, Some(Cut::BetweenEvents | Cut::InsideEventReset));
        let stream = futures::stream::iter(frames)
            .then(|frame| async move {
                tokio::time::sleep(FRAME_GAP).await;
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(frame)))
            })
            .chain(futures::stream::iter(reset.then_some(())).then(|()| async {
                // Let hyper flush the frames already sent, so exactly `after_frames` arrive
                // before the connection drops.
                tokio::time::sleep(CUT_GRACE).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake server: stream cut",
                ))
            }));
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            "cache-control",
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        return response;
    }
    let body =
        wire::render_json(protocol, turn, &model, &ids, safeguard_results.as_ref()).to_string();
    if cut_after.is_some() {
        let half = Bytes::from(body.into_bytes());
        let half = half.slice(..half.len() / 2);
        let stream = futures::stream::iter([0_u8, 1]).then(move |step| {
            let half = half.clone();
            async move {
                if step == 0 {
                    return Ok(Frame::data(half));
                }
                tokio::time::sleep(CUT_GRACE).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake server: body cut",
                ))
            }
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        response.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    json_response(
        StatusCode::OK,
        &serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}
