//! Keys planted in the environment and in `.env` files never appear in any output, log,
//! error or `environment.json`, even at trace log level and when a server echoes a key back.

use std::collections::BTreeMap;
use std::path::Path;

use refinery_testkit::{FakeModelServer, Reply, TestContext};
use serde_json::json;

use crate::llm_support::{closed_url, refinery, text};

const PLANTED: &[(&str, &str, &str)] = &[
    // variable, value, where it is planted
    (
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-PLANTED-env-anthropic-1111",
        "env",
    ),
    ("XAI_API_KEY", "xai-PLANTED-env-xai-2222", "env"),
    (
        "OPENAI_API_KEY",
        "sk-proj-PLANTED-dotenv-openai-3333",
        "project",
    ),
    (
        "ELEVENLABS_API_KEY",
        "el-PLANTED-dotenv-elevenlabs-4444",
        "project",
    ),
    ("GEMINI_API_KEY", "AIzaPLANTED-home-gemini-5555", "home"),
    (
        "OPENROUTER_API_KEY",
        "sk-or-v1-PLANTED-home-openrouter-6666",
        "home",
    ),
];

fn assert_clean(what: &str, haystack: &str) {
    for (variable, value, _) in PLANTED {
        assert!(
            !haystack.contains(value),
            "{what} contains the value of {variable}:\n{haystack}"
        );
        // A long fragment of a key is a leak too.
        assert!(
            !haystack.contains(&value[4..value.len() - 2]),
            "{what} contains part of {variable}"
        );
    }
}

fn files_under(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_keys_never_leak() {
    let server = FakeModelServer::start().await.unwrap();
    let anthropic_key = PLANTED[0].1;
    let gemini_key = PLANTED[4].1;
    server.push_all([
        // A server that echoes the key it was sent, as a misbehaving proxy might.
        Reply::status_with_body(401, json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key: {anthropic_key}")}})),
        Reply::text("fine"),
        Reply::status(500),
        Reply::text("after a retry"),
        Reply::status_with_body(400, json!({"error": {"code": 400, "message": format!("API key {gemini_key} not valid"), "status": "INVALID_ARGUMENT"}})),
    ]);
    let context = TestContext::new().unwrap();
    let mut env: BTreeMap<String, String> = context.bare_env();
    env.insert("RUST_LOG".to_string(), "trace".to_string());
    env.insert("REFINERY_LLAMA_CPP_URL".to_string(), server.url());
    env.insert("REFINERY_OLLAMA_URL".to_string(), closed_url());
    let mut project_env = String::new();
    let mut home_env = String::new();
    for (variable, value, place) in PLANTED {
        match *place {
            "env" => {
                env.insert((*variable).to_string(), (*value).to_string());
            }
            "project" => project_env.push_str(&[*variable, "=", value, "\n"].concat()),
            _ => home_env.push_str(&["export ", variable, "=\"", value, "\"\n"].concat()),
        }
    }
    context.write("project/.env", &project_env).unwrap();
    context.write("home/.env", &home_env).unwrap();
    let state = context.state_dir().display().to_string();
    let url = server.url();
    let runs: Vec<(Vec<String>, bool)> = vec![
        (
            vec!["doctor".into(), "--state-dir".into(), state.clone()],
            true,
        ),
        (
            vec![
                "doctor".into(),
                "--json".into(),
                "--state-dir".into(),
                state.clone(),
            ],
            true,
        ),
        (
            vec![
                "ask".into(),
                "anthropic/claude-sonnet-4-5".into(),
                "hi".into(),
                "--base-url".into(),
                url.clone(),
            ],
            false,
        ),
        (
            vec![
                "ask".into(),
                "anthropic/claude-sonnet-4-5".into(),
                "hi".into(),
                "--stream".into(),
                "--base-url".into(),
                url.clone(),
            ],
            true,
        ),
        (
            vec![
                "ask".into(),
                "openai/gpt-4.1".into(),
                "hi".into(),
                "--json".into(),
                "--base-url".into(),
                format!("{url}/v1"),
            ],
            true,
        ),
        (
            vec![
                "ask".into(),
                "gemini/gemini-2.5-flash".into(),
                "hi".into(),
                "--base-url".into(),
                url.clone(),
            ],
            false,
        ),
    ];
    let context = std::sync::Arc::new(context);
    for (arguments, should_succeed) in runs {
        let (context_for_run, env_for_run, arguments_for_run) =
            (context.clone(), env.clone(), arguments.clone());
        let output = tokio::task::spawn_blocking(move || {
            let arguments: Vec<&str> = arguments_for_run.iter().map(String::as_str).collect();
            refinery(&context_for_run, &env_for_run, &arguments)
        })
        .await
        .unwrap();
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(
            output.status.success(),
            should_succeed,
            "{arguments:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert_clean(&format!("stdout of {arguments:?}"), &stdout);
        assert_clean(&format!("stderr of {arguments:?}"), &stderr);
        if !should_succeed {
            assert!(
                stderr.contains("[REDACTED]"),
                "{arguments:?}: the echoed key should show as [REDACTED]: {stderr}"
            );
        }
    }
    let mut files = Vec::new();
    files_under(context.root(), &mut files);
    let environment = context.state_dir().join("environment.json");
    assert!(files.contains(&environment), "{files:?}");
    for file in files {
        if file.file_name().is_some_and(|name| name == ".env") {
            continue;
        }
        let contents = String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned();
        assert_clean(&file.display().to_string(), &contents);
    }
    let environment = fs_err::read_to_string(environment).unwrap();
    for (variable, _, _) in PLANTED {
        assert!(
            environment.contains(variable),
            "environment.json should name {variable}"
        );
    }
}
