//! One HTTP call to a provider: its auth header (and only its own), retries on 408, 429,
//! 5xx and connection failures with the same backoff as the chat backends, a per-request
//! timeout, cancellation, and provider error bodies turned into [`Error`]s with every key
//! value masked.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::kinds::Backend;

/// Provider error codes that mean "the content was refused", not "the request was wrong".
const SAFETY_CODES: &[&str] = &[
    "moderation_blocked",
    "content_policy_violation",
    "content_filter",
    "content_moderation",
    "safety",
];

/// The HTTP side of one tool call.
pub(crate) struct Http<'a> {
    pub(crate) config: &'a MediaConfig,
    pub(crate) client: &'a reqwest::Client,
    pub(crate) cancel: &'a CancellationToken,
}

impl Http<'_> {
    /// Runs `future` unless the call is cancelled first.
    pub(crate) async fn cancellable<T>(
        &self,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Error::Cancelled),
            result = future => result,
        }
    }

    /// Waits `duration`, or returns [`Error::Cancelled`].
    pub(crate) async fn pause(&self, duration: Duration) -> Result<()> {
        self.cancellable(async {
            tokio::time::sleep(duration).await;
            Ok(())
        })
        .await
    }

    /// Adds `backend`'s auth header. Only this backend's key goes on its own requests.
    fn authorize(&self, backend: Backend, builder: RequestBuilder) -> RequestBuilder {
        let Some((_, key)) = &self.config.endpoint(backend).key else {
            return builder;
        };
        match backend {
            Backend::OpenAi | Backend::Xai => builder.bearer_auth(key.expose()),
            Backend::Gemini => builder.header("x-goog-api-key", key.expose()),
            Backend::Anthropic => builder
                .header("x-api-key", key.expose())
                .header("anthropic-version", "2023-06-01"),
        }
    }

    /// Sends the request `build` makes (again on each retry) with `backend`'s auth and
    /// returns a 2xx response.
    pub(crate) async fn send(
        &self,
        backend: Backend,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_with(backend, true, build).await
    }

    async fn send_with(
        &self,
        backend: Backend,
        with_key: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = build(self.client).timeout(self.config.timeouts.request);
            if with_key {
                builder = self.authorize(backend, builder);
            }
            let outcome = self.cancellable(async { Ok(builder.send().await) }).await?;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = refinery_llm::retry_after_from_headers(response.headers());
                    let body = self
                        .cancellable(async { Ok(response.text().await.unwrap_or_default()) })
                        .await?;
                    let error = self.http_error(backend, status, attempt, &body);
                    if !is_retryable(status) || attempt >= policy.max_attempts {
                        return Err(error);
                    }
                    (error, retry_after)
                }
                Err(error) => {
                    let error = Error::Connection {
                        backend,
                        attempts: attempt,
                        message: self.config.redact(&connection_message(&error)),
                    };
                    if attempt >= policy.max_attempts {
                        return Err(error);
                    }
                    (error, None)
                }
            };
            tracing::debug!(%backend, attempt, error = %failure.0, "media request failed; retrying");
            self.pause(policy.delay(attempt, failure.1, fastrand::f64()))
                .await?;
        }
    }

    /// Fetches a finished file. The key goes along only when `with_key` and the URL is on
    /// the backend's own origin: a signed link on another host must never see a key.
    pub(crate) async fn download(
        &self,
        backend: Backend,
        url: &str,
        with_key: bool,
    ) -> Result<Vec<u8>> {
        let same_origin = url
            .to_ascii_lowercase()
            .starts_with(&format!("{}/", self.config.endpoint(backend).origin));
        let url = url.to_string();
        let result = self
            .send_with(backend, with_key && same_origin, move |client| {
                client.get(&url)
            })
            .await;
        let response = match result {
            Ok(response) => response,
            Err(Error::Http { status, .. }) => return Err(Error::Download { backend, status }),
            Err(other) => return Err(other),
        };
        let bytes = self
            .cancellable(async {
                response.bytes().await.map_err(|error| Error::Connection {
                    backend,
                    attempts: 1,
                    message: connection_message(&error),
                })
            })
            .await?;
        Ok(bytes.to_vec())
    }

    /// Reads a 2xx response as JSON.
    pub(crate) async fn json(&self, backend: Backend, response: Response) -> Result<Value> {
        let text = self
            .cancellable(async {
                response.text().await.map_err(|error| Error::Connection {
                    backend,
                    attempts: 1,
                    message: connection_message(&error),
                })
            })
            .await?;
        serde_json::from_str(&text).map_err(|_| Error::malformed(backend, "the answer is not JSON"))
    }

    fn http_error(&self, backend: Backend, status: StatusCode, attempts: u32, body: &str) -> Error {
        let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = parsed.get("error").unwrap_or(&parsed);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .map_or_else(|| body.chars().take(300).collect(), ToString::to_string);
        let message = self.config.redact(&message);
        // OpenAI and Gemini nest the code in `error`; xAI puts it beside a string `error`.
        let code = error
            .get("code")
            .or_else(|| error.get("type"))
            .or_else(|| parsed.get("code"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if SAFETY_CODES.iter().any(|safety| code.contains(safety)) {
            return Error::SafetyBlock {
                backend,
                reason: message,
            };
        }
        Error::Http {
            backend,
            status: status.as_u16(),
            attempts,
            message,
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// reqwest's messages can carry the URL; ours never has a key in it, but keep them short.
fn connection_message(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the request timed out".to_string()
    } else if error.is_connect() {
        "connection refused or unreachable".to_string()
    } else {
        "the connection failed".to_string()
    }
}
