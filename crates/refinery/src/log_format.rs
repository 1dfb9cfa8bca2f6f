//! How warnings read without `RUST_LOG`: plain sentences (`warning: the trace analyzer
//! failed (error: …)`), not tracing's timestamped `WARN target: field=value` lines. With
//! `RUST_LOG` set, tracing's own format is used, for whoever is debugging.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `warning: <message> (<field>: <value>, …)`.
pub(crate) struct PlainFormat;

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Sentence::default();
        event.record(&mut fields);
        writeln!(
            writer,
            "{}",
            fields.render(level_word(*event.metadata().level()))
        )
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "note",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// The message and the other fields of one event.
#[derive(Default)]
struct Sentence {
    message: String,
    details: Vec<(String, String)>,
}

impl Sentence {
    fn render(&self, level: &str) -> String {
        let mut line = format!("{level}: {}", self.message.trim());
        if !self.details.is_empty() {
            let details: Vec<String> = self
                .details
                .iter()
                .map(|(name, value)| format!("{}: {value}", name.replace('_', " ")))
                .collect();
            let _ = write!(line, " ({})", details.join(", "));
        }
        line
    }
}

impl Visit for Sentence {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.details
                .push((field.name().to_owned(), value.replace('\n', " ")));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        let sentence = Sentence {
            message: "unusable output".to_owned(),
            details: vec![
                ("role".to_owned(), "criteria writer".to_owned()),
                ("error".to_owned(), "not JSON".to_owned()),
            ],
        };
        assert_eq!(
            sentence.render("warning"),
            "warning: unusable output (role: criteria writer, error: not JSON)"
        );
        assert_eq!(
            Sentence {
                message: "plain".to_owned(),
                details: vec![]
            }
            .render("error"),
            "error: plain"
        );
    }
}
