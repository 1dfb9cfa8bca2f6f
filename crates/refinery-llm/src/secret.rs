//! A key value that cannot be printed by accident.

use std::fmt;

/// An API key. `Display` and `Debug` print `<redacted>`; only [`ApiKey::expose`] gives
/// the value, and the only callers are the HTTP layer and the child-process env builder.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of this key in `text` with `[REDACTED]` (the mask every
    /// boundary uses, [`refinery_secrets::PLACEHOLDER`]).
    ///
    /// Keys shorter than 8 characters are not searched for: replacing a 3-letter
    /// placeholder everywhere would garble ordinary text, and such values are not secrets.
    pub fn redact(&self, text: &str) -> String {
        if self.0.len() < 8 {
            return text.to_string();
        }
        text.replace(&self.0, refinery_secrets::PLACEHOLDER)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_never_show_the_value() {
        let key = ApiKey::new("sk-ant-secret-value-123");
        assert_eq!(format!("{key}"), "<redacted>");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(format!("{:?}", Some(&key)), "Some(ApiKey(<redacted>))");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let key = ApiKey::new("sk-ant-secret-value-123");
        let cases = [
            ("no key here", "no key here"),
            ("key=sk-ant-secret-value-123", "key=[REDACTED]"),
            (
                "sk-ant-secret-value-123 and sk-ant-secret-value-123",
                "[REDACTED] and [REDACTED]",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(key.redact(input), expected, "input: {input}");
        }
        assert_eq!(ApiKey::new("abc").redact("abc def"), "abc def");
    }
}
