//! Every piece of session text passes here before it is shown: secrets are masked, and the
//! result is a [`Text`] that renders escaped in HTML and without control characters in a
//! terminal.
//!
//! Session files hold model output, which is hostile by assumption: a judge's critique may
//! contain `<script>`, a builder's summary may echo a key it found, a verify command's output
//! may carry terminal escape sequences. A [`Text`] can only be made by [`Scrub::text`], so a
//! renderer that takes `Text` cannot show an unscrubbed string by mistake, and maud escapes it.

use std::fmt;

/// Masks secrets: the one scrubber of the process ([`refinery_secrets::process_scrubber`]:
/// every credential value this process loaded, plus the scanner's rules), and any values the
/// caller adds. The report has no masking of its own, so it can never mask less than what
/// the rest of Refinery writes.
#[derive(Clone, Debug)]
pub struct Scrub {
    scrubber: refinery_secrets::Scrubber,
}

impl Default for Scrub {
    /// The process scrubber as it is now.
    fn default() -> Self {
        Self {
            scrubber: refinery_secrets::process_scrubber(),
        }
    }
}

impl Scrub {
    /// The process scrubber that also masks each of `values` (values too short or too common
    /// to be secrets are skipped, as everywhere).
    pub fn with_known_secrets(values: impl IntoIterator<Item = String>) -> Self {
        Self {
            scrubber: refinery_secrets::process_scrubber().with_values(values),
        }
    }

    /// `raw` with every secret masked.
    pub fn text(&self, raw: &str) -> Text {
        Text(self.scrubber.scrub(raw))
    }
}

/// Session text with its secrets masked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// The scrubbed text (still unescaped: render it through maud or [`Text::terminal`]).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there is nothing but whitespace.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The text safe to print on a terminal: control characters (escape sequences, carriage
    /// returns, bells) become `�`, except newlines and tabs.
    pub fn terminal(&self) -> String {
        self.0
            .chars()
            .map(|character| {
                if character.is_control() && character != '\n' && character != '\t' {
                    '\u{fffd}'
                } else {
                    character
                }
            })
            .collect()
    }
}

impl maud::Render for Text {
    fn render_to(&self, buffer: &mut String) {
        // `str`'s rendering escapes `&`, `<`, `>` and `"`.
        self.0.as_str().render_to(buffer);
    }
}

impl fmt::Display for Text {
    /// For terminals: the same as [`Text::terminal`].
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.terminal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_rule_matches_are_masked() {
        let key = format!(
            "sk-ant-api03-{}AA",
            "q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaK".repeat(3)
        );
        let scrub =
            Scrub::with_known_secrets(["plain-secret-value".to_owned(), "short".to_owned()]);
        let text = scrub.text(&format!("a plain-secret-value and {key}; short stays"));
        assert_eq!(
            text.as_str(),
            "a [REDACTED] and [REDACTED:anthropic-api-key]; short stays"
        );
    }

    #[test]
    fn html_is_escaped_and_terminal_controls_are_neutralised() {
        let text = Scrub::default().text("<script>alert(\"x\")</script>\u{1b}[2J\tok\n");
        assert_eq!(
            maud::Render::render(&text).into_string(),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\u{1b}[2J\tok\n"
        );
        assert_eq!(
            text.terminal(),
            "<script>alert(\"x\")</script>\u{fffd}[2J\tok\n"
        );
    }
}
