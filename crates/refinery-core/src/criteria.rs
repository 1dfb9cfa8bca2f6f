//! Evaluation criteria: the yardstick every round is scored against.
//!
//! Unlike MassGen's standalone server, which keeps only id, text, category and rationale, a
//! [`Criterion`] keeps every field an evaluator needs (anti-patterns, score anchors, how to
//! verify), normalizes the MoSCoW aliases, and a [`CriteriaSet`] refuses duplicates and blanks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How much a criterion matters.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// The criterion the work is mainly judged on.
    Primary,
    /// An ordinary criterion.
    #[default]
    Standard,
    /// A criterion that marks exceptional work.
    Stretch,
}

impl Category {
    /// Parses a category or one of its MoSCoW aliases (`must`, `should`, `could`),
    /// case-insensitively.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "primary" | "must" => Some(Self::Primary),
            "standard" | "should" => Some(Self::Standard),
            "stretch" | "could" => Some(Self::Stretch),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Standard => "standard",
            Self::Stretch => "stretch",
        }
    }
}

/// One evaluation criterion, with everything an evaluator needs to score it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Criterion {
    /// Stable id such as `E1`.
    pub id: String,
    /// What good looks like, stated as a position.
    pub text: String,
    /// How much it matters.
    #[serde(default)]
    pub category: Category,
    /// Why this criterion matters for this task.
    #[serde(default)]
    pub rationale: String,
    /// Concrete ways work fails this criterion.
    #[serde(default)]
    pub anti_patterns: Vec<String>,
    /// What a score means, keyed by score (for example `"3"`, `"5"`, `"7"`, `"9"`).
    #[serde(default)]
    pub score_anchors: BTreeMap<String, String>,
    /// How to check it beyond reading (a command to run, a page to open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_by: Option<String>,
}

/// A validated, ordered, non-empty list of criteria with unique ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Criterion>", into = "Vec<Criterion>")]
pub struct CriteriaSet(Vec<Criterion>);

impl CriteriaSet {
    /// Validates already-typed criteria.
    pub fn new(criteria: Vec<Criterion>) -> Result<Self> {
        if criteria.is_empty() {
            return Err(Error::InvalidCriteria(
                "the list is empty; give at least one {id, text} criterion".to_owned(),
            ));
        }
        let mut seen = BTreeSet::new();
        for criterion in &criteria {
            if criterion.id.trim().is_empty() {
                return Err(Error::InvalidCriteria(
                    "a criterion has an empty `id`; use ids such as E1, E2".to_owned(),
                ));
            }
            if !seen.insert(criterion.id.as_str()) {
                return Err(Error::InvalidCriteria(format!(
                    "id `{}` appears more than once; every criterion needs its own id",
                    criterion.id
                )));
            }
            if criterion.text.trim().is_empty() {
                return Err(Error::InvalidCriteria(format!(
                    "criterion `{}` has an empty `text`; say what good looks like",
                    criterion.id
                )));
            }
        }
        Ok(Self(criteria))
    }

    /// Parses criteria from untyped JSON as clients send them, naming the first problem.
    ///
    /// Accepts an array or `{"criteria": [...]}`; `description` or `name` stand in for a
    /// missing `text`, a numeric id is read as text, and an item without an id is numbered
    /// `E<position>`.
    pub fn from_json(value: &Value) -> Result<Self> {
        let items = match value {
            Value::Array(items) => items,
            Value::Object(map) => match map.get("criteria") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(Error::InvalidCriteria(
                        "expected a list of criteria objects, or {\"criteria\": [...]}".to_owned(),
                    ));
                }
            },
            Value::String(text) => {
                let parsed: Value = serde_json::from_str(text).map_err(|err| {
                    Error::InvalidCriteria(format!(
                        "a string was given but it is not JSON ({err}); pass a list of criteria objects"
                    ))
                })?;
                if parsed.is_string() {
                    return Err(Error::InvalidCriteria(
                        "expected a list of criteria objects".to_owned(),
                    ));
                }
                return Self::from_json(&parsed);
            }
            _ => {
                return Err(Error::InvalidCriteria(
                    "expected a list of criteria objects".to_owned(),
                ));
            }
        };
        let criteria = items
            .iter()
            .enumerate()
            .map(|(index, item)| criterion_from_json(index, item))
            .collect::<Result<Vec<_>>>()?;
        Self::new(criteria)
    }

    /// The criteria in order.
    pub fn as_slice(&self) -> &[Criterion] {
        &self.0
    }

    /// The ids in order.
    pub fn ids(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|criterion| criterion.id.clone())
            .collect()
    }

    /// Looks a criterion up by id.
    pub fn get(&self, id: &str) -> Option<&Criterion> {
        self.0.iter().find(|criterion| criterion.id == id)
    }

    /// How many criteria there are (never zero).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a set holds at least one criterion.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<Criterion>> for CriteriaSet {
    type Error = Error;
    fn try_from(value: Vec<Criterion>) -> Result<Self> {
        Self::new(value)
    }
}

impl From<CriteriaSet> for Vec<Criterion> {
    fn from(value: CriteriaSet) -> Self {
        value.0
    }
}

fn criterion_from_json(index: usize, item: &Value) -> Result<Criterion> {
    let position = index + 1;
    let Value::Object(map) = item else {
        return Err(Error::InvalidCriteria(format!(
            "item {position} is not an object; each criterion is {{\"id\": \"E{position}\", \"text\": \"...\"}}"
        )));
    };
    let id = match map.get("id") {
        None | Some(Value::Null) => format!("E{position}"),
        Some(Value::String(id)) => id.trim().to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        Some(other) => {
            return Err(Error::InvalidCriteria(format!(
                "item {position}: `id` must be a string, got {}",
                kind(other)
            )));
        }
    };
    let text = ["text", "description", "name"]
        .iter()
        .find_map(|key| map.get(*key).and_then(Value::as_str))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if text.is_empty() {
        return Err(Error::InvalidCriteria(format!(
            "criterion `{id}` (item {position}) has no `text`; say what good looks like"
        )));
    }
    let category = match map.get("category") {
        None | Some(Value::Null) => Category::Standard,
        Some(Value::String(raw)) => Category::parse(raw).ok_or_else(|| {
            Error::InvalidCriteria(format!(
                "criterion `{id}`: unknown category `{raw}`; use primary, standard or stretch (or must, should, could)"
            ))
        })?,
        Some(other) => {
            return Err(Error::InvalidCriteria(format!(
                "criterion `{id}`: `category` must be a string, got {}",
                kind(other)
            )));
        }
    };
    let rationale = optional_string(map.get("rationale"), &id, "rationale")?.unwrap_or_default();
    let verify_by = optional_string(map.get("verify_by"), &id, "verify_by")?
        .filter(|text| !text.trim().is_empty());
    let anti_patterns = match map.get("anti_patterns") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(Error::InvalidCriteria(format!(
                    "criterion `{id}`: every anti-pattern must be a string, got {}",
                    kind(other)
                ))),
            })
            .collect::<Result<_>>()?,
        Some(Value::String(text)) => vec![text.clone()],
        Some(other) => {
            return Err(Error::InvalidCriteria(format!(
                "criterion `{id}`: `anti_patterns` must be a list of strings, got {}",
                kind(other)
            )));
        }
    };
    let score_anchors = match map.get("score_anchors") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(anchors)) => anchors
            .iter()
            .map(|(score, meaning)| match meaning {
                Value::String(text) => Ok((score.clone(), text.clone())),
                other => Err(Error::InvalidCriteria(format!(
                    "criterion `{id}`: score anchor `{score}` must be a string, got {}",
                    kind(other)
                ))),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(Error::InvalidCriteria(format!(
                "criterion `{id}`: `score_anchors` must map scores to descriptions, got {}",
                kind(other)
            )));
        }
    };
    Ok(Criterion {
        id,
        text,
        category,
        rationale,
        anti_patterns,
        score_anchors,
        verify_by,
    })
}

fn optional_string(value: Option<&Value>, id: &str, field: &str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(Error::InvalidCriteria(format!(
            "criterion `{id}`: `{field}` must be a string, got {}",
            kind(other)
        ))),
    }
}

/// The object inside `value`, which may also arrive as a JSON string holding an object (some
/// agent CLIs serialise tool arguments twice); otherwise what was found, in words.
pub(crate) fn as_object(
    value: &Value,
) -> Result<std::borrow::Cow<'_, Map<String, Value>>, &'static str> {
    match value {
        Value::Object(map) => Ok(std::borrow::Cow::Borrowed(map)),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(std::borrow::Cow::Owned(map)),
            _ => Err("a string"),
        },
        other => Err(kind(other)),
    }
}

/// A JSON value's type in words, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_is_kept_and_aliases_normalized() {
        let set = CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "A", "category": "must", "rationale": "r",
             "anti_patterns": ["x", "y"], "score_anchors": {"3": "bad", "9": "great"},
             "verify_by": "run it"},
            {"id": "E2", "text": "B", "category": "Should"},
            {"id": "E3", "text": "C", "category": "could"},
            {"id": "E4", "description": "D", "category": "PRIMARY"},
        ]))
        .unwrap();
        let first = &set.as_slice()[0];
        assert_eq!(first.category, Category::Primary);
        assert_eq!(first.anti_patterns, vec!["x", "y"]);
        assert_eq!(first.score_anchors["9"], "great");
        assert_eq!(first.verify_by.as_deref(), Some("run it"));
        let categories: Vec<_> = set.as_slice().iter().map(|c| c.category).collect();
        assert_eq!(
            categories,
            vec![
                Category::Primary,
                Category::Standard,
                Category::Stretch,
                Category::Primary
            ]
        );
        assert_eq!(set.as_slice()[3].text, "D");
    }

    #[test]
    fn bad_lists_are_rejected_with_the_reason() {
        let cases = [
            (json!([]), "empty"),
            (json!([{"id": "E1"}]), "no `text`"),
            (json!([{"id": "E1", "text": "  "}]), "no `text`"),
            (
                json!([{"id": "E1", "text": "a"}, {"id": "E1", "text": "b"}]),
                "more than once",
            ),
            (
                json!([{"id": "E1", "text": "a", "category": "urgent"}]),
                "unknown category",
            ),
            (
                json!([{"id": "E1", "text": "a", "anti_patterns": ["a", 1]}]),
                "anti-pattern",
            ),
            (
                json!([{"id": "E1", "text": "a", "score_anchors": {"3": "x", "5": 5}}]),
                "anchor `5`",
            ),
            (json!(["E1"]), "not an object"),
            (json!({"id": "E1"}), "expected a list"),
            (json!(7), "expected a list"),
            (json!([{"id": true, "text": "a"}]), "`id` must be a string"),
        ];
        for (input, needle) in cases {
            let err = CriteriaSet::from_json(&input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn wrapped_form_string_form_and_numbering() {
        let set =
            CriteriaSet::from_json(&json!({"criteria": [{"text": "a"}, {"id": 7, "text": "b"}]}))
                .unwrap();
        assert_eq!(set.ids(), vec!["E1", "7"]);
        let from_string =
            CriteriaSet::from_json(&json!("[{\"id\":\"E1\",\"text\":\"a\"}]")).unwrap();
        assert_eq!(from_string.ids(), vec!["E1"]);
    }
}
