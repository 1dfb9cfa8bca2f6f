//! Every piece of session text passes here before it is shown: secrets are masked, and the
//! result is a [`Text`] that renders escaped in HTML and without control characters in a
//! terminal.
//!
//! Session files hold model output, which is hostile by assumption: a judge's critique may
//! contain `<script>`, a builder's summary may echo a key it found, a verify command's output
//! may carry terminal escape sequences. A [`Text`] can only be made by [`Scrub::text`], so a
//! renderer that takes `Text` cannot show an unscrubbed string by mistake, and maud escapes it.

use std::fmt;

/// Masks secrets: the values the caller knows (the keys the run loaded) and anything the
/// secret scanner's built-in rules recognise.
#[derive(Clone, Debug, Default)]
pub struct Scrub {
    known: Vec<String>,
}

impl Scrub {
    /// A scrubber that also masks each of `values` (shorter than 8 characters are ignored:
    /// too common to be secrets, too likely to mangle ordinary text).
    pub fn with_known_secrets(values: impl IntoIterator<Item = String>) -> Self {
        let mut known: Vec<String> = values
            .into_iter()
            .filter(|value| value.len() >= 8)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        known.sort_by_key(|value| std::cmp::Reverse(value.len()));
        known.dedup();
        Self { known }
    }

    /// `raw` with every secret masked.
    pub fn text(&self, raw: &str) -> Text {
        let mut out = raw.to_owned();
        for secret in &self.known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[REDACTED]");
            }
        }
        Text(refinery_secrets::redact(&out).0)
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
