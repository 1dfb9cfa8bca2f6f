//! The built-in rule table.
//!
//! Each rule is one regex with a named group `secret` (alternatives may use `secret2`,
//! `secret3`, ...) holding the value, a list of keywords for the prefilter, and a check that
//! runs on the captured value. The provider rules key on the fixed prefixes providers print in
//! front of their tokens, which is what keeps them precise; only `generic-secret` relies on an
//! entropy gate.
//!
//! Keep this file free of anything that matches its own rules: patterns are written so that the
//! regex text never forms a token (e.g. `BEGIN[ A-Z0-9]{0,24}PRIVATE` instead of a literal
//! header), which keeps our own hooks and pre-commit's `detect-private-key` quiet on this repo.

/// Which post-match check a rule's captured value goes through, besides the placeholder filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Only the placeholder filter and the rule's entropy floor.
    Plain,
    /// `key = "value"` assignments: identifier and value heuristics, entropy gate.
    Generic,
    /// Header and payload must base64url-decode to JSON objects, the header naming `alg`.
    Jwt,
    /// PEM/OpenSSH/PGP private key blocks: the body must look like real key material.
    PrivateKey,
    /// `scheme://user:password@host`: documentation hosts and placeholder passwords are dropped.
    UrlCredentials,
    /// A standalone 40-character run of the base64 alphabet, as AWS prints secret access keys:
    /// exactly 40 characters, mixed case and digits, high entropy (see [`REDACTION_RULES`]).
    BareAwsSecret,
}

/// How much text around a keyword hit the rule's regex sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// The line holding the keyword (capped for minified files).
    Line,
    /// From the start of the keyword's line on, for rules that span lines (key blocks).
    Block,
    /// The whole text: rules without a usable keyword.
    Whole,
}

/// One built-in rule. See the module doc for the shape of `pattern`.
pub(crate) struct BuiltinRule {
    pub(crate) id: &'static str,
    pub(crate) description: &'static str,
    /// Literals, matched case-sensitively (list the spellings that occur, `aws`/`AWS`/`Aws`);
    /// `generic-secret`'s are lower-case and matched case-insensitively. Empty means
    /// [`Window::Whole`].
    pub(crate) keywords: &'static [&'static str],
    pub(crate) pattern: &'static str,
    /// Shannon entropy floor (bits per byte) of the captured value; 0 disables it.
    pub(crate) min_entropy: f64,
    /// How many leading characters of a match may be shown in a preview (public prefixes such
    /// as `ghp_`); the preview also never shows more than a sixth of the value.
    pub(crate) visible_prefix: usize,
    pub(crate) check: Check,
    pub(crate) window: Window,
}

/// Token characters end a match: a provider token followed by another token character is a
/// different, longer string.
macro_rules! end {
    () => {
        r"(?:[^A-Za-z0-9_\-]|$)"
    };
}

/// A private key block's line separator: a real newline or an escaped one inside a JSON or
/// code string (service-account files keep keys as `"...\n..."`).
macro_rules! sep {
    () => {
        r"(?:\r?\n|(?:\\r)?\\n)"
    };
}

pub(crate) const GENERIC_ID: &str = "generic-secret";

pub(crate) const BUILTIN_RULES: &[BuiltinRule] = &[
    BuiltinRule {
        id: "anthropic-api-key",
        description: "Anthropic API or admin key",
        keywords: &["sk-"],
        pattern: concat!(
            r"\b(?P<secret>sk-ant-(?:api|admin|oat|sid)[0-9]{2}-[A-Za-z0-9_\-]{32,200})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 13,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "openai-project-key",
        description: "OpenAI project or service-account key",
        keywords: &["sk-"],
        pattern: concat!(
            r"\b(?P<secret>sk-(?:proj|svcacct|None)-[A-Za-z0-9_\-]{40,250})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 8,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "openai-admin-key",
        description: "OpenAI admin key",
        keywords: &["sk-"],
        pattern: concat!(r"\b(?P<secret>sk-admin-[A-Za-z0-9_\-]{40,250})", end!()),
        min_entropy: 0.0,
        visible_prefix: 9,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "openai-legacy-key",
        description: "OpenAI user key (legacy format)",
        // The base64 of "OpenAI" sits in the middle of every legacy key.
        keywords: &["T3BlbkFJ"],
        pattern: concat!(
            r"\b(?P<secret>sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 3,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "google-api-key",
        description: "Google API key (Gemini, Maps, Firebase...)",
        keywords: &["AIza"],
        pattern: concat!(r"\b(?P<secret>AIza[0-9A-Za-z_\-]{35})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "xai-api-key",
        description: "xAI (Grok) API key",
        keywords: &["xai-"],
        pattern: concat!(r"\b(?P<secret>xai-[A-Za-z0-9]{70,100})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "openrouter-api-key",
        description: "OpenRouter API key",
        keywords: &["sk-"],
        pattern: concat!(r"\b(?P<secret>sk-or-v1-[a-f0-9]{64})", end!()),
        min_entropy: 0.0,
        visible_prefix: 9,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "elevenlabs-api-key",
        description: "ElevenLabs API key",
        keywords: &[
            "sk_",
            "elevenlabs",
            "ELEVENLABS",
            "ElevenLabs",
            "xi-api-key",
            "xi_api_key",
            "XI_API_KEY",
            "XI-API-KEY",
            "xiApiKey",
        ],
        pattern: concat!(
            r"\b(?P<secret>sk_[a-f0-9]{48})",
            end!(),
            r"|(?i:elevenlabs|xi[_\-]?api[_\-]?key)[^\r\n]{0,40}?\b(?P<secret2>[a-f0-9]{32})\b"
        ),
        min_entropy: 0.0,
        visible_prefix: 3,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "huggingface-token",
        description: "Hugging Face access token",
        keywords: &["hf_", "api_org_"],
        pattern: concat!(r"\b(?P<secret>(?:hf_|api_org_)[A-Za-z0-9]{34,40})", end!()),
        min_entropy: 0.0,
        visible_prefix: 3,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "aws-access-key-id",
        description: "AWS access key id",
        keywords: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        pattern: r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16})\b",
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "aws-secret-access-key",
        description: "AWS secret access key",
        keywords: &[
            "aws",
            "AWS",
            "Aws",
            "amazon",
            "AMAZON",
            "Amazon",
            "SecretAccessKey",
            "secretAccessKey",
            "secret_access_key",
            "SECRET_ACCESS_KEY",
        ],
        pattern: concat!(
            r#"(?i:aws|amazon)[A-Za-z0-9_.\-]{0,30}?(?i:secret|private)[A-Za-z0-9_.\-]{0,30}["'`]?[ \t]*(?::=|=>|=|:)[ \t]*["'`]?(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
            r#"|(?i:secret_?access_?key)["'`]?[ \t]*(?::=|=>|=|:)[ \t]*["'`]?(?P<secret2>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#
        ),
        min_entropy: 3.0,
        visible_prefix: 0,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "github-pat",
        description: "GitHub personal access token (classic)",
        keywords: &["ghp_"],
        pattern: concat!(r"\b(?P<secret>ghp_[A-Za-z0-9]{36})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "github-fine-grained-pat",
        description: "GitHub fine-grained personal access token",
        keywords: &["github_pat_"],
        pattern: concat!(r"\b(?P<secret>github_pat_[A-Za-z0-9_]{70,100})", end!()),
        min_entropy: 0.0,
        visible_prefix: 11,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "github-oauth-token",
        description: "GitHub OAuth access token",
        keywords: &["gho_"],
        pattern: concat!(r"\b(?P<secret>gho_[A-Za-z0-9]{36})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "github-app-token",
        description: "GitHub App user-to-server, server-to-server or refresh token",
        keywords: &["ghu_", "ghs_", "ghr_"],
        pattern: concat!(r"\b(?P<secret>(?:ghu|ghs|ghr)_[A-Za-z0-9]{36,76})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "gitlab-token",
        description: "GitLab access, deploy, runner or trigger token",
        keywords: &[
            "glpat-",
            "gldt-",
            "glrt-",
            "glptt-",
            "glsoat-",
            "glft-",
            "glimt-",
            "glcbt-",
            "gloas-",
            "GR1348941",
        ],
        pattern: concat!(
            r"\b(?P<secret>(?:(?:glpat|gldt|glrt|glptt|glsoat|glft|glimt|glcbt|gloas)-|GR1348941)[A-Za-z0-9_\-]{20,64})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 6,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "slack-token",
        description: "Slack bot, user, app or configuration token",
        keywords: &["xox", "xapp-"],
        pattern: concat!(
            r"\b(?P<secret>xox[abeoprs]-[0-9A-Za-z][0-9A-Za-z\-]{14,250})",
            end!(),
            r"|\b(?P<secret2>xapp-[0-9]-[A-Z0-9]{6,16}-[0-9]{6,16}-[a-z0-9]{32,80})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 5,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "slack-webhook",
        description: "Slack incoming webhook or workflow URL",
        keywords: &["hooks.slack.com/"],
        pattern: r"(?P<secret>https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,200})",
        min_entropy: 0.0,
        visible_prefix: 23,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "stripe-secret-key",
        description: "Stripe secret or restricted key",
        keywords: &["sk_", "rk_"],
        pattern: concat!(
            r"\b(?P<secret>(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{20,247})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 8,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "twilio-api-key",
        description: "Twilio API key SID",
        // `sk` would hit every "task" and "disk"; the regex's own case-sensitive literal
        // search over the whole text is cheaper (measured, docs/BENCHMARKS.md).
        keywords: &[],
        pattern: r"\b(?P<secret>SK[0-9a-fA-F]{32})\b",
        min_entropy: 0.0,
        visible_prefix: 2,
        check: Check::Plain,
        window: Window::Whole,
    },
    BuiltinRule {
        id: "sendgrid-api-key",
        description: "SendGrid API key",
        keywords: &[],
        pattern: concat!(
            r"\b(?P<secret>SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 3,
        check: Check::Plain,
        window: Window::Whole,
    },
    BuiltinRule {
        id: "npm-token",
        description: "npm access token",
        keywords: &["npm_"],
        pattern: concat!(r"\b(?P<secret>npm_[A-Za-z0-9]{36})", end!()),
        min_entropy: 0.0,
        visible_prefix: 4,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "pypi-token",
        description: "PyPI or TestPyPI API token",
        keywords: &["pypi-AgE"],
        pattern: concat!(
            r"\b(?P<secret>pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,300})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 5,
        check: Check::Plain,
        window: Window::Line,
    },
    BuiltinRule {
        id: "private-key",
        description: "Private key block (RSA, EC, DSA, OpenSSH, PKCS#8, PGP)",
        keywords: &["PRIVATE KEY"],
        pattern: concat!(
            r"(?P<secret>-----BEGIN[ A-Z0-9]{0,24}PRIVATE KEY(?: BLOCK)?-----[ \t]*",
            sep!(),
            // PGP armor headers ("Version: ...") and an optional blank line.
            r"(?:[ \t]*[A-Za-z][A-Za-z\-]*:[^\r\n\\]*",
            sep!(),
            r")*(?:[ \t]*",
            sep!(),
            r")?",
            // At least two full lines of key material: a header with "..." is documentation.
            r"(?:[ \t]*[A-Za-z0-9+/=]{40,}[ \t]*",
            sep!(),
            r"){2,}",
            r"(?:[ \t]*[A-Za-z0-9+/=]{1,}[ \t]*",
            sep!(),
            r")*",
            r"(?:[ \t]*-----END[ A-Z0-9]{0,24}PRIVATE KEY(?: BLOCK)?-----)?)"
        ),
        min_entropy: 0.0,
        visible_prefix: 10,
        check: Check::PrivateKey,
        window: Window::Block,
    },
    BuiltinRule {
        id: "jwt",
        description: "JSON Web Token (signed)",
        keywords: &["eyJ"],
        pattern: concat!(
            r"\b(?P<secret>eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,})",
            end!()
        ),
        min_entropy: 0.0,
        visible_prefix: 3,
        check: Check::Jwt,
        window: Window::Line,
    },
    BuiltinRule {
        id: "url-credentials",
        description: "Password embedded in a URL",
        keywords: &["://"],
        pattern: r#"\b(?i:[a-z][a-z0-9+.\-]{1,20})://(?P<user>[A-Za-z0-9._~%!$&*+=\-]{0,64}):(?P<secret>[^\s:/?#\[\]@"'<>`]{3,128})@(?P<host>[A-Za-z0-9.\-]{1,253}|\[[0-9a-fA-F:.]+\])"#,
        min_entropy: 0.0,
        visible_prefix: 0,
        check: Check::UrlCredentials,
        window: Window::Line,
    },
    BuiltinRule {
        id: GENERIC_ID,
        description: "Generic key/secret/token/password assignment with a high-entropy value",
        keywords: &[
            "key",
            "secret",
            "token",
            "passw",
            "pwd",
            "passphrase",
            "credential",
        ],
        pattern: concat!(
            r#"(?P<name>[A-Za-z0-9_.\-]*?(?i:key|secret|token|passw(?:or)?d|passphrase|pwd|credentials?)(?i:s)?)"#,
            r#"["'`]?\]?[ \t]*"#,
            // An optional type annotation: `password: str = "..."`.
            r#"(?::[ \t]*[A-Za-z_][A-Za-z0-9_\[\]., ]*?[ \t]*)?"#,
            r#"(?::=|=>|=|:)[ \t]*"#,
            // Quoted values may carry a Python string prefix (`b"..."`, `r'...'`).
            r#"(?:[bBrRuUfF]{0,2}"(?P<secret>[^"\r\n]{8,})"|[bBrRuUfF]{0,2}'(?P<secret2>[^'\r\n]{8,})'|`(?P<secret3>[^`\r\n]{8,})`|(?P<secret4>[^\s"'`,;]{8,}))"#
        ),
        min_entropy: 3.0,
        visible_prefix: 2,
        check: Check::Generic,
        window: Window::Line,
    },
];

/// Rules used only to redact text that leaves the process (model requests, stored state,
/// output), never by `refinery secrets scan`.
///
/// Redaction may mask a little too much (a masked page token in a prompt costs nothing), while
/// a scan that blocks a commit must be precise; so a rule with no keyword to anchor it and a
/// shape that random ids sometimes share lives here. Numbers: the labelled corpus test in
/// `tests/it/labelled.rs`.
pub(crate) const REDACTION_RULES: &[BuiltinRule] = &[BuiltinRule {
    id: "aws-secret-access-key-bare",
    description: "AWS secret access key without a naming context (redaction only)",
    keywords: &[],
    // Maximal runs of the base64 alphabet: the check keeps runs of exactly 40 characters, so
    // a longer blob (a certificate line, a hash in base64) never yields a 40-character slice.
    pattern: r"(?P<secret>[A-Za-z0-9/+]{40,})",
    min_entropy: 4.0,
    visible_prefix: 0,
    check: Check::BareAwsSecret,
    window: Window::Whole,
}];
