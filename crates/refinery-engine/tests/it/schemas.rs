//! Schemas carry every rule: replies generated from each role's schema alone, with no prompt
//! and no idea what we mean (as constrained decoding does), must pass that role's parser.
//!
//! The generator walks a schema and picks, at every choice, the least it allows, the most it
//! allows, or something in between: only required properties or all of them, the fewest or
//! the most items, the lowest or highest number, the shortest or longest string, the first,
//! last or n-th enum value. Where the schema states no bound it picks something absurd (a
//! number far out of range, a string of 100,000 characters, a blank one), because a model
//! under a grammar may do exactly that; if the parser refuses it, the schema missed a rule.

use refinery_core::CriteriaSet;
use refinery_engine::outputs::{
    criteria_writer_schema, evaluator_schema, guard_schema, parse_criteria_writer, parse_evaluator,
    parse_regression_guard, parse_trace_lessons, trace_lessons_schema,
};
use serde_json::{Map, Value, json};

/// Where, between the least and the most a schema allows, the generator picks.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Least,
    Most,
    /// The n-th choice: n-th enum value, n items (within the bounds), n above the minimum.
    Nth(usize),
}

/// What a string is made of when its schema leaves it open.
const FILL: char = 'y';
/// A length for strings and lists with no upper bound: far more than any reply should hold.
const UNBOUNDED_LENGTH: usize = 100_000;
/// A number for integers with no bound.
const UNBOUNDED_NUMBER: i64 = 1_000_000;

fn bound(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|value| usize::try_from(value).ok())
}

/// `schema` with every local `$ref` (`#/$defs/Name`) replaced by what it names, so the
/// generator walks one tree.
fn inline(schema: &Value, root: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                let name = target
                    .strip_prefix("#/$defs/")
                    .or_else(|| target.strip_prefix("#/definitions/"))
                    .unwrap_or_else(|| panic!("teach the generator $ref {target}"));
                let named = root
                    .get("$defs")
                    .or_else(|| root.get("definitions"))
                    .and_then(|defs| defs.get(name))
                    .unwrap_or_else(|| panic!("$ref {target} names nothing"));
                if let Value::Object(named) = inline(named, root) {
                    out.extend(named);
                }
            }
            for (key, value) in map {
                if key != "$ref" && key != "$defs" && key != "definitions" {
                    out.insert(key.clone(), inline(value, root));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| inline(item, root)).collect()),
        other => other.clone(),
    }
}

/// The schema's type; of a list of types, the first that is not `null`.
fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(name)) => Some(name),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null"),
        _ => None,
    }
}

fn instance(schema: &Value, pick: Pick) -> Value {
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        assert!(!choices.is_empty(), "an empty enum: {schema}");
        let index = match pick {
            Pick::Least => 0,
            Pick::Most => choices.len() - 1,
            Pick::Nth(n) => n % choices.len(),
        };
        return choices[index].clone();
    }
    match type_of(schema) {
        Some("object") => object(schema, pick),
        Some("array") => array(schema, pick),
        Some("integer") => integer(schema, pick),
        Some("string") => string(schema, pick),
        Some("boolean") => Value::Bool(matches!(pick, Pick::Most)),
        other => panic!("teach the generator type {other:?}: {schema}"),
    }
}

fn object(schema: &Value, pick: Pick) -> Value {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            let wanted = required.contains(&name.as_str()) || !matches!(pick, Pick::Least);
            if wanted {
                out.insert(name.clone(), instance(sub, pick));
            }
        }
    }
    for name in &required {
        assert!(out.contains_key(*name), "required `{name}` has no schema");
    }
    Value::Object(out)
}

fn array(schema: &Value, pick: Pick) -> Value {
    let min = bound(schema, "minItems").unwrap_or(0);
    let max = bound(schema, "maxItems").unwrap_or(UNBOUNDED_LENGTH / 1_000);
    let count = match pick {
        Pick::Least => min,
        Pick::Most => max,
        Pick::Nth(n) => n.clamp(min, max),
    };
    let items = schema.get("items").cloned().unwrap_or(json!({}));
    Value::Array(
        (0..count)
            .map(|index| {
                // Vary the items of one list, so a list of enum values is not all the same.
                let pick = match pick {
                    Pick::Nth(n) => Pick::Nth(n + index),
                    other => other,
                };
                instance(&items, pick)
            })
            .collect(),
    )
}

fn integer(schema: &Value, pick: Pick) -> Value {
    let min = schema
        .get("minimum")
        .and_then(Value::as_i64)
        .unwrap_or(-UNBOUNDED_NUMBER);
    let max = schema
        .get("maximum")
        .and_then(Value::as_i64)
        .unwrap_or(UNBOUNDED_NUMBER);
    let value = match pick {
        Pick::Least => min,
        Pick::Most => max,
        Pick::Nth(n) => min.saturating_add(i64::try_from(n).unwrap()).min(max),
    };
    json!(value)
}

fn string(schema: &Value, pick: Pick) -> Value {
    let min = bound(schema, "minLength").unwrap_or(0);
    let max = bound(schema, "maxLength").unwrap_or(UNBOUNDED_LENGTH);
    let length = match pick {
        Pick::Least => min,
        Pick::Most => max,
        Pick::Nth(n) => (n * 7).clamp(min, max),
    };
    match schema.get("pattern").and_then(Value::as_str) {
        // At least one character that is not whitespace: the rest may be blank.
        Some("\\S") => {
            let length = length.max(1);
            Value::String(format!("{}{FILL}", " ".repeat(length - 1)))
        }
        Some(other) => panic!("teach the generator pattern {other:?}"),
        // Nothing but the length is asked for, so nothing but blanks is fair.
        None => Value::String(" ".repeat(length)),
    }
}

const PICKS: [Pick; 8] = [
    Pick::Least,
    Pick::Most,
    Pick::Nth(0),
    Pick::Nth(1),
    Pick::Nth(2),
    Pick::Nth(3),
    Pick::Nth(5),
    Pick::Nth(9),
];

/// Every instance the picks generate from `schema`, each checked against the schema itself
/// (so a generator mistake is not blamed on a parser).
fn instances(schema: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    let tree = inline(schema, schema);
    PICKS
        .iter()
        .map(|pick| {
            let value = instance(&tree, *pick);
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|error| error.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "the generator broke the schema ({pick:?}): {errors:?}"
            );
            value.to_string()
        })
        .collect()
}

fn criteria(count: usize) -> CriteriaSet {
    let items: Vec<Value> = (1..=count)
        .map(|index| {
            json!({
                "id": format!("E{index}"),
                "text": format!("criterion {index}"),
                "category": if index == 1 { "primary" } else { "standard" },
            })
        })
        .collect();
    CriteriaSet::from_json(&Value::Array(items)).unwrap()
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

#[test]
fn replies_made_from_the_criteria_writers_schema_alone_pass_its_parser() {
    for reply in instances(&criteria_writer_schema()) {
        if let Err(error) = parse_criteria_writer(&reply) {
            panic!("refused: {error}\nreply: {}", short(&reply));
        }
    }
}

#[test]
fn replies_made_from_the_evaluators_schema_alone_pass_its_parser() {
    for count in [1, 3, 7] {
        let criteria = criteria(count);
        for reply in instances(&evaluator_schema(&criteria)) {
            match parse_evaluator(&criteria, &reply) {
                // Every criterion of the run is scored: none can be left out.
                Ok(evaluation) => assert_eq!(evaluation.score_values().len(), count),
                Err(error) => panic!("refused: {error}\nreply: {}", short(&reply)),
            }
        }
    }
}

#[test]
fn replies_made_from_the_guards_schema_alone_pass_its_parser() {
    for count in [1, 3, 7] {
        let criteria = criteria(count);
        for reply in instances(&guard_schema(&criteria)) {
            match parse_regression_guard(&criteria, &reply) {
                Ok(comparison) => assert_eq!(comparison.preferences.len(), count),
                Err(error) => panic!("refused: {error}\nreply: {}", short(&reply)),
            }
        }
    }
}

#[test]
fn replies_made_from_the_trace_analyzers_schema_alone_pass_its_parser() {
    for reply in instances(&trace_lessons_schema()) {
        if let Err(error) = parse_trace_lessons(&reply) {
            panic!("refused: {error}\nreply: {}", short(&reply));
        }
    }
}

#[test]
fn the_generator_finds_a_rule_a_schema_leaves_out() {
    // The criteria schema as it was before categories were an enum: the parser refuses
    // what the schema allows, and the generator shows it.
    let mut schema = criteria_writer_schema();
    let category = &mut schema["properties"]["criteria"]["items"]["properties"]["category"];
    *category = json!({"type": "string", "maxLength": 20});
    let refused = instances(&schema)
        .iter()
        .filter(|reply| parse_criteria_writer(reply).is_err())
        .count();
    assert!(refused > 0, "the generator missed a missing enum");
}
