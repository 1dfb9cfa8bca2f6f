//! `refinery media generate|read`: the MCP media tools from a terminal — the same
//! `refinery-media` calls and the same result (`--json` prints it as the tools return it).
//! Human output: the file path or the answer on stdout; progress and warnings on stderr.
//! Ctrl-C cancels the call; nothing is left behind.

use std::path::Path;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use refinery_media::{
    CancellationToken, GenerateMediaParams, Media, MediaConfig, MediaResponse, ProgressUpdate,
    ReadMediaParams,
};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::{load_credentials, process_env, resolve_workspace};

#[derive(Debug, Args)]
pub(crate) struct MediaArgs {
    #[command(subcommand)]
    command: MediaCommand,
}

#[derive(Debug, Subcommand)]
enum MediaCommand {
    /// Generate an image, a short video or speech into the workspace (default folder `media/`).
    Generate(Box<GenerateArgs>),
    /// Look at images, video or audio with a vision model and print its critical review.
    Read(ReadArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// What to make (for audio: the text to speak).
    prompt: String,
    /// image, video or audio.
    #[arg(long, default_value = "image")]
    mode: String,
    /// openai, gemini or xai [default: the first with a key].
    #[arg(long)]
    backend: Option<String>,
    /// A provider model id (unknown ids are passed through).
    #[arg(long)]
    model: Option<String>,
    /// Image size (`1024x1024`) or video resolution (`720p`).
    #[arg(long)]
    size: Option<String>,
    /// Aspect ratio such as `16:9`.
    #[arg(long)]
    aspect_ratio: Option<String>,
    /// Image quality (low, medium, high, auto).
    #[arg(long)]
    quality: Option<String>,
    /// Video length in seconds.
    #[arg(long)]
    duration: Option<i64>,
    /// Voice for speech.
    #[arg(long)]
    voice: Option<String>,
    /// Tone directions for speech.
    #[arg(long)]
    instructions: Option<String>,
    /// An image in the workspace to edit or animate (repeatable).
    #[arg(long = "input-image", value_name = "PATH")]
    input_images: Vec<String>,
    /// Folder, or file name such as `assets/hero.png`, inside the workspace.
    #[arg(long = "out", value_name = "PATH")]
    storage_path: Option<String>,
    /// What the image or video must not contain (Imagen, Veo).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// mp3 or wav (speech).
    #[arg(long)]
    audio_format: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// Files in the workspace, looked at together.
    #[arg(required = true)]
    files: Vec<String>,
    /// What to check [default: a critical review].
    #[arg(long)]
    prompt: Option<String>,
    /// anthropic, openai or gemini [default: the first with a key].
    #[arg(long)]
    backend: Option<String>,
    /// A provider model id.
    #[arg(long)]
    model: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The media service for `workspace`, with keys from the environment and `.env` files
/// (registered with the log redactor).
pub(crate) fn open_media(workspace: &Path) -> anyhow::Result<Media> {
    let env = process_env();
    let credentials = load_credentials(&env, workspace)?;
    let config = MediaConfig::new(workspace, &credentials, &env).context("media settings")?;
    Media::new(config).context("starting the media client")
}

pub(crate) fn run_main(global: &GlobalArgs, args: &MediaArgs) -> anyhow::Result<ExitStatus> {
    let workspace = resolve_workspace(global)?;
    let media = open_media(&workspace)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let cancel = CancellationToken::new();
    let (json, response) = runtime.block_on(async {
        let watcher = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                watcher.cancel();
            }
        });
        let progress = |update: ProgressUpdate| output::note(&format!("… {}", update.message));
        match &args.command {
            MediaCommand::Generate(generate) => (
                generate.json,
                media.generate(generate.params(), &progress, &cancel).await,
            ),
            MediaCommand::Read(read) => (
                read.json,
                media.read(read.params(), &progress, &cancel).await,
            ),
        }
    });
    render(&response, json)
}

fn render(response: &MediaResponse, json: bool) -> anyhow::Result<ExitStatus> {
    if json {
        output::json(&serde_json::to_value(response)?)?;
    } else {
        for warning in &response.warnings {
            output::note(&format!("note: {warning}"));
        }
        if let Some(answer) = &response.answer {
            output::line(answer)?;
        } else if let Some(path) = &response.file_path {
            output::line(path)?;
            output::note(&format!(
                "{} {} from {} ({}, {} bytes)",
                response.mode,
                if response.success { "saved" } else { "failed" },
                response.backend.as_deref().unwrap_or("?"),
                response.model.as_deref().unwrap_or("?"),
                response.file_size.unwrap_or_default()
            ));
        }
        if let Some(error) = &response.error {
            output::note(&format!(
                "error: {error} [{}]",
                response.code.as_deref().unwrap_or("error")
            ));
        }
    }
    Ok(if response.success {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}

impl GenerateArgs {
    fn params(&self) -> GenerateMediaParams {
        GenerateMediaParams {
            prompt: Some(self.prompt.clone()),
            mode: Some(self.mode.clone()),
            backend: self.backend.clone(),
            model: self.model.clone(),
            size: self.size.clone(),
            aspect_ratio: self.aspect_ratio.clone(),
            quality: self.quality.clone(),
            duration: self.duration,
            voice: self.voice.clone(),
            instructions: self.instructions.clone(),
            input_images: (!self.input_images.is_empty()).then(|| self.input_images.clone()),
            storage_path: self.storage_path.clone(),
            negative_prompt: self.negative_prompt.clone(),
            audio_format: self.audio_format.clone(),
            ..GenerateMediaParams::default()
        }
    }
}

impl ReadArgs {
    fn params(&self) -> ReadMediaParams {
        ReadMediaParams {
            file_paths: Some(self.files.clone()),
            prompt: self.prompt.clone(),
            backend: self.backend.clone(),
            model: self.model.clone(),
            ..ReadMediaParams::default()
        }
    }
}
