//! `refinery mcp media` spawned over real stdio against the testkit's media fakes: every
//! mode on every backend, every fault (each a clear error result and no file), progress
//! notifications and cancellation, workspace confinement, keys that go nowhere but their
//! own provider's auth header, and `refinery media` / `refinery doctor` on the command line.
//!
//! Isolation: each test gets a `TestContext` (throwaway HOME, project, TMPDIR) and the
//! server a from-scratch environment (`env_clear`): only the fake's base URLs, the test's
//! keys (assembled at run time) and the media timing variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pretty_assertions::assert_eq;
use refinery_testkit::{
    FakeModelServer, MediaFault, RecordedRequest, Reply, TestContext, fingerprint,
};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Value, json};

use crate::support::BIN;
pub(crate) use crate::support::call;

/// Test keys, assembled at run time so the repository's secret scan stays clean.
pub(crate) struct Keys {
    pub(crate) openai: String,
    pub(crate) gemini: String,
    pub(crate) xai: String,
    pub(crate) anthropic: String,
}

impl Keys {
    pub(crate) fn new() -> Self {
        Self {
            openai: ["sk-proj-", "MEDIAopenai", "7Q2w9E4r6T8y"].concat(),
            gemini: ["AIza", "MEDIAgemini", "3K5m7N9p1R2s"].concat(),
            xai: ["xai-", "MEDIAxai", "4V6b8N0m2L4k"].concat(),
            anthropic: ["sk-ant-api03-", "MEDIAanthropic", "9J7h5G3f1D"].concat(),
        }
    }

    fn all(&self) -> [(&'static str, &str); 4] {
        [
            ("OPENAI_API_KEY", &self.openai),
            ("GEMINI_API_KEY", &self.gemini),
            ("XAI_API_KEY", &self.xai),
            ("ANTHROPIC_API_KEY", &self.anthropic),
        ]
    }
}

/// A client that keeps every progress notification it receives.
#[derive(Clone, Default)]
pub(crate) struct ProgressLog(Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ProgressLog {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl ClientHandler for ProgressLog {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

pub(crate) struct MediaHarness {
    pub(crate) context: TestContext,
    pub(crate) server: FakeModelServer,
    pub(crate) keys: Keys,
}

impl MediaHarness {
    pub(crate) async fn start() -> Self {
        Self {
            context: TestContext::new().unwrap(),
            server: FakeModelServer::start().await.unwrap(),
            keys: Keys::new(),
        }
    }

    pub(crate) fn project(&self) -> PathBuf {
        self.context.project()
    }

    /// The server's environment: fake base URLs (the chat variables), all four keys, fast
    /// polling, a short job deadline, no ffmpeg unless `path` finds one.
    pub(crate) fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.context.bare_env();
        let url = self.server.url();
        env.insert("OPENAI_BASE_URL".into(), format!("{url}/v1"));
        env.insert("GOOGLE_GEMINI_BASE_URL".into(), url.clone());
        env.insert("XAI_BASE_URL".into(), format!("{url}/v1"));
        env.insert("ANTHROPIC_BASE_URL".into(), url);
        for (name, value) in self.keys.all() {
            env.insert(name.into(), value.into());
        }
        env.insert("REFINERY_MEDIA_POLL_INTERVAL".into(), "0.02".into());
        env.insert("REFINERY_MEDIA_JOB_TIMEOUT".into(), "1".into());
        env.insert("REFINERY_MEDIA_REQUEST_TIMEOUT".into(), "20".into());
        env
    }

    pub(crate) async fn mcp_with(
        &self,
        env: BTreeMap<String, String>,
    ) -> RunningService<RoleClient, ProgressLog> {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["mcp", "media"])
            .current_dir(self.project())
            .env_clear()
            .envs(env);
        let (transport, _stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        ProgressLog::default().serve(transport).await.unwrap()
    }

    pub(crate) async fn mcp(&self) -> RunningService<RoleClient, ProgressLog> {
        self.mcp_with(self.env()).await
    }

    /// Files under the project's `media/` folder (none when it does not exist).
    pub(crate) fn media_files(&self) -> Vec<PathBuf> {
        files_under(&self.project())
            .into_iter()
            .filter(|path| !path.starts_with(self.project().join(".refinery")))
            .filter(|path| !path.starts_with(self.project().join("inputs")))
            .collect()
    }
}

pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn sniff(path: &Path) -> &'static str {
    let bytes = fs_err::read(path).unwrap();
    if bytes.starts_with(b"\x89PNG") {
        "png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "jpeg"
    } else if bytes.get(8..12) == Some(b"WAVE") {
        "wav"
    } else if bytes.starts_with(b"ID3") {
        "mp3"
    } else if bytes.get(4..8) == Some(b"ftyp") {
        "mp4"
    } else {
        "unknown"
    }
}

fn last_media_request(server: &FakeModelServer, needle: &str) -> RecordedRequest {
    server
        .requests()
        .into_iter()
        .rfind(|request| request.path.contains(needle))
        .unwrap_or_else(|| panic!("no request to {needle}"))
}

fn write_png(project: &Path, relative: &str, width: u32, height: u32) {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let path = project.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    image
        .save_with_format(&path, image::ImageFormat::Png)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_on_every_backend_writes_a_checked_file() {
    let harness = MediaHarness::start().await;
    write_png(&harness.project(), "inputs/sketch.png", 32, 32);
    let client = harness.mcp().await;
    let cases = [
        // arguments, expected extension, request path, credential header, key
        (
            json!({"mode": "image", "prompt": "a red fox", "backend": "openai", "quality": "low"}),
            "png",
            "/v1/images/generations",
            "authorization",
            &harness.keys.openai,
        ),
        (
            json!({"prompt": "the fox in blue", "backend_type": "openai", "input_images": ["inputs/sketch.png"]}),
            "png",
            "/v1/images/edits",
            "authorization",
            &harness.keys.openai,
        ),
        (
            json!({"prompt": "a fox, pixel art", "backend": "gemini", "aspect_ratio": "16:9"}),
            "png",
            ":generateContent",
            "x-goog-api-key",
            &harness.keys.gemini,
        ),
        (
            json!({"prompt": "a fox, watercolour", "backend": "gemini", "model": "imagen-4.0-generate-001"}),
            "png",
            ":predict",
            "x-goog-api-key",
            &harness.keys.gemini,
        ),
        (
            json!({"prompt": "a fox, photo", "backend": "xai"}),
            "jpg",
            "/v1/images/generations",
            "authorization",
            &harness.keys.xai,
        ),
        (
            json!({"mode": "video", "prompt": "a fox runs", "backend": "gemini", "duration": 5}),
            "mp4",
            "/files/",
            "x-goog-api-key",
            &harness.keys.gemini,
        ),
        (
            json!({"mode": "video", "prompt": "a fox jumps", "backend": "xai", "input_images": ["inputs/sketch.png"]}),
            "mp4",
            "/xai-downloads/",
            "",
            &harness.keys.xai,
        ),
        (
            json!({"mode": "audio", "prompt": "Hello from the fox.", "backend": "openai", "voice": "coral"}),
            "mp3",
            "/v1/audio/speech",
            "authorization",
            &harness.keys.openai,
        ),
        (
            json!({"mode": "audio", "prompt": "Hello again.", "backend": "gemini", "voice": "Kore"}),
            "wav",
            ":generateContent",
            "x-goog-api-key",
            &harness.keys.gemini,
        ),
    ];
    for (arguments, extension, path, header, key) in cases {
        let (is_error, result) = call(&client, "generate_media", arguments.clone()).await;
        assert!(
            !is_error && result["success"] == true,
            "{arguments}: {result:#}"
        );
        let file = harness
            .project()
            .join(result["file_path"].as_str().unwrap());
        assert!(
            file.starts_with(harness.project().join("media")),
            "{}",
            file.display()
        );
        assert_eq!(file.extension().unwrap(), extension, "{arguments}");
        assert_eq!(
            sniff(&file),
            if extension == "jpg" {
                "jpeg"
            } else {
                extension
            },
            "{arguments}"
        );
        assert_eq!(result["file_size"], fs_err::metadata(&file).unwrap().len());
        let request = last_media_request(&harness.server, path);
        if header.is_empty() {
            assert!(
                request.credentials.is_empty(),
                "a signed link got a key: {:?}",
                request.credentials
            );
        } else {
            assert_eq!(
                request.credential(header),
                Some(fingerprint(key).as_str()),
                "{arguments}"
            );
        }
    }
    // Gemini speech arrives as raw PCM; the WAV header says 24 kHz mono 16-bit.
    let wav = harness
        .media_files()
        .into_iter()
        .find(|path| path.extension().is_some_and(|ext| ext == "wav"))
        .unwrap();
    let bytes = fs_err::read(&wav).unwrap();
    assert_eq!(&bytes[22..24], &1_u16.to_le_bytes());
    assert_eq!(&bytes[24..28], &24_000_u32.to_le_bytes());
    assert_eq!(&bytes[34..36], &16_u16.to_le_bytes());
    assert_eq!(bytes.len() - 44, 4800);
    // The requests as the real APIs want them.
    let openai = last_media_request(&harness.server, "/v1/audio/speech").body;
    assert_eq!(openai["model"], "gpt-4o-mini-tts");
    assert_eq!(openai["voice"], "coral");
    let veo = harness
        .server
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with(":predictLongRunning"))
        .unwrap();
    assert_eq!(
        veo.body["parameters"]["durationSeconds"], 4,
        "5 s falls between Veo's 4 and 6; a tie goes down"
    );
    assert_eq!(
        harness.media_files().len(),
        9,
        "{:#?}",
        harness.media_files()
    );
    client.cancel().await.unwrap();
}

/// A fault on one endpoint, the code it must give, and how many faults to queue.
struct FaultCase {
    arguments: Value,
    fault: MediaFault,
    repeat: usize,
    code: &'static str,
}

fn fault(arguments: Value, fault: MediaFault, repeat: usize, code: &'static str) -> FaultCase {
    FaultCase {
        arguments,
        fault,
        repeat,
        code,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_a_clear_error_and_leaves_no_file() {
    let harness = MediaHarness::start().await;
    let client = harness.mcp().await;
    let endpoints = [
        json!({"prompt": "p", "backend": "openai"}),
        json!({"mode": "audio", "prompt": "p", "backend": "openai"}),
        json!({"prompt": "p", "backend": "gemini"}),
        json!({"prompt": "p", "backend": "gemini", "model": "imagen-4.0-generate-001"}),
        json!({"mode": "audio", "prompt": "p", "backend": "gemini"}),
        json!({"prompt": "p", "backend": "xai"}),
        json!({"mode": "video", "prompt": "p", "backend": "gemini"}),
        json!({"mode": "video", "prompt": "p", "backend": "xai"}),
    ];
    let mut cases = Vec::new();
    for arguments in &endpoints {
        let is_job = arguments["mode"] == "video";
        cases.push(fault(
            arguments.clone(),
            MediaFault::Status(429),
            4,
            "rate_limited",
        ));
        cases.push(fault(
            arguments.clone(),
            MediaFault::Status(503),
            4,
            "provider_unavailable",
        ));
        cases.push(fault(
            arguments.clone(),
            MediaFault::SafetyBlock,
            1,
            "safety_block",
        ));
        cases.push(fault(
            arguments.clone(),
            MediaFault::WrongBytes,
            1,
            "bad_payload",
        ));
        if is_job {
            cases.push(fault(
                arguments.clone(),
                MediaFault::NeverFinishes,
                1,
                "job_timed_out",
            ));
            cases.push(fault(
                arguments.clone(),
                MediaFault::ExpiredDownload,
                1,
                "download_failed",
            ));
        } else if arguments["mode"] != "audio" || arguments["backend"] == "gemini" {
            cases.push(fault(
                arguments.clone(),
                MediaFault::MalformedBase64,
                1,
                "bad_payload",
            ));
        }
    }
    for case in &cases {
        for _ in 0..case.repeat {
            harness.server.push_media_fault(case.fault);
        }
        let (is_error, result) = call(&client, "generate_media", case.arguments.clone()).await;
        let label = format!("{} {:?}", case.arguments, case.fault);
        assert!(is_error, "{label}: {result:#}");
        assert_eq!(result["success"], false, "{label}");
        assert_eq!(result["code"], case.code, "{label}: {result:#}");
        let error = result["error"].as_str().unwrap();
        assert!(
            error.contains(case.arguments["backend"].as_str().unwrap()),
            "{label}: {error}"
        );
        assert!(result["file_path"].is_null(), "{label}");
        assert!(
            harness.media_files().is_empty(),
            "{label} left {:?}",
            harness.media_files()
        );
    }
    // A single 429 is retried and the call succeeds.
    harness.server.push_media_fault(MediaFault::Status(429));
    let Value::Object(arguments) = endpoints[0].clone() else {
        unreachable!()
    };
    let result = client
        .call_tool(CallToolRequestParams::new("generate_media").with_arguments(arguments))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    let text: Value = serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap();
    assert_eq!(
        result.structured_content,
        Some(text),
        "text and structured content agree"
    );
    assert_eq!(harness.media_files().len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_arguments_send_nothing_and_write_nothing() {
    let harness = MediaHarness::start().await;
    fs_err::create_dir_all(harness.project().join("assets")).unwrap();
    fs_err::write(
        harness.project().join("assets/hero.png"),
        b"the user's own file",
    )
    .unwrap();
    let outside = harness.context.root().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, harness.project().join("escape")).unwrap();
    let client = harness.mcp().await;
    let cases = [
        (
            json!({"prompt": "p", "storage_path": "../elsewhere"}),
            "outside_workspace",
        ),
        (
            json!({"prompt": "p", "storage_path": "escape/pic.png"}),
            "outside_workspace",
        ),
        (
            json!({"prompt": "p", "storage_path": outside.display().to_string()}),
            "outside_workspace",
        ),
        (
            json!({"prompt": "p", "input_images": ["../../etc/passwd"]}),
            "outside_workspace",
        ),
        (
            json!({"prompt": "p", "input_images": ["assets/hero.png"]}),
            "input_file",
        ),
        (json!({"prompt": "  "}), "invalid_argument"),
        (
            json!({"prompt": "p", "mode": "hologram"}),
            "invalid_argument",
        ),
        (
            json!({"prompt": "p", "backend": "elevenlabs"}),
            "invalid_argument",
        ),
        (
            json!({"prompt": "p", "mode": "video", "backend": "openai"}),
            "unsupported_mode",
        ),
        (
            json!({"prompt": "p", "prompts": ["a", "b"]}),
            "invalid_argument",
        ),
        (
            json!({"prompt": "p", "mode": "audio", "audio_type": "music"}),
            "invalid_argument",
        ),
        (
            json!({"prompt": "p", "mode": "video", "duration": 0}),
            "invalid_argument",
        ),
    ];
    for (arguments, code) in cases {
        let (is_error, result) = call(&client, "generate_media", arguments.clone()).await;
        assert!(is_error, "{arguments}");
        assert_eq!(result["code"], code, "{arguments}: {result:#}");
    }
    let (is_error, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["escape/x.png"]}),
    )
    .await;
    assert!(
        is_error && result["code"] == "outside_workspace",
        "{result:#}"
    );
    assert!(harness.server.requests().is_empty(), "nothing was sent");
    assert!(files_under(&outside).is_empty());
    assert_eq!(
        fs_err::read(harness.project().join("assets/hero.png")).unwrap(),
        b"the user's own file"
    );
    // A named file that exists is kept; the new one gets the next free name.
    let (is_error, result) = call(
        &client,
        "generate_media",
        json!({"prompt": "hero", "storage_path": "assets/hero.png"}),
    )
    .await;
    assert!(!is_error, "{result:#}");
    assert_eq!(result["file_path"], "assets/hero_2.png");
    assert_eq!(
        fs_err::read(harness.project().join("assets/hero.png")).unwrap(),
        b"the user's own file"
    );
    // A provider that sends another format than the extension asked for: the file gets
    // the right extension, and a warning says so.
    let (is_error, result) = call(
        &client,
        "generate_media",
        json!({"prompt": "fox", "backend": "xai", "storage_path": "assets/fox.png"}),
    )
    .await;
    assert!(!is_error, "{result:#}");
    assert_eq!(result["file_path"], "assets/fox.jpg");
    assert!(
        result["warnings"][0]
            .as_str()
            .unwrap()
            .contains("asked for .png"),
        "{result:#}"
    );
    // A file over the size limit is refused before anything is read or sent.
    let big = fs_err::File::create(harness.project().join("big.png")).unwrap();
    big.set_len(201 * 1024 * 1024).unwrap();
    let sent = harness.server.requests().len();
    let (is_error, result) = call(&client, "read_media", json!({"file_paths": ["big.png"]})).await;
    assert!(is_error && result["code"] == "input_file", "{result:#}");
    assert_eq!(harness.server.requests().len(), sent);
    // Without any key, the error names the variables that would help.
    let mut env = harness.env();
    for (name, _) in harness.keys.all() {
        env.remove(name);
    }
    let bare = harness.mcp_with(env).await;
    let (_, result) = call(
        &bare,
        "generate_media",
        json!({"mode": "video", "prompt": "p"}),
    )
    .await;
    assert_eq!(result["code"], "no_backend");
    assert!(
        result["error"].as_str().unwrap().contains("GEMINI_API_KEY"),
        "{result:#}"
    );
    bare.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

/// Answers every vision request with the backend it arrived on.
fn vision_router(server: &FakeModelServer) {
    server.route(|request| {
        let protocol = request.protocol?;
        Some(Reply::text(format!(
            "FAKE VISION via {protocol:?}: the fox is cropped at the ears."
        )))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_media_through_each_vision_backend() {
    let harness = MediaHarness::start().await;
    vision_router(&harness.server);
    write_png(&harness.project(), "shots/small.png", 40, 30);
    write_png(&harness.project(), "shots/wide.png", 3200, 400);
    fs_err::write(
        harness.project().join("shots/voice.wav"),
        refinery_testkit::media::payloads::wav(),
    )
    .unwrap();
    let client = harness.mcp().await;
    for (backend, protocol, path) in [
        ("anthropic", "AnthropicMessages", "/v1/messages"),
        ("openai", "OpenAiResponses", "/v1/responses"),
        ("gemini", "Gemini", ":generateContent"),
    ] {
        let (is_error, result) = call(
            &client,
            "read_media",
            json!({"file_paths": ["shots/small.png", "shots/wide.png"], "prompt": "Is the fox whole?", "backend": backend}),
        )
        .await;
        assert!(!is_error, "{backend}: {result:#}");
        assert_eq!(
            result["answer"],
            format!("FAKE VISION via {protocol}: the fox is cropped at the ears."),
        );
        assert_eq!(
            result["files"],
            json!(["shots/small.png", "shots/wide.png"])
        );
        let warnings = result["warnings"].to_string();
        assert!(
            warnings.contains("1568x196"),
            "the wide shot was downscaled: {warnings}"
        );
        let request = last_media_request(&harness.server, path);
        let body = request.body_text();
        assert!(body.contains("Is the fox whole?"));
        assert!(body.contains("shots/wide.png"));
    }
    // Audio goes to Gemini (the only backend that listens) when none is named.
    let (is_error, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["shots/voice.wav"]}),
    )
    .await;
    assert!(!is_error, "{result:#}");
    assert_eq!(result["backend"], "gemini");
    let (_, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["shots/voice.wav"], "backend": "anthropic"}),
    )
    .await;
    assert_eq!(result["code"], "unsupported_mode");
    // A provider error (a 429 storm) is a clear error too.
    harness.server.route(|_| None);
    harness
        .server
        .push_all((0..4).map(|_| Reply::rate_limited(0)));
    let (is_error, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["shots/small.png"], "backend": "anthropic"}),
    )
    .await;
    assert!(is_error);
    assert_eq!(result["code"], "rate_limited", "{result:#}");
    client.cancel().await.unwrap();
}

/// ffmpeg, or `None` with the reason printed (a failure under `CI=true`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_is_read_as_frames_or_whole() {
    let Some(ffmpeg) =
        refinery_testkit::skip::require_program("ffmpeg", &[], "apt-get install ffmpeg")
    else {
        return;
    };
    let harness = MediaHarness::start().await;
    vision_router(&harness.server);
    let clip = harness.project().join("clip.mp4");
    let made = std::process::Command::new(&ffmpeg)
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=160x120:rate=10",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let mut env = harness.env();
    env.insert("REFINERY_FFMPEG".into(), ffmpeg.display().to_string());
    let client = harness.mcp_with(env).await;
    let (is_error, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["clip.mp4"], "backend": "anthropic"}),
    )
    .await;
    assert!(!is_error, "{result:#}");
    assert!(
        result["warnings"].to_string().contains("6 frames"),
        "{result:#}"
    );
    let images = last_media_request(&harness.server, "/v1/messages").body["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|block| block["type"] == "image")
        .count();
    assert_eq!(images, 6);
    let (is_error, _) = call(
        &client,
        "read_media",
        json!({"file_paths": ["clip.mp4"], "backend": "gemini"}),
    )
    .await;
    assert!(!is_error);
    let part =
        &last_media_request(&harness.server, ":generateContent").body["contents"][0]["parts"][1];
    assert_eq!(
        part["inlineData"]["mimeType"], "video/mp4",
        "Gemini watches the video itself"
    );
    client.cancel().await.unwrap();
    // Without ffmpeg, a backend that only sees images says what to install.
    let mut env = harness.env();
    env.insert("PATH".into(), String::new());
    let client = harness.mcp_with(env).await;
    let (_, result) = call(
        &client,
        "read_media",
        json!({"file_paths": ["clip.mp4"], "backend": "openai"}),
    )
    .await;
    assert_eq!(result["code"], "frames_unavailable");
    assert!(
        result["error"].as_str().unwrap().contains("install ffmpeg"),
        "{result:#}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_report_progress_and_stop_on_cancel() {
    let harness = MediaHarness::start().await;
    let mut env = harness.env();
    env.insert("REFINERY_MEDIA_JOB_TIMEOUT".into(), "60".into());
    let client = harness.mcp_with(env).await;
    // A finished job reports progress on the way.
    harness.server.set_media_job_polls(3);
    let (is_error, _) = call(
        &client,
        "generate_media",
        json!({"mode": "video", "prompt": "p", "backend": "xai"}),
    )
    .await;
    assert!(!is_error);
    let seen = client.service().len();
    assert!(seen >= 4, "start + 3 waits + download, got {seen}");
    let log = client.service().0.lock().unwrap().clone();
    assert!(
        log.windows(2)
            .all(|pair| pair[0].progress < pair[1].progress),
        "progress grows"
    );
    // A job that never finishes: cancel it once it is being polled.
    harness.server.push_media_fault(MediaFault::NeverFinishes);
    let Value::Object(arguments) = json!({"mode": "video", "prompt": "never", "backend": "gemini"})
    else {
        unreachable!()
    };
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("generate_media").with_arguments(arguments),
    ));
    let handle = client
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let polls = || {
        harness
            .server
            .requests()
            .iter()
            .filter(|request| request.path.contains("/operations/"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while polls() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle
        .cancel(Some("user pressed escape".into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_cancel = polls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(polls(), after_cancel, "polling stopped after the cancel");
    assert_eq!(
        harness.media_files().len(),
        1,
        "only the first video: {:?}",
        harness.media_files()
    );
    // The server is still there for the next call.
    let (is_error, _) = call(
        &client,
        "generate_media",
        json!({"prompt": "after", "backend": "openai"}),
    )
    .await;
    assert!(!is_error);
    client.cancel().await.unwrap();
}
