//! File formats by their signatures (magic bytes), and PCM → WAV.
//!
//! A provider says what it sent (a MIME type, an `output_format`); before anything is
//! written we check the bytes agree, so a truncated or mislabeled payload never lands in
//! the workspace as a "PNG" that no viewer opens.

/// A file format Refinery writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Wav,
    Mp3,
    Mp4,
    Mov,
    Webm,
    Ogg,
    Flac,
    M4a,
    Aac,
}

/// Broad kind of a format, which decides how `read_media` sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Image,
    Video,
    Audio,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Wav => "wav",
            Format::Mp3 => "mp3",
            Format::Mp4 => "mp4",
            Format::Mov => "mov",
            Format::Webm => "webm",
            Format::Ogg => "ogg",
            Format::Flac => "flac",
            Format::M4a => "m4a",
            Format::Aac => "aac",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
            Format::Bmp => "image/bmp",
            Format::Wav => "audio/wav",
            Format::Mp3 => "audio/mpeg",
            Format::Mp4 => "video/mp4",
            Format::Mov => "video/quicktime",
            Format::Webm => "video/webm",
            Format::Ogg => "audio/ogg",
            Format::Flac => "audio/flac",
            Format::M4a => "audio/mp4",
            Format::Aac => "audio/aac",
        }
    }

    pub fn kind(self) -> FormatKind {
        match self {
            Format::Png | Format::Jpeg | Format::Webp | Format::Gif | Format::Bmp => {
                FormatKind::Image
            }
            Format::Mp4 | Format::Mov | Format::Webm => FormatKind::Video,
            Format::Wav | Format::Mp3 | Format::Ogg | Format::Flac | Format::M4a | Format::Aac => {
                FormatKind::Audio
            }
        }
    }

    /// The format a MIME type names (parameters such as `;rate=24000` ignored).
    pub fn from_mime(mime: &str) -> Option<Self> {
        let essence = mime.split(';').next().unwrap_or_default().trim();
        Some(match essence.to_ascii_lowercase().as_str() {
            "image/png" => Format::Png,
            "image/jpeg" | "image/jpg" => Format::Jpeg,
            "image/webp" => Format::Webp,
            "image/gif" => Format::Gif,
            "image/bmp" => Format::Bmp,
            "audio/wav" | "audio/x-wav" | "audio/wave" => Format::Wav,
            "audio/mpeg" | "audio/mp3" => Format::Mp3,
            "video/mp4" => Format::Mp4,
            "video/quicktime" => Format::Mov,
            "video/webm" => Format::Webm,
            "audio/ogg" | "audio/opus" => Format::Ogg,
            "audio/flac" => Format::Flac,
            "audio/aac" => Format::Aac,
            "audio/mp4" | "audio/m4a" => Format::M4a,
            _ => return None,
        })
    }

    /// The format a file extension names.
    pub fn from_extension(extension: &str) -> Option<Self> {
        Some(match extension.to_ascii_lowercase().as_str() {
            "png" => Format::Png,
            "jpg" | "jpeg" => Format::Jpeg,
            "webp" => Format::Webp,
            "gif" => Format::Gif,
            "bmp" => Format::Bmp,
            "wav" => Format::Wav,
            "mp3" => Format::Mp3,
            "mp4" => Format::Mp4,
            "mov" => Format::Mov,
            "webm" | "mkv" => Format::Webm,
            "ogg" | "opus" => Format::Ogg,
            "flac" => Format::Flac,
            "m4a" => Format::M4a,
            "aac" => Format::Aac,
            _ => return None,
        })
    }

    /// The format the bytes are, by signature.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        let starts = |prefix: &[u8]| bytes.starts_with(prefix);
        let at = |offset: usize, tag: &[u8]| bytes.get(offset..offset + tag.len()) == Some(tag);
        if starts(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if starts(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if starts(b"RIFF") && at(8, b"WEBP") {
            Some(Format::Webp)
        } else if starts(b"RIFF") && at(8, b"WAVE") {
            Some(Format::Wav)
        } else if starts(b"GIF87a") || starts(b"GIF89a") {
            Some(Format::Gif)
        } else if starts(b"BM") && bytes.len() > 26 {
            Some(Format::Bmp)
        } else if at(4, b"ftyp") {
            Some(match bytes.get(8..12) {
                Some(b"qt  ") => Format::Mov,
                Some(b"M4A ") => Format::M4a,
                _ => Format::Mp4,
            })
        } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
            Some(Format::Webm)
        } else if starts(b"OggS") {
            Some(Format::Ogg)
        } else if starts(b"fLaC") {
            Some(Format::Flac)
        } else if starts(b"ID3") || is_mpeg_audio_frame(bytes) {
            Some(Format::Mp3)
        } else if bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xF6 == 0xF0 {
            Some(Format::Aac)
        } else {
            None
        }
    }
}

/// An MPEG-1/2 layer III frame header: 11 sync bits, then a layer of 01.
fn is_mpeg_audio_frame(bytes: &[u8]) -> bool {
    bytes.len() > 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0 && bytes[1] & 0x06 == 0x02
}

/// A WAV file around raw little-endian 16-bit PCM.
pub fn wav_from_pcm16(pcm: &[u8], sample_rate: u32, channels: u16) -> Vec<u8> {
    let bits_per_sample: u16 = 16;
    let block_align = channels * bits_per_sample / 8;
    let byte_rate = sample_rate * u32::from(block_align);
    // An odd trailing byte is half a sample; drop it rather than write a malformed chunk.
    let data = &pcm[..pcm.len() - pcm.len() % usize::from(block_align.max(1))];
    let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX - 36);
    let mut wav = Vec::with_capacity(data.len() + 44);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16_u32.to_le_bytes());
    wav.extend_from_slice(&1_u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    wav.extend_from_slice(&byte_rate.to_le_bytes());
    wav.extend_from_slice(&block_align.to_le_bytes());
    wav.extend_from_slice(&bits_per_sample.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(data);
    wav
}

/// The sample rate in a PCM MIME type such as `audio/L16;codec=pcm;rate=24000`.
pub(crate) fn pcm_rate(mime: &str) -> Option<u32> {
    mime.split(';')
        .filter_map(|part| part.trim().strip_prefix("rate="))
        .find_map(|rate| rate.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let cases: &[(&[u8], Option<Format>)] = &[
            (b"\x89PNG\r\n\x1a\n....", Some(Format::Png)),
            (&[0xFF, 0xD8, 0xFF, 0xE0], Some(Format::Jpeg)),
            (b"RIFF\0\0\0\0WEBPVP8 ", Some(Format::Webp)),
            (b"RIFF\0\0\0\0WAVEfmt ", Some(Format::Wav)),
            (b"GIF89a...", Some(Format::Gif)),
            (b"\0\0\0\x18ftypisom\0\0", Some(Format::Mp4)),
            (b"\0\0\0\x14ftypqt  \0\0", Some(Format::Mov)),
            (b"ID3\x04\0\0\0\0", Some(Format::Mp3)),
            (&[0xFF, 0xFB, 0x90, 0x64], Some(Format::Mp3)),
            (b"OggS\0", Some(Format::Ogg)),
            (b"not an image", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Format::sniff(bytes), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn wav_header_describes_the_samples() {
        let pcm = [1_u8, 0, 2, 0, 3];
        let wav = wav_from_pcm16(&pcm, 24_000, 1);
        assert_eq!(Format::sniff(&wav), Some(Format::Wav));
        assert_eq!(wav.len(), 44 + 4);
        assert_eq!(&wav[40..44], &4_u32.to_le_bytes());
        assert_eq!(&wav[24..28], &24_000_u32.to_le_bytes());
        assert_eq!(&wav[28..32], &48_000_u32.to_le_bytes());
        assert_eq!(pcm_rate("audio/L16;codec=pcm;rate=24000"), Some(24_000));
        assert_eq!(pcm_rate("audio/L16"), None);
        assert_eq!(Format::from_mime("image/PNG; q=1"), Some(Format::Png));
    }
}
