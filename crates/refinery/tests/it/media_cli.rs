//! `refinery media generate|read` and `refinery doctor`'s media section from the command
//! line, and the key rule: a key appears only in its own provider's auth header — never in
//! another request, a result, a log line (at trace level, with a server echoing keys back)
//! or a file.

use std::process::{Command, Stdio};

use pretty_assertions::assert_eq;
use refinery_testkit::{MediaFault, Reply, fingerprint};
use rmcp::ServiceExt as _;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::claude_code::run_with_timeout;
use crate::media::{MediaHarness, ProgressLog, call, files_under};
use crate::support::BIN;

fn refinery(harness: &MediaHarness, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(harness.project())
        .env_clear()
        .envs(harness.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn run(command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        run_with_timeout(command, std::time::Duration::from_mins(1))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_generates_and_reads_with_the_same_result_shape() {
    let harness = MediaHarness::start().await;
    harness.server.route(|request| {
        request
            .protocol
            .map(|_| Reply::text("FAKE VISION: clean edges."))
    });
    let output = run(refinery(
        &harness,
        &[
            "media",
            "generate",
            "a lighthouse",
            "--backend",
            "gemini",
            "--out",
            "art",
            "--json",
        ],
    ))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["success"], true);
    assert_eq!(result["operation"], "generate_media");
    let path = result["file_path"].as_str().unwrap().to_owned();
    assert!(
        path.starts_with("art/")
            && std::path::Path::new(&path)
                .extension()
                .is_some_and(|ext| ext == "png"),
        "{path}"
    );

    // Human output: the path on stdout, progress on stderr.
    let output = run(refinery(
        &harness,
        &[
            "media",
            "generate",
            "Welcome aboard.",
            "--mode",
            "audio",
            "--backend",
            "openai",
        ],
    ))
    .await;
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.trim().starts_with("media/")
            && std::path::Path::new(stdout.trim())
                .extension()
                .is_some_and(|ext| ext == "mp3"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("asking gpt-4o-mini-tts"));

    let output = run(refinery(
        &harness,
        &["media", "read", &path, "--backend", "anthropic"],
    ))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "FAKE VISION: clean edges."
    );

    // A failure: exit 2, the same JSON shape, no file.
    harness.server.push_media_fault(MediaFault::SafetyBlock);
    let output = run(refinery(
        &harness,
        &["media", "generate", "x", "--backend", "xai", "--json"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(2));
    let failed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&failed),
        keys(&result),
        "one shape for success and failure"
    );
    assert_eq!(failed["code"], "safety_block");
    assert_eq!(harness.media_files().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_lists_media_modes_per_key() {
    let harness = MediaHarness::start().await;
    let mut command = refinery(&harness, &["doctor", "--json"]);
    let mut env = harness.env();
    for name in ["OPENAI_API_KEY", "XAI_API_KEY", "ANTHROPIC_API_KEY"] {
        env.remove(name);
    }
    env.insert("REFINERY_LLAMA_CPP_URL".into(), "http://127.0.0.1:9".into());
    env.insert("REFINERY_OLLAMA_URL".into(), "http://127.0.0.1:9".into());
    command.env_clear().envs(env);
    let output = run(command).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let usable: Vec<String> = report["media"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|capability| capability["usable"] == true)
        .map(|capability| {
            format!(
                "{}:{}",
                capability["task"].as_str().unwrap(),
                capability["backend"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        usable,
        [
            "image:gemini",
            "video:gemini",
            "audio:gemini",
            "vision:gemini"
        ]
    );
    assert_eq!(
        report["media"]["usable_tasks"],
        json!(["image", "video", "audio", "vision"])
    );
    let text = run(refinery(&harness, &["doctor"])).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Media"), "{text}");
    assert!(text.contains("video frames"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_only_to_their_own_providers_auth_header() {
    let harness = MediaHarness::start().await;
    let keys = [
        harness.keys.openai.clone(),
        harness.keys.gemini.clone(),
        harness.keys.xai.clone(),
        harness.keys.anthropic.clone(),
    ];
    // A misbehaving server echoes the key it received back in an error.
    let echoed = harness.keys.anthropic.clone();
    harness.server.push(Reply::status_with_body(
        400,
        json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key: {echoed}")}}),
    ));
    fs_err::write(
        harness.project().join("shot.png"),
        refinery_testkit::media::payloads::picture("png"),
    )
    .unwrap();
    let mut env = harness.env();
    env.insert("RUST_LOG".into(), "trace".into());
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["mcp", "media"])
        .current_dir(harness.project())
        .env_clear()
        .envs(env);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = ProgressLog::default().serve(transport).await.unwrap();
    let mut results = Vec::new();
    for arguments in [
        json!({"prompt": "p", "backend": "openai"}),
        json!({"prompt": "p", "backend": "xai"}),
        json!({"mode": "video", "prompt": "p", "backend": "gemini"}),
        json!({"mode": "video", "prompt": "p", "backend": "xai"}),
        json!({"mode": "audio", "prompt": "p", "backend": "gemini"}),
    ] {
        let (is_error, result) = call(&client, "generate_media", arguments).await;
        assert!(!is_error, "{result:#}");
        results.push(result);
    }
    let (is_error, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["shot.png"], "backend": "anthropic"}),
    )
    .await;
    assert!(is_error);
    assert!(
        result["error"].as_str().unwrap().contains("[REDACTED]"),
        "{result:#}"
    );
    results.push(result);
    client.cancel().await.unwrap();
    let mut log = String::new();
    stderr.unwrap().read_to_string(&mut log).await.unwrap();
    let cli = run(refinery(
        &harness,
        &["media", "generate", "p", "--backend", "openai", "--json"],
    ))
    .await;

    let mut haystacks = vec![("server log".to_owned(), log)];
    haystacks.push((
        "results".to_owned(),
        serde_json::to_string(&results).unwrap(),
    ));
    haystacks.push((
        "cli stdout".to_owned(),
        String::from_utf8_lossy(&cli.stdout).into_owned(),
    ));
    haystacks.push((
        "cli stderr".to_owned(),
        String::from_utf8_lossy(&cli.stderr).into_owned(),
    ));
    for file in files_under(harness.context.root()) {
        let text = String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned();
        haystacks.push((file.display().to_string(), text));
    }
    for request in harness.server.requests() {
        let mut visible = format!(
            "{} {} {}",
            request.method,
            request.path,
            request.body_text()
        );
        for (name, value) in &request.headers {
            visible.push(' ');
            visible.push_str(name);
            visible.push('=');
            visible.push_str(value);
        }
        haystacks.push((format!("request {}", request.path), visible));
        // Which key went where: each credential belongs to the provider of that endpoint.
        let path = request.path.as_str();
        let expected = if path.starts_with("/xai-downloads/") {
            None
        } else if path.starts_with("/v1beta/") {
            Some(("x-goog-api-key", &harness.keys.gemini))
        } else if path.starts_with("/v1/messages") {
            Some(("x-api-key", &harness.keys.anthropic))
        } else if path.starts_with("/v1/videos")
            || request.body["model"]
                .as_str()
                .is_some_and(|model| model.starts_with("grok"))
        {
            Some(("authorization", &harness.keys.xai))
        } else {
            Some(("authorization", &harness.keys.openai))
        };
        let expected: Vec<(String, String)> = expected
            .map(|(header, key)| (header.to_owned(), fingerprint(key)))
            .into_iter()
            .collect();
        assert_eq!(request.credentials, expected, "{} {path}", request.method);
    }
    for (what, text) in haystacks {
        for key in &keys {
            assert!(!text.contains(key.as_str()), "{what} contains a key");
            assert!(
                !text.contains(&key[6..key.len() - 2]),
                "{what} contains part of a key"
            );
        }
    }
}
