//! Session identity and per-session settings.
//!
//! A session id is also a folder name, so [`SessionId`] only admits ids that can never leave
//! the sessions folder: ASCII letters, digits, `_` and `-`, not starting with a separator.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::{Error, Result};

/// The longest id we accept; file systems limit a name to 255 bytes and ids appear inside
/// longer file names in reports.
const MAX_ID_LEN: usize = 128;
/// The longest label slug appended to a generated id.
const MAX_SLUG_LEN: usize = 48;

/// A validated session id, safe to use as a folder name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// The session tools use when nothing selected another one (compatible with MassGen).
    pub fn default_session() -> Self {
        Self("default".to_owned())
    }

    /// Validates an id given by a user, a pointer file or a client.
    pub fn parse(raw: &str) -> Result<Self> {
        let reason = if raw.is_empty() {
            Some("it is empty")
        } else if raw.len() > MAX_ID_LEN {
            Some("it is longer than 128 characters")
        } else if !raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        {
            Some("only ASCII letters, digits, `_` and `-` are allowed")
        } else if !raw.as_bytes()[0].is_ascii_alphanumeric() {
            Some("it must start with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidSessionId {
                id: raw.to_owned(),
                reason,
            }),
            None => Ok(Self(raw.to_owned())),
        }
    }

    /// Builds `YYYYMMDD_HHMMSS[_label-slug]` from a UTC time and an optional label (cleaned
    /// of secrets first: see [`clean_label`]).
    pub fn generate(now: OffsetDateTime, label: &str) -> Self {
        let stamp = now
            .to_offset(time::UtcOffset::UTC)
            .format(format_description!(
                "[year][month][day]_[hour][minute][second]"
            ))
            .unwrap_or_else(|_| "00000000_000000".to_owned());
        let slug = slugify(&clean_label(label));
        if slug.is_empty() {
            Self(stamp)
        } else {
            Self(format!("{stamp}_{slug}"))
        }
    }

    /// This id with a collision counter appended (`…_2`, `…_3`).
    pub(crate) fn with_counter(&self, counter: u32) -> Self {
        Self(format!("{}_{counter}", self.0))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<SessionId> for String {
    fn from(value: SessionId) -> Self {
        value.0
    }
}

/// A label with nothing secret in it: the text is scrubbed (known credential values and
/// recognisable keys masked), then every whitespace-separated word that is a mask or looks
/// like a key is dropped. A session label becomes a folder name, an id in events and output,
/// and a line in `session.json`, so a key at the start of a task must never reach it.
///
/// ```
/// use refinery_core::session::clean_label;
/// let key = format!("sk-ant-api03-{}", "q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E".repeat(3));
/// assert_eq!(clean_label(&format!("{key} build a page")), "build a page");
/// assert_eq!(clean_label("deploy with token Zq7Rk2Lw9Tn4Vb8Xc3Hy6 now"), "deploy with token now");
/// ```
pub fn clean_label(label: &str) -> String {
    let scrubbed = refinery_secrets::scrub(label);
    scrubbed
        .split_whitespace()
        .filter(|word| {
            !word.contains(refinery_secrets::PLACEHOLDER_PREFIX) && !looks_like_key(word)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a word could be key material the rules do not know: at least 16 letters and digits
/// (separators such as `-`, `_`, `.` and `/` aside), with both letters and digits. Words and
/// hyphenated names (`landing-page-for-acme`) pass; `python3.11-venv-2024-setup` is dropped
/// too, which costs a label nothing.
fn looks_like_key(word: &str) -> bool {
    let alphanumeric = word.chars().filter(char::is_ascii_alphanumeric).count();
    alphanumeric >= 16
        && word.chars().any(|character| character.is_ascii_digit())
        && word
            .chars()
            .any(|character| character.is_ascii_alphabetic())
}

/// Turns a free-form label into `[a-z0-9-]` words joined by `-`.
pub fn slugify(label: &str) -> String {
    let mut slug = String::new();
    for ch in label.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let trimmed = slug.trim_end_matches('-');
    let mut cut: String = trimmed.chars().take(MAX_SLUG_LEN).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    cut
}

/// The score a criterion needs to pass, 1–10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "u8", into = "u8")]
pub struct Cutoff(u8);

impl Cutoff {
    /// The default pass mark, as in MassGen.
    pub const DEFAULT: Cutoff = Cutoff(7);

    /// A cutoff between 1 and 10.
    pub fn new(value: u8) -> Result<Self> {
        if (1..=10).contains(&value) {
            Ok(Self(value))
        } else {
            Err(Error::InvalidCriteria(format!(
                "cutoff {value} is outside 1–10; pick the score a criterion needs to pass"
            )))
        }
    }

    /// The numeric value.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Cutoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u8> for Cutoff {
    type Error = Error;
    fn try_from(value: u8) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Cutoff> for u8 {
    fn from(value: Cutoff) -> Self {
        value.0
    }
}

/// A spending limit in USD, kept in millionths of a dollar so settings stay exact and
/// comparable; written and read as a plain number of dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct CostBudget(u64);

impl CostBudget {
    /// The largest budget accepted; anything above it is a typo, not a budget.
    const MAX_USD: f64 = 1_000_000.0;

    /// A budget of `usd` dollars: more than zero, at most a million.
    pub fn from_usd(usd: f64) -> Result<Self> {
        if usd.is_finite() && usd > 0.0 && usd <= Self::MAX_USD {
            Ok(Self((usd * 1_000_000.0).round().max(1.0) as u64))
        } else {
            Err(Error::InvalidSetting(format!(
                "cost_budget {usd} is not a spending limit; give a number of US dollars above 0 (0.50, 5, 20)"
            )))
        }
    }

    /// The budget in dollars.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl TryFrom<f64> for CostBudget {
    type Error = Error;
    fn try_from(value: f64) -> Result<Self> {
        Self::from_usd(value)
    }
}

impl From<CostBudget> for f64 {
    fn from(value: CostBudget) -> Self {
        value.usd()
    }
}

/// What a session is and how it is judged; written once by `init_session`, read on every call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id (also its folder name).
    pub id: SessionId,
    /// The label as the user gave it.
    #[serde(default)]
    pub label: String,
    /// When the session was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The settings the verdict uses.
    #[serde(default)]
    pub settings: SessionSettings,
}

/// Per-session settings that decisions depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    /// Every criterion must score at least this to converge.
    #[serde(default)]
    pub cutoff: Cutoff,
    /// No submission past this round is accepted.
    #[serde(default)]
    pub max_rounds: Option<u32>,
    /// The plugin's spending limit: once the Claude Code transcripts of this session cost
    /// this much, `new_answer` refuses a new round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<CostBudget>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_that_could_escape_are_rejected() {
        for bad in [
            "",
            "../../evil",
            "a/b",
            "a.b",
            ".",
            "..",
            "_x",
            "-x",
            "a b",
            "é",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "default",
            "20261124_003000",
            "20261124_003000_landing-page",
            "a_b-c",
        ] {
            assert_eq!(SessionId::parse(good).unwrap().as_str(), good);
        }
        assert!(SessionId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn generated_ids_follow_the_timestamp_format() {
        let now = datetime!(2026-11-24 00:30:05 UTC);
        assert_eq!(
            SessionId::generate(now, "landing-page").as_str(),
            "20261124_003005_landing-page"
        );
        assert_eq!(SessionId::generate(now, "").as_str(), "20261124_003005");
        assert_eq!(SessionId::generate(now, "!!!").as_str(), "20261124_003005");
        assert_eq!(
            SessionId::generate(now, "../../Evil Plan").as_str(),
            "20261124_003005_evil-plan"
        );
    }

    #[test]
    fn ids_never_carry_a_key_from_the_label() {
        let now = datetime!(2026-11-24 00:30:05 UTC);
        // Assembled at run time so this file does not trip the repository's own scan.
        let github = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
        let unknown = ["x9Q2vL7", "mT4kP8nR3wZ6"].concat();
        let loaded = ["core-session-", "loaded-secret-value"].concat();
        refinery_secrets::remember_secrets([loaded.as_str()]);
        let cases = [
            (
                format!("{github} build a landing page"),
                "20261124_003005_build-a-landing-page",
            ),
            (
                format!("use {unknown} to deploy"),
                "20261124_003005_use-to-deploy",
            ),
            (format!("{loaded} tidy docs"), "20261124_003005_tidy-docs"),
            (github.clone(), "20261124_003005"),
        ];
        for (label, expected) in cases {
            assert_eq!(
                SessionId::generate(now, &label).as_str(),
                expected,
                "{label}"
            );
        }
        assert_eq!(
            clean_label("landing-page-for-acme-corp v2"),
            "landing-page-for-acme-corp v2"
        );
    }

    #[test]
    fn slugs_are_bounded_and_clean() {
        assert_eq!(slugify("  Hello,  World! "), "hello-world");
        assert_eq!(slugify(&"ab ".repeat(40)).len(), 47);
        assert!(!slugify(&"ab ".repeat(40)).ends_with('-'));
    }

    #[test]
    fn cost_budgets_are_positive_dollars() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2_000_000.0] {
            assert!(CostBudget::from_usd(bad).is_err(), "{bad}");
        }
        assert!((CostBudget::from_usd(0.25).unwrap().usd() - 0.25).abs() < 1e-12);
        let settings: SessionSettings = serde_json::from_str(r#"{"cost_budget": 1.5}"#).unwrap();
        assert_eq!(
            settings.cost_budget,
            Some(CostBudget::from_usd(1.5).unwrap())
        );
        assert!(serde_json::from_str::<SessionSettings>(r#"{"cost_budget": 0}"#).is_err());
    }

    #[test]
    fn cutoff_is_bounded() {
        assert!(Cutoff::new(0).is_err());
        assert!(Cutoff::new(11).is_err());
        assert_eq!(Cutoff::new(10).unwrap().get(), 10);
        assert_eq!(Cutoff::default().get(), 7);
    }
}
