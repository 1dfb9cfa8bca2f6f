//! The one place the binary writes to stdout and stderr. Everything written passes through
//! the process scrubber first (credential values and key-shaped text masked). A closed pipe
//! (`refinery session list | head`) is not an error: the command stops quietly and exits 0,
//! as ripgrep does; a closed stderr loses the note, never the run.

use std::io::Write as _;

/// Raised when stdout was closed by the reader; `run` turns it into a clean exit.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub(crate) struct BrokenPipe;

/// Writes `text` and a newline to stdout.
pub(crate) fn line(text: &str) -> anyhow::Result<()> {
    // A line may be a JSON event (`--json`): masking keeps it valid JSON.
    let text = refinery_secrets::process_scrubber()
        .scrub_json_text(text, refinery_secrets::JsonStyle::Compact)
        .into_owned();
    write_line(&text)
}

fn write_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(BrokenPipe.into()),
        Err(err) => Err(err.into()),
    }
}

/// Writes `value` as pretty JSON to stdout.
pub(crate) fn json(value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_line(
        &refinery_secrets::process_scrubber()
            .scrub_json_text(&text, refinery_secrets::JsonStyle::Pretty),
    )
}

/// Writes an error chain and hints to stderr.
pub(crate) fn error(err: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "error: {}",
        crate::redact::text(&format!("{err:#}"))
    );
}

/// Writes `text` to stdout without a newline and flushes (streamed model output). Each chunk
/// is scrubbed on its own: a model's answer holds no credential of ours unless it guessed one,
/// and a key split across two chunks would only be caught by the pattern rules per piece.
pub(crate) fn chunk(text: &str) -> anyhow::Result<()> {
    let text = crate::redact::text(text);
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(BrokenPipe.into()),
        Err(err) => Err(err.into()),
    }
}

/// Writes a side note (usage, cost, retries) to stderr, so stdout stays the answer.
pub(crate) fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", crate::redact::text(text));
}

/// Writes already-rendered bytes (a report that ends in its own newline) to stdout.
pub(crate) fn bytes(data: &[u8]) -> anyhow::Result<()> {
    let data = refinery_secrets::process_scrubber().scrub_bytes(data);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&data).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(BrokenPipe.into()),
        Err(err) => Err(err.into()),
    }
}

/// Writes already-rendered diagnostics to stderr; a closed stderr is not worth failing over.
pub(crate) fn stderr_bytes(data: &[u8]) {
    let data = refinery_secrets::process_scrubber().scrub_bytes(data);
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(&data).and_then(|()| stderr.flush());
}
