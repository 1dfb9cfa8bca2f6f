//! Splitting an agent file into its YAML front matter and its body.
//!
//! Claude Code agent files use a flat `key: value` front matter. We read only that flat form
//! (no nesting, no multi-line values) because the engine needs the body, and the fields are
//! for Claude Code; a full YAML parser would cost build time for nothing.

use crate::error::{Error, Result};

/// The `key: value` pairs of a front matter block, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontMatter<'a> {
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> FrontMatter<'a> {
    /// The value of `key`, without surrounding quotes.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    }

    /// Every field in file order.
    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields
    }
}

/// Splits `text` into front matter and the trimmed body after it. Text that does not start
/// with a `---` line has no front matter and is all body.
pub fn split_front_matter(text: &str) -> Result<(FrontMatter<'_>, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Ok((FrontMatter::default(), ""));
    };
    if first.trim_end() != "---" {
        return Ok((FrontMatter::default(), text.trim()));
    }
    let mut offset = first.len();
    let mut fields = Vec::new();
    for (index, line) in lines.enumerate() {
        offset += line.len();
        let content = line.trim_end();
        if content == "---" {
            return Ok((FrontMatter { fields }, text[offset..].trim()));
        }
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = content.split_once(':') else {
            return Err(Error::BadFrontMatterLine {
                line: index + 2,
                text: content.to_owned(),
            });
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(value);
        fields.push((key.trim(), value));
    }
    Err(Error::UnclosedFrontMatter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn splits_front_matter_from_body() {
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "---\nname: a\ndescription: \"does x: y\"\n---\n\n# Body\ntext\n",
                vec![("name", "a"), ("description", "does x: y")],
                "# Body\ntext",
            ),
            (
                "---\r\nname: a\r\n---\r\nbody\r\n",
                vec![("name", "a")],
                "body",
            ),
            ("# No front matter\n", vec![], "# No front matter"),
            ("\u{feff}---\nname: b\n---\nx", vec![("name", "b")], "x"),
            ("---\n# comment\n\nname: c\n---\n", vec![("name", "c")], ""),
            ("", vec![], ""),
        ];
        for (text, fields, body) in cases {
            let (front, rest) = split_front_matter(text).unwrap();
            assert_eq!(front.fields(), fields.as_slice(), "{text:?}");
            assert_eq!(rest, *body, "{text:?}");
        }
    }

    #[test]
    fn malformed_front_matter_is_an_error() {
        assert_eq!(
            split_front_matter("---\nname: a\nbody without end\n"),
            Err(Error::BadFrontMatterLine {
                line: 3,
                text: "body without end".to_owned()
            })
        );
        assert_eq!(
            split_front_matter("---\nname: a\n"),
            Err(Error::UnclosedFrontMatter)
        );
    }
}
