use std::collections::BTreeMap;
use std::time::Duration;

use refinery_llm::{ApiChatModel, CallOptions, Credentials, RetryPolicy, open_chat_model};
use refinery_testkit::FakeModelServer;

/// A fake key planted for every provider; tests assert it never leaks.
pub(crate) const PLANTED_KEY: &str = "sk-planted-test-key-7f3a9c";

pub(crate) fn credentials() -> Credentials {
    let env: BTreeMap<String, String> = refinery_llm::KEY_VARIABLES
        .iter()
        .map(|name| ((*name).to_string(), PLANTED_KEY.to_string()))
        .collect();
    Credentials::from_env(&env)
}

pub(crate) fn model(server: &FakeModelServer, name: &str) -> ApiChatModel {
    open_chat_model(name, Some(&server.url()), &credentials()).unwrap()
}

/// Fast retries so fault tests take milliseconds, not seconds.
pub(crate) fn fast_options() -> CallOptions {
    CallOptions {
        request_timeout: Duration::from_secs(10),
        deadline: Some(Duration::from_secs(30)),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        },
        ..CallOptions::default()
    }
}
