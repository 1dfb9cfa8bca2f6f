//! Reads the metadata of a GGUF model file (the header's key-value pairs), to check a model
//! before it is served: the right magic and version, an architecture, a context length, and a
//! chat template (a model without one is a base model that cannot follow a brief).
//!
//! Only the header is read; arrays (the tokenizer's vocabulary) are skipped over.

use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// Longest string value read (chat templates are a few KiB; a bigger length is a damaged file).
const STRING_LIMIT: u64 = 16 * 1024 * 1024;
/// Most key-value pairs in a header.
const KV_LIMIT: u64 = 100_000;

/// What Refinery needs to know about a model file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelInfo {
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// `general.architecture`, e.g. `llama`, `qwen2`.
    pub architecture: String,
    /// `general.name`.
    pub name: Option<String>,
    /// `<architecture>.context_length`: the longest context it was trained for.
    pub context_length: Option<u32>,
    /// `<architecture>.block_count`: layers.
    pub block_count: Option<u32>,
    /// `<architecture>.embedding_length`.
    pub embedding_length: Option<u32>,
    /// `<architecture>.attention.head_count`.
    pub head_count: Option<u32>,
    /// `<architecture>.attention.head_count_kv` (equal to `head_count` when absent).
    pub head_count_kv: Option<u32>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
}

impl ModelInfo {
    /// Bytes of KV cache one token of context takes at 16-bit precision, when the header says
    /// enough to tell.
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = u64::from(self.block_count?);
        let heads = u64::from(self.head_count?.max(1));
        let kv_heads = u64::from(self.head_count_kv.unwrap_or(self.head_count?));
        let head_size = u64::from(self.embedding_length?) / heads;
        // Keys and values, 2 bytes each.
        Some(2 * layers * kv_heads * head_size * 2)
    }

    /// Why this model cannot serve Refinery's roles, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.architecture.is_empty() {
            return Some("its header names no architecture".to_owned());
        }
        if !self.has_chat_template {
            return Some(
                "it has no chat template, so it is a base model, not an instruction-tuned one"
                    .to_owned(),
            );
        }
        None
    }
}

/// Reads the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<ModelInfo> {
    let file = fs_err::File::open(path)?;
    read_from(&mut BufReader::new(file)).map_err(|reason| Error::BadModel {
        path: path.to_path_buf(),
        reason,
    })
}

/// Reads a GGUF header from `input`.
pub fn read_from(input: &mut impl Read) -> Result<ModelInfo, String> {
    let mut reader = Reader { input };
    let mut magic = [0u8; 4];
    reader.bytes(&mut magic)?;
    if &magic != b"GGUF" {
        return Err("it does not start with the GGUF magic bytes".to_owned());
    }
    let version = reader.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (2 or 3 are)"
        ));
    }
    let _tensors = reader.u64()?;
    let count = reader.u64()?;
    if count > KV_LIMIT {
        return Err(format!("its header claims {count} metadata entries"));
    }
    let mut info = ModelInfo {
        version,
        ..ModelInfo::default()
    };
    let mut numbers: Vec<(String, u64)> = Vec::new();
    for _ in 0..count {
        let key = reader.string()?;
        let kind = reader.u32()?;
        match reader.value(kind)? {
            Value::Text(text) => match key.as_str() {
                "general.architecture" => info.architecture = text,
                "general.name" => info.name = Some(text),
                "tokenizer.chat_template" => info.has_chat_template = !text.trim().is_empty(),
                _ => {}
            },
            Value::Number(number) => numbers.push((key, number)),
            Value::Other => {}
        }
    }
    let number = |suffix: &str| {
        let key = format!("{}.{suffix}", info.architecture);
        numbers
            .iter()
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| u32::try_from(*value).ok())
    };
    info.context_length = number("context_length");
    info.block_count = number("block_count");
    info.embedding_length = number("embedding_length");
    info.head_count = number("attention.head_count");
    info.head_count_kv = number("attention.head_count_kv");
    Ok(info)
}

enum Value {
    Text(String),
    Number(u64),
    Other,
}

struct Reader<'a, R: Read> {
    input: &'a mut R,
}

impl<R: Read> Reader<'_, R> {
    fn bytes(&mut self, buffer: &mut [u8]) -> Result<(), String> {
        self.input
            .read_exact(buffer)
            .map_err(|_| "the header ends early".to_owned())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut buffer = [0u8; 4];
        self.bytes(&mut buffer)?;
        Ok(u32::from_le_bytes(buffer))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut buffer = [0u8; 8];
        self.bytes(&mut buffer)?;
        Ok(u64::from_le_bytes(buffer))
    }

    fn skip(&mut self, length: u64) -> Result<(), String> {
        let copied = std::io::copy(&mut self.input.take(length), &mut std::io::sink())
            .map_err(|error| error.to_string())?;
        if copied == length {
            Ok(())
        } else {
            Err("the header ends early".to_owned())
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let length = self.u64()?;
        if length > STRING_LIMIT {
            return Err(format!("a string of {length} bytes in the header"));
        }
        let mut buffer = vec![0u8; usize::try_from(length).map_err(|error| error.to_string())?];
        self.bytes(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// One value of GGUF type `kind`.
    fn value(&mut self, kind: u32) -> Result<Value, String> {
        Ok(match kind {
            // uint8, int8, bool
            0 | 1 | 7 => {
                let mut buffer = [0u8; 1];
                self.bytes(&mut buffer)?;
                Value::Number(u64::from(buffer[0]))
            }
            // uint16, int16
            2 | 3 => {
                let mut buffer = [0u8; 2];
                self.bytes(&mut buffer)?;
                Value::Number(u64::from(u16::from_le_bytes(buffer)))
            }
            // uint32, int32
            4 | 5 => Value::Number(u64::from(self.u32()?)),
            // float32
            6 => {
                self.skip(4)?;
                Value::Other
            }
            8 => Value::Text(self.string()?),
            9 => {
                let element = self.u32()?;
                let count = self.u64()?;
                for _ in 0..count {
                    self.array_element(element)?;
                }
                Value::Other
            }
            // uint64, int64
            10 | 11 => Value::Number(self.u64()?),
            // float64
            12 => {
                self.skip(8)?;
                Value::Other
            }
            other => return Err(format!("unknown metadata type {other}")),
        })
    }

    fn array_element(&mut self, kind: u32) -> Result<(), String> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let length = self.u64()?;
                if length > STRING_LIMIT {
                    return Err(format!("a string of {length} bytes in the header"));
                }
                self.skip(length)
            }
            other => Err(format!("unsupported array element type {other}")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GGUF header with the given string and u32 entries and one array (skipped).
    pub(crate) fn header(strings: &[(&str, &str)], numbers: &[(&str, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let put_string = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&((strings.len() + numbers.len() + 1) as u64).to_le_bytes());
        put_string(&mut out, "tokenizer.ggml.tokens");
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        put_string(&mut out, "<s>");
        put_string(&mut out, "hello");
        for (key, value) in strings {
            put_string(&mut out, key);
            out.extend_from_slice(&8u32.to_le_bytes());
            put_string(&mut out, value);
        }
        for (key, value) in numbers {
            put_string(&mut out, key);
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    #[test]
    fn reads_what_matters_and_skips_the_rest() {
        let bytes = header(
            &[
                ("general.architecture", "qwen2"),
                ("general.name", "Tiny"),
                ("tokenizer.chat_template", "{{ messages }}"),
            ],
            &[
                ("qwen2.context_length", 32_768),
                ("qwen2.block_count", 24),
                ("qwen2.embedding_length", 896),
                ("qwen2.attention.head_count", 14),
                ("qwen2.attention.head_count_kv", 2),
            ],
        );
        let info = read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(info.architecture, "qwen2");
        assert_eq!(info.context_length, Some(32_768));
        assert!(info.has_chat_template);
        assert_eq!(info.problem(), None);
        // 2 (k, v) × 24 layers × 2 kv heads × 64 per head × 2 bytes.
        assert_eq!(info.kv_bytes_per_token(), Some(12_288));
    }

    #[test]
    fn refuses_what_cannot_serve() {
        let base = header(&[("general.architecture", "gemma3")], &[]);
        let info = read_from(&mut base.as_slice()).unwrap();
        assert!(info.problem().unwrap().contains("base model"));
        assert!(
            read_from(&mut &b"GGML...."[..])
                .unwrap_err()
                .contains("magic")
        );
        let mut cut = header(&[("general.architecture", "llama")], &[]);
        cut.truncate(cut.len() - 3);
        assert!(
            read_from(&mut cut.as_slice())
                .unwrap_err()
                .contains("ends early")
        );
        let mut version = header(&[], &[]);
        version[4] = 9;
        assert!(
            read_from(&mut version.as_slice())
                .unwrap_err()
                .contains("version 9")
        );
    }
}
