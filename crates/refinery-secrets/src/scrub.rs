//! [`Scrubber`]: the one mask every boundary applies to text that leaves the process or is
//! stored — model requests, agent-CLI input and output, state files, events, terminal output,
//! logs, session ids.
//!
//! It masks in two passes: first every *known value* (each credential this process loaded,
//! from the environment or a `.env` file, whatever its shape) becomes `[REDACTED]`; then
//! anything the built-in and redaction-only rules recognise becomes `[REDACTED:<rule>]`, so a
//! key pasted into a task or written into a file is masked too, though nobody loaded it.
//!
//! There is one scrubber per process ([`process_scrubber`]): loading credentials adds their
//! values to it ([`remember_secret_vars`]), and every writer reads it, so no boundary can use
//! a stale or partial list. The list only grows: a value once known stays masked.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::scanner::Scanner;

/// What a known credential value becomes.
pub const PLACEHOLDER: &str = "[REDACTED]";

/// The start every mask shares (`[REDACTED]` and `[REDACTED:<rule>]`).
pub const PLACEHOLDER_PREFIX: &str = "[REDACTED";

/// Values shorter than this are not masked: too common to be secrets (`true`, `1`, `none`),
/// and replacing them everywhere would garble ordinary text.
const MIN_SECRET_LEN: usize = 8;

/// Texts at least this long that a scrubber found clean are remembered (see [`CleanTexts`]);
/// shorter ones cost less to scan than to look up.
const REMEMBER_CLEAN_FROM: usize = 4 * 1024;
/// At most this many clean texts are remembered per scrubber…
const REMEMBER_CLEAN_TEXTS: usize = 64;
/// …holding at most this many bytes together.
const REMEMBER_CLEAN_BYTES: usize = 4 * 1024 * 1024;
/// Shorter texts found clean are remembered from this length on, in a hash set (see
/// [`CleanTexts`]): the strings of a state file or manifest (paths, hashes, labels) come back
/// every time it is written, and a lookup costs less than a scan from here.
const REMEMBER_SHORT_FROM: usize = 16;
/// At most this many bytes of short clean texts are remembered; past it the set starts over.
const REMEMBER_SHORT_BYTES: usize = 1024 * 1024;

/// Last name parts that say where a secret lives, not what it is.
const WHERE_NOT_WHAT: &[&str] = &[
    "FILE", "FILES", "PATH", "DIR", "URL", "URI", "HOST", "PORT", "ID", "NAME", "USER", "USERNAME",
    "REGION", "TYPE", "MODE", "HELPER", "COMMAND", "CMD", "LENGTH", "SIZE",
];

/// Name parts that mark a secret.
const SECRET_PARTS: &[&str] = &[
    "KEY",
    "KEYS",
    "APIKEY",
    "TOKEN",
    "TOKENS",
    "PAT",
    "CREDENTIAL",
    "CREDENTIALS",
    "PASSPHRASE",
    "PASSWD",
    "PASS",
    "PWD",
];

/// Whether a variable's name marks its value as a secret: a `_`-separated part that is `KEY`,
/// `TOKEN`, `PAT`, `APIKEY`, `CREDENTIAL(S)`, `PASSPHRASE`, `PASSWD` (or plural), or the name
/// contains `SECRET` or `PASSWORD` anywhere. A name ending in a part that names where a secret
/// lives rather than the secret (`_FILE`, `_PATH`, `_DIR`, `_URL`, `_ID`, `_NAME`, …) is not
/// one: `SSH_KEY_PATH` holds a path, `AWS_ACCESS_KEY_ID` a public id (still masked by its
/// pattern).
///
/// ```
/// use refinery_secrets::is_secret_name;
/// assert!(is_secret_name("ANTHROPIC_API_KEY"));
/// assert!(is_secret_name("AWS_SECRET_ACCESS_KEY"));
/// assert!(is_secret_name("github_token"));
/// assert!(is_secret_name("DB_PASSWORD_PROD"));
/// assert!(!is_secret_name("KEYBOARD_LAYOUT"));
/// assert!(!is_secret_name("TOKENIZERS_PARALLELISM"));
/// assert!(!is_secret_name("SSH_KEY_PATH"));
/// ```
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let parts: Vec<&str> = upper.split('_').filter(|part| !part.is_empty()).collect();
    let Some(last) = parts.last() else {
        return false;
    };
    if WHERE_NOT_WHAT.contains(last) {
        return false;
    }
    // `PWD` alone is the shell's working directory, not a password.
    if upper == "PWD" || upper == "OLDPWD" {
        return false;
    }
    upper.contains("SECRET")
        || upper.contains("PASSWORD")
        || parts.iter().any(|part| SECRET_PARTS.contains(part))
}

/// Whether a value is worth masking everywhere: long enough, and not a word that ordinary
/// text is full of (`disabled`, `localhost`): short all-lower-case words are settings, not
/// credentials.
fn is_maskable_value(value: &str) -> bool {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return false;
    }
    let is_short_word = value.len() <= 10 && value.bytes().all(|byte| byte.is_ascii_lowercase());
    let distinct = {
        let mut seen = [false; 256];
        value
            .bytes()
            .filter(|byte| !std::mem::replace(&mut seen[usize::from(*byte)], true))
            .count()
    };
    !is_short_word && distinct > 2
}

/// How [`Scrubber::scrub_json_text`] writes a value again when it has to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonStyle {
    /// One line (journal lines, request bodies).
    Compact,
    /// Indented (state files).
    Pretty,
}

/// Masks known credential values and recognisable secrets in text.
///
/// Cheap to clone (shared). Build one with [`Scrubber::new`] or
/// [`Scrubber::from_vars`]; most callers want the process-wide one, [`process_scrubber`].
///
/// ```
/// use refinery_secrets::Scrubber;
/// let value = ["hunter2", "-correct-horse"].concat();
/// let scrubber = Scrubber::from_vars([("DB_PASSWORD", value.as_str()), ("HOME", "/home/me")]);
/// assert_eq!(scrubber.scrub(&format!("pw {value} at /home/me")), "pw [REDACTED] at /home/me");
/// ```
#[derive(Clone, Default)]
pub struct Scrubber {
    inner: Arc<Known>,
}

struct Known {
    /// Unique per set of values (see [`Scrubber::id`]).
    id: u64,
    /// Longest first; each value also in its JSON-escaped spelling when that differs.
    values: Vec<String>,
    finder: Option<AhoCorasick>,
    /// Large texts these values and the rules found nothing in.
    clean: Mutex<CleanTexts>,
}

/// Where [`Scrubber::id`]s come from.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Default for Known {
    fn default() -> Self {
        Self {
            id: next_id(),
            values: Vec::new(),
            finder: None,
            clean: Mutex::default(),
        }
    }
}

/// The last few large texts a scrubber found clean, kept whole, and the short ones in a set.
///
/// The same text is often scrubbed more than once on its way out: a brief when the engine
/// hands it over and again at the API boundary, every earlier message of a tool-using
/// conversation on each turn. Scrubbing is a pure function of the text and the scrubber's
/// values (the rules are fixed), so a text equal byte for byte to one found clean is clean;
/// comparing costs a memory compare, not a scan. Exact equality decides, not a hash: nothing
/// can collide into a pass. Each remembered text also keeps a fast hash of itself, which only
/// rules candidates out: briefs of one run are often the same length and share their first
/// quarter-megabyte (the unchanged files), so comparing a new one with each remembered one
/// would run deep into every text before finding the difference. A scrubber that learns new
/// values is a new scrubber with an empty list ([`Scrubber::with_values`]), so no verdict
/// outlives the values it was made with.
///
/// Short texts (the strings of JSON state files: a manifest's 300 paths and hashes, the same
/// at every write) go in a hash set instead, where a lookup is one hash and, on a hit, one
/// compare of the whole text; the hash only picks the bucket, so equality still decides.
#[derive(Default)]
struct CleanTexts {
    texts: VecDeque<CleanText>,
    bytes: usize,
    short: std::collections::HashSet<Box<str>>,
    short_bytes: usize,
}

/// A large text found clean, with its [`fingerprint`].
struct CleanText {
    fingerprint: u64,
    text: Box<str>,
}

/// A fast hash of `text`: equal texts have equal fingerprints, so a different fingerprint
/// rules a remembered text out without reading it. Fixed-seeded: it filters, never decides.
fn fingerprint(text: &str) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::quality::FixedState::with_seed(0x7265_6669_6e65_7279).hash_one(text)
}

impl CleanTexts {
    /// Whether `text` (whose [`fingerprint`] is `print`) was found clean; a hit becomes the
    /// most recent entry, so the texts of a round (its briefs, the files of its packs) stay
    /// while older ones leave.
    fn recall(&mut self, text: &str, print: u64) -> bool {
        let Some(index) = self
            .texts
            .iter()
            .position(|known| known.fingerprint == print && *known.text == *text)
        else {
            return false;
        };
        if let Some(hit) = self.texts.remove(index) {
            self.texts.push_back(hit);
        }
        true
    }

    fn recall_short(&self, text: &str) -> bool {
        self.short.contains(text)
    }

    fn insert_short(&mut self, text: &str) {
        if self.short_bytes + text.len() > REMEMBER_SHORT_BYTES {
            self.short.clear();
            self.short_bytes = 0;
        }
        if self.short.insert(text.into()) {
            self.short_bytes += text.len();
        }
    }

    fn insert(&mut self, text: &str, print: u64) {
        if text.len() > REMEMBER_CLEAN_BYTES || self.recall(text, print) {
            return;
        }
        while self.texts.len() >= REMEMBER_CLEAN_TEXTS
            || self.bytes + text.len() > REMEMBER_CLEAN_BYTES
        {
            let Some(oldest) = self.texts.pop_front() else {
                break;
            };
            self.bytes -= oldest.text.len();
        }
        self.bytes += text.len();
        self.texts.push_back(CleanText {
            fingerprint: print,
            text: text.into(),
        });
    }
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Scrubber")
            .field("known_values", &self.inner.values.len())
            .finish()
    }
}

impl Scrubber {
    /// Masks each of `values` (values too short or too common to be secrets are skipped: see
    /// [`is_secret_name`]'s companion rules in the crate docs), plus every pattern.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::default().with_values(values)
    }

    /// Masks the values of those `vars` whose name marks them secret ([`is_secret_name`]).
    pub fn from_vars<'a, I>(vars: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        Self::new(
            vars.into_iter()
                .filter(|(name, _)| is_secret_name(name))
                .map(|(_, value)| value),
        )
    }

    /// This scrubber with `values` known as well.
    #[must_use]
    pub fn with_values<I, S>(&self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = self.inner.values.clone();
        let before = all.len();
        for value in values {
            let value = value.as_ref().trim();
            if !is_maskable_value(value) {
                continue;
            }
            all.push(value.to_owned());
            // Inside a JSON string a value with quotes, backslashes or control characters is
            // spelled differently; state files and requests are JSON.
            if let Ok(quoted) = serde_json::to_string(value) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != value {
                    all.push(escaped.to_owned());
                }
            }
        }
        if all.len() == before {
            return self.clone();
        }
        all.sort_by(|left, right| right.len().cmp(&left.len()).then_with(|| left.cmp(right)));
        all.dedup();
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&all)
            .ok();
        Self {
            inner: Arc::new(Known {
                id: next_id(),
                values: all,
                finder,
                clean: Mutex::default(),
            }),
        }
    }

    /// Identifies what this scrubber masks: clones share it, and a scrubber with other values
    /// never has it (ids are not reused). A cache of scrubbed text keyed by it and by the
    /// text's content address is never stale.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// How many values (spellings included) are masked on top of the patterns.
    pub fn known_values(&self) -> usize {
        self.inner.values.len()
    }

    /// `text` with every known value replaced by `[REDACTED]`, then every secret the rules
    /// recognise replaced by `[REDACTED:<rule>]`. Idempotent: a masked text scrubs to itself.
    pub fn scrub(&self, text: &str) -> String {
        self.scrub_cow(text).into_owned()
    }

    /// [`Scrubber::scrub`], borrowing `text` when nothing in it needed masking.
    ///
    /// A large text equal to one this scrubber recently found clean is not scanned again
    /// (see `CleanTexts`): scrubbing the same brief at several boundaries costs one scan.
    pub fn scrub_cow<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.len() < REMEMBER_SHORT_FROM {
            return self.scan_and_mask(text);
        }
        if text.len() < REMEMBER_CLEAN_FROM {
            if self.clean_texts().recall_short(text) {
                return Cow::Borrowed(text);
            }
            let scrubbed = self.scan_and_mask(text);
            if matches!(scrubbed, Cow::Borrowed(_)) {
                self.clean_texts().insert_short(text);
            }
            return scrubbed;
        }
        // Hashed before the lock: threads scrubbing different briefs hash side by side.
        let print = fingerprint(text);
        if self.clean_texts().recall(text, print) {
            return Cow::Borrowed(text);
        }
        let scrubbed = self.scan_and_mask(text);
        if matches!(scrubbed, Cow::Borrowed(_)) {
            self.clean_texts().insert(text, print);
        }
        scrubbed
    }

    fn clean_texts(&self) -> std::sync::MutexGuard<'_, CleanTexts> {
        self.inner
            .clean
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn scan_and_mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_values(text) {
            Cow::Borrowed(text) => Scanner::for_redaction().redact_cow(text),
            Cow::Owned(masked) => {
                Cow::Owned(Scanner::for_redaction().redact_cow(&masked).into_owned())
            }
        }
    }

    /// [`Scrubber::scrub`] for bytes: text that is not UTF-8 gets the known values masked
    /// (the rules work on text).
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.scrub_cow(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            },
            Err(_) => match &self.inner.finder {
                Some(finder) if finder.is_match(bytes) => {
                    let replacements = vec![PLACEHOLDER.as_bytes(); self.inner.values.len()];
                    Cow::Owned(finder.replace_all_bytes(bytes, &replacements))
                }
                _ => Cow::Borrowed(bytes),
            },
        }
    }

    /// Whether scrubbing would change `text`: it holds a known value or a recognisable secret.
    pub fn finds_secret(&self, text: &str) -> bool {
        matches!(self.scrub_cow(text), Cow::Owned(_))
    }

    /// Scrubs every string of a JSON value in place, object keys included.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                if let Cow::Owned(clean) = self.scrub_cow(text) {
                    *text = clean;
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.scrub_json(item);
                }
            }
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.scrub_json(&mut item);
                    map.insert(self.scrub(&key), item);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }

    /// Scrubs JSON text (a state file, a journal line, an event) string by string: every
    /// string literal, object keys included, is decoded, scrubbed as the text it holds (so a
    /// rule that needs a line end sees real line ends, not `\n` escapes), and written back
    /// encoded; everything else, field order and layout included, stays as it was. Text that
    /// is not JSON is scrubbed as plain text. `style` is how a value is written should the
    /// text need re-encoding as a whole (it never does for text serde_json wrote).
    pub fn scrub_json_text<'a>(&self, json: &'a str, style: JsonStyle) -> Cow<'a, str> {
        if serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
            return self.scrub_cow(json);
        }
        let mut out: Option<String> = None;
        let mut copied = 0;
        let bytes = json.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] != b'"' {
                index += 1;
                continue;
            }
            let start = index;
            index += 1;
            while index < bytes.len() && bytes[index] != b'"' {
                index += if bytes[index] == b'\\' { 2 } else { 1 };
            }
            index += 1;
            let literal = &json[start..index.min(json.len())];
            // A literal without escapes holds exactly its bytes between the quotes (most do:
            // keys, paths, hashes), so it needs no decoding.
            let decoded = match literal.as_bytes() {
                [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
                    Cow::Borrowed(&literal[1..literal.len() - 1])
                }
                _ => match serde_json::from_str::<String>(literal) {
                    Ok(decoded) => Cow::Owned(decoded),
                    Err(_) => continue,
                },
            };
            if let Cow::Owned(clean) = self.scrub_cow(&decoded) {
                let buffer = out.get_or_insert_with(|| String::with_capacity(json.len()));
                buffer.push_str(&json[copied..start]);
                buffer
                    .push_str(&serde_json::to_string(&clean).unwrap_or_else(|_| "\"\"".to_owned()));
                copied = index.min(json.len());
            }
        }
        let Some(mut buffer) = out else {
            return Cow::Borrowed(json);
        };
        buffer.push_str(&json[copied..]);
        if serde_json::from_str::<serde::de::IgnoredAny>(&buffer).is_ok() {
            return Cow::Owned(buffer);
        }
        // Unreachable for text serde_json wrote; kept so the result is always JSON.
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
            return Cow::Owned(buffer);
        };
        self.scrub_json(&mut value);
        let written = match style {
            JsonStyle::Compact => serde_json::to_string(&value),
            JsonStyle::Pretty => serde_json::to_string_pretty(&value),
        };
        Cow::Owned(written.unwrap_or(buffer))
    }

    fn mask_values<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.inner.finder {
            Some(finder) if finder.is_match(text) => {
                let replacements = vec![PLACEHOLDER; self.inner.values.len()];
                Cow::Owned(finder.replace_all(text, &replacements))
            }
            _ => Cow::Borrowed(text),
        }
    }
}

/// The process-wide scrubber: every value [`remember_secrets`] was given, plus the patterns.
static PROCESS: RwLock<Option<Scrubber>> = RwLock::new(None);

/// The scrubber of this process: all values remembered so far, plus every pattern. Cheap;
/// call it where text leaves, not once at start-up, so values loaded later are masked too.
pub fn process_scrubber() -> Scrubber {
    // One scrubber (and so one list of clean texts) until a value is remembered.
    static NOTHING_REMEMBERED: LazyLock<Scrubber> = LazyLock::new(Scrubber::default);
    PROCESS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| NOTHING_REMEMBERED.clone())
}

/// Adds `values` to the process scrubber (skipping values too short or too common to mask).
pub fn remember_secrets<I, S>(values: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut slot = PROCESS.write().unwrap_or_else(PoisonError::into_inner);
    let current = slot.take().unwrap_or_default();
    *slot = Some(current.with_values(values));
}

/// Adds the values of those `vars` whose names mark them secret ([`is_secret_name`]) to the
/// process scrubber: call it with the process environment and with each `.env` file read.
pub fn remember_secret_vars<'a, I>(vars: I)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    remember_secrets(
        vars.into_iter()
            .filter(|(name, _)| is_secret_name(name))
            .map(|(_, value)| value),
    );
}

/// Scrubs `text` with the process scrubber.
pub fn scrub(text: &str) -> String {
    process_scrubber().scrub(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        let secret = [
            "ANTHROPIC_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "GITHUB_TOKEN",
            "GH_PAT",
            "NPM_TOKENS",
            "MY_SECRET",
            "client_secret",
            "SECRET",
            "DB_PASSWORD",
            "PGPASSWORD",
            "MYSQL_PWD",
            "SMTP_PASS",
            "GOOGLE_APPLICATION_CREDENTIALS_JSON",
            "SOME_APIKEY",
            "KEY",
            "SSH_PASSPHRASE",
        ];
        let plain = [
            "HOME",
            "PATH",
            "PWD",
            "OLDPWD",
            "KEYBOARD",
            "TOKENIZERS_PARALLELISM",
            "SSH_KEY_PATH",
            "AWS_ACCESS_KEY_ID",
            "GNUPG_KEY_FILE",
            "ANTHROPIC_BASE_URL",
            "KEY_NAME",
            "",
            "_",
        ];
        for name in secret {
            assert!(is_secret_name(name), "{name}");
        }
        for name in plain {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn values_are_masked_longest_first_and_common_words_are_not() {
        let long = ["abc", "defghij-0123456789"].concat();
        let inner = "defghij-0123456789";
        let scrubber = Scrubber::new([inner, long.as_str(), "short", "disabled", "aaaaaaaaaaaa"]);
        assert_eq!(
            scrubber.scrub(&format!("{long} {inner} disabled short aaaaaaaaaaaa")),
            "[REDACTED] [REDACTED] disabled short aaaaaaaaaaaa"
        );
        assert_eq!(scrubber.known_values(), 2);
        // Idempotent, and clean text is borrowed.
        let once = scrubber.scrub(&long);
        assert_eq!(scrubber.scrub(&once), once);
        assert!(matches!(
            scrubber.scrub_cow("nothing here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_text_found_clean_is_trusted_only_by_the_same_values_and_only_when_equal() {
        let value = ["Vq7kR2", "mLw9xTn4"].concat();
        let clean = "lorem ipsum dolor sit amet\n".repeat(400);
        assert!(clean.len() >= REMEMBER_CLEAN_FROM);
        let with_value = format!("{}{value}", &clean[value.len()..]);
        assert_eq!(with_value.len(), clean.len());
        let scrubber = Scrubber::new(["unrelated-credential-0001"]);
        assert!(matches!(scrubber.scrub_cow(&clean), Cow::Borrowed(_)));
        assert!(
            scrubber
                .inner
                .clean
                .lock()
                .unwrap()
                .recall(&clean, fingerprint(&clean))
        );
        // Remembered: borrowed again. A text of the same length is still scanned.
        assert!(matches!(scrubber.scrub_cow(&clean), Cow::Borrowed(_)));
        let learned = scrubber.with_values([value.as_str()]);
        assert!(learned.scrub(&with_value).ends_with(PLACEHOLDER));
        // A scrubber that learned a value the remembered text holds scans it again.
        let text_with_value = format!("{clean}{value}");
        assert!(matches!(
            scrubber.scrub_cow(&text_with_value),
            Cow::Borrowed(_)
        ));
        let learned = scrubber.with_values([value.as_str()]);
        assert!(learned.scrub(&text_with_value).ends_with(PLACEHOLDER));
        // A key the rules know, planted in a text of a remembered text's length, is masked.
        let key = format!("AKIA{}", "IOSFODNN7EXAMPLF");
        let planted = format!("{}aws = {key}\n", &clean[..clean.len() - key.len() - 7]);
        assert_eq!(planted.len(), clean.len());
        assert!(!scrubber.scrub(&planted).contains(&key));
        // The list stays bounded.
        for index in 0..REMEMBER_CLEAN_TEXTS + 5 {
            scrubber.scrub_cow(&format!("{index}{clean}"));
        }
        let remembered = scrubber.inner.clean.lock().unwrap();
        assert_eq!(remembered.texts.len(), REMEMBER_CLEAN_TEXTS);
        assert!(remembered.bytes <= REMEMBER_CLEAN_BYTES);
    }

    #[test]
    fn a_short_text_found_clean_is_remembered_only_by_its_scrubber_and_the_set_is_bounded() {
        let path = "src/pages/page_000.html";
        assert!((REMEMBER_SHORT_FROM..REMEMBER_CLEAN_FROM).contains(&path.len()));
        let scrubber = Scrubber::new(["unrelated-credential-0001"]);
        assert!(matches!(scrubber.scrub_cow(path), Cow::Borrowed(_)));
        assert!(scrubber.inner.clean.lock().unwrap().recall_short(path));
        assert!(matches!(scrubber.scrub_cow(path), Cow::Borrowed(_)));
        // A value learned later: the new scrubber has no memory of the text being clean.
        let learned = scrubber.with_values(["page_000"]);
        assert_eq!(learned.scrub(path), format!("src/pages/{PLACEHOLDER}.html"));
        // A short text holding a secret is masked every time and never remembered.
        let key = format!("ghp_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
        let line = format!("token {key}");
        assert!(line.len() < REMEMBER_CLEAN_FROM);
        for _ in 0..2 {
            assert!(!scrubber.scrub(&line).contains(&key));
        }
        assert!(!scrubber.inner.clean.lock().unwrap().recall_short(&line));
        // Bounded: past the byte cap the set starts over.
        for index in 0..REMEMBER_SHORT_BYTES / 32 + 10 {
            scrubber.scrub_cow(&format!("plain text number {index:>12}"));
        }
        let remembered = scrubber.inner.clean.lock().unwrap();
        assert!(remembered.short_bytes <= REMEMBER_SHORT_BYTES);
        assert!(!remembered.short.is_empty());
    }

    #[test]
    fn json_spellings_and_non_utf8_bytes_are_masked() {
        let value = ["pa\\ss", "\"word-", "0123"].concat();
        let scrubber = Scrubber::new([value.as_str()]);
        let json = serde_json::to_string(&serde_json::json!({"v": format!("x{value}y")})).unwrap();
        let clean = scrubber.scrub_json_text(&json, JsonStyle::Compact);
        assert!(!clean.contains("word-0123"), "{clean}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&clean).unwrap()["v"],
            "x[REDACTED]y"
        );
        let mut bytes = vec![0xff_u8, 0xfe];
        bytes.extend_from_slice(value.as_bytes());
        let masked = scrubber.scrub_bytes(&bytes);
        assert_eq!(
            &masked[..],
            [&[0xff_u8, 0xfe][..], PLACEHOLDER.as_bytes()].concat()
        );
    }

    #[test]
    fn json_strings_are_scrubbed_as_the_text_they_hold() {
        // A password assignment on a line of its own inside a JSON string: the generic rule
        // needs the line to end after the value, which it does in the decoded text (in the
        // serialised text the line goes on as `\n…`).
        let value = ["Vq7", "kR2mLw9xTn4bPz"].concat();
        let text = format!("notes:\nDB_PASSWORD={value}\nmore notes");
        let json = format!(
            "{{\n  \"z\": 1,\n  \"a\": {},\n  \"k\": [true]\n}}",
            serde_json::to_string(&text).unwrap()
        );
        let clean = Scrubber::default().scrub_json_text(&json, JsonStyle::Pretty);
        assert!(!clean.contains(&value), "{clean}");
        // Field order and layout are kept.
        assert!(
            clean.find("\"z\"").unwrap() < clean.find("\"a\"").unwrap(),
            "{clean}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(
            parsed["a"],
            "notes:\nDB_PASSWORD=[REDACTED:generic-secret]\nmore notes"
        );
        // Not JSON: scrubbed as text.
        let plain = format!("DB_PASSWORD={value}");
        assert!(
            !Scrubber::default()
                .scrub_json_text(&plain, JsonStyle::Compact)
                .contains(&value)
        );
    }
}
