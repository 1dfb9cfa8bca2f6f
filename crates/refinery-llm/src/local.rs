//! Local model servers: where they listen, whether one answers, which models it serves and
//! how much context it has — so `local/<model>` works without a base URL and every role's
//! `max_tokens` can fit the server's context.
//!
//! Where a `local/` model is reached, first hit wins: `--base-url`, then
//! `REFINERY_LOCAL_BASE_URL`, then the first server that answers among those [`probes`] lists
//! (the one `refinery local serve` recorded, then llama.cpp, Ollama, LM Studio and vLLM on
//! their default loopback ports). `doctor` probes the same list, so both see the same thing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// `REFINERY_LOCAL_BASE_URL`: the server for `local/` models when `--base-url` is not given.
pub const LOCAL_BASE_URL_VARIABLE: &str = "REFINERY_LOCAL_BASE_URL";

/// A kind of local server and where it listens by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownServer {
    /// As shown by `doctor` (`local:<name>`).
    pub name: &'static str,
    /// Its default address on this machine.
    pub url: &'static str,
    /// The variable that moves it (tests point these at closed ports).
    pub variable: &'static str,
}

/// The servers probed on their default ports, in order of preference.
pub const KNOWN_SERVERS: [KnownServer; 4] = [
    KnownServer {
        name: "llama.cpp",
        url: "http://127.0.0.1:8080",
        variable: "REFINERY_LLAMA_CPP_URL",
    },
    KnownServer {
        name: "ollama",
        url: "http://127.0.0.1:11434",
        variable: "REFINERY_OLLAMA_URL",
    },
    KnownServer {
        name: "lm-studio",
        url: "http://127.0.0.1:1234",
        variable: "REFINERY_LMSTUDIO_URL",
    },
    KnownServer {
        name: "vllm",
        url: "http://127.0.0.1:8000",
        variable: "REFINERY_VLLM_URL",
    },
];

/// One address to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProbe {
    /// As shown by `doctor`.
    pub name: String,
    /// `http://host:port` (a trailing `/v1` is accepted).
    pub url: String,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalServerStatus {
    pub name: String,
    /// `http://host:port`, without `/v1`.
    pub url: String,
    /// `GET /v1/models` answered with a success status.
    pub reachable: bool,
    /// The model ids it serves.
    pub models: Vec<String>,
    /// Tokens of context per request, where the server says (llama.cpp's `/props`, vLLM's
    /// `max_model_len`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Why it is not reachable, where we know: nothing listens, or it did not answer in
    /// time (a port that accepts and then stays silent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl LocalServerStatus {
    /// The OpenAI-style base URL (`…/v1`) for `local/` models.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// The model to use when none is named: the first one the server lists.
    pub fn default_model(&self) -> Option<&str> {
        self.models.first().map(String::as_str)
    }
}

/// The addresses to probe, in order: `REFINERY_LOCAL_BASE_URL` (as `configured`), the server
/// `refinery local serve` recorded (`recorded`), then [`KNOWN_SERVERS`] at their defaults or
/// where their variables move them. The same address is probed once.
pub fn probes(env: &BTreeMap<String, String>, recorded: Option<&str>) -> Vec<LocalProbe> {
    let non_empty = |name: &str| {
        env.get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
            .map(ToString::to_string)
    };
    let mut list: Vec<LocalProbe> = Vec::new();
    let mut add = |name: &str, url: String| {
        let url = server_root(&url);
        if !list.iter().any(|probe| probe.url == url) {
            list.push(LocalProbe {
                name: name.to_string(),
                url,
            });
        }
    };
    if let Some(url) = non_empty(LOCAL_BASE_URL_VARIABLE) {
        add("configured", url);
    }
    if let Some(url) = recorded {
        add("refinery-local", url.to_string());
    }
    for server in KNOWN_SERVERS {
        add(
            server.name,
            non_empty(server.variable).unwrap_or_else(|| server.url.to_string()),
        );
    }
    list
}

/// `http://host:port/v1/` → `http://host:port`.
pub fn server_root(url: &str) -> String {
    let base = url.trim().trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_string()
}

/// An HTTP client for probes: no proxy (a loopback call stays loopback), a short timeout.
pub fn probe_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
}

/// Asks one address what it serves. Never fails: a server that does not answer is reported
/// as unreachable, with the reason in `problem`.
pub async fn probe(http: &reqwest::Client, target: &LocalProbe) -> LocalServerStatus {
    let base = server_root(&target.url);
    let mut status = unanswered(target, None);
    let response = match http.get(format!("{base}/v1/models")).send().await {
        Ok(response) => response,
        Err(error) => {
            status.problem = Some(request_problem(&error));
            return status;
        }
    };
    if !response.status().is_success() {
        status.problem = Some(format!("`GET /v1/models` answered {}", response.status()));
        return status;
    }
    status.reachable = true;
    let listing = response.json::<Value>().await.unwrap_or(Value::Null);
    status.models = model_ids(&listing);
    status.context_window = match props_context(http, &base).await {
        Some(context) => Some(context),
        None => listing_context(&listing),
    };
    status
}

/// Probes every address at once; the whole call returns within `deadline` (plus scheduling),
/// however the servers behave. A probe still waiting at the deadline is reported as timed out
/// and is cancelled (dropping its request closes the connection).
pub async fn probe_all(
    http: &reqwest::Client,
    targets: &[LocalProbe],
    deadline: Duration,
) -> Vec<LocalServerStatus> {
    let bounded = targets.iter().map(|target| async move {
        match tokio::time::timeout(deadline, probe(http, target)).await {
            Ok(status) => status,
            Err(_) => unanswered(
                target,
                Some(format!(
                    "timed out: no answer within {} ms (something accepts connections there but does not reply)",
                    deadline.as_millis()
                )),
            ),
        }
    });
    futures::future::join_all(bounded).await
}

fn unanswered(target: &LocalProbe, problem: Option<String>) -> LocalServerStatus {
    LocalServerStatus {
        name: target.name.clone(),
        url: server_root(&target.url),
        reachable: false,
        models: Vec::new(),
        context_window: None,
        problem,
    }
}

/// A short reason for a failed probe request, without the URL (the report shows it already).
fn request_problem(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out: no answer in time".to_string()
    } else if error.is_connect() {
        "nothing listens there (connection refused or unreachable)".to_string()
    } else {
        "the request failed".to_string()
    }
}

/// The first server that answers and serves a model, in probe order.
pub fn first_usable(servers: &[LocalServerStatus]) -> Option<&LocalServerStatus> {
    servers
        .iter()
        .find(|server| server.reachable && !server.models.is_empty())
}

fn model_ids(listing: &Value) -> Vec<String> {
    listing
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|model| model.get("id").and_then(Value::as_str))
        .map(ToString::to_string)
        .collect()
}

/// llama.cpp: `GET /props` → `default_generation_settings.n_ctx` (the context of one slot).
async fn props_context(http: &reqwest::Client, base: &str) -> Option<u32> {
    let response = http.get(format!("{base}/props")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let props = response.json::<Value>().await.ok()?;
    context_from_props(&props)
}

/// The context from llama.cpp's `/props` body.
pub fn context_from_props(props: &Value) -> Option<u32> {
    let settings = props.get("default_generation_settings")?;
    settings
        .get("n_ctx")
        .or_else(|| {
            settings
                .get("params")
                .and_then(|params| params.get("n_ctx"))
        })
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// vLLM lists `max_model_len` per model; llama.cpp lists `meta.n_ctx_train` (the trained
/// length, an upper bound when `/props` is missing).
fn listing_context(listing: &Value) -> Option<u32> {
    let first = listing.get("data")?.as_array()?.first()?;
    first
        .get("max_model_len")
        .or_else(|| first.get("meta").and_then(|meta| meta.get("n_ctx_train")))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// The most output tokens a call may ask for: `requested`, cut so that the prompt (estimated
/// high, at 3 characters a token) and the answer fit the model's context. A server fills its
/// context and then stops or fails, so asking for more only lets a small model run on. Never
/// below 256 tokens (or `requested`, if smaller): a prompt that leaves less than that is too
/// big, and the server's own error says so better than an empty answer would.
pub fn fit_max_tokens(requested: u32, context_window: Option<u32>, input_chars: usize) -> u32 {
    let Some(context) = context_window else {
        return requested;
    };
    let prompt_tokens = u32::try_from(input_chars.div_ceil(3)).unwrap_or(u32::MAX);
    // Chat templates add a few tokens per message.
    let available = context.saturating_sub(prompt_tokens).saturating_sub(64);
    available.clamp(requested.min(256), requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probe_order_and_overrides() {
        let env: BTreeMap<String, String> = [
            (
                LOCAL_BASE_URL_VARIABLE.to_string(),
                "http://127.0.0.1:9001/v1/".to_string(),
            ),
            (
                "REFINERY_OLLAMA_URL".to_string(),
                "http://127.0.0.1:9002".to_string(),
            ),
            ("REFINERY_VLLM_URL".to_string(), "  ".to_string()),
        ]
        .into();
        let list = probes(&env, Some("http://127.0.0.1:9001"));
        let pairs: Vec<(&str, &str)> = list
            .iter()
            .map(|probe| (probe.name.as_str(), probe.url.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("configured", "http://127.0.0.1:9001"),
                ("llama.cpp", "http://127.0.0.1:8080"),
                ("ollama", "http://127.0.0.1:9002"),
                ("lm-studio", "http://127.0.0.1:1234"),
                ("vllm", "http://127.0.0.1:8000"),
            ]
        );
    }

    #[test]
    fn context_from_server_answers() {
        let props = json!({"default_generation_settings": {"n_ctx": 8192}, "total_slots": 1});
        assert_eq!(context_from_props(&props), Some(8192));
        let nested = json!({"default_generation_settings": {"params": {"n_ctx": 4096}}});
        assert_eq!(context_from_props(&nested), Some(4096));
        assert_eq!(
            context_from_props(&json!({"default_generation_settings": {"n_ctx": 0}})),
            None
        );
        assert_eq!(context_from_props(&json!({})), None);
        let vllm = json!({"data": [{"id": "m", "max_model_len": 32768}]});
        assert_eq!(listing_context(&vllm), Some(32768));
        let llama = json!({"data": [{"id": "m", "meta": {"n_ctx_train": 131_072}}]});
        assert_eq!(listing_context(&llama), Some(131_072));
        assert_eq!(model_ids(&llama), ["m"]);
    }

    #[test]
    fn max_tokens_fit_the_context() {
        let cases = [
            // requested, context, prompt characters, expected
            (16_384, None, 90_000, 16_384),
            (16_384, Some(32_768), 3_000, 16_384),
            // SmolLM2: 8,192 tokens of context; a 12k-character brief leaves about 4k.
            (16_384, Some(8_192), 12_000, 4_128),
            (8_192, Some(8_192), 0, 8_128),
            // A prompt that does not fit leaves the floor; the server says why it fails.
            (16_384, Some(4_096), 60_000, 256),
            (100, Some(4_096), 60_000, 100),
        ];
        for (requested, context, chars, expected) in cases {
            assert_eq!(
                fit_max_tokens(requested, context, chars),
                expected,
                "{requested} {context:?} {chars}"
            );
        }
    }
}
