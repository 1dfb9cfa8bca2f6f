//! Progress of a long call, for MCP progress notifications and the CLI's stderr.

/// One progress report. `progress` only grows within a call.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: String,
}

/// Receives progress reports. Implementations must not block: the MCP server forwards
/// them through a channel.
pub trait ProgressSink: Send + Sync {
    fn report(&self, update: ProgressUpdate);
}

impl<F: Fn(ProgressUpdate) + Send + Sync> ProgressSink for F {
    fn report(&self, update: ProgressUpdate) {
        self(update);
    }
}

/// A sink that drops every report.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _update: ProgressUpdate) {}
}

/// Counts steps so each report's `progress` is larger than the last.
pub(crate) struct Steps<'a> {
    sink: &'a dyn ProgressSink,
    step: f64,
}

impl<'a> Steps<'a> {
    pub(crate) fn new(sink: &'a dyn ProgressSink) -> Self {
        Self { sink, step: 0.0 }
    }

    pub(crate) fn report(&mut self, message: impl Into<String>) {
        self.step += 1.0;
        self.sink.report(ProgressUpdate {
            progress: self.step,
            total: None,
            message: message.into(),
        });
    }
}
