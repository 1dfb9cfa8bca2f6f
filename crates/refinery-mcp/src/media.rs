//! The media tools (`generate_media`, `read_media`): each is one call into
//! [`refinery_media::Media`], whose one result shape is returned as structured content —
//! a tool error (`isError: true`) when `success` is false. Progress reports become MCP
//! progress notifications on the caller's token; a client's `notifications/cancelled`
//! cancels the call (rmcp cancels the request's token, which the media call watches).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam, ProgressToken, RequestMetaObject};
use rmcp::{ErrorData, Peer, RoleServer, tool, tool_router};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use refinery_media::{
    GenerateMediaParams, MediaResponse, ProgressSink, ProgressUpdate, ReadMediaParams,
};

use crate::error::internal_error;
use crate::server::RefineryServer;

/// Forwards progress reports to the client through a channel (the sink must not block).
struct Forwarder(mpsc::UnboundedSender<ProgressUpdate>);

impl ProgressSink for Forwarder {
    fn report(&self, update: ProgressUpdate) {
        let _ = self.0.send(update);
    }
}

/// A progress sink wired to `token` (if the client sent one), and the task forwarding its
/// reports; await the task after the call so every notification precedes the result.
fn progress_channel(
    token: Option<ProgressToken>,
    peer: Peer<RoleServer>,
) -> (Forwarder, tokio::task::JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<ProgressUpdate>();
    let forwarding = tokio::spawn(async move {
        while let Some(update) = receiver.recv().await {
            let Some(token) = token.clone() else { continue };
            let mut param = ProgressNotificationParam::new(token, update.progress);
            param.total = update.total;
            param.message = Some(update.message);
            if peer.notify_progress(param).await.is_err() {
                break;
            }
        }
    });
    (Forwarder(sender), forwarding)
}

fn render(response: &MediaResponse) -> CallToolResult {
    match serde_json::to_value(response) {
        Ok(value) if response.success => CallToolResult::structured(value),
        Ok(value) => CallToolResult::structured_error(value),
        Err(error) => internal_error(&format!("could not encode the result: {error}")),
    }
}

const NO_MEDIA: &str = "this server was started without the media tools";

/// One media call.
enum MediaCall {
    Generate(Box<GenerateMediaParams>),
    Read(ReadMediaParams),
}

impl RefineryServer {
    /// Runs `call` with progress forwarded to the client's token; every notification is
    /// sent before the result.
    async fn media_call(
        &self,
        call: MediaCall,
        meta: &RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: &CancellationToken,
    ) -> CallToolResult {
        let Some(media) = self.media.clone() else {
            return internal_error(NO_MEDIA);
        };
        let (sink, forwarding) = progress_channel(meta.get_progress_token(), peer);
        let response = match call {
            MediaCall::Generate(params) => media.generate(*params, &sink, cancel).await,
            MediaCall::Read(params) => media.read(params, &sink, cancel).await,
        };
        drop(sink);
        let _ = forwarding.await;
        render(&response)
    }
}

#[tool_router(router = media_router, vis = "pub(crate)")]
impl RefineryServer {
    #[tool(
        description = "Generate an image, a short video or speech and save it in the workspace (default folder media/). mode: image|video|audio; prompt: what to make (for audio, the text to speak). Optional: backend (openai|gemini|xai), model, size, aspect_ratio, quality, duration (video seconds), voice, instructions (speech tone), input_images (workspace images to edit or animate), storage_path (a folder, or a file name such as assets/hero.png), negative_prompt, audio_format (mp3|wav). Returns file_path on success; on failure success=false with error and code. Look at the result with read_media before using it.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<MediaResponse>()
    )]
    async fn generate_media(
        &self,
        Parameters(params): Parameters<GenerateMediaParams>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(self
            .media_call(MediaCall::Generate(Box::new(params)), &meta, peer, &cancel)
            .await)
    }

    #[tool(
        description = "Look at images, video or audio files in the workspace with a vision model and answer critically (defects first, then what works). file_paths: the files, seen together so they can be compared; prompt: what to check (optional). Optional: backend (anthropic|openai|gemini), model. Images are downscaled to fit; video is sent whole to gemini or as frames (ffmpeg) to the others; audio needs gemini. Returns answer; on failure success=false with error and code.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<MediaResponse>()
    )]
    async fn read_media(
        &self,
        Parameters(params): Parameters<ReadMediaParams>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(self
            .media_call(MediaCall::Read(params), &meta, peer, &cancel)
            .await)
    }
}
