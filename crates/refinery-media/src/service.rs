//! [`Media`]: the two operations, from raw arguments to one [`MediaResponse`].
//!
//! Order inside `generate`: validate every argument and read every input (nothing sent
//! yet), pick the backend and model, call it, check the bytes against what the provider
//! said, then write the file. A failure at any step returns the same response shape with
//! `success: false` and leaves the workspace as it was.

use std::time::Instant;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::MediaConfig;
use crate::error::{Error, Result, mode_name};
use crate::format::Format;
use crate::generate::{self, Call, Spec};
use crate::http::Http;
use crate::inputs::{generation_image, media_file};
use crate::kinds::{Backend, MediaMode, Task};
use crate::output::OutputPlan;
use crate::params::{GenerateMediaParams, MediaResponse, ReadMediaParams};
use crate::progress::{ProgressSink, Steps};
use crate::vision;

/// Most files one `read_media` call looks at.
const MAX_READ_FILES: usize = 10;

/// The media tools over one workspace.
#[derive(Debug, Clone)]
pub struct Media {
    config: MediaConfig,
    client: reqwest::Client,
}

impl Media {
    pub fn new(config: MediaConfig) -> Result<Self> {
        // No proxy from the environment: a loopback test call must stay loopback, as in
        // the chat backends.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| Error::Io(std::io::Error::other(error)))?;
        Ok(Self { config, client })
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    fn http<'a>(&'a self, cancel: &'a CancellationToken) -> Http<'a> {
        Http {
            config: &self.config,
            client: &self.client,
            cancel,
        }
    }

    /// Picks the backend for `task`: the named one (which must have a key), else the first
    /// in [`Backend::preference`] that has one.
    pub fn choose_backend(&self, named: Option<&str>, task: Task) -> Result<Backend> {
        if let Some(name) = named.map(str::trim).filter(|name| !name.is_empty()) {
            let backend: Backend = name.parse()?;
            if backend.default_model(task).is_none() {
                return Err(Error::UnsupportedMode {
                    backend,
                    mode: task.to_string(),
                    hint: "see `refinery doctor` for which backend does what",
                });
            }
            if !self.config.has_key(backend) {
                let variable = backend.provider().key_variables()[0];
                return Err(Error::MissingKey { backend, variable });
            }
            return Ok(backend);
        }
        Backend::preference(task)
            .iter()
            .copied()
            .find(|backend| self.config.has_key(*backend))
            .ok_or_else(|| Error::NoBackend {
                mode: match task {
                    Task::Image => mode_name(MediaMode::Image),
                    Task::Video => mode_name(MediaMode::Video),
                    Task::Audio => mode_name(MediaMode::Audio),
                    Task::Vision => "reading media".to_string(),
                },
                variables: Backend::preference(task)
                    .iter()
                    .map(|backend| format!("`{}`", backend.provider().key_variables()[0]))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `generate_media`.
    pub async fn generate(
        &self,
        params: GenerateMediaParams,
        progress: &dyn ProgressSink,
        cancel: &CancellationToken,
    ) -> MediaResponse {
        let started = Instant::now();
        let mode_text = params.mode.clone().unwrap_or_else(|| "image".to_string());
        let mut response = MediaResponse::started("generate_media", &mode_text);
        let outcome = self
            .generate_inner(params, progress, cancel, &mut response)
            .await;
        response.finish(started, outcome)
    }

    async fn generate_inner(
        &self,
        params: GenerateMediaParams,
        progress: &dyn ProgressSink,
        cancel: &CancellationToken,
        response: &mut MediaResponse,
    ) -> Result<()> {
        let (spec, plan) = self.validate(&params)?;
        response.mode = spec.mode.to_string();
        let backend = self.choose_backend(params.backend.as_deref(), spec.mode.task())?;
        response.backend = Some(backend.to_string());
        let model = self.model(backend, spec.mode.task(), params.model.as_deref())?;
        response.model = Some(model.clone());
        let mut call = Call {
            http: self.http(cancel),
            backend,
            model,
            spec: &spec,
            steps: Steps::new(progress),
        };
        let generated = generate::run(&mut call).await?;
        let format = generate::check(backend, spec.mode, &generated)?;
        response.warnings.extend(generated.warnings.iter().cloned());
        if let Some(requested) = plan.requested_format()
            && requested != format
        {
            response.warnings.push(format!(
                "asked for .{} but {backend} sent {}; saved with the .{} extension",
                requested.extension(),
                format.mime_type(),
                format.extension()
            ));
        }
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let written = plan.write_new(&generated.bytes, format)?;
        response.success = true;
        response.filename = written
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        response.file_path = Some(written.relative);
        response.mime_type = Some(written.format.mime_type().to_string());
        response.file_size = Some(written.size);
        Ok(())
    }

    fn model(&self, backend: Backend, task: Task, named: Option<&str>) -> Result<String> {
        named
            .map(str::trim)
            .filter(|model| !model.is_empty())
            .map(ToString::to_string)
            .or_else(|| self.config.model_for(backend, task))
            .ok_or_else(|| Error::UnsupportedMode {
                backend,
                mode: task.to_string(),
                hint: "see `refinery doctor` for which backend does what",
            })
    }

    /// Every argument checked and every input read before anything is sent.
    fn validate(&self, params: &GenerateMediaParams) -> Result<(Spec, OutputPlan)> {
        if params
            .prompts
            .as_ref()
            .is_some_and(|prompts| !prompts.is_empty())
        {
            return Err(Error::invalid(
                "prompts",
                "batches are not supported: call once per prompt with `prompt`",
            ));
        }
        if params
            .continue_from
            .as_ref()
            .is_some_and(|id| !id.trim().is_empty())
        {
            return Err(Error::invalid(
                "continue_from",
                "continuations are not supported: pass the earlier file in `input_images` instead",
            ));
        }
        if let Some(kind) = params.audio_type.as_deref().map(str::trim)
            && !kind.is_empty()
            && kind != "speech"
        {
            return Err(Error::invalid(
                "audio_type",
                format!("`{kind}` is not supported; only `speech` is"),
            ));
        }
        let mode: MediaMode = params.mode.as_deref().unwrap_or("image").parse()?;
        let prompt = params
            .prompt
            .as_deref()
            .map(str::trim)
            .filter(|prompt| !prompt.is_empty())
            .ok_or_else(|| Error::invalid("prompt", "say what to make"))?
            .to_string();
        if params.duration.is_some_and(|seconds| seconds <= 0) {
            return Err(Error::invalid(
                "duration",
                "must be a positive number of seconds",
            ));
        }
        let workspace = self.config.workspace();
        let input_images = params
            .input_images
            .iter()
            .flatten()
            .map(|path| generation_image(workspace, path))
            .collect::<Result<Vec<_>>>()?;
        if mode == MediaMode::Audio && !input_images.is_empty() {
            return Err(Error::invalid("input_images", "speech takes no images"));
        }
        let plan = OutputPlan::new(
            workspace,
            params.storage_path.as_deref(),
            mode,
            &prompt,
            OffsetDateTime::now_utc(),
        )?;
        let wanted = match (mode, params.audio_format.as_deref().map(str::trim)) {
            (MediaMode::Audio, Some(format)) if !format.is_empty() => Some(
                Format::from_extension(format)
                    .filter(|format| matches!(format, Format::Mp3 | Format::Wav))
                    .ok_or_else(|| Error::invalid("audio_format", "use `mp3` or `wav`"))?,
            ),
            _ => plan.requested_format(),
        };
        let spec = Spec {
            mode,
            prompt,
            size: non_empty(params.size.as_deref()),
            aspect_ratio: non_empty(params.aspect_ratio.as_deref()),
            quality: non_empty(params.quality.as_deref()),
            duration: params.duration,
            voice: non_empty(params.voice.as_deref()),
            instructions: non_empty(params.instructions.as_deref()),
            negative_prompt: non_empty(params.negative_prompt.as_deref()),
            input_images,
            wanted,
        };
        Ok((spec, plan))
    }

    /// `read_media`.
    pub async fn read(
        &self,
        params: ReadMediaParams,
        progress: &dyn ProgressSink,
        cancel: &CancellationToken,
    ) -> MediaResponse {
        let started = Instant::now();
        let mut response = MediaResponse::started("read_media", "read");
        let outcome = self
            .read_inner(params, progress, cancel, &mut response)
            .await;
        response.finish(started, outcome)
    }

    async fn read_inner(
        &self,
        params: ReadMediaParams,
        progress: &dyn ProgressSink,
        cancel: &CancellationToken,
        response: &mut MediaResponse,
    ) -> Result<()> {
        if params
            .continue_from
            .as_ref()
            .is_some_and(|id| !id.trim().is_empty())
        {
            return Err(Error::invalid(
                "continue_from",
                "continuations are not supported: ask again with all the files",
            ));
        }
        let paths = params.file_paths.unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid(
                "file_paths",
                "name at least one file in the workspace",
            ));
        }
        if paths.len() > MAX_READ_FILES {
            return Err(Error::invalid(
                "file_paths",
                format!("at most {MAX_READ_FILES} files per call"),
            ));
        }
        let files = paths
            .iter()
            .map(|path| media_file(self.config.workspace(), path))
            .collect::<Result<Vec<_>>>()?;
        response.files = files.iter().map(|file| file.label.clone()).collect();
        let needs_audio = files
            .iter()
            .any(|file| file.format.kind() == crate::format::FormatKind::Audio);
        let named = params
            .backend
            .as_deref()
            .filter(|name| !name.trim().is_empty());
        let backend = match (named, needs_audio) {
            (None, true) => self.choose_backend(Some("gemini"), Task::Vision)?,
            _ => self.choose_backend(named, Task::Vision)?,
        };
        response.backend = Some(backend.to_string());
        let model = self.model(backend, Task::Vision, params.model.as_deref())?;
        response.model = Some(model.clone());
        let mut steps = Steps::new(progress);
        steps.report(format!("preparing {} file(s) for {backend}", files.len()));
        let parts = vision::prepare(&self.config, backend, &files, &mut response.warnings).await?;
        let prompt = non_empty(params.prompt.as_deref())
            .unwrap_or_else(|| vision::DEFAULT_PROMPT.to_string());
        steps.report(format!("asking {model}"));
        let http = self.http(cancel);
        let answer = vision::ask(&http, backend, &model, &prompt, &parts).await?;
        response.answer = Some(self.config.redact(&answer));
        response.success = true;
        Ok(())
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(ToString::to_string)
}
