//! Generated secrets and look-alike decoys, shared by the tests and the benchmark
//! (`benches/scan.rs` includes this file).
//!
//! Nothing secret-shaped is committed: every value is assembled at run time from a public
//! prefix and characters from a seeded generator, so runs are reproducible while the source
//! stays clean for our own scanner, GitHub push protection and `detect-private-key`.
#![allow(
    dead_code,
    reason = "the tests and the benchmark each use a different part"
)]

use std::fmt::Write as _;

pub(crate) const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub(crate) const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub(crate) const URLSAFE: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub(crate) const BASE64: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(crate) const HEX: &[u8] = b"0123456789abcdef";
pub(crate) const DIGITS: &[u8] = b"0123456789";
pub(crate) const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(crate) const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// What password generators emit for config files.
pub(crate) const PASSWORD: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%+-_=~^";

/// splitmix64: small, seedable, deterministic.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub(crate) fn string(&mut self, alphabet: &[u8], length: usize) -> String {
        (0..length)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Standard base64 (with padding), for building PEM bodies and JWTs.
pub(crate) fn base64(data: &[u8], url_safe: bool) -> String {
    let alphabet = if url_safe { URLSAFE } else { BASE64 };
    let mut output = String::new();
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let value = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                output.push(char::from(
                    alphabet[((value >> (18 - 6 * index)) & 63) as usize],
                ));
            } else if !url_safe {
                output.push('=');
            }
        }
    }
    output
}

/// A private key header/footer without the header text appearing in this source file.
pub(crate) fn pem(kind: &str, body_lines: &[String]) -> String {
    let label = if kind.is_empty() {
        ["PRIVATE", "KEY"].join(" ")
    } else {
        [kind, "PRIVATE", "KEY"].join(" ")
    };
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body_lines {
        text.push_str(line);
        text.push('\n');
    }
    let _ = writeln!(text, "-----END {label}-----");
    text
}

pub(crate) fn key_body(rng: &mut Rng, lines: usize, width: usize) -> Vec<String> {
    let mut body: Vec<String> = (0..lines).map(|_| rng.string(BASE64, width)).collect();
    body.push(format!("{}==", rng.string(BASE64, 18)));
    body
}

/// One generated secret of the shape `rule` detects.
pub(crate) fn secret(rule: &str, rng: &mut Rng) -> String {
    match rule {
        "anthropic-api-key" => {
            let kind = rng.pick(&["api03", "admin01"]);
            format!("sk-ant-{kind}-{}AA", rng.string(URLSAFE, 93))
        }
        "openai-project-key" => format!(
            "sk-proj-{}T3BlbkFJ{}",
            rng.string(URLSAFE, 74),
            rng.string(URLSAFE, 74)
        ),
        "openai-admin-key" => format!(
            "sk-admin-{}T3BlbkFJ{}",
            rng.string(URLSAFE, 58),
            rng.string(URLSAFE, 58)
        ),
        "openai-legacy-key" => format!(
            "sk-{}T3BlbkFJ{}",
            rng.string(ALNUM, 20),
            rng.string(ALNUM, 20)
        ),
        "google-api-key" => format!("AIzaSy{}", rng.string(URLSAFE, 33)),
        "xai-api-key" => format!("xai-{}", rng.string(ALNUM, 80)),
        "openrouter-api-key" => format!("sk-or-v1-{}", rng.string(HEX, 64)),
        "elevenlabs-api-key" => format!("sk_{}", rng.string(HEX, 48)),
        "huggingface-token" => format!("hf_{}", rng.string(LETTERS, 34)),
        "aws-access-key-id" => format!("{}{}", rng.pick(&["AKIA", "ASIA"]), rng.string(BASE32, 16)),
        "aws-secret-access-key" => rng.string(BASE64, 40),
        "github-pat" => format!("ghp_{}", rng.string(ALNUM, 36)),
        "github-fine-grained-pat" => format!(
            "github_pat_{}_{}",
            rng.string(ALNUM, 22),
            rng.string(ALNUM, 59)
        ),
        "github-oauth-token" => format!("gho_{}", rng.string(ALNUM, 36)),
        "github-app-token" => format!("{}_{}", rng.pick(&["ghu", "ghs"]), rng.string(ALNUM, 36)),
        "gitlab-token" => format!("glpat-{}", rng.string(URLSAFE, 20)),
        "slack-token" => format!(
            "{}-{}-{}-{}",
            rng.pick(&["xoxb", "xoxp"]),
            rng.string(DIGITS, 12),
            rng.string(DIGITS, 13),
            rng.string(ALNUM, 24)
        ),
        "slack-webhook" => format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            rng.string(UPPER_ALNUM, 8),
            rng.string(UPPER_ALNUM, 10),
            rng.string(ALNUM, 24)
        ),
        "stripe-secret-key" => format!(
            "{}_{}",
            rng.pick(&["sk_live", "rk_live", "sk_test"]),
            rng.string(ALNUM, 99)
        ),
        "twilio-api-key" => format!("SK{}", rng.string(HEX, 32)),
        "sendgrid-api-key" => format!("SG.{}.{}", rng.string(URLSAFE, 22), rng.string(URLSAFE, 43)),
        "npm-token" => format!("npm_{}", rng.string(ALNUM, 36)),
        "pypi-token" => format!("pypi-AgEIcHlwaS5vcmc{}", rng.string(URLSAFE, 150)),
        "private-key" => {
            let kind = rng.pick(&["RSA", "EC", "OPENSSH", ""]);
            let body = key_body(rng, 12, 64);
            pem(kind, &body)
        }
        "jwt" => {
            let header = base64(br#"{"alg":"HS256","typ":"JWT"}"#, true);
            let claims = format!(
                r#"{{"sub":"{}","role":"service","exp":{}}}"#,
                rng.string(ALNUM, 12),
                1_900_000_000 + rng.below(1_000_000)
            );
            format!(
                "{header}.{}.{}",
                base64(claims.as_bytes(), true),
                rng.string(URLSAFE, 43)
            )
        }
        "url-credentials" => rng.string(ALNUM, 20),
        "generic-secret" => rng.string(PASSWORD, 22),
        other => panic!("no generator for rule `{other}`"),
    }
}

/// A labelled sample: a file name and its content. `secret` is the planted value (empty for
/// decoys), used to check that no output ever contains it.
pub(crate) struct Sample {
    pub(crate) rule: &'static str,
    pub(crate) file_name: String,
    pub(crate) content: String,
    pub(crate) secret: String,
    /// A decoy a local scanner cannot tell from a secret (kept in the labelled set, counted
    /// against precision, but not asserted clean by the per-rule tests).
    pub(crate) is_hard: bool,
}

pub(crate) const RULES: &[&str] = &[
    "anthropic-api-key",
    "openai-project-key",
    "openai-admin-key",
    "openai-legacy-key",
    "google-api-key",
    "xai-api-key",
    "openrouter-api-key",
    "elevenlabs-api-key",
    "huggingface-token",
    "aws-access-key-id",
    "aws-secret-access-key",
    "github-pat",
    "github-fine-grained-pat",
    "github-oauth-token",
    "github-app-token",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "stripe-secret-key",
    "twilio-api-key",
    "sendgrid-api-key",
    "npm-token",
    "pypi-token",
    "private-key",
    "jwt",
    "url-credentials",
    "generic-secret",
];

fn env_name(rule: &str) -> String {
    rule.to_ascii_uppercase().replace('-', "_")
}

/// Puts a secret into one of several realistic files.
pub(crate) fn place(rule: &'static str, secret: String, variant: usize, rng: &mut Rng) -> Sample {
    let name = env_name(rule);
    let (file_name, content) = match rule {
        "private-key" => match variant % 3 {
            0 => ("id_key".to_owned(), secret.clone()),
            1 => (
                "service-account.json".to_owned(),
                format!(
                    "{{\n  \"type\": \"service_account\",\n  \"private_key\": \"{}\"\n}}\n",
                    secret.replace('\n', "\\n")
                ),
            ),
            _ => (
                "deploy.md".to_owned(),
                format!("Deploy key:\n\n```\n{secret}```\n"),
            ),
        },
        "aws-secret-access-key" => match variant % 2 {
            0 => (
                "credentials".to_owned(),
                format!(
                    "[default]\naws_access_key_id = AKIA{}\naws_secret_access_key = {secret}\n",
                    rng.string(BASE32, 16)
                ),
            ),
            _ => (
                "settings.py".to_owned(),
                format!("AWS_SECRET_ACCESS_KEY = \"{secret}\"\n"),
            ),
        },
        "url-credentials" => {
            let scheme = rng.pick(&["postgres", "mysql", "redis", "amqp", "https"]);
            let user = rng.pick(&["app", "svc_deploy", "admin", ""]);
            let url = format!(
                "{scheme}://{user}:{secret}@db-{}.prod.acme-corp.net:5432/app",
                rng.below(9)
            );
            match variant % 2 {
                0 => (".env".to_owned(), format!("DATABASE_URL={url}\n")),
                _ => (
                    "config.yaml".to_owned(),
                    format!("database:\n  url: \"{url}\"\n"),
                ),
            }
        }
        "generic-secret" => match variant % 4 {
            0 => (".env".to_owned(), format!("DB_PASSWORD={secret}\n")),
            1 => (
                "config.yaml".to_owned(),
                format!("auth:\n  client_secret: \"{secret}\"\n"),
            ),
            2 => (
                "settings.py".to_owned(),
                format!("SECRET_KEY = '{secret}'\n"),
            ),
            _ => (
                "app.json".to_owned(),
                format!("{{\n  \"apiKey\": \"{secret}\"\n}}\n"),
            ),
        },
        _ => match variant % 5 {
            0 => (".env".to_owned(), format!("{name}={secret}\n")),
            1 => (
                "config.yaml".to_owned(),
                format!("providers:\n  token: {secret}\n"),
            ),
            2 => (
                "client.py".to_owned(),
                format!("import os\n\nclient = Client(api_key=\"{secret}\")\n"),
            ),
            3 => (
                "index.js".to_owned(),
                format!("const client = new Client({{ key: '{secret}' }});\n"),
            ),
            _ => (
                "README.md".to_owned(),
                format!("Run it:\n\n    export {name}={secret}\n    ./run.sh\n"),
            ),
        },
    };
    Sample {
        rule,
        file_name,
        content,
        secret,
        is_hard: false,
    }
}

/// `per_rule` planted secrets per rule, in varied files.
pub(crate) fn true_positives(rng: &mut Rng, per_rule: usize) -> Vec<Sample> {
    let mut samples = Vec::new();
    for &rule in RULES {
        for variant in 0..per_rule {
            let secret = secret(rule, rng);
            samples.push(place(rule, secret, variant, rng));
        }
    }
    samples
}

fn decoy(rule: &'static str, file_name: &str, content: String) -> Sample {
    Sample {
        rule,
        file_name: file_name.to_owned(),
        content,
        secret: String::new(),
        is_hard: false,
    }
}

/// Look-alikes of each rule that are not secrets: documentation examples, placeholders,
/// publishable and public keys, hashes, ids, references to variables, identifiers.
pub(crate) fn decoys(rng: &mut Rng) -> Vec<Sample> {
    let mut samples = vec![
        decoy("anthropic-api-key", ".env.example", format!("ANTHROPIC_API_KEY=sk-ant-api03-{}\n", "x".repeat(93))),
        decoy("anthropic-api-key", "README.md", "Set `ANTHROPIC_API_KEY=sk-ant-...` first.\n".to_owned()),
        decoy("anthropic-api-key", "config.toml", "api_key = \"${ANTHROPIC_API_KEY}\"\n".to_owned()),
        decoy("openai-project-key", "docs.md", "export OPENAI_API_KEY=\"sk-proj-your-openai-api-key-here-replace-me-please\"\n".to_owned()),
        decoy("openai-admin-key", ".env.sample", format!("OPENAI_ADMIN_KEY=sk-admin-{}\n", "X".repeat(60))),
        decoy("openai-legacy-key", "notes.md", "Keys look like sk-...T3BlbkFJ... and are 51 characters long.\n".to_owned()),
        decoy("google-api-key", "maps.html", "<script src=\"https://maps.googleapis.com/maps/api/js?key=YOUR_API_KEY\"></script>\n".to_owned()),
        decoy("google-api-key", "setup.md", format!("GOOGLE_API_KEY=AIzaSy{}EXAMPLE\n", rng.string(ALNUM, 26))),
        decoy("xai-api-key", "models.py", "MODELS = [\"xai-grok-4-fast\", \"xai-grok-code-fast-1\"]\n".to_owned()),
        decoy("xai-api-key", ".env.example", format!("XAI_API_KEY=xai-{}\n", "0".repeat(80))),
        decoy("openrouter-api-key", "README.md", "OPENROUTER_API_KEY=sk-or-v1-<your key>\n".to_owned()),
        decoy("openrouter-api-key", "test_config.py", format!("KEY = \"sk-or-v1-{}\"\n", "0123456789abcdef".repeat(4))),
        decoy("elevenlabs-api-key", "tts.py", "headers = {\"xi-api-key\": os.environ[\"ELEVENLABS_API_KEY\"]}\n".to_owned()),
        decoy("elevenlabs-api-key", "errors.py", "raise ValueError(\"sk_validation_failed_for_the_voice_settings_payload\")\n".to_owned()),
        decoy("huggingface-token", "load.py", "from huggingface_hub import hf_hub_download\npath = hf_hub_download(repo_id=\"org/model\")\n".to_owned()),
        decoy("huggingface-token", ".env.example", "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".to_owned()),
        decoy("aws-access-key-id", "aws.md", format!("aws_access_key_id = AKIAIOSFODNN7{}\n", "EXAMPLE")),
        decoy("aws-access-key-id", "regions.txt", "ASIA PACIFIC (TOKYO) ap-northeast-1\n".to_owned()),
        decoy("aws-secret-access-key", "aws.md", format!("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY{}\n", "EXAMPLEKEY")),
        decoy("aws-secret-access-key", "deploy.sh", "export AWS_SECRET_ACCESS_KEY=\"$(vault read -field=secret aws/creds)\"\n".to_owned()),
        decoy("github-pat", ".env.example", format!("GITHUB_TOKEN=ghp_{}\n", "X".repeat(36))),
        decoy("github-pat", "ci.yml", "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n".to_owned()),
        decoy("github-fine-grained-pat", "docs.md", "Create a token (it starts with `github_pat_`) and paste it here.\n".to_owned()),
        decoy("github-oauth-token", "auth.go", "const oauthPrefix = \"gho_\"\n".to_owned()),
        decoy("github-app-token", "test_helpers.py", "def ghs_token_prefix_is_checked(): pass\n".to_owned()),
        decoy("gitlab-token", ".gitlab-ci.yml", "variables:\n  GITLAB_TOKEN: glpat-xxxxxxxxxxxxxxxxxxxx\n".to_owned()),
        decoy("gitlab-token", "README.md", "Use a personal access token (`glpat-<token>`).\n".to_owned()),
        decoy("slack-token", "bot.py", "SLACK_BOT_TOKEN = \"xoxb-your-bot-token-here\"\n".to_owned()),
        decoy("slack-webhook", "alerts.md", format!("Webhook: https://hooks.slack.com/services/T00000000/B00000000/{}\n", "X".repeat(24))),
        decoy("stripe-secret-key", "checkout.js", format!("const stripe = Stripe('pk_live_{}');\n", rng.string(ALNUM, 99))),
        decoy("stripe-secret-key", ".env.example", "STRIPE_SECRET_KEY=sk_test_your_key_here\n".to_owned()),
        decoy("twilio-api-key", "sms.py", format!("ACCOUNT_SID = \"AC{}\"\n", rng.string(HEX, 32))),
        decoy("twilio-api-key", "inventory.csv", "SKU,name\nSKU00012,widget\n".to_owned()),
        decoy("sendgrid-api-key", "mail.md", "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n".to_owned()),
        decoy("npm-token", "ci.sh", "echo \"$npm_config_cache\" && echo $npm_package_version\n".to_owned()),
        decoy("npm-token", ".npmrc", "//npm.acme-corp.internal/:_authToken=${NPM_TOKEN}\n".to_owned()),
        decoy("pypi-token", ".pypirc", "[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc...\n".to_owned()),
        decoy("private-key", "server.pub", {
            let body = key_body(rng, 6, 64);
            format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", body.join("\n"))
        }),
        decoy("private-key", "ca.crt", {
            let body = key_body(rng, 14, 64);
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n"))
        }),
        decoy("private-key", "docs.md", pem("RSA", &["...".to_owned()])),
        decoy("private-key", "authorized_keys", format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} deploy@ci\n", rng.string(BASE64, 43))),
        decoy("jwt", "auth.md", "Tokens start with `eyJhbGciOiJIUzI1NiJ9` (the base64 of the header).\n".to_owned()),
        decoy("jwt", "fixture.txt", format!("eyJ{}.{}\n", rng.string(URLSAFE, 30), rng.string(URLSAFE, 30))),
        decoy("url-credentials", "docker-compose.yml", "environment:\n  DATABASE_URL: postgres://postgres:postgres@db:5432/app\n".to_owned()),
        decoy("url-credentials", "README.md", "Connect with `mysql://user:password@localhost/db`.\n".to_owned()),
        decoy("url-credentials", "settings.py", "DATABASE_URL = f\"postgres://{user}:{password}@{host}/app\"\n".to_owned()),
        decoy("url-credentials", "config.yaml", "url: https://admin:${ADMIN_PASSWORD}@grafana.internal\n".to_owned()),
        decoy("url-credentials", "docs.md", format!("Example: https://alice:{}@example.com/private\n", rng.string(ALNUM, 16))),
        decoy("generic-secret", "app.py", "password = get_password_from_vault()\napi_key = os.environ[\"API_KEY\"]\n".to_owned()),
        decoy("generic-secret", "llm.yaml", "max_tokens: 4096\nnum_tokens: 128000\n".to_owned()),
        decoy("generic-secret", "cache.py", "cache_key = f\"{user_id}:{session_id}\"\n".to_owned()),
        decoy("generic-secret", "keys.py", format!("public_key = \"{}\"\n", rng.string(BASE64, 44))),
        decoy("generic-secret", "package-lock.json", format!("\"integrity\": \"sha512-{}==\"\n", rng.string(BASE64, 86))),
        decoy("generic-secret", "models.py", "id_key = \"550e8400-e29b-41d4-a716-446655440000\"\nrequest_key = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"\n".to_owned()),
        decoy("generic-secret", ".env.example", "DB_PASSWORD=${DB_PASSWORD}\nSECRET_KEY=<generate-one>\n".to_owned()),
        decoy("generic-secret", "api.json", format!("{{\"next_page_token\": \"{}\"}}\n", rng.string(URLSAFE, 40))),
        decoy("generic-secret", "schema.sql", "-- primary_key = \"account_id\"\n".to_owned()),
        decoy("generic-secret", "forms.ts", "const passwordField: string = \"passwordConfirmation\";\n".to_owned()),
        decoy("generic-secret", "checksums.txt", format!("sha256 = \"{}\"\n", rng.string(HEX, 64))),
        decoy("generic-secret", "lock.toml", format!("checksum = \"{}\"\ncommit = \"{}\"\n", rng.string(HEX, 64), rng.string(HEX, 40))),
        decoy("generic-secret", "messages.py", "TOKEN_EXPIRED = \"Your session token has expired, please sign in again\"\n".to_owned()),
        decoy("generic-secret", "settings.py", "SECRET_KEY = os.getenv(\"DJANGO_SECRET_KEY\", \"changeme-in-production\")\n".to_owned()),
        decoy("generic-secret", "keys.ts", "export const apiKey = config.services.maps.apiKey;\n".to_owned()),
        decoy("generic-secret", "test_auth.py", "password = \"correcthorsebatterystaple\"\n".to_owned()),
    ];
    // The jwt.io example token's shape: a validly signed HS256 token with tutorial claims.
    // Nothing local can tell it from a real token, so it counts against precision.
    let header = base64(br#"{"alg":"HS256","typ":"JWT"}"#, true);
    let claims = base64(
        br#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
        true,
    );
    let mut hard = decoy(
        "jwt",
        "jwt.md",
        format!("Example: `{header}.{claims}.{}`\n", rng.string(URLSAFE, 43)),
    );
    hard.is_hard = true;
    samples.push(hard);
    samples
}
