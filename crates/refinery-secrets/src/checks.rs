//! Decisions about a captured value: is it a placeholder, is it random enough, does it have
//! the structure its rule promises. Pure functions over bytes, table-tested below.

/// Shannon entropy of `value` in bits per byte.
pub(crate) fn shannon_entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0_u32; 256];
    for &byte in value {
        counts[usize::from(byte)] += 1;
    }
    let length = value.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let probability = f64::from(count) / length;
            -probability * probability.log2()
        })
        .sum()
}

/// Words that only documentation, templates and tests put where a secret goes. Four-letter
/// words are only listed with a separator after them: a random 40-character token contains
/// "your" or "fake" about once in 25,000 keys, which is more often than we want to miss one.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "xxxxx",
    "your_",
    "your-",
    "your ",
    "yourapi",
    "yourkey",
    "yoursecret",
    "yourtoken",
    "yourpass",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "redacted",
    "dummy",
    "sample",
    "insert_",
    "insert-",
    "replace_",
    "replace-",
    "replaceme",
    "fake_",
    "fake-",
    "fakekey",
    "faketoken",
    "notreal",
    "not_real",
    "not-a-real",
    "...",
    "***",
    "\u{2026}",
    "\u{2022}",
];

/// Is `run` (a maximal run of base64 characters) shaped like an AWS secret access key: exactly
/// 40 characters, no padding, upper case, lower case and a digit, and not a placeholder.
///
/// Git object ids (40 lower-case hex digits) fail the case test; base64 blobs, certificate
/// lines and hashes in base64 (44, 64, 76, 88 characters) fail the length test; CamelCase
/// identifiers fail the word test (in 100,000 random keys, 0.1% have 60% of their characters
/// in word-like runs; CamelCase names made of dictionary words have at least 78%).
pub(crate) fn is_bare_aws_secret(run: &[u8]) -> bool {
    run.len() == 40
        && !run.contains(&b'=')
        && run.iter().any(u8::is_ascii_uppercase)
        && run.iter().any(u8::is_ascii_lowercase)
        && run.iter().any(u8::is_ascii_digit)
        && word_share(run) < 0.6
        && !is_placeholder(run)
}

/// The share of `text` in word-like runs: an optional capital and three or more lower-case
/// letters (`Header`, `menu`).
fn word_share(text: &[u8]) -> f64 {
    let mut in_words = 0;
    let mut index = 0;
    while index < text.len() {
        let start = index;
        if text[index].is_ascii_uppercase() {
            index += 1;
        }
        let lower_start = index;
        while index < text.len() && text[index].is_ascii_lowercase() {
            index += 1;
        }
        if index - lower_start >= 3 {
            in_words += index - start;
        }
        if index == start {
            index += 1;
        }
    }
    in_words as f64 / text.len().max(1) as f64
}

/// Is `value` a placeholder rather than a secret: `xxxx`, `EXAMPLE`, `your-key-here`,
/// `${VAR}`, `<token>`, `{{ .Values.token }}`, or a run of repeated or sequential characters?
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|word| memchr::memmem::find(&lower, word.as_bytes()).is_some())
    {
        return true;
    }
    if is_template_reference(value) {
        return true;
    }
    has_repeated_run(value, 6) || has_sequential_run(&lower, 6) || distinct_bytes(value) <= 4
}

/// `${VAR}`, `$VAR`, `<VAR>`, `{{ var }}`, `%(var)s`, `$(cmd)`, `%VAR%`.
fn is_template_reference(value: &[u8]) -> bool {
    let contains = |needle: &[u8]| memchr::memmem::find(value, needle).is_some();
    if contains(b"${") || contains(b"{{") || contains(b"}}") || contains(b"%(") || contains(b"$(") {
        return true;
    }
    match (value.first(), value.last()) {
        (Some(b'<'), Some(b'>')) | (Some(b'%'), Some(b'%')) | (Some(b'{'), Some(b'}')) => true,
        (Some(b'$'), _) => value[1..]
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_'),
        _ => false,
    }
}

fn has_repeated_run(value: &[u8], run: usize) -> bool {
    value
        .windows(run)
        .any(|window| window.iter().all(|&byte| byte == window[0]))
}

/// `abcdef`, `123456`, `fedcba`: ascending or descending by one, `run` long.
fn has_sequential_run(value: &[u8], run: usize) -> bool {
    let ascending = |window: &[u8]| {
        window
            .windows(2)
            .all(|pair| pair[1] == pair[0].wrapping_add(1))
    };
    let descending = |window: &[u8]| {
        window
            .windows(2)
            .all(|pair| pair[1] == pair[0].wrapping_sub(1))
    };
    value.windows(run).any(|window| {
        window.iter().all(u8::is_ascii_alphanumeric) && (ascending(window) || descending(window))
    })
}

fn distinct_bytes(value: &[u8]) -> usize {
    let mut seen = [false; 256];
    let mut count = 0;
    for &byte in value {
        if !seen[usize::from(byte)] {
            seen[usize::from(byte)] = true;
            count += 1;
        }
    }
    count
}

/// Identifier prefixes that name something other than a credential even though the name ends
/// in `key` or `token` (database keys, pagination tokens, public keys, LLM token counts).
const NON_SECRET_NAME_PARTS: &[&str] = &[
    "public",
    "publishable",
    "primary",
    "foreign",
    "sort",
    "partition",
    "cache",
    "idempotency",
    "lookup",
    "dict",
    "index",
    "unique",
    "composite",
    "next",
    "page",
    "continuation",
    "csrf",
    "max",
    "min",
    "num",
    "count",
    "hash",
    "object",
    "translation",
    "i18n",
    "message",
    "registry",
    "sitekey",
    "site_key",
    "recaptcha",
    // Field names and pointers (`result_key`, `output_token`, `s3_key`): names of keys, not keys.
    "result",
    "output",
    "input",
    "limit",
    "field",
    "column",
    "attribute",
    "s3",
];

/// A value that names itself (`export-token-ab12`, `generatedwebdavpassword1`, `Ec2KeyName`) is
/// a label or an example, not a credential.
const SELF_NAMING_WORDS: &[&str] = &["password", "passwd", "token", "secret", "key"];

/// The `generic-secret` rule's judgment of a `name = value` pair. `quoted` tells whether the
/// value sat in quotes: unquoted values in code are usually expressions, not literals.
pub(crate) fn is_generic_secret(name: &[u8], value: &[u8], quoted: bool) -> bool {
    let name = name.to_ascii_lowercase();
    if NON_SECRET_NAME_PARTS
        .iter()
        .any(|part| memchr::memmem::find(&name, part.as_bytes()).is_some())
    {
        return false;
    }
    // The regex leaves lengths open (bounded repetitions make its automaton slow).
    if !(8..=256).contains(&value.len()) || value.iter().any(u8::is_ascii_whitespace) {
        return false;
    }
    if is_placeholder(value) || looks_like_uuid(value) {
        return false;
    }
    if value.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Letters only: identifiers, words and camelCase names (`getPasswordFromVault`).
    if value.iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    if is_words_and_numbers(value) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let contains = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
    if SELF_NAMING_WORDS
        .iter()
        .any(|word| contains(word.as_bytes()))
    {
        return false;
    }
    // Resource names (`arn:aws:kms:...`), escaped or entity-encoded text (`\xe5`, `&lt;`) and
    // Windows paths (`HKLM\Software\Python`) are not literal credentials.
    if lower.starts_with(b"arn:")
        || contains(b"\\x")
        || contains(b"&lt;")
        || contains(b"&#")
        || memchr::memchr_iter(b'\\', value).nth(1).is_some()
    {
        return false;
    }
    if contains(b"://") || value.starts_with(b"/") || value.starts_with(b"./") {
        return false;
    }
    if [
        ".pem", ".key", ".json", ".txt", ".yaml", ".yml", ".env", ".p12",
    ]
    .iter()
    .any(|extension| lower.ends_with(extension.as_bytes()))
    {
        return false;
    }
    if [
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2",
        "-----begin",
        "sha256:",
        "sha512-",
        "sha1-",
    ]
    .iter()
    .any(|prefix| lower.starts_with(prefix.as_bytes()))
    {
        return false;
    }
    // Interpolation and format strings: `f"HTTP_{key}"`, `"%s/PKG-INFO"`.
    let is_format_directive =
        |pair: &[u8]| pair[0] == b'%' && matches!(pair[1], b's' | b'd' | b'r' | b'i' | b'f' | b'(');
    if value.iter().any(|byte| matches!(byte, b'{' | b'}'))
        || memchr::memmem::find(value, b"::").is_some()
        || value.windows(2).any(is_format_directive)
    {
        return false;
    }
    if !quoted && (looks_like_code(value) || value.ends_with(b":") || looks_like_type_name(value)) {
        return false;
    }
    // Hex shorter than 128 bits is an id or a short hash, not a key.
    if value.iter().all(u8::is_ascii_hexdigit) && value.len() < 32 {
        return false;
    }
    has_secret_composition(value)
}

/// `X25519PrivateKey`, `OAuth2Token`: CamelCase names, as in type annotations
/// (`key: X25519PrivateKey`). Random strings rarely have two capitalised words and a majority
/// of lower-case letters at once.
fn looks_like_type_name(value: &[u8]) -> bool {
    if !value.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let lower = value
        .iter()
        .filter(|byte| byte.is_ascii_lowercase())
        .count();
    let word_starts = value
        .windows(3)
        .filter(|window| {
            window[0].is_ascii_uppercase()
                && window[1].is_ascii_lowercase()
                && window[2].is_ascii_lowercase()
        })
        .count();
    word_starts >= 2 && lower * 2 >= value.len()
}

/// Random material mixes character classes: three of lower, upper, digit, symbol (generated
/// passwords), or letters and digits over at least 16 characters (hex and base32 keys).
/// Identifiers, words and type names do not.
fn has_secret_composition(value: &[u8]) -> bool {
    let lower = value.iter().any(u8::is_ascii_lowercase);
    let upper = value.iter().any(u8::is_ascii_uppercase);
    let digit = value.iter().any(u8::is_ascii_digit);
    // Identifier punctuation does not count: `CVSS2_VECTOR`, `@creationTime`.
    let symbol = value
        .iter()
        .any(|byte| !byte.is_ascii_alphanumeric() && !matches!(byte, b'_' | b'-' | b'.' | b'@'));
    let classes = [lower, upper, digit, symbol]
        .iter()
        .filter(|&&present| present)
        .count();
    classes >= 3 || (digit && (lower || upper) && value.len() >= 16)
}

/// Unquoted expressions: calls, indexing, member access (`os.environ[`, `self.token`,
/// `config.get(`), references (`&key`, `*ptr`).
fn looks_like_code(value: &[u8]) -> bool {
    if value
        .iter()
        .any(|byte| matches!(byte, b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'<' | b'>'))
    {
        return true;
    }
    if matches!(value.first(), Some(b'&' | b'*' | b'@' | b'#' | b'!')) {
        return true;
    }
    // A dotted path of identifiers: `settings.api_key`.
    value.contains(&b'.')
        && value.split(|&byte| byte == b'.').all(|part| {
            part.first()
                .is_some_and(|first| first.is_ascii_alphabetic() || *first == b'_')
                && part
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_' || *byte == b'$')
        })
}

/// `my-prod-token-2`, `api_key_v2`, `db.password.123`: separator-joined words and numbers, the
/// shape of names and labels rather than random material.
fn is_words_and_numbers(value: &[u8]) -> bool {
    let parts: Vec<&[u8]> = value
        .split(|&byte| matches!(byte, b'_' | b'-' | b'.' | b':' | b'/'))
        .filter(|part| !part.is_empty())
        .collect();
    // A part is a word, a number, or a word with a version number (`v2`, `sha256`).
    let is_word = |part: &&[u8]| {
        let letters = part
            .iter()
            .take_while(|byte| byte.is_ascii_alphabetic())
            .count();
        part[letters..].iter().all(u8::is_ascii_digit)
    };
    parts.len() >= 2 && parts.iter().all(is_word)
}

fn looks_like_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// A signed JWT: header and payload decode to JSON objects and the header names its `alg`.
pub(crate) fn is_jwt(value: &[u8]) -> bool {
    let mut parts = value.split(|&byte| byte == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Some(header), Some(payload)) = (base64url_decode(header), base64url_decode(payload))
    else {
        return false;
    };
    let is_object = |json: &[u8]| json.trim_ascii_start().first() == Some(&b'{');
    is_object(&header)
        && is_object(&payload)
        && memchr::memmem::find(&header, b"\"alg\"").is_some()
        && !is_placeholder_jwt_payload(&payload)
}

/// Tutorials' tokens carry tutorial claims; a payload naming an example domain is not a leak.
fn is_placeholder_jwt_payload(payload: &[u8]) -> bool {
    let lower = payload.to_ascii_lowercase();
    ["example.com", "example.org", "\"your-", "placeholder"]
        .iter()
        .any(|needle| memchr::memmem::find(&lower, needle.as_bytes()).is_some())
}

/// Decodes unpadded base64url (padding tolerated). Returns `None` on any invalid byte.
pub(crate) fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    let mut output = Vec::with_capacity(input.len() * 3 / 4);
    let mut buffer = 0_u32;
    let mut bits = 0_u32;
    for &byte in input {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            output.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(output)
}

/// The body of a private key block must look like key material: many distinct base64
/// characters and no long runs (a header over `AAAA...` or `xxxx...` is a placeholder).
pub(crate) fn is_private_key_block(block: &[u8]) -> bool {
    // Keys inside JSON or code strings use escaped newlines.
    let unescaped = String::from_utf8_lossy(block)
        .replace("\\r", "")
        .replace("\\n", "\n");
    let body: Vec<u8> = unescaped
        .as_bytes()
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.contains(&b'-') && !line.contains(&b':'))
        .flat_map(|line| line.iter().copied())
        .filter(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/'))
        .collect();
    body.len() >= 64
        && distinct_bytes(&body) >= 32
        && !has_repeated_run(&body, 8)
        && memchr::memmem::find(&body.to_ascii_lowercase(), b"example").is_none()
}

/// Hosts reserved for documentation (RFC 2606) and words that stand for a host in templates.
const DOCUMENTATION_HOSTS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "example",
    "host",
    "hostname",
    "server",
    "domain.com",
    "your-host",
    "yourhost",
];

/// Passwords that documentation puts in connection strings.
const DOCUMENTATION_PASSWORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "pw",
    "secret",
    "mypassword",
    "mysecretpassword",
    "yourpassword",
    "user",
    "username",
    "token",
];

/// `scheme://user:password@host`: is this a real credential?
pub(crate) fn is_url_credential(user: &[u8], password: &[u8], host: &[u8]) -> bool {
    let lower_password = password.to_ascii_lowercase();
    let lower_host = host.to_ascii_lowercase();
    if DOCUMENTATION_PASSWORDS
        .iter()
        .any(|word| lower_password == word.as_bytes())
    {
        return false;
    }
    if DOCUMENTATION_HOSTS.iter().any(|doc_host| {
        lower_host == doc_host.as_bytes() || lower_host.ends_with(format!(".{doc_host}").as_bytes())
    }) {
        return false;
    }
    if password.eq_ignore_ascii_case(user) || is_placeholder(password) {
        return false;
    }
    // `%s`, `$PASSWORD`, `{password}`, `:****@`.
    !password
        .iter()
        .any(|byte| matches!(byte, b'%' | b'$' | b'{' | b'}' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ALNUM, random_string};

    #[test]
    fn bare_aws_secret_table() {
        let cases: &[(&str, bool)] = &[
            // Split so this file holds no key-shaped run of its own.
            (
                concat!("q7Rk2Lw9Tn4Vb8Xc3Hy6", "Md1Pf5Sg0JaKu2E/h+Zx"),
                true,
            ),
            ("q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E/h+Z", false),
            ("q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E/h+Zxy", false),
            ("q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E/h+==", false),
            ("0123456789abcdef0123456789abcdef01234567", false),
            ("ThisIsAVeryLongCamelCaseIdentifierName12", false),
            ("qRkLwTnVbXcHyMdPfSgJaKuEhZqRkLwTnVbXcHyM", false),
            ("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12", false),
        ];
        for (run, expected) in cases {
            assert_eq!(is_bare_aws_secret(run.as_bytes()), *expected, "{run}");
        }
        assert!(word_share(b"HeaderMenu") > 0.99);
        assert!(word_share(b"q7Rk2Lw9") < 0.01);
    }

    #[test]
    fn entropy_table() {
        let cases: &[(&[u8], f64, f64)] = &[
            (b"", 0.0, 0.0),
            (b"aaaaaaaa", 0.0, 0.0),
            (b"abababab", 1.0, 1.0),
            (b"abcdefgh", 3.0, 3.0),
        ];
        for (value, low, high) in cases {
            let entropy = shannon_entropy(value);
            assert!((*low..=*high).contains(&entropy), "{value:?}: {entropy}");
        }
        let random = random_string(1, ALNUM, 40);
        assert!(shannon_entropy(random.as_bytes()) > 4.5);
    }

    #[test]
    fn placeholder_table() {
        let random = random_string(2, ALNUM, 32);
        let cases: Vec<(String, bool)> = vec![
            (random.clone(), false),
            (format!("{random}EXAMPLE"), true),
            ("x".repeat(32), true),
            (format!("your-{}-here", "api-key"), true),
            (format!("${{{}}}", "OPENAI_API_KEY"), true),
            ("$OPENAI_API_KEY".to_owned(), true),
            ("<your token>".to_owned(), true),
            ("{{ .Values.token }}".to_owned(), true),
            ("%(password)s".to_owned(), true),
            (format!("{}0123456789", &random[..8]), true),
            (format!("{}ZYXWVU", &random[..8]), true),
            (format!("{}AAAAAAAA", &random[..8]), true),
            ("abababababababab".to_owned(), true),
            ("sk-...".to_owned(), true),
            ("********".to_owned(), true),
        ];
        for (value, expected) in cases {
            assert_eq!(is_placeholder(value.as_bytes()), expected, "{value}");
        }
    }

    #[test]
    fn generic_table() {
        let random = random_string(3, ALNUM, 24);
        let symbols = format!("{}!#{}", &random[..8], &random[8..16]);
        // (name, value, quoted, expected)
        let cases: Vec<(&str, String, bool, bool)> = vec![
            ("api_key", random.clone(), true, true),
            ("db_password", symbols.clone(), true, true),
            ("API_KEY", random.clone(), false, true),
            ("public_key", random.clone(), true, false),
            ("primary_key", random.clone(), true, false),
            ("max_tokens", "4096000000".to_owned(), false, false),
            ("password", "getPasswordFromVault".to_owned(), true, false),
            ("token", "os.environ[\"TOKEN\"]".to_owned(), false, false),
            ("token", "settings.github_token".to_owned(), false, false),
            ("token", "my-prod-token-2".to_owned(), true, false),
            (
                "key",
                "550e8400-e29b-41d4-a716-446655440000".to_owned(),
                true,
                false,
            ),
            ("secret", "Please set a secret".to_owned(), true, false),
            (
                "key_file",
                "/etc/ssl/private/server.pem".to_owned(),
                true,
                false,
            ),
            ("password", "${DB_PASSWORD}".to_owned(), true, false),
            ("password", "changeme123".to_owned(), true, false),
            ("key", "X25519PrivateKey".to_owned(), false, false),
            ("token", "OAuth2Token".to_owned(), false, false),
            ("key", "CVSS2_VECTOR".to_owned(), true, false),
            ("keys", "V2_REMOVED_KEYS".to_owned(), false, false),
            ("key", "@creationTime".to_owned(), true, false),
            ("ApiKey", "48205d4ffd7feba3".to_owned(), true, false),
            ("key", "HTTP_{key}".to_owned(), true, false),
            (
                "LocalKey",
                "struct@crate::task::LocalKey".to_owned(),
                false,
                false,
            ),
            (
                "ExportToken",
                "export-token-cu4lg26ofcziixny".to_owned(),
                true,
                false,
            ),
            ("dest_key", "Ec2KeyName".to_owned(), true, false),
            (
                "encryptionKey",
                "arn:aws:kms:us-west-2:111122223333:alias/x".to_owned(),
                true,
                false,
            ),
            ("result_key", "PublicIpv4Pools".to_owned(), true, false),
            ("key", "\\xe5\\xf6\\xf6&lt;&gt;".to_owned(), true, false),
            (
                "hkey",
                "HKLM\\Software\\Python\\PythonCore\\9.8-XY".to_owned(),
                true,
                false,
            ),
            (
                "S3Key",
                "867139942017-EntitiesDetection-ab98".to_owned(),
                true,
                false,
            ),
            ("key", "%s/PKG-INFO".to_owned(), true, false),
            (
                "api_key",
                "3f6c9a1e0b7d4f2a8c5e1d9b7a3f6c0e".to_owned(),
                true,
                true,
            ),
        ];
        for (name, value, quoted, expected) in cases {
            assert_eq!(
                is_generic_secret(name.as_bytes(), value.as_bytes(), quoted),
                expected,
                "{name} = {value}"
            );
        }
    }

    #[test]
    fn base64url_roundtrip_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"eyJhbGciOiJIUzI1NiJ9", b"{\"alg\":\"HS256\"}"),
            (b"YQ", b"a"),
            (b"YWI", b"ab"),
            (b"YWJj", b"abc"),
            (b"YQ==", b"a"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64url_decode(input).as_deref(), Some(*expected));
        }
        assert_eq!(base64url_decode(b"a!b"), None);
    }

    #[test]
    fn url_credentials_table() {
        let password = random_string(4, ALNUM, 16);
        let cases: Vec<(&str, String, &str, bool)> = vec![
            ("admin", password.clone(), "db.internal.acme.io", true),
            ("", password.clone(), "redis.acme.io", true),
            ("user", "password".to_owned(), "db.acme.io", false),
            ("admin", password.clone(), "db.example.com", false),
            ("postgres", "postgres".to_owned(), "localhost", false),
            ("user", "%s".to_owned(), "db.acme.io", false),
            ("user", "$PASSWORD".to_owned(), "db.acme.io", false),
            ("user", "****".to_owned(), "db.acme.io", false),
        ];
        for (user, password, host, expected) in cases {
            assert_eq!(
                is_url_credential(user.as_bytes(), password.as_bytes(), host.as_bytes()),
                expected,
                "{user}:{password}@{host}"
            );
        }
    }
}
