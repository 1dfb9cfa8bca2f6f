//! What a scan reports. A [`Finding`] names the rule, where the match is, a fingerprint and a
//! redacted preview; it never holds the matched value, so it can be printed, logged, written to
//! JSON/SARIF or shown to a model.

use std::fmt;
use std::ops::Range;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A stable identifier of one secret under one rule: the first 64 bits of
/// `SHA-256("refinery-secrets/v1" ‖ rule ‖ value)`, as 16 hex digits.
///
/// It does not depend on the path or the line, so moving code around does not invalidate an
/// entry in the ignore file (unlike line-number baselines, which churn on every edit). A hash of
/// a high-entropy value does not reveal it; the rules' entropy gates keep low-entropy values
/// (which could be guessed from their hash) out of the findings.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    pub(crate) fn compute(rule_id: &str, value: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"refinery-secrets/v1\0");
        hasher.update(rule_id.as_bytes());
        hasher.update(b"\0");
        hasher.update(value);
        let digest = hasher.finalize();
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        Self(bytes)
    }

    /// Parses 16 hex digits (either case), as written in the ignore file.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 16 {
            return None;
        }
        let mut bytes = [0_u8; 8];
        for (index, pair) in text.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0])?;
            let low = hex_value(pair[1])?;
            bytes[index] = (high << 4) | low;
        }
        Some(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A redacted view of a match: a short public prefix and the length, e.g. `ghp_… (40 chars)`.
///
/// The prefix is at most the rule's public prefix (`ghp_`, `sk-ant-api03-`) and never more than
/// a sixth of the value, so a preview cannot be used to reconstruct the secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    prefix: String,
    length: usize,
}

impl Preview {
    pub(crate) fn new(value: &[u8], visible_prefix: usize) -> Self {
        let shown = visible_prefix.min(value.len() / 6);
        let prefix = value[..shown]
            .iter()
            .map(|&byte| {
                if byte.is_ascii_graphic() {
                    char::from(byte)
                } else {
                    '?'
                }
            })
            .collect();
        Self {
            prefix,
            length: value.len(),
        }
    }

    /// The visible prefix (possibly empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The length of the matched value in bytes.
    pub fn length(&self) -> usize {
        self.length
    }
}

impl fmt::Display for Preview {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}\u{2026} ({} chars)", self.prefix, self.length)
    }
}

impl fmt::Debug for Preview {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Preview({self})")
    }
}

/// One detected secret. Holds no part of the value beyond [`Preview`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that matched, e.g. `github-pat`.
    pub rule_id: String,
    /// The file, relative to where the scan started; `None` for text scanned directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The commit that added the line (history and pre-push scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// 1-based line of the first byte of the value.
    pub line: usize,
    /// 1-based byte column of the first byte of the value.
    pub column: usize,
    /// See [`Fingerprint`].
    pub fingerprint: Fingerprint,
    /// See [`Preview`].
    pub preview: Preview,
    /// Byte range of the value in the scanned text (used by [`redact`](crate::redact)).
    #[serde(skip)]
    pub span: Range<usize>,
}
