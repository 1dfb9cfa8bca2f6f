//! Files going *to* a provider: images to edit or animate, and the media `read_media`
//! looks at. Every path is confined to the workspace; images are downscaled to what vision
//! APIs accept; video becomes frames through ffmpeg when the backend cannot take video.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::{DynamicImage, GenericImageView as _, ImageFormat, ImageReader};

use crate::error::{Error, Result};
use crate::format::{Format, FormatKind};
use crate::output::confine;

/// Largest input image for generation (OpenAI edits and Gemini both take up to ~20 MB).
const MAX_GENERATION_IMAGE: u64 = 20 * 1024 * 1024;
/// Largest file `read_media` opens at all.
const MAX_READ_FILE: u64 = 200 * 1024 * 1024;
/// Vision APIs shrink anything larger anyway (Anthropic's documented sweet spot), and a
/// smaller image costs fewer tokens.
pub(crate) const MAX_EDGE: u32 = 1568;
/// Anthropic refuses images over 5 MB of base64, i.e. about 3.75 MB of bytes.
pub(crate) const MAX_IMAGE_BYTES: usize = 3_750_000;
/// Largest inline video or audio (Gemini's inline request limit is 20 MB in total).
pub(crate) const MAX_INLINE_BYTES: u64 = 18 * 1024 * 1024;
/// Frames taken from a video for backends that cannot watch video.
pub(crate) const VIDEO_FRAMES: usize = 6;

/// A file ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub(crate) bytes: Vec<u8>,
    pub(crate) format: Format,
}

/// A workspace file read for `read_media`, before it is shaped for a backend.
#[derive(Debug, Clone)]
pub(crate) struct MediaFile {
    pub(crate) path: PathBuf,
    /// As the caller wrote it.
    pub(crate) label: String,
    pub(crate) format: Format,
    pub(crate) size: u64,
}

/// Opens one workspace file, refusing paths outside it, folders and oversized files.
fn open(workspace: &Path, raw: &str, limit: u64) -> Result<(PathBuf, u64)> {
    let path = confine(workspace, Path::new(raw.trim()))?;
    let metadata = fs_err::metadata(&path).map_err(|_| Error::input(raw, "no such file"))?;
    if !metadata.is_file() {
        return Err(Error::input(raw, "not a file"));
    }
    if metadata.len() > limit {
        return Err(Error::input(
            raw,
            format!("{} bytes is over the {limit}-byte limit", metadata.len()),
        ));
    }
    Ok((path, metadata.len()))
}

/// An image to edit or animate: PNG, JPEG or WebP, checked by signature.
pub(crate) fn generation_image(workspace: &Path, raw: &str) -> Result<Payload> {
    let (path, _) = open(workspace, raw, MAX_GENERATION_IMAGE)?;
    let bytes = fs_err::read(&path)?;
    match Format::sniff(&bytes) {
        Some(format @ (Format::Png | Format::Jpeg | Format::Webp)) => Ok(Payload { bytes, format }),
        _ => Err(Error::input(
            raw,
            "input images must be PNG, JPEG or WebP files",
        )),
    }
}

/// A file for `read_media`, its kind from its signature (or, failing that, its extension).
pub(crate) fn media_file(workspace: &Path, raw: &str) -> Result<MediaFile> {
    let (path, size) = open(workspace, raw, MAX_READ_FILE)?;
    let mut head = vec![0_u8; 64];
    let read = {
        use std::io::Read as _;
        let mut file = fs_err::File::open(&path)?;
        file.read(&mut head)?
    };
    head.truncate(read);
    let by_extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .and_then(Format::from_extension);
    let format = Format::sniff(&head).or(by_extension).ok_or_else(|| {
        Error::input(raw, "not an image, video or audio file Refinery recognises")
    })?;
    Ok(MediaFile {
        path,
        label: raw.trim().to_string(),
        format,
        size,
    })
}

/// An image as vision APIs take it: PNG, JPEG, WebP or GIF, at most [`MAX_EDGE`] pixels on
/// its long side and [`MAX_IMAGE_BYTES`]. Returns a note when it had to be changed.
pub(crate) fn fit_image(
    bytes: Vec<u8>,
    format: Format,
    label: &str,
) -> Result<(Payload, Option<String>)> {
    let reader = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|error| Error::input(label, format!("cannot read the image: {error}")))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|error| Error::input(label, format!("cannot read the image: {error}")))?;
    let sendable = matches!(
        format,
        Format::Png | Format::Jpeg | Format::Webp | Format::Gif
    );
    if sendable && width.max(height) <= MAX_EDGE && bytes.len() <= MAX_IMAGE_BYTES {
        return Ok((Payload { bytes, format }, None));
    }
    let image = image::load_from_memory(&bytes)
        .map_err(|error| Error::input(label, format!("cannot decode the image: {error}")))?;
    let resized = if width.max(height) > MAX_EDGE {
        image.resize(MAX_EDGE, MAX_EDGE, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let payload = encode_for_vision(&resized, label)?;
    let (new_width, new_height) = resized.dimensions();
    let note = format!(
        "`{label}` was sent as a {new_width}x{new_height} {} (from {width}x{height}, {} bytes)",
        payload.format.extension(),
        bytes.len()
    );
    Ok((payload, Some(note)))
}

/// PNG when the image has transparency (JPEG would lose it), else JPEG; JPEG again at a
/// lower quality if a PNG is still too large.
fn encode_for_vision(image: &DynamicImage, label: &str) -> Result<Payload> {
    let encode_error =
        |error: image::ImageError| Error::input(label, format!("cannot re-encode: {error}"));
    if image.color().has_alpha() {
        let mut png = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(encode_error)?;
        if png.len() <= MAX_IMAGE_BYTES {
            return Ok(Payload {
                bytes: png,
                format: Format::Png,
            });
        }
    }
    let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
    for quality in [85_u8, 70, 50] {
        let mut jpeg = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality);
        rgb.write_with_encoder(encoder).map_err(encode_error)?;
        if jpeg.len() <= MAX_IMAGE_BYTES {
            return Ok(Payload {
                bytes: jpeg,
                format: Format::Jpeg,
            });
        }
    }
    Err(Error::input(
        label,
        "the image stays too large even after downscaling",
    ))
}

/// `VIDEO_FRAMES` JPEG frames spread over the video, through ffmpeg (and ffprobe beside it).
pub(crate) async fn video_frames(
    ffmpeg: Option<&Path>,
    file: &MediaFile,
    timeout: Duration,
) -> Result<Vec<Payload>> {
    let ffmpeg = ffmpeg.ok_or_else(|| Error::Frames {
        reason: format!(
            "`{}` is a video and this backend only sees images: install ffmpeg (`apt-get install ffmpeg`, `brew install ffmpeg`) or use `backend: gemini`, which watches video",
            file.label
        ),
    })?;
    let ffprobe = ffmpeg.with_file_name("ffprobe");
    let probe = run(
        &ffprobe,
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
        ],
        &file.path,
        timeout,
    )
    .await?;
    let duration: f64 = String::from_utf8_lossy(&probe)
        .trim()
        .parse()
        .map_err(|_| Error::Frames {
            reason: format!("ffprobe could not tell the length of `{}`", file.label),
        })?;
    let mut frames = Vec::new();
    for index in 0..VIDEO_FRAMES {
        // Frame centres, so the first and last frames are inside the video.
        let at = duration * (index as f64 + 0.5) / VIDEO_FRAMES as f64;
        let bytes = run_frame(ffmpeg, &file.path, at, timeout).await?;
        if Format::sniff(&bytes) == Some(Format::Jpeg) {
            frames.push(Payload {
                bytes,
                format: Format::Jpeg,
            });
        }
    }
    if frames.is_empty() {
        return Err(Error::Frames {
            reason: format!("ffmpeg produced no frames from `{}`", file.label),
        });
    }
    Ok(frames)
}

async fn run_frame(ffmpeg: &Path, input: &Path, at: f64, timeout: Duration) -> Result<Vec<u8>> {
    let seek = format!("{at:.3}");
    let mut command = tokio::process::Command::new(ffmpeg);
    command
        .args(["-v", "error", "-ss", &seek, "-i"])
        .arg(input)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale='min(1024,iw)':-2",
            "-f",
            "image2pipe",
            "-vcodec",
            "mjpeg",
            "-",
        ]);
    output(command, timeout).await
}

async fn run(program: &Path, args: &[&str], input: &Path, timeout: Duration) -> Result<Vec<u8>> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).arg(input);
    output(command, timeout).await
}

async fn output(mut command: tokio::process::Command, timeout: Duration) -> Result<Vec<u8>> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let finished = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| Error::Frames {
            reason: format!("`{program}` did not finish within {timeout:?}"),
        })?
        .map_err(|error| Error::Frames {
            reason: format!("cannot run `{program}`: {error}"),
        })?;
    if !finished.status.success() {
        let stderr = String::from_utf8_lossy(&finished.stderr);
        return Err(Error::Frames {
            reason: format!(
                "`{program}` failed: {}",
                stderr.lines().last().unwrap_or("no message")
            ),
        });
    }
    Ok(finished.stdout)
}

/// Whether a file of this kind can go inline to a backend that takes it natively.
pub(crate) fn inline_ok(file: &MediaFile) -> bool {
    file.format.kind() != FormatKind::Image && file.size <= MAX_INLINE_BYTES
}
