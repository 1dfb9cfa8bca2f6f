//! The real Claude Code CLI with `plugin/` against the fake: `/refinery:image-generation`
//! makes a file through our media MCP server (OpenAI Images on the fake), and
//! `/refinery:read-media` returns the fake vision model's answer (Anthropic Messages with
//! an image block, on the same fake that plays Claude).

use std::time::Duration;

use pretty_assertions::assert_eq;
use refinery_testkit::fingerprint;
use serde_json::{Value, json};

use crate::claude_code::{ClaudeHarness, Step, run, text, tool};

const MEDIA: &str = "mcp__plugin_refinery_media__";
const RUN_TIMEOUT: Duration = Duration::from_mins(4);
const VISION_ANSWER: &str = "FAKE VISION: the lighthouse is cut off at the top; the sky is fine.";

/// Whether a request is our media server's vision call (an image block in the user turn)
/// rather than a turn of Claude Code itself.
fn is_vision_call(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "image"))
}

/// The text of the last tool result in the conversation.
fn last_tool_result(body: &Value) -> String {
    crate::claude_code::tool_result_texts(body)
        .pop()
        .unwrap_or_default()
}

fn openai_key() -> String {
    ["sk-proj-", "PLUGINmedia", "5T3r1E9w"].concat()
}

async fn claude_run(harness: &ClaudeHarness, prompt: &str, allowed: &str) -> Value {
    let mut command = harness.claude(&[
        "-p",
        prompt,
        "--output-format",
        "json",
        "--allowedTools",
        allowed,
    ]);
    command
        .env("OPENAI_BASE_URL", format!("{}/v1", harness.server.url()))
        .env("OPENAI_API_KEY", openai_key());
    let output = run(command, RUN_TIMEOUT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "claude failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn image_generation_skill_writes_a_file_through_our_media_server() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    harness.script(|turn, body| {
        if is_vision_call(body) {
            return text(VISION_ANSWER);
        }
        if turn == 0 {
            return tool(
                &format!("{MEDIA}generate_media"),
                json!({"mode": "image", "prompt": "A lighthouse at dusk, flat vector style", "storage_path": "art"}),
            );
        }
        let result: Value = serde_json::from_str(&last_tool_result(body)).unwrap_or_default();
        Step::Text(format!("Saved {}", result["file_path"].as_str().unwrap_or("nothing")))
    });
    let allowed = format!("{MEDIA}generate_media,{MEDIA}read_media");
    let result = claude_run(
        &harness,
        "/refinery:image-generation \"A lighthouse at dusk\" --out art",
        &allowed,
    )
    .await;
    let answer = result["result"].as_str().unwrap();
    assert!(answer.starts_with("Saved art/"), "{result}");
    let path = harness.project().join(answer.trim_start_matches("Saved "));
    let bytes = fs_err::read(&path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "a real PNG at {}",
        path.display()
    );
    let request = harness
        .server
        .requests()
        .into_iter()
        .find(|request| request.path == "/v1/images/generations")
        .expect("our server called OpenAI Images on the fake");
    assert_eq!(
        request.body["prompt"],
        "A lighthouse at dusk, flat vector style"
    );
    assert_eq!(
        request.credential("authorization"),
        Some(fingerprint(&openai_key()).as_str())
    );
    // The skill body reached the model and names the media tools.
    let requests = harness.server.model_requests();
    let main = requests
        .iter()
        .rfind(|request| !request.tool_names().is_empty())
        .unwrap();
    assert!(
        main.body["messages"]
            .to_string()
            .contains("Refinery: image generation")
    );
    assert!(
        main.tool_names()
            .contains(&format!("{MEDIA}generate_media"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_media_skill_returns_the_vision_answer() {
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    fs_err::write(
        harness.project().join("shot.png"),
        refinery_testkit::media::payloads::picture("png"),
    )
    .unwrap();
    harness.script(|turn, body| {
        if is_vision_call(body) {
            return text(VISION_ANSWER);
        }
        if turn == 0 {
            return tool(
                &format!("{MEDIA}read_media"),
                json!({"file_paths": ["shot.png"], "prompt": "Is the lighthouse whole?"}),
            );
        }
        let result: Value = serde_json::from_str(&last_tool_result(body)).unwrap_or_default();
        Step::Text(result["answer"].as_str().unwrap_or("no answer").to_owned())
    });
    let allowed = format!("{MEDIA}read_media");
    let result = claude_run(
        &harness,
        "/refinery:read-media shot.png --question 'Is the lighthouse whole?'",
        &allowed,
    )
    .await;
    assert_eq!(result["result"], VISION_ANSWER, "{result}");
    let vision = harness
        .server
        .requests()
        .into_iter()
        .find(|request| is_vision_call(&request.body))
        .expect("our server sent the image to the vision backend");
    assert_eq!(vision.path.split('?').next(), Some("/v1/messages"));
    assert!(vision.body_text().contains("Is the lighthouse whole?"));
}
