//! Bytes the fake media endpoints return: real, decodable images (made with the `image`
//! crate), a WAV-able PCM tone, and MP3 / MP4 payloads with genuine headers.

use std::io::Cursor;

use image::{ImageFormat, Rgba, RgbaImage};

/// Side of the square images the fake draws (kept small so debug builds stay fast).
const SIDE: u32 = 24;

/// A small gradient image in `format` (`png`, `jpeg` or `webp`).
pub fn picture(format: &str) -> Vec<u8> {
    let image = RgbaImage::from_fn(SIDE, SIDE, |x, y| {
        Rgba([(x * 10) as u8, (y * 10) as u8, 128, 255])
    });
    let (format, image) = match format {
        "jpeg" | "jpg" => (
            ImageFormat::Jpeg,
            image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(image).to_rgb8()),
        ),
        "webp" => (ImageFormat::WebP, image::DynamicImage::ImageRgba8(image)),
        _ => (ImageFormat::Png, image::DynamicImage::ImageRgba8(image)),
    };
    let mut bytes = Vec::new();
    // Encoding a tiny in-memory image cannot fail for these three codecs.
    let _ = image.write_to(&mut Cursor::new(&mut bytes), format);
    bytes
}

/// 0.1 s of a 440 Hz tone as 24 kHz mono little-endian 16-bit PCM (Gemini TTS's output).
pub fn pcm_tone() -> Vec<u8> {
    let mut pcm = Vec::with_capacity(4800);
    for index in 0..2400_u32 {
        let phase = f64::from(index) * 440.0 * std::f64::consts::TAU / 24_000.0;
        let sample = (phase.sin() * 8000.0) as i16;
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
    pcm
}

/// An ID3 tag followed by silent MPEG-1 layer III frames.
pub fn mp3() -> Vec<u8> {
    let mut bytes = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    for _ in 0..4 {
        // 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
        bytes.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        bytes.extend(std::iter::repeat_n(0_u8, 413));
    }
    bytes
}

/// A WAV file of [`pcm_tone`] (OpenAI speech with `response_format: wav`).
pub fn wav() -> Vec<u8> {
    let pcm = pcm_tone();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16_u32.to_le_bytes());
    wav.extend_from_slice(&1_u16.to_le_bytes());
    wav.extend_from_slice(&1_u16.to_le_bytes());
    wav.extend_from_slice(&24_000_u32.to_le_bytes());
    wav.extend_from_slice(&48_000_u32.to_le_bytes());
    wav.extend_from_slice(&2_u16.to_le_bytes());
    wav.extend_from_slice(&16_u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(&pcm);
    wav
}

/// An MP4 with an `ftyp` box and an empty `mdat` (enough for a signature check; not
/// playable).
pub fn mp4() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&24_u32.to_be_bytes());
    bytes.extend_from_slice(b"ftypisom");
    bytes.extend_from_slice(&0x200_u32.to_be_bytes());
    bytes.extend_from_slice(b"isommp41");
    bytes.extend_from_slice(&8_u32.to_be_bytes());
    bytes.extend_from_slice(b"mdat");
    bytes
}

/// Bytes that are no media format at all (what a broken proxy or CDN error page sends).
pub fn junk() -> Vec<u8> {
    b"<html><body>Service temporarily unavailable</body></html>".to_vec()
}
