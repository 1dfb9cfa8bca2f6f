//! `refinery doctor` on an empty machine, with keys, with a fake local server, and with a
//! real agent CLI on PATH.

use pretty_assertions::assert_eq;
use refinery_testkit::agent_cli::{AgentCliName, require_agent_cli};
use refinery_testkit::{FakeModelServer, TestContext};
use serde_json::Value;

use crate::llm_support::{doctor_env, refinery, text};

fn usable(report: &Value) -> Vec<String> {
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|backend| backend["usable"] == Value::Bool(true))
        .map(|backend| backend["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_empty_machine_gets_next_steps() {
    let context = TestContext::new().unwrap();
    let env = doctor_env(&context);
    let state = context.state_dir();
    let output = refinery(
        &context,
        &env,
        &["doctor", "--state-dir", state.to_str().unwrap()],
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("Usable backends: none"), "{stdout}");
    assert!(stdout.contains("nothing can run a model yet"), "{stdout}");
    assert!(stdout.contains("install Node.js 20 or newer"), "{stdout}");
    assert!(
        stdout.contains("npm install -g @anthropic-ai/claude-code@2.1.330"),
        "{stdout}"
    );
    assert!(
        stdout.contains("set an API key, e.g. `ANTHROPIC_API_KEY`"),
        "{stdout}"
    );
    assert!(stdout.contains("llama-server"), "{stdout}");

    let environment: Value =
        serde_json::from_str(&fs_err::read_to_string(state.join("environment.json")).unwrap())
            .unwrap();
    assert_eq!(usable(&environment), Vec::<String>::new());
    assert_eq!(environment["schema_version"], 1);

    let output = refinery(
        &context,
        &env,
        &["doctor", "--json", "--state-dir", state.to_str().unwrap()],
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["agent_clis"].as_array().unwrap().len(), 4);
    assert!(
        report["agent_clis"]
            .as_array()
            .unwrap()
            .iter()
            .all(|cli| cli["found"] == false)
    );
    assert!(
        report["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|key| key["present"] == false)
    );
    assert!(report["next_steps"].as_array().unwrap().len() >= 3);
}

#[test]
fn keys_from_env_and_dotenv_files_are_reported_by_name() {
    let context = TestContext::new().unwrap();
    let mut env = doctor_env(&context);
    env.insert(
        "ANTHROPIC_API_KEY".to_string(),
        "sk-ant-doctor-env-0001".to_string(),
    );
    context
        .write("project/.env", "OPENAI_API_KEY=sk-doctor-project-0002\n")
        .unwrap();
    context
        .write(
            "home/.env",
            "GEMINI_API_KEY=gem-doctor-home-0003\nOPENAI_API_KEY=sk-doctor-home-shadowed\n",
        )
        .unwrap();
    let state = context.state_dir();
    let output = refinery(
        &context,
        &env,
        &["doctor", "--json", "--state-dir", state.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(usable(&report), ["anthropic", "openai", "gemini"]);
    let sources: Vec<(String, String)> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["present"] == true)
        .map(|key| {
            let source = match key["source"]["kind"].as_str().unwrap() {
                "environment" => "environment".to_string(),
                _ => key["source"]["path"]
                    .as_str()
                    .unwrap()
                    .replace(&context.root().display().to_string(), ""),
            };
            (key["name"].as_str().unwrap().to_string(), source)
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("ANTHROPIC_API_KEY".to_string(), "environment".to_string()),
            ("OPENAI_API_KEY".to_string(), "/project/.env".to_string()),
            ("GEMINI_API_KEY".to_string(), "/home/.env".to_string()),
        ]
    );
    let steps = report["next_steps"].to_string();
    assert!(
        steps.contains("try it: `refinery ask anthropic/claude-sonnet-4-5"),
        "{steps}"
    );
    assert!(!steps.contains("nothing can run a model yet"), "{steps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_server_is_found_and_suggested() {
    let context = TestContext::new().unwrap();
    let server = FakeModelServer::start().await.unwrap();
    let mut env = doctor_env(&context);
    env.insert("REFINERY_LLAMA_CPP_URL".to_string(), server.url());
    let state = context.state_dir();
    let output = tokio::task::spawn_blocking(move || {
        refinery(
            &context,
            &env,
            &["doctor", "--json", "--state-dir", state.to_str().unwrap()],
        )
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(usable(&report), ["local:llama.cpp"]);
    let llama = &report["local_servers"][0];
    assert_eq!(llama["reachable"], true);
    assert_eq!(llama["models"], serde_json::json!(["fake-model"]));
    assert!(
        report["next_steps"]
            .to_string()
            .contains("refinery ask local/fake-model"),
        "{}",
        report["next_steps"]
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|request| request.path == "/v1/models")
    );
}

#[test]
fn an_installed_agent_cli_is_found_with_its_version() {
    let Some(claude) = require_agent_cli(AgentCliName::Claude) else {
        return;
    };
    let context = TestContext::new().unwrap();
    let mut env = doctor_env(&context);
    env.insert(
        "PATH".to_string(),
        claude.parent().unwrap().display().to_string(),
    );
    let state = context.state_dir();
    let output = refinery(
        &context,
        &env,
        &["doctor", "--json", "--state-dir", state.to_str().unwrap()],
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let status = &report["agent_clis"][0];
    assert_eq!(status["cli"], "claude");
    assert_eq!(status["found"], true, "{report:#}");
    assert!(
        status["version"].as_str().unwrap().contains("2.1.330"),
        "{status}"
    );
    assert!(usable(&report).contains(&"claude-cli".to_string()));
}

/// A port that accepts connections and never answers must not hold `doctor` up: the local
/// probes together give up after 2 s, and the report names the probe that timed out (and
/// tells a refused port apart). Before the deadline, a silent port held the report for the
/// 20 s CLI timeout.
#[test]
fn a_silent_local_server_times_out_quickly_and_is_named() {
    let context = TestContext::new().unwrap();
    let mut env = doctor_env(&context);
    // Bound and listening, never accepted or read: the kernel completes the handshake from
    // the backlog, so a client connects and then waits for a reply that never comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    env.insert("REFINERY_LLAMA_CPP_URL".to_string(), silent_url.clone());
    // `doctor_env` points Ollama (and the rest) at a closed port: refused at once.
    let state = context.state_dir();
    let started = std::time::Instant::now();
    let output = refinery(
        &context,
        &env,
        &["doctor", "--json", "--state-dir", state.to_str().unwrap()],
    );
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The limit is 2 s for the probes; the bound leaves room for a busy CI machine's process
    // start-up, and is still far below the old 20 s wait.
    assert!(
        elapsed < std::time::Duration::from_secs(8),
        "doctor took {elapsed:?} with a silent port"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let servers = report["local_servers"].as_array().unwrap();
    let llama = servers.iter().find(|s| s["name"] == "llama.cpp").unwrap();
    assert_eq!(llama["reachable"], false);
    assert_eq!(llama["url"], silent_url.as_str());
    let problem = llama["problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("timed out"), "{llama}");
    let ollama = servers.iter().find(|s| s["name"] == "ollama").unwrap();
    let refused = ollama["problem"].as_str().unwrap_or_default();
    assert!(refused.contains("connection refused"), "{ollama}");
    assert!(!refused.contains("timed out"), "{ollama}");

    // The text report says which probe it was.
    let output = refinery(
        &context,
        &env,
        &["doctor", "--state-dir", state.to_str().unwrap()],
    );
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("llama.cpp"))
        .unwrap_or_default();
    assert!(
        line.contains(&silent_url) && line.contains("timed out"),
        "{stdout}"
    );
    drop(silent);
}
