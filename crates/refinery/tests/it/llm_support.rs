//! Running the built `refinery` binary for the model-access commands (`ask`, `doctor`) with
//! an explicit, hermetic environment: nothing is inherited from the developer's shell.

use std::collections::BTreeMap;
use std::process::Output;

use refinery_testkit::TestContext;

/// A loopback URL where nothing listens (bound, then released), so doctor's probes of the
/// default local-server ports never depend on what this machine happens to run.
pub(crate) fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Run `refinery` with exactly `env` (nothing inherited) in the context's project folder.
pub(crate) fn refinery(
    context: &TestContext,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> Output {
    let mut command = std::process::Command::new(crate::support::BIN);
    command
        .env_clear()
        .envs(env)
        .current_dir(context.project())
        .args(args);
    command.output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A hermetic env whose local-server probes point at closed ports.
pub(crate) fn doctor_env(context: &TestContext) -> BTreeMap<String, String> {
    let mut env = context.bare_env();
    for variable in [
        "REFINERY_LLAMA_CPP_URL",
        "REFINERY_OLLAMA_URL",
        "REFINERY_LMSTUDIO_URL",
        "REFINERY_VLLM_URL",
    ] {
        env.insert(variable.to_string(), closed_url());
    }
    env
}
