//! JSON-schema structured output, validated on our side.
//!
//! Providers are asked to follow the schema (as much of it as each accepts:
//! [`crate::wire_schema`]), but none is trusted to: the answer is parsed and validated here
//! against the whole schema. An invalid answer is fed back with the validation errors, up to
//! `options.schema_retries` more times, then the call fails with
//! [`Error::InvalidStructuredOutput`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::chat::{
    CallOptions, ChatModel, ChatRequest, ChatResponse, Message, StreamEvent, StreamSink,
};
use crate::error::{Error, Result};
use crate::price::{Cost, Usage};
use crate::schema_dialect::wire_schema;

/// A validated structured answer, with usage and cost summed over every attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructuredResponse {
    pub value: Value,
    /// The last (valid) response.
    pub response: ChatResponse,
    pub usage: Usage,
    pub cost: Cost,
    /// Model calls made, the first included.
    pub schema_attempts: u32,
}

/// Ask for `request.response_schema` and validate the answer, retrying with feedback. The
/// request is taken, not borrowed: it becomes the conversation the retries extend, and a
/// judge's brief is a quarter megabyte not worth copying.
pub async fn chat_structured(
    model: &dyn ChatModel,
    request: ChatRequest,
    options: &CallOptions,
    mut sink: Option<StreamSink<'_>>,
) -> Result<StructuredResponse> {
    let schema = request
        .response_schema
        .as_ref()
        .ok_or_else(|| Error::InvalidSchema {
            message: "the request has no response schema".to_string(),
        })?;
    // The provider is sent the part of the schema it accepts, but the answer is checked
    // against all of it: a bound the provider could not enforce is then fed back like any
    // other mistake, instead of reaching the caller's parser and being refused there.
    let validator = validator_for(&schema.schema)?;
    let wire = wire_schema(model.id().provider, &schema.schema);
    let mut conversation = request;
    if let Some(sent) = conversation.response_schema.as_mut() {
        sent.schema = wire;
    }
    let mut usage = Usage::default();
    let mut cost = Cost::Usd(0.0);
    let total = options.schema_retries + 1;
    let mut last_problem = String::new();
    for attempt in 1..=total {
        let response = match sink.as_mut() {
            Some(sink) => {
                model
                    .chat_stream(&conversation, options, &mut **sink)
                    .await?
            }
            None => model.chat(&conversation, options).await?,
        };
        usage.add(response.usage);
        cost = cost.plus(response.cost);
        match check_answer(&validator, &response.text) {
            Ok(value) => {
                return Ok(StructuredResponse {
                    value,
                    response,
                    usage,
                    cost,
                    schema_attempts: attempt,
                });
            }
            Err(problem) => {
                tracing::warn!(
                    "{}'s answer on attempt {attempt} did not follow the schema ({problem}); asking again",
                    model.id()
                );
                last_problem = problem;
            }
        }
        if attempt < total {
            if let Some(sink) = sink.as_mut() {
                sink(StreamEvent::Retrying {
                    attempt,
                    delay: Duration::ZERO,
                    reason: format!("output did not match the schema: {last_problem}"),
                });
            }
            conversation.messages.push(Message::Assistant {
                text: response.text,
                tool_calls: Vec::new(),
            });
            conversation.messages.push(Message::user(format!(
                "Your previous answer did not match the required JSON schema: {last_problem}\n\
                 Answer again with only one JSON value that matches the schema, no prose and no code fences."
            )));
        }
    }
    Err(Error::InvalidStructuredOutput {
        attempts: total,
        message: last_problem,
        usage,
        cost,
    })
}

/// Most compiled schemas kept by [`validator_for`] before it starts over.
const VALIDATORS_KEPT: usize = 64;

/// A validator being compiled or compiled (or the schema's problem), shared by every caller
/// that asks for the same schema: the second waits for the first instead of compiling again.
type Compiled = Arc<OnceLock<std::result::Result<Arc<jsonschema::Validator>, String>>>;

/// The compiled validator for `schema`. Compiling one costs more than checking many answers,
/// and a loop asks with the same few schemas every round, so validators are kept per schema
/// (by its JSON text) for the life of the process.
fn validator_for(schema: &Value) -> Result<Arc<jsonschema::Validator>> {
    static VALIDATORS: LazyLock<Mutex<HashMap<String, Compiled>>> = LazyLock::new(Mutex::default);
    let key = schema.to_string();
    let cell = {
        let mut kept = VALIDATORS.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= VALIDATORS_KEPT && !kept.contains_key(&key) {
            kept.clear();
        }
        Arc::clone(kept.entry(key).or_default())
    };
    cell.get_or_init(|| {
        jsonschema::validator_for(schema)
            .map(Arc::new)
            .map_err(|error| error.to_string())
    })
    .clone()
    .map_err(|message| Error::InvalidSchema { message })
}

/// Compiles the validators of `schemas` on a thread of its own, so that the first answer
/// checked against each finds it ready instead of waiting for a compile (a few milliseconds
/// per schema). A caller that needs one before it is done waits for it; nothing is
/// compiled twice.
pub fn prepare_validators(schemas: Vec<Value>) {
    let spawned = std::thread::Builder::new()
        .name("schema-compile".to_owned())
        .spawn(move || {
            for schema in &schemas {
                // A schema's problem is reported to the call that uses it.
                let _ = validator_for(schema);
            }
        });
    // Without a thread the validators are compiled when first needed, as they would be.
    drop(spawned);
}

/// Parse an answer as JSON (tolerating a Markdown code fence around it) and validate it.
fn check_answer(validator: &jsonschema::Validator, text: &str) -> Result<Value, String> {
    let body = strip_code_fence(text.trim());
    let value: Value = serde_json::from_str(body)
        .map_err(|error| format!("the answer is not valid JSON ({error})"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|error| {
            let path = error.instance_path().to_string();
            if path.is_empty() {
                error.to_string()
            } else {
                format!("at `{path}`: {error}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems.join("; "))
    }
}

fn strip_code_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let rest = rest.split_once('\n').map_or(rest, |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_validators_belong_to_their_own_schema() {
        let number =
            json!({"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]});
        let text =
            json!({"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]});
        for _ in 0..2 {
            assert!(validator_for(&number).unwrap().is_valid(&json!({"n": 1})));
            assert!(!validator_for(&number).unwrap().is_valid(&json!({"n": "1"})));
            assert!(validator_for(&text).unwrap().is_valid(&json!({"n": "1"})));
            assert!(!validator_for(&text).unwrap().is_valid(&json!({"n": 1})));
        }
    }
    use serde_json::json;

    #[test]
    fn a_schema_prepared_ahead_or_asked_for_at_once_is_compiled_once() {
        let schema = json!({"type": "object", "properties": {"prepared": {"type": "boolean"}}});
        prepare_validators(vec![schema.clone()]);
        let [first, second] = std::thread::scope(|threads| {
            let one = threads.spawn(|| validator_for(&schema).unwrap());
            let two = threads.spawn(|| validator_for(&schema).unwrap());
            [one.join().unwrap(), two.join().unwrap()]
        });
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!first.is_valid(&json!({"prepared": "yes"})));
        // A schema that cannot compile is the call's error, prepared or not.
        let broken = json!({"type": 12});
        prepare_validators(vec![broken.clone()]);
        assert!(matches!(
            validator_for(&broken),
            Err(Error::InvalidSchema { .. })
        ));
    }

    #[test]
    fn answers_are_parsed_and_validated() {
        let schema = json!({
            "type": "object",
            "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}, "verdict": {"enum": ["pass", "fail"]}},
            "required": ["score", "verdict"],
            "additionalProperties": false
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let cases: &[(&str, Result<Value, &str>)] = &[
            (
                r#"{"score": 7, "verdict": "pass"}"#,
                Ok(json!({"score": 7, "verdict": "pass"})),
            ),
            (
                "```json\n{\"score\": 1, \"verdict\": \"fail\"}\n```",
                Ok(json!({"score": 1, "verdict": "fail"})),
            ),
            (
                "  {\"score\": 0, \"verdict\": \"fail\"}  ",
                Ok(json!({"score": 0, "verdict": "fail"})),
            ),
            ("not json", Err("not valid JSON")),
            (r#"{"score": 11, "verdict": "pass"}"#, Err("at `/score`")),
            (r#"{"score": 3}"#, Err("verdict")),
            (r#"{"score": 3, "verdict": "maybe"}"#, Err("at `/verdict`")),
        ];
        for (text, expected) in cases {
            match (check_answer(&validator, text), expected) {
                (Ok(value), Ok(expected)) => assert_eq!(&value, expected, "{text}"),
                (Err(problem), Err(fragment)) => {
                    assert!(problem.contains(fragment), "{text}: {problem}");
                }
                (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
