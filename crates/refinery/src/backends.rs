//! Opening an API model by name, with `local/` models found on this machine.
//!
//! A `local/<model>` (or bare `local`) model is reached at, first hit wins: `--base-url`,
//! `REFINERY_LOCAL_BASE_URL` (environment or `.env`), or the first server that answers among
//! the ones `refinery local serve` recorded and the usual ports of llama.cpp, Ollama, LM
//! Studio and vLLM — the same probes `refinery doctor` makes. Without a model name, the
//! server's only model is used. The server's context (llama.cpp's `/props`) travels with the
//! model, so every role's `max_tokens` can fit it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use refinery_llm::local::{self, LocalProbe, LocalServerStatus};
use refinery_llm::{ApiChatModel, Credentials, open_chat_model};

/// How long a loopback server may take to list its models.
const LOCAL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// An opened API model and what its server says about it.
pub(crate) struct OpenedModel {
    pub(crate) model: ApiChatModel,
    /// Tokens of context per request, where the server says.
    pub(crate) context_window: Option<u32>,
}

/// Opens models for one command; probes local servers at most once.
pub(crate) struct ModelOpener<'a> {
    env: &'a BTreeMap<String, String>,
    credentials: &'a Credentials,
    /// `--base-url`.
    base_url: Option<String>,
    /// Whether `--base-url` applies to every provider (`ask`, one model) or only to `local/`
    /// models (`refine`, where roles may mix providers).
    base_url_for_all: bool,
    servers: RefCell<Option<Vec<LocalServerStatus>>>,
}

impl<'a> ModelOpener<'a> {
    pub(crate) fn new(
        env: &'a BTreeMap<String, String>,
        credentials: &'a Credentials,
        base_url: Option<String>,
        base_url_for_all: bool,
    ) -> Self {
        Self {
            env,
            credentials,
            base_url,
            base_url_for_all,
            servers: RefCell::new(None),
        }
    }

    /// Remembers what a doctor report already found, so nothing is probed twice.
    pub(crate) fn know_servers(&self, servers: Vec<LocalServerStatus>) {
        *self.servers.borrow_mut() = Some(servers);
    }

    /// Opens `provider/model`, `local/<model>` or `local`.
    pub(crate) fn open(&self, name: &str) -> anyhow::Result<OpenedModel> {
        match local_name(name) {
            Some(LocalName::Any) => return self.open_local(name, None),
            Some(LocalName::Named(model)) => return self.open_local(name, Some(model)),
            None => {}
        }
        let base_url = self.base_url.as_deref().filter(|_| self.base_url_for_all);
        let model = open_chat_model(name, base_url, self.credentials)
            .with_context(|| format!("opening backend `{name}`"))?;
        Ok(OpenedModel {
            model,
            context_window: None,
        })
    }

    fn explicit_url(&self) -> Option<String> {
        self.base_url.clone().or_else(|| {
            self.credentials
                .var(local::LOCAL_BASE_URL_VARIABLE)
                .map(ToString::to_string)
        })
    }

    fn open_local(&self, name: &str, model: Option<&str>) -> anyhow::Result<OpenedModel> {
        let explicit = self.explicit_url();
        let server = if let Some(url) = &explicit {
            probe_now(&[LocalProbe {
                name: "configured".to_owned(),
                url: url.clone(),
            }])?
            .into_iter()
            .next()
        } else {
            let servers = self.servers()?;
            // The server that serves the named model, else the first usable one.
            model
                .and_then(|model| {
                    servers
                        .iter()
                        .find(|server| server.models.iter().any(|served| served == model))
                })
                .or_else(|| local::first_usable(&servers))
                .cloned()
        };
        let Some(server) = server else {
            // The library's message says how to get a server.
            return Err(open_chat_model(name, None, self.credentials)
                .err()
                .map_or_else(
                    || anyhow::anyhow!("no local model server answers"),
                    Into::into,
                ));
        };
        let model = match model {
            Some(model) => model.to_owned(),
            None => only_model(&server)?,
        };
        let base_url = explicit.unwrap_or_else(|| server.base_url());
        let opened = open_chat_model(&format!("local/{model}"), Some(&base_url), self.credentials)
            .with_context(|| format!("opening backend `local/{model}`"))?;
        Ok(OpenedModel {
            model: opened,
            context_window: server.context_window,
        })
    }

    fn servers(&self) -> anyhow::Result<Vec<LocalServerStatus>> {
        if let Some(known) = self.servers.borrow().as_ref() {
            return Ok(known.clone());
        }
        let found = probe_now(&local::probes(
            self.env,
            recorded_server(self.env).as_deref(),
        ))?;
        *self.servers.borrow_mut() = Some(found.clone());
        Ok(found)
    }
}

/// A `local/` backend name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalName<'a> {
    /// `local` or `local/`: the server's only model.
    Any,
    /// `local/<model>`.
    Named(&'a str),
}

/// The `local/` backend `name` names, if it names one.
pub(crate) fn local_name(name: &str) -> Option<LocalName<'_>> {
    let name = name.trim();
    if name == "local" {
        return Some(LocalName::Any);
    }
    let model = name.strip_prefix("local/")?;
    Some(if model.trim().is_empty() {
        LocalName::Any
    } else {
        LocalName::Named(model)
    })
}

fn only_model(server: &LocalServerStatus) -> anyhow::Result<String> {
    match server.models.as_slice() {
        [only] => Ok(only.clone()),
        [] if server.reachable => bail!(
            "the local server at {} serves no model; load one, or name it as local/<model>",
            server.url
        ),
        [] => bail!(
            "nothing answers at {}; start a server there (`refinery local serve`) or name another with --base-url",
            server.url
        ),
        several => bail!(
            "the local server at {} serves several models ({}); name one, e.g. local/{}",
            server.url,
            several.join(", "),
            several[0]
        ),
    }
}

/// The URL `refinery local serve` recorded, if any.
pub(crate) fn recorded_server(env: &BTreeMap<String, String>) -> Option<String> {
    let paths = refinery_local::Paths::from_env(env).ok()?;
    refinery_local::server::recorded_url(&paths)
}

/// Probes `targets` from synchronous code (commands open their backends before their runtime
/// starts).
fn probe_now(targets: &[LocalProbe]) -> anyhow::Result<Vec<LocalServerStatus>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = local::probe_client(LOCAL_PROBE_TIMEOUT)?;
    Ok(runtime.block_on(local::probe_all(&http, targets, LOCAL_PROBE_TIMEOUT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert_eq!(local_name("local"), Some(LocalName::Any));
        assert_eq!(local_name("local/"), Some(LocalName::Any));
        assert_eq!(local_name("local/qwen"), Some(LocalName::Named("qwen")));
        assert_eq!(local_name("ollama/qwen"), None);
        assert_eq!(local_name("localhost/x"), None);
    }

    #[test]
    fn the_only_model_or_a_clear_error() {
        let mut server = LocalServerStatus {
            name: "llama.cpp".to_owned(),
            url: "http://127.0.0.1:8080".to_owned(),
            reachable: true,
            models: vec!["qwen".to_owned()],
            context_window: None,
            problem: None,
        };
        assert_eq!(only_model(&server).unwrap(), "qwen");
        server.models.push("smol".to_owned());
        let error = only_model(&server).unwrap_err().to_string();
        assert!(error.contains("several models (qwen, smol)"), "{error}");
        server.models.clear();
        assert!(
            only_model(&server)
                .unwrap_err()
                .to_string()
                .contains("serves no model")
        );
        server.reachable = false;
        assert!(
            only_model(&server)
                .unwrap_err()
                .to_string()
                .contains("nothing answers")
        );
    }
}
