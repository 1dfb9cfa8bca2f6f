//! Log lines never carry a secret, and logging never takes the process down.
//!
//! Every line the tracing subscriber writes to stderr passes through the process scrubber
//! ([`refinery_secrets::process_scrubber`]): the values of every credential this process
//! loaded become `[REDACTED]`, and anything shaped like a key `[REDACTED:<rule>]`. Libraries
//! keep keys out of their own messages, but a dependency may log a raw response body at trace
//! level (genai does), and a misbehaving server may echo a key back.
//!
//! A write that fails (stderr closed, or a pipe whose reader is gone: `refinery … 2>&1 |
//! head`) is dropped silently: a log line is not worth a panic, and a panic in the middle of
//! a run would leave its state saying "running".

/// A stderr writer that masks secrets and swallows write errors. The fmt subscriber writes
/// each event with one `write_all` of the formatted line, so a key is never split across two
/// writes.
pub(crate) struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let clean = refinery_secrets::process_scrubber()
            .scrub_bytes(buf)
            .into_owned();
        let _ = std::io::stderr().lock().write_all(&clean);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// The same masking for text the binary prints itself.
pub(crate) fn text(text: &str) -> String {
    refinery_secrets::process_scrubber().scrub(text)
}
