//! The part of a JSON schema each provider's structured output accepts.
//!
//! Our schemas carry every rule a reply must meet, bounds included: a server that turns the
//! schema into a grammar (llama.cpp, Ollama) then cannot run on past them. Hosted APIs compile
//! schemas too, but refuse keywords they do not support instead of ignoring them: Anthropic
//! answers HTTP 400 ("For 'integer' type, property 'minimum' is not supported") for numeric,
//! string-length and item-count bounds, and OpenAI's strict mode does not take string lengths.
//! So the schema sent to a provider is the schema without what that provider refuses
//! ([`wire_schema`]); the reply is still validated against the whole schema (a broken bound is
//! fed back to the model like any other mistake), and the caller's parser enforces every rule.
//!
//! `pattern` is sent to nobody: grammar compilers need anchored, restricted regular
//! expressions (llama.cpp refuses others), and no hosted API promises the same dialect.

use serde_json::{Map, Value};

use crate::model::Provider;

/// Keywords a provider's structured output refuses or cannot compile.
fn refused(provider: Provider) -> &'static [&'static str] {
    match provider {
        // Anthropic's grammar compiler refuses every numeric, length and count bound beyond
        // `minItems` of 0 or 1 (handled apart); OpenRouter may route to it.
        Provider::Anthropic | Provider::OpenRouter => &[
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
            "minLength",
            "maxLength",
            "maxItems",
            "uniqueItems",
            "minProperties",
            "maxProperties",
            "pattern",
        ],
        // Strict schemas there take numeric bounds and item counts, not string lengths.
        Provider::OpenAi | Provider::OpenAiChat | Provider::Xai | Provider::Gemini => {
            &["minLength", "maxLength", "pattern"]
        }
        // Local servers turn the schema into a grammar: every bound ends the output there.
        Provider::Ollama | Provider::Local => &["pattern"],
    }
}

/// `schema` as `provider` accepts it: the keywords it refuses removed everywhere (inside
/// `properties` maps, property names are left alone), and for Anthropic `minItems` above 1
/// lowered to 1.
pub fn wire_schema(provider: Provider, schema: &Value) -> Value {
    strip(schema, refused(provider), provider_min_items(provider))
}

/// The largest `minItems` a provider accepts, if it caps it.
fn provider_min_items(provider: Provider) -> Option<u64> {
    matches!(provider, Provider::Anthropic | Provider::OpenRouter).then_some(1)
}

fn strip(schema: &Value, refused: &[&str], min_items_cap: Option<u64>) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        if refused.contains(&key.as_str()) {
            continue;
        }
        let value = match (key.as_str(), value) {
            // A map of names to schemas: keep every name, strip each schema.
            ("properties" | "$defs" | "definitions", Value::Object(named)) => Value::Object(
                named
                    .iter()
                    .map(|(name, sub)| (name.clone(), strip(sub, refused, min_items_cap)))
                    .collect(),
            ),
            ("minItems", Value::Number(number)) => match (number.as_u64(), min_items_cap) {
                (Some(min), Some(cap)) if min > cap => Value::from(cap),
                _ => value.clone(),
            },
            (_, Value::Object(_)) => strip(value, refused, min_items_cap),
            (_, Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|item| strip(item, refused, min_items_cap))
                    .collect(),
            ),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "minimum": {"type": "integer", "minimum": 0, "maximum": 10},
                "items": {"type": "array", "minItems": 3, "maxItems": 7,
                          "items": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "\\S"}},
                "kind": {"type": "string", "enum": ["a", "b"]}
            },
            "required": ["minimum", "items", "kind"],
            "additionalProperties": false
        })
    }

    #[test]
    fn each_provider_gets_what_it_accepts() {
        let anthropic = wire_schema(Provider::Anthropic, &schema());
        assert_eq!(
            anthropic,
            json!({
                "type": "object",
                "properties": {
                    // A property named like a keyword keeps its name.
                    "minimum": {"type": "integer"},
                    "items": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "kind": {"type": "string", "enum": ["a", "b"]}
                },
                "required": ["minimum", "items", "kind"],
                "additionalProperties": false
            })
        );
        let openai = wire_schema(Provider::OpenAi, &schema());
        assert_eq!(openai["properties"]["minimum"]["maximum"], 10);
        assert_eq!(openai["properties"]["items"]["minItems"], 3);
        assert_eq!(
            openai["properties"]["items"]["items"],
            json!({"type": "string"})
        );
        let local = wire_schema(Provider::Local, &schema());
        assert_eq!(
            local["properties"]["items"]["items"],
            json!({"type": "string", "minLength": 1, "maxLength": 40})
        );
        assert_eq!(local["properties"]["items"]["maxItems"], 7);
        assert_eq!(wire_schema(Provider::Ollama, &schema()), local);
    }
}
