//! Log lines never carry a key: every line the tracing subscriber writes to stderr passes
//! through here, and the values of the keys this run loaded are replaced by `<redacted>`.
//!
//! Libraries already keep keys out of their own messages, but a dependency may log a raw
//! response body at trace level (genai does), and a misbehaving server may echo a key back.

use std::sync::{PoisonError, RwLock};

use refinery_llm::Credentials;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember the key values of `credentials` so the log writer can mask them.
pub(crate) fn register(credentials: &Credentials) {
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for (_, key) in credentials.exposed_keys() {
        let value = key.expose();
        // Shorter values are placeholders, and replacing them would garble ordinary text.
        if value.len() >= 8 && !secrets.iter().any(|known| known == value) {
            secrets.push(value.to_string());
        }
    }
}

fn scrub(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    secrets.iter().fold(text.to_string(), |text, secret| {
        text.replace(secret.as_str(), "<redacted>")
    })
}

/// A stderr writer that masks registered keys. The fmt subscriber writes each event with
/// one `write_all` of the formatted line, so a key is never split across two writes.
pub(crate) struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// The same masking for text the binary prints itself (errors from dependencies).
pub(crate) fn text(text: &str) -> String {
    scrub(text)
}
