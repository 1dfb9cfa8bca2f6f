//! Token usage and its cost in USD, from one price table file (`prices.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::model::ModelId;

/// Tokens used by one call (or a sum of calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The part of `input_tokens` served from a prompt cache.
    pub cached_input_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
    }
}

/// A cost in USD, or unknown when the model is not in the price table (never a made-up 0).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Cost {
    Usd(f64),
    #[default]
    Unknown,
}

impl Cost {
    /// Sum two costs; anything plus unknown is unknown.
    #[must_use]
    pub fn plus(self, other: Cost) -> Cost {
        match (self, other) {
            (Cost::Usd(left), Cost::Usd(right)) => Cost::Usd(left + right),
            (Cost::Usd(_) | Cost::Unknown, Cost::Unknown) | (Cost::Unknown, Cost::Usd(_)) => {
                Cost::Unknown
            }
        }
    }

    pub fn usd(self) -> Option<f64> {
        match self {
            Cost::Usd(value) => Some(value),
            Cost::Unknown => None,
        }
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cost::Usd(value) => write!(formatter, "${value:.6}"),
            Cost::Unknown => formatter.write_str("unknown"),
        }
    }
}

/// Serialized as a number of USD, or the string `"unknown"`.
impl Serialize for Cost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cost::Usd(value) => serializer.serialize_f64(*value),
            Cost::Unknown => serializer.serialize_str("unknown"),
        }
    }
}

/// One model's tokens as Anthropic bills them and Claude Code records them (the plugin's cost
/// budget prices a whole loop's transcripts with this).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnthropicUsage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the 5-minute prompt cache.
    pub cache_write_5m_tokens: u64,
    /// Input tokens written to the 1-hour prompt cache (and writes of unknown duration).
    pub cache_write_1h_tokens: u64,
}

/// Anthropic bills a 5-minute cache write at 1.25 times the input price and a 1-hour one at
/// twice it; the price table holds only the input price.
const CACHE_WRITE_5M_FACTOR: f64 = 1.25;
const CACHE_WRITE_1H_FACTOR: f64 = 2.0;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PriceFile {
    models: BTreeMap<String, Price>,
}

/// The price table: exact `provider/model` entries, plus `prefix*` entries (longest wins).
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
}

const BUILTIN_PRICES: &str = include_str!("../prices.json");

impl PriceTable {
    /// The table shipped in the binary.
    pub fn builtin() -> Self {
        // The shipped file is checked by a unit test, so this parse cannot fail at run time.
        Self::parse("prices.json (built in)", BUILTIN_PRICES).unwrap_or(Self {
            models: BTreeMap::new(),
        })
    }

    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        let file: PriceFile =
            serde_json::from_str(text).map_err(|error| Error::InvalidPriceTable {
                path: origin.to_string(),
                message: error.to_string(),
            })?;
        for (name, price) in &file.models {
            let valid = [Some(price.input), Some(price.output), price.cached_input]
                .into_iter()
                .flatten()
                .all(|value| value.is_finite() && value >= 0.0);
            if !valid {
                return Err(Error::InvalidPriceTable {
                    path: origin.to_string(),
                    message: format!("`{name}` has a negative or non-finite price"),
                });
            }
        }
        Ok(Self {
            models: file.models,
        })
    }

    pub fn price(&self, model: &ModelId) -> Option<Price> {
        let name = model.to_string();
        if let Some(price) = self.models.get(&name) {
            return Some(*price);
        }
        self.models
            .iter()
            .filter_map(|(pattern, price)| {
                let prefix = pattern.strip_suffix('*')?;
                name.starts_with(prefix).then_some((prefix.len(), *price))
            })
            .max_by_key(|(length, _)| *length)
            .map(|(_, price)| price)
    }

    /// What a model named as Claude Code records it (`claude-sonnet-4-5-20250929`, or with
    /// an `anthropic/` prefix) cost for `usage`; unknown when the table has no price for it.
    pub fn anthropic_cost(&self, model: &str, usage: &AnthropicUsage) -> Cost {
        let name = if model.contains('/') {
            model.to_owned()
        } else {
            format!("anthropic/{model}")
        };
        let Some(price) = ModelId::parse(&name)
            .ok()
            .and_then(|model| self.price(&model))
        else {
            return Cost::Unknown;
        };
        let per_token = |per_million: f64| per_million / 1_000_000.0;
        Cost::Usd(
            usage.input_tokens as f64 * per_token(price.input)
                + usage.cache_read_tokens as f64
                    * per_token(price.cached_input.unwrap_or(price.input))
                + usage.cache_write_5m_tokens as f64
                    * per_token(price.input * CACHE_WRITE_5M_FACTOR)
                + usage.cache_write_1h_tokens as f64
                    * per_token(price.input * CACHE_WRITE_1H_FACTOR)
                + usage.output_tokens as f64 * per_token(price.output),
        )
    }

    pub fn cost(&self, model: &ModelId, usage: Usage) -> Cost {
        let Some(price) = self.price(model) else {
            return Cost::Unknown;
        };
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let per_token = |per_million: f64| per_million / 1_000_000.0;
        Cost::Usd(
            uncached as f64 * per_token(price.input)
                + cached as f64 * per_token(price.cached_input.unwrap_or(price.input))
                + usage.output_tokens as f64 * per_token(price.output),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses() {
        let table = PriceTable::parse("prices.json", BUILTIN_PRICES).unwrap();
        assert!(table.models.len() > 20);
    }

    #[test]
    fn costs() {
        let table = PriceTable::builtin();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_input_tokens: 200_000,
        };
        let cases = [
            // 800k * 3 + 200k * 0.3 + 100k * 15, per million
            ("anthropic/claude-sonnet-4-5", Some(2.4 + 0.06 + 1.5)),
            (
                "anthropic/claude-sonnet-4-5-20250929",
                Some(2.4 + 0.06 + 1.5),
            ),
            ("anthropic/claude-opus-4-5-20251101", Some(4.0 + 0.1 + 2.5)),
            ("openai/gpt-4o-mini", Some(0.12 + 0.015 + 0.06)),
            ("gemini/gemini-2.5-flash", Some(0.24 + 0.015 + 0.25)),
            ("local/smollm2", Some(0.0)),
            ("anthropic/claude-fake-1", None),
            ("openai/gpt-99", None),
        ];
        for (name, expected) in cases {
            let cost = table.cost(&ModelId::parse(name).unwrap(), usage).usd();
            match (cost, expected) {
                (Some(cost), Some(expected)) => assert!(
                    (cost - expected).abs() < 1e-9,
                    "{name}: {cost} != {expected}"
                ),
                (cost, expected) => assert_eq!(cost, expected, "{name}"),
            }
        }
    }

    #[test]
    fn claude_code_usage_is_priced_with_cache_writes() {
        let table = PriceTable::builtin();
        let usage = AnthropicUsage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_tokens: 1_000_000,
            cache_write_5m_tokens: 1_000_000,
            cache_write_1h_tokens: 1_000_000,
        };
        // Sonnet 4.5: input 3, output 15, cache read 0.3, writes 3.75 and 6 per million.
        let expected = 3.0 + 1.5 + 0.3 + 3.75 + 6.0;
        for model in ["claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"] {
            let cost = table.anthropic_cost(model, &usage).usd().unwrap();
            assert!((cost - expected).abs() < 1e-9, "{model}: {cost}");
        }
        assert_eq!(table.anthropic_cost("claude-fake-1", &usage), Cost::Unknown);
        assert_eq!(table.anthropic_cost("<synthetic>", &usage), Cost::Unknown);
    }

    #[test]
    fn unknown_cost_serializes_as_unknown_and_is_sticky() {
        assert_eq!(
            serde_json::to_string(&Cost::Unknown).unwrap(),
            "\"unknown\""
        );
        assert_eq!(serde_json::to_string(&Cost::Usd(0.5)).unwrap(), "0.5");
        assert_eq!(Cost::Usd(1.0).plus(Cost::Unknown), Cost::Unknown);
        assert_eq!(Cost::Usd(1.0).plus(Cost::Usd(2.0)), Cost::Usd(3.0));
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(PriceTable::parse("x", "{").is_err());
        assert!(PriceTable::parse("x", r#"{"models":{"a/b":{"input":-1,"output":1}}}"#).is_err());
    }
}
