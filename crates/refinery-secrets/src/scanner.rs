//! The scanning core: keyword prefilter → the rules' regexes on the text around each hit →
//! the rule's check (placeholder filter, entropy gate, structure) → findings.
//!
//! One Aho-Corasick pass finds the built-in rules' keywords (case-sensitive literals such as
//! `ghp_` or `AKIA`, which lets it use a fast literal prefilter); the generic rule and configured
//! rules each get one case-insensitive alternation regex. A rule's regex then runs only on the
//! line around a hit of one of its keywords, once per line. Rules without a usable keyword run
//! over the whole text, relying on the regex engine's own literal search.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use serde::Deserialize;

use crate::checks;
use crate::error::{Error, Result};
use crate::finding::{Finding, Fingerprint, Preview};
use crate::rules::{BUILTIN_RULES, BuiltinRule, Check, GENERIC_ID, REDACTION_RULES, Window};

/// The inline comment that accepts the findings on its line.
pub const ALLOW_MARKER: &[u8] = b"refinery:allow";

/// How far before a keyword hit a line window starts (long minified lines are not scanned
/// whole for every hit). Generic assignments put the keyword in the name, before the value.
const WINDOW_BEFORE: usize = 256;
/// How far after a keyword hit a line window ends: tokens are at most a few hundred bytes.
const WINDOW_AFTER: usize = 1024;
/// Private key blocks are a few KiB; PGP blocks for large keys up to ~16 KiB.
const BLOCK_WINDOW: usize = 64 * 1024;

/// A rule added from configuration (`[[rule]]` in `.refinery-secrets.toml`).
///
/// The value is the regex's named group `secret` when present, otherwise the whole match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleDefinition {
    /// Unique id, shown in findings (e.g. `acme-deploy-token`).
    pub id: String,
    /// One line saying what the rule finds.
    #[serde(default)]
    pub description: String,
    /// The regular expression (Rust `regex` syntax, ASCII; `(?i)` for case-insensitivity).
    pub regex: String,
    /// Literals that must occur near a match (case-insensitive). Without keywords the regex
    /// runs over every whole file, which is slower.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the value; 0 disables the gate.
    #[serde(default)]
    pub min_entropy: f64,
    /// Leading characters that may be shown in previews (a public prefix such as `acme_`).
    #[serde(default)]
    pub visible_prefix: usize,
}

struct Rule {
    id: String,
    description: String,
    regex: Regex,
    /// Capture indices of the `secret`, `secret2`, ... groups, in order of preference.
    secret_groups: Vec<usize>,
    name_group: Option<usize>,
    user_group: Option<usize>,
    host_group: Option<usize>,
    min_entropy: f64,
    visible_prefix: usize,
    check: Check,
    window: Window,
    /// Overlapping findings keep the more specific rule: provider rules beat the generic one.
    is_generic: bool,
    /// The fewest bytes a match of `regex` can span.
    shortest_match: usize,
}

impl Rule {
    fn compile(
        id: &str,
        description: &str,
        pattern: &str,
        min_entropy: f64,
        visible_prefix: usize,
        check: Check,
        window: Window,
    ) -> Result<Self> {
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(Error::InvalidRule {
                rule: id.to_owned(),
                reason: "the id must be non-empty and contain no whitespace",
            });
        }
        let regex = RegexBuilder::new(pattern)
            .unicode(false)
            // Bounded repetitions over large classes make big automata; allow them.
            .size_limit(64 * 1024 * 1024)
            .build()
            .map_err(|source| Error::InvalidRegex {
                rule: id.to_owned(),
                source: Box::new(source),
            })?;
        let index_of = |wanted: &str| regex.capture_names().position(|name| name == Some(wanted));
        let mut secret_groups = Vec::new();
        for suffix in ["", "2", "3", "4", "5"] {
            if let Some(index) = index_of(&format!("secret{suffix}")) {
                secret_groups.push(index);
            }
        }
        Ok(Self {
            id: id.to_owned(),
            description: description.to_owned(),
            secret_groups,
            name_group: index_of("name"),
            user_group: index_of("user"),
            host_group: index_of("host"),
            regex,
            min_entropy,
            visible_prefix,
            check,
            window,
            is_generic: id == GENERIC_ID,
            shortest_match: shortest_match(pattern),
        })
    }
}

/// The fewest bytes `pattern` can match, as its parsed form says; 0 (search everything) should
/// the parser disagree with the regex crate, and `usize::MAX` for a pattern that matches
/// nothing.
fn shortest_match(pattern: &str) -> usize {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_or(0, |hir| {
            hir.properties().minimum_len().unwrap_or(usize::MAX)
        })
}

/// Public facts about a rule, for listings and SARIF rule descriptors.
#[derive(Clone, Copy, Debug)]
pub struct RuleInfo<'a> {
    /// The rule id.
    pub id: &'a str,
    /// What it finds.
    pub description: &'a str,
}

/// Builds a [`Scanner`] from the built-in rules plus configured ones.
#[derive(Clone, Debug, Default)]
pub struct ScannerBuilder {
    extra_rules: Vec<RuleDefinition>,
    disabled: Vec<String>,
    without_prefilter: bool,
    redaction_rules: bool,
}

impl ScannerBuilder {
    /// Starts from the built-in rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: RuleDefinition) -> Self {
        self.extra_rules.push(rule);
        self
    }

    /// Turns a built-in or added rule off by id.
    #[must_use]
    pub fn with_disabled_rule(mut self, id: impl Into<String>) -> Self {
        self.disabled.push(id.into());
        self
    }

    /// Adds the rules that only redaction uses (a bare AWS secret access key, which has no
    /// prefix to anchor it): they may mask a random id now and then, which is harmless in
    /// text sent to a model and not acceptable in a scan that blocks a commit.
    #[must_use]
    pub fn with_redaction_rules(mut self) -> Self {
        self.redaction_rules = true;
        self
    }

    /// Runs every rule over the whole text instead of around keyword hits. Same findings,
    /// slower; exists so the benchmark can measure what the prefilter buys.
    #[doc(hidden)]
    #[must_use]
    pub fn without_keyword_prefilter(mut self) -> Self {
        self.without_prefilter = true;
        self
    }

    /// Compiles the rules and the keyword prefilter.
    pub fn build(self) -> Result<Scanner> {
        let mut rules = Vec::new();
        let mut keywords_per_rule: Vec<Vec<String>> = Vec::new();
        // Case-insensitive keywords: the generic rule's and every configured rule's.
        let mut keywords_are_folded = Vec::new();
        let redaction: &[BuiltinRule] = if self.redaction_rules {
            REDACTION_RULES
        } else {
            &[]
        };
        for builtin in BUILTIN_RULES.iter().chain(redaction) {
            if self.disabled.iter().any(|id| id == builtin.id) {
                continue;
            }
            rules.push(Rule::compile(
                builtin.id,
                builtin.description,
                builtin.pattern,
                builtin.min_entropy,
                builtin.visible_prefix,
                builtin.check,
                builtin.window,
            )?);
            keywords_per_rule.push(builtin.keywords.iter().map(|&k| k.to_owned()).collect());
            keywords_are_folded.push(builtin.id == GENERIC_ID);
        }
        for definition in self.extra_rules {
            if self.disabled.contains(&definition.id) {
                continue;
            }
            if rules.iter().any(|rule| rule.id == definition.id) {
                return Err(Error::InvalidRule {
                    rule: definition.id,
                    reason: "a rule with this id already exists",
                });
            }
            let keywords: Vec<String> = definition
                .keywords
                .iter()
                .filter(|keyword| !keyword.is_empty())
                .cloned()
                .collect();
            let window = if keywords.is_empty() {
                Window::Whole
            } else {
                Window::Line
            };
            rules.push(Rule::compile(
                &definition.id,
                &definition.description,
                &definition.regex,
                definition.min_entropy,
                definition.visible_prefix,
                Check::Plain,
                window,
            )?);
            keywords_per_rule.push(keywords);
            keywords_are_folded.push(true);
        }

        let mut patterns: Vec<String> = Vec::new();
        let mut exact_rules: Vec<Vec<usize>> = Vec::new();
        let mut folded = Vec::new();
        let mut whole_rules = Vec::new();
        for (rule_index, keywords) in keywords_per_rule.iter().enumerate() {
            if self.without_prefilter {
                rules[rule_index].window = Window::Whole;
            }
            if rules[rule_index].window == Window::Whole || keywords.is_empty() {
                rules[rule_index].window = Window::Whole;
                whole_rules.push(rule_index);
                continue;
            }
            if keywords_are_folded[rule_index] {
                // A regex, not a case-insensitive Aho-Corasick automaton: the automaton was
                // measured at half the regex's speed here (docs/BENCHMARKS.md).
                let alternation = keywords
                    .iter()
                    .map(|keyword| regex::escape(keyword))
                    .collect::<Vec<_>>()
                    .join("|");
                let regex = RegexBuilder::new(&format!("(?i:{alternation})"))
                    .unicode(false)
                    .build()
                    .map_err(|source| Error::InvalidRegex {
                        rule: rules[rule_index].id.clone(),
                        source: Box::new(source),
                    })?;
                folded.push((regex, rule_index));
                continue;
            }
            for keyword in keywords {
                if let Some(pattern) = patterns.iter().position(|known| known == keyword) {
                    exact_rules[pattern].push(rule_index);
                } else {
                    patterns.push(keyword.clone());
                    exact_rules.push(vec![rule_index]);
                }
            }
        }
        // Leftmost-first (not overlapping) search keeps the literal prefilter; overlapping
        // keywords are still found because the search resumes one byte after each hit.
        let exact = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)?;
        let shortest_match = rules
            .iter()
            .map(|rule| rule.shortest_match)
            .min()
            .unwrap_or(usize::MAX);
        Ok(Scanner {
            rules,
            exact,
            exact_rules,
            folded,
            whole_rules,
            shortest_match,
        })
    }
}

/// A compiled rule set. Cheap to share between threads; build once and reuse.
///
/// ```
/// let scanner = refinery_secrets::Scanner::builtin();
/// let token = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
/// let text = format!("GITHUB_TOKEN={token}\n");
/// let findings = scanner.scan(text.as_bytes());
/// assert_eq!(findings[0].rule_id, "github-pat");
/// assert!(!format!("{findings:?}").contains(&token));
/// ```
pub struct Scanner {
    rules: Vec<Rule>,
    exact: AhoCorasick,
    /// For each pattern of `exact`, the rules it triggers.
    exact_rules: Vec<Vec<usize>>,
    /// A case-insensitive keyword alternation and the one rule it triggers.
    folded: Vec<(Regex, usize)>,
    whole_rules: Vec<usize>,
    /// The fewest bytes any rule's regex can match: shorter text (most strings of a manifest
    /// or an event: keys, kinds, ids) cannot hold a finding and is not searched.
    shortest_match: usize,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Scanner")
            .field(
                "rules",
                &self.rules.iter().map(|rule| &rule.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The state of one [`Scanner::find`] call.
struct Search<'text> {
    text: &'text [u8],
    candidates: Vec<Candidate>,
    /// Per rule, made on its first regex call: most calls run few rules (short strings, few
    /// keyword hits), and making all of them for every call cost more than the search.
    locations: Vec<Option<CaptureLocations>>,
    /// Per rule, where its last window ended: a line is scanned once per rule.
    scanned_until: Vec<usize>,
}

/// A candidate before line numbers are computed.
struct Candidate {
    rule: usize,
    span: Range<usize>,
}

impl Scanner {
    /// The built-in rules, compiled once per process.
    #[expect(
        clippy::expect_used,
        reason = "the built-in rules are constants; every one is compiled by the unit tests"
    )]
    pub fn builtin() -> &'static Scanner {
        static SCANNER: OnceLock<Scanner> = OnceLock::new();
        SCANNER.get_or_init(|| {
            ScannerBuilder::new()
                .build()
                .expect("built-in rules compile")
        })
    }

    /// The built-in rules plus the redaction-only ones
    /// ([`ScannerBuilder::with_redaction_rules`]), compiled once per process: what
    /// [`crate::redact`] and every [`crate::Scrubber`] use.
    #[expect(
        clippy::expect_used,
        reason = "the built-in rules are constants; every one is compiled by the unit tests"
    )]
    pub fn for_redaction() -> &'static Scanner {
        static SCANNER: OnceLock<Scanner> = OnceLock::new();
        SCANNER.get_or_init(|| {
            ScannerBuilder::new()
                .with_redaction_rules()
                .build()
                .expect("built-in rules compile")
        })
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(|rule| RuleInfo {
            id: &rule.id,
            description: &rule.description,
        })
    }

    /// Finds the secrets in `text`, skipping those on a line with a `refinery:allow` comment.
    /// Findings are ordered by position and carry no path.
    pub fn scan(&self, text: &[u8]) -> Vec<Finding> {
        self.find(text, AllowComments::Honour)
    }

    /// Replaces every secret in `text` with `[REDACTED:<rule-id>]` and returns the findings.
    ///
    /// Inline `refinery:allow` comments are *not* honoured here: this is the last check before
    /// text leaves the machine (to a model), and a comment in a model-written file must not be
    /// able to switch it off.
    pub fn redact(&self, text: &str) -> (String, Vec<Finding>) {
        let findings = self.find(text.as_bytes(), AllowComments::Ignore);
        (Self::mask(text, &findings), findings)
    }

    /// [`Scanner::redact`], borrowing `text` when nothing in it is a secret.
    pub(crate) fn redact_cow<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let findings = self.find(text.as_bytes(), AllowComments::Ignore);
        if findings.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(Self::mask(text, &findings))
        }
    }

    /// `text` with each finding's span replaced by `[REDACTED:<rule-id>]`.
    fn mask(text: &str, findings: &[Finding]) -> String {
        let mut output = String::with_capacity(text.len());
        let mut position = 0;
        for finding in findings {
            // Spans are byte ranges; widen them to char boundaries so slicing cannot panic.
            let mut start = finding.span.start.max(position);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = finding.span.end.max(start);
            while !text.is_char_boundary(end) {
                end += 1;
            }
            if start < position {
                start = position;
            }
            output.push_str(&text[position..start]);
            output.push_str("[REDACTED:");
            output.push_str(&finding.rule_id);
            output.push(']');
            position = end;
        }
        output.push_str(&text[position..]);
        output
    }

    fn find(&self, text: &[u8], allow: AllowComments) -> Vec<Finding> {
        if text.len() < self.shortest_match {
            return Vec::new();
        }
        let mut search = Search {
            text,
            candidates: Vec::new(),
            locations: std::iter::repeat_with(|| None)
                .take(self.rules.len())
                .collect(),
            scanned_until: vec![0; self.rules.len()],
        };
        let mut position = 0;
        while let Some(hit) = self.exact.find(Input::new(text).span(position..text.len())) {
            for &rule_index in &self.exact_rules[hit.pattern().as_usize()] {
                self.visit_hit(&mut search, rule_index, hit.start(), hit.end());
            }
            position = hit.start() + 1;
        }
        for (regex, rule_index) in &self.folded {
            for hit in regex.find_iter(text) {
                self.visit_hit(&mut search, *rule_index, hit.start(), hit.end());
            }
        }
        for &rule_index in &self.whole_rules {
            self.run_rule(rule_index, text, 0..text.len(), &mut search);
        }
        self.to_findings(text, search.candidates, allow)
    }

    /// Runs a rule around one keyword hit, unless the hit's window was already scanned.
    fn visit_hit(&self, search: &mut Search<'_>, rule_index: usize, start: usize, end: usize) {
        let rule = &self.rules[rule_index];
        let text = search.text;
        // Most `key`/`token` hits are identifiers and prose; only an assignment right after
        // the keyword can match, and checking that is far cheaper than a regex call.
        if rule.check == Check::Generic && !is_followed_by_assignment(text, end) {
            return;
        }
        let window = match rule.window {
            Window::Line => line_window(text, start, end),
            Window::Block => {
                let line = line_start(text, start);
                line..text.len().min(line + BLOCK_WINDOW)
            }
            Window::Whole => 0..text.len(),
        };
        if window.end <= search.scanned_until[rule_index] {
            return;
        }
        search.scanned_until[rule_index] = window.end;
        self.run_rule(rule_index, text, window, search);
    }

    fn run_rule(
        &self,
        rule_index: usize,
        text: &[u8],
        window: Range<usize>,
        search: &mut Search<'_>,
    ) {
        let rule = &self.rules[rule_index];
        if rule.check == Check::BareAwsSecret {
            // The rule's regex finds maximal runs of the base64 alphabet, 40 or longer, and its
            // check keeps only runs of exactly 40: `base64_runs` finds the same runs looking at
            // about one byte in forty of ordinary text, where the regex's DFA visits each
            // (`base64_runs_are_the_regex_matches` compares the two).
            for run in base64_runs(&text[..window.end], window.start) {
                let value = &text[run.clone()];
                if checks::is_bare_aws_secret(value)
                    && checks::shannon_entropy(value) >= rule.min_entropy
                {
                    search.candidates.push(Candidate {
                        rule: rule_index,
                        span: run,
                    });
                }
            }
            return;
        }
        let locations =
            search.locations[rule_index].get_or_insert_with(|| rule.regex.capture_locations());
        // Slicing the end (not the start) keeps the bytes before the window visible to `\b`.
        let haystack = &text[..window.end];
        let mut position = window.start;
        while position <= haystack.len() {
            let Some(found) = rule.regex.captures_read_at(locations, haystack, position) else {
                break;
            };
            position = if found.end() > found.start() {
                found.end()
            } else {
                found.end() + 1
            };
            let span = rule
                .secret_groups
                .iter()
                .find_map(|&group| locations.get(group))
                .map_or(found.start()..found.end(), |(start, end)| start..end);
            let value = &text[span.clone()];
            if value.is_empty() || !Self::accepts(rule, text, value, locations) {
                continue;
            }
            search.candidates.push(Candidate {
                rule: rule_index,
                span,
            });
        }
    }

    fn accepts(rule: &Rule, text: &[u8], value: &[u8], locations: &CaptureLocations) -> bool {
        let group = |index: Option<usize>| {
            index
                .and_then(|index| locations.get(index))
                .map_or(&b""[..], |(start, end)| &text[start..end])
        };
        let entropy_ok =
            || rule.min_entropy <= 0.0 || checks::shannon_entropy(value) >= rule.min_entropy;
        // The bare-key check starts with a length test, far cheaper than the entropy gate:
        // every hash in a manifest is a candidate run of its regex.
        if rule.check == Check::BareAwsSecret {
            return checks::is_bare_aws_secret(value) && entropy_ok();
        }
        if !entropy_ok() {
            return false;
        }
        match rule.check {
            Check::Plain => !checks::is_placeholder(value),
            Check::Generic => {
                // Quoted values are captured by `secret`, `secret2` and `secret3`.
                let unquoted_end = rule
                    .secret_groups
                    .last()
                    .and_then(|&index| locations.get(index))
                    .map(|(_, end)| end);
                if let Some(end) = unquoted_end {
                    // An unquoted config value ends its line (a comment may follow); anything
                    // else after it (`| None`, `)`, `+ suffix`) means code.
                    let rest = &text[end..];
                    let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    let rest = rest[..line_end].trim_ascii();
                    if !(rest.is_empty() || rest.starts_with(b"#") || rest.starts_with(b"//")) {
                        return false;
                    }
                }
                checks::is_generic_secret(group(rule.name_group), value, unquoted_end.is_none())
            }
            Check::Jwt => checks::is_jwt(value),
            Check::PrivateKey => checks::is_private_key_block(value),
            Check::UrlCredentials => {
                checks::is_url_credential(group(rule.user_group), value, group(rule.host_group))
            }
            Check::BareAwsSecret => checks::is_bare_aws_secret(value),
        }
    }

    fn to_findings(
        &self,
        text: &[u8],
        mut candidates: Vec<Candidate>,
        allow: AllowComments,
    ) -> Vec<Finding> {
        // Specific rules first at equal starts, then drop anything overlapping a kept span.
        candidates.sort_by_key(|candidate| {
            (
                candidate.span.start,
                self.rules[candidate.rule].is_generic,
                std::cmp::Reverse(candidate.span.end),
            )
        });
        let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            if let Some(index) = kept
                .iter()
                .rposition(|other| other.span.end > candidate.span.start)
            {
                let other = &kept[index];
                let candidate_wins =
                    self.rules[other.rule].is_generic && !self.rules[candidate.rule].is_generic;
                if candidate_wins {
                    kept[index] = candidate;
                }
                continue;
            }
            kept.push(candidate);
        }
        kept.sort_by_key(|candidate| candidate.span.start);

        let mut findings = Vec::with_capacity(kept.len());
        let mut line = 1;
        let mut counted_until = 0;
        for candidate in kept {
            line += memchr::memchr_iter(b'\n', &text[counted_until..candidate.span.start]).count();
            counted_until = candidate.span.start;
            let start_of_line = line_start(text, candidate.span.start);
            if allow == AllowComments::Honour && is_allowed(text, start_of_line) {
                continue;
            }
            let rule = &self.rules[candidate.rule];
            let value = &text[candidate.span.clone()];
            findings.push(Finding {
                rule_id: rule.id.clone(),
                path: None,
                commit: None,
                line,
                column: candidate.span.start - start_of_line + 1,
                fingerprint: Fingerprint::compute(&rule.id, value),
                preview: Preview::new(value, rule.visible_prefix),
                span: candidate.span,
            });
        }
        findings
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AllowComments {
    Honour,
    Ignore,
}

/// The marker may sit on the first line of the finding or on the line right before it
/// (for formats without trailing comments, and for key blocks).
fn is_allowed(text: &[u8], start_of_line: usize) -> bool {
    let end_of_line = memchr::memchr(b'\n', &text[start_of_line..])
        .map_or(text.len(), |offset| start_of_line + offset);
    if memchr::memmem::find(&text[start_of_line..end_of_line], ALLOW_MARKER).is_some() {
        return true;
    }
    if start_of_line == 0 {
        return false;
    }
    let previous_start = line_start(text, start_of_line - 1);
    memchr::memmem::find(
        &text[previous_start..start_of_line],
        b"refinery:allow-next-line",
    )
    .is_some()
}

/// After a keyword: up to three more letters (`password`, `tokens`), an optional closing
/// quote and bracket, blanks, then `=`, `:` or `,`. A superset of what `generic-secret`'s regex
/// accepts there.
fn is_followed_by_assignment(text: &[u8], keyword_end: usize) -> bool {
    let rest = &text[keyword_end..text.len().min(keyword_end + 16)];
    let mut index = 0;
    while index < 3 && rest.get(index).is_some_and(u8::is_ascii_alphabetic) {
        index += 1;
    }
    if matches!(rest.get(index), Some(b'"' | b'\'' | b'`')) {
        index += 1;
    }
    if rest.get(index) == Some(&b']') {
        index += 1;
    }
    while matches!(rest.get(index), Some(b' ' | b'\t')) {
        index += 1;
    }
    matches!(rest.get(index), Some(b'=' | b':' | b','))
}

/// The bytes of the bare AWS key's alphabet: `[A-Za-z0-9/+]`.
const BASE64_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let value = byte as u8;
        table[byte] = value.is_ascii_alphanumeric() || value == b'/' || value == b'+';
        byte += 1;
    }
    table
};

/// The shortest run [`base64_runs`] reports: the bare AWS key rule's `{40,}`.
const BASE64_RUN: usize = 40;

/// What the regex `[A-Za-z0-9/+]{40,}` finds searching `text` from `from` on: each maximal run
/// of those bytes at least 40 long (a run may begin at `from` itself). It looks at the last
/// byte of the next 40 first: when that one (or any before it, searching backwards) is not in
/// the alphabet, no run of 40 can start before it, so the search jumps past it.
fn base64_runs(text: &[u8], from: usize) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = from;
    std::iter::from_fn(move || {
        while start + BASE64_RUN <= text.len() {
            let next_forty = &text[start..start + BASE64_RUN];
            if let Some(last_other) = next_forty
                .iter()
                .rposition(|&byte| !BASE64_BYTES[usize::from(byte)])
            {
                start += last_other + 1;
                continue;
            }
            let mut end = start + BASE64_RUN;
            while end < text.len() && BASE64_BYTES[usize::from(text[end])] {
                end += 1;
            }
            let run = start..end;
            // `text[end]` is outside the alphabet (or the text ended).
            start = end + 1;
            return Some(run);
        }
        None
    })
}

fn line_start(text: &[u8], position: usize) -> usize {
    memchr::memrchr(b'\n', &text[..position]).map_or(0, |newline| newline + 1)
}

/// The line around `hit`, including its newline (so a token at the end of a line still sees
/// the boundary after it), clamped around the hit on very long lines.
fn line_window(text: &[u8], hit_start: usize, hit_end: usize) -> Range<usize> {
    let lower = hit_start.saturating_sub(WINDOW_BEFORE);
    let start = memchr::memrchr(b'\n', &text[lower..hit_start])
        .map_or(lower, |newline| lower + newline + 1);
    let upper = text.len().min(hit_end + WINDOW_AFTER);
    let end =
        memchr::memchr(b'\n', &text[hit_end..upper]).map_or(upper, |newline| hit_end + newline + 1);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{BUILTIN_RULES, GENERIC_ID};

    #[test]
    fn every_builtin_rule_compiles() {
        for rule in BUILTIN_RULES.iter().chain(REDACTION_RULES) {
            Rule::compile(
                rule.id,
                rule.description,
                rule.pattern,
                rule.min_entropy,
                rule.visible_prefix,
                rule.check,
                rule.window,
            )
            .unwrap_or_else(|error| panic!("{}: {error}", rule.id));
            assert!(
                rule.window == Window::Whole || !rule.keywords.is_empty(),
                "{} needs keywords",
                rule.id
            );
            if rule.id == GENERIC_ID {
                for keyword in rule.keywords {
                    assert_eq!(*keyword, keyword.to_ascii_lowercase());
                }
            }
        }
        assert!(Scanner::builtin().rules().count() >= 25);
    }

    #[test]
    fn keyword_of_every_rule_occurs_in_its_own_match_shape() {
        // A keyword that a real token never contains would make its rule dead.
        let samples = [
            ("anthropic-api-key", "sk-ant-api03-"),
            ("openai-legacy-key", "T3BlbkFJ"),
            ("google-api-key", "AIza"),
            ("pypi-token", "pypi-AgEIcHlwaS5vcmc"),
        ];
        for (id, sample) in samples {
            let rule = BUILTIN_RULES.iter().find(|rule| rule.id == id).unwrap();
            assert!(
                rule.keywords.iter().any(|keyword| sample.contains(keyword)),
                "{id}"
            );
        }
    }

    #[test]
    fn assignment_gate_table() {
        // (text, where the keyword ends, expected)
        let cases: &[(&[u8], usize, bool)] = &[
            (b"key = 1", 3, true),
            (b"Key\": \"x", 3, true),
            (b"keys: x", 3, true),
            (b"passw", 5, false),
            (b"password=x", 5, true),
            (b"passwd :x", 5, true),
            (b"Key\"] = x", 3, true),
            (b"key, x", 3, true),
            (b"keyboard = x", 3, false),
            (b"token_count = 1", 5, false),
            (b"token in tokens", 5, false),
            (b"key", 3, false),
        ];
        for (text, keyword_end, expected) in cases {
            assert_eq!(
                is_followed_by_assignment(text, *keyword_end),
                *expected,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn base64_runs_are_the_regex_matches() {
        let regex = Regex::new("[A-Za-z0-9/+]{40,}").unwrap();
        let mut rng = crate::testutil::Rng::new(7);
        let mut below = |bound: usize| (rng.next_u64() % bound as u64) as usize;
        // Texts where runs of every length around 40 are common, and every start offset.
        let alphabet = b"aZ09/+ =-\n";
        for round in 0..3000 {
            let length = below(300);
            let text: Vec<u8> = (0..length)
                .map(|_| {
                    if below(25) == 0 {
                        alphabet[6 + below(4)]
                    } else {
                        alphabet[below(6)]
                    }
                })
                .collect();
            let from = if round % 3 == 0 { 0 } else { below(length + 1) };
            let by_regex: Vec<Range<usize>> = regex
                .find_iter(&text[from..])
                .map(|found| found.start() + from..found.end() + from)
                .collect();
            let by_runs: Vec<Range<usize>> = base64_runs(&text, from).collect();
            assert_eq!(by_runs, by_regex, "{}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn line_window_table() {
        let text = b"first line\nsecond key line\nthird";
        let hit = 18; // "key"
        assert_eq!(line_window(text, hit, hit + 3), 11..27);
        let long = vec![b'a'; 5000];
        let window = line_window(&long, 2500, 2503);
        assert_eq!(window, 2500 - WINDOW_BEFORE..2503 + WINDOW_AFTER);
    }

    #[test]
    fn text_shorter_than_every_rule_is_not_searched_and_no_shorter_match_is_lost() {
        let shortest = Scanner::for_redaction().shortest_match;
        // The generic rule's `key=` plus an eight-byte value is the shortest built-in shape.
        assert!((8..=16).contains(&shortest), "{shortest}");
        let value = ["Vq7k", "R2mL"].concat();
        let text = format!("key={value}");
        assert!(text.len() >= shortest);
        assert_eq!(Scanner::for_redaction().redact(&text).1.len(), 1);
        // A configured rule's own minimum counts, however short.
        let tiny = RuleDefinition {
            id: "tiny".to_owned(),
            description: String::new(),
            regex: "zq[0-9]{4}".to_owned(),
            keywords: vec![],
            min_entropy: 0.0,
            visible_prefix: 0,
        };
        let scanner = ScannerBuilder::new().with_rule(tiny).build().unwrap();
        assert_eq!(scanner.shortest_match, 6);
        assert_eq!(scanner.scan(b"zq7305")[0].rule_id, "tiny");
        assert_eq!(shortest_match("a|"), 0);
        assert_eq!(shortest_match("[^\\x00-\\xff]"), usize::MAX);
    }

    #[test]
    fn invalid_extra_rules_are_errors() {
        let bad_regex = RuleDefinition {
            id: "bad".to_owned(),
            description: String::new(),
            regex: "(".to_owned(),
            keywords: vec![],
            min_entropy: 0.0,
            visible_prefix: 0,
        };
        assert!(matches!(
            ScannerBuilder::new().with_rule(bad_regex).build(),
            Err(Error::InvalidRegex { .. })
        ));
        let duplicate = RuleDefinition {
            id: "github-pat".to_owned(),
            description: String::new(),
            regex: "x".to_owned(),
            keywords: vec![],
            min_entropy: 0.0,
            visible_prefix: 0,
        };
        assert!(matches!(
            ScannerBuilder::new().with_rule(duplicate).build(),
            Err(Error::InvalidRule { .. })
        ));
    }
}
