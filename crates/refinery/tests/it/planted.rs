//! Fake credentials of every shape the secret scanner knows, generated at run time (nothing
//! key-shaped is committed), and the checks that look for them afterwards: in text, in every
//! file of a folder, and on the command lines of running processes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PASSWORD: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%+-_=~^";

/// splitmix64, seeded per planting site.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn string(&mut self, alphabet: &[u8], length: usize) -> String {
        (0..length)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}

fn base64url(data: &[u8]) -> String {
    let mut output = String::new();
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let value = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for index in 0..=chunk.len() {
            output.push(char::from(
                URLSAFE[((value >> (18 - 6 * index)) & 63) as usize],
            ));
        }
    }
    output
}

/// One planted credential: the line it is written as (with whatever context its rule needs)
/// and the text whose presence anywhere else is a leak.
#[derive(Clone, Debug)]
pub(crate) struct Planted {
    pub(crate) rule: &'static str,
    pub(crate) line: String,
    pub(crate) needle: String,
}

/// Every rule of the scanner's redaction set, each with a fresh value.
pub(crate) fn every_shape(rng: &mut Rng) -> Vec<Planted> {
    let mut planted = Vec::new();
    let mut add = |rule: &'static str, line: String, needle: String| {
        planted.push(Planted { rule, line, needle });
    };
    let value = format!("sk-ant-api03-{}AA", rng.string(URLSAFE, 93));
    add("anthropic-api-key", format!("anthropic {value}"), value);
    let value = format!(
        "sk-proj-{}T3BlbkFJ{}",
        rng.string(URLSAFE, 74),
        rng.string(URLSAFE, 74)
    );
    add("openai-project-key", format!("openai {value}"), value);
    let value = format!(
        "sk-admin-{}T3BlbkFJ{}",
        rng.string(URLSAFE, 58),
        rng.string(URLSAFE, 58)
    );
    add("openai-admin-key", format!("admin {value}"), value);
    let value = format!(
        "sk-{}T3BlbkFJ{}",
        rng.string(ALNUM, 20),
        rng.string(ALNUM, 20)
    );
    add("openai-legacy-key", format!("legacy {value}"), value);
    let value = format!("AIzaSy{}", rng.string(URLSAFE, 33));
    add("google-api-key", format!("google {value}"), value);
    let value = format!("xai-{}", rng.string(ALNUM, 80));
    add("xai-api-key", format!("xai {value}"), value);
    let value = format!("sk-or-v1-{}", rng.string(HEX, 64));
    add("openrouter-api-key", format!("openrouter {value}"), value);
    let value = format!("sk_{}", rng.string(HEX, 48));
    add("elevenlabs-api-key", format!("elevenlabs {value}"), value);
    let value = format!("hf_{}", rng.string(LETTERS, 34));
    add("huggingface-token", format!("hugging face {value}"), value);
    let value = format!("AKIA{}", rng.string(BASE32, 16));
    add("aws-access-key-id", format!("aws id {value}"), value);
    let value = rng.string(BASE64, 40);
    add(
        "aws-secret-access-key",
        format!("aws_secret_access_key = {value}"),
        value,
    );
    let value = loop {
        // The bare rule keeps keys with upper case, lower case and a digit (nearly all).
        let candidate = rng.string(ALNUM, 40);
        if candidate.bytes().any(|byte| byte.is_ascii_digit())
            && candidate.bytes().any(|byte| byte.is_ascii_uppercase())
            && candidate.bytes().any(|byte| byte.is_ascii_lowercase())
        {
            break candidate;
        }
    };
    add(
        "aws-secret-access-key-bare",
        format!("backup {value} nightly"),
        value,
    );
    let value = format!("ghp_{}", rng.string(ALNUM, 36));
    add("github-pat", format!("github {value}"), value);
    let value = format!(
        "github_pat_{}_{}",
        rng.string(ALNUM, 22),
        rng.string(ALNUM, 59)
    );
    add("github-fine-grained-pat", format!("fine {value}"), value);
    let value = format!("gho_{}", rng.string(ALNUM, 36));
    add("github-oauth-token", format!("oauth {value}"), value);
    let value = format!("ghs_{}", rng.string(ALNUM, 36));
    add("github-app-token", format!("app {value}"), value);
    let value = format!("glpat-{}", rng.string(URLSAFE, 20));
    add("gitlab-token", format!("gitlab {value}"), value);
    let value = format!(
        "xoxb-{}-{}-{}",
        rng.string(DIGITS, 12),
        rng.string(DIGITS, 13),
        rng.string(ALNUM, 24)
    );
    add("slack-token", format!("slack {value}"), value);
    let tail = rng.string(ALNUM, 24);
    let value = format!(
        "https://hooks.slack.com/services/T{}/B{}/{tail}",
        rng.string(UPPER_ALNUM, 8),
        rng.string(UPPER_ALNUM, 10)
    );
    add("slack-webhook", format!("hook {value}"), tail);
    let value = format!("sk_live_{}", rng.string(ALNUM, 99));
    add("stripe-secret-key", format!("stripe {value}"), value);
    let value = format!("SK{}", rng.string(HEX, 32));
    add("twilio-api-key", format!("twilio {value}"), value);
    let value = format!("SG.{}.{}", rng.string(URLSAFE, 22), rng.string(URLSAFE, 43));
    add("sendgrid-api-key", format!("sendgrid {value}"), value);
    let value = format!("npm_{}", rng.string(ALNUM, 36));
    add("npm-token", format!("npm {value}"), value);
    let value = format!("pypi-AgEIcHlwaS5vcmc{}", rng.string(URLSAFE, 150));
    add("pypi-token", format!("pypi {value}"), value);
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims =
        base64url(format!(r#"{{"sub":"{}","exp":1900000000}}"#, rng.string(ALNUM, 12)).as_bytes());
    let value = format!("{header}.{claims}.{}", rng.string(URLSAFE, 43));
    add("jwt", format!("bearer {value}"), value);
    let password = rng.string(ALNUM, 20);
    add(
        "url-credentials",
        format!("db postgres://app:{password}@db-3.prod.acme-corp.net:5432/app"),
        password,
    );
    // Generated passwords that look like words or repeat themselves fail the generic rule's
    // checks (by design); draw until one is a password the rule takes.
    let value = loop {
        let candidate = rng.string(PASSWORD, 22);
        if refinery_secrets::contains_secret(&format!("DB_PASSWORD={candidate}")) {
            break candidate;
        }
    };
    add("generic-secret", format!("DB_PASSWORD={value}"), value);
    planted
}

/// A private key block (several lines), and the body line that marks a leak.
pub(crate) fn private_key(rng: &mut Rng) -> Planted {
    let label = ["RSA", "PRIVATE", "KEY"].join(" ");
    let mut block = format!("-----BEGIN {label}-----\n");
    let first = rng.string(BASE64, 64);
    block.push_str(&first);
    block.push('\n');
    for _ in 0..11 {
        block.push_str(&rng.string(BASE64, 64));
        block.push('\n');
    }
    let _ = write!(block, "{}==\n-----END {label}-----", rng.string(BASE64, 18));
    Planted {
        rule: "private-key",
        line: block,
        needle: first,
    }
}

/// Values without any recognisable shape, masked only because the variable that holds them
/// is secret-named (`*_PASSWORD`, `*_TOKEN`).
pub(crate) fn plain_value(rng: &mut Rng, site: &str) -> String {
    format!(
        "{site}-plain-{}",
        rng.string(LETTERS, 14).to_ascii_lowercase()
    )
}

/// Fails if `haystack` holds any planted needle (or a 12-character piece of one, lower-cased,
/// for places that lower-case text, such as session ids).
#[track_caller]
pub(crate) fn assert_clean(what: &str, haystack: &str, needles: &[String]) {
    let lower = haystack.to_ascii_lowercase();
    // Where a leak sits, with the needle itself blanked out.
    let around = |at: usize, length: usize| {
        let start = haystack.floor_char_boundary(at.saturating_sub(80));
        let end = haystack.ceil_char_boundary((at + length + 40).min(haystack.len()));
        haystack[start..end].replace(&haystack[at..at + length], "<PLANTED>")
    };
    for (index, needle) in needles.iter().enumerate() {
        if let Some(at) = haystack.find(needle.as_str()) {
            panic!(
                "{what} holds planted credential #{index}: …{}…",
                around(at, needle.len())
            );
        }
        let piece = needle.to_ascii_lowercase();
        let piece = &piece[piece.len().saturating_sub(12)..];
        if piece.len() == 12
            && piece.bytes().filter(u8::is_ascii_alphanumeric).count() >= 10
            && let Some(at) = lower.find(piece)
        {
            panic!(
                "{what} holds part of planted credential #{index}: …{}…",
                around(at, piece.len())
            );
        }
    }
}

/// Every file under `dir` (symbolic links not followed).
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Samples the command line of every process on the machine (except `skip`, the process the
/// test started with the credentials as its own arguments) every few milliseconds until
/// stopped; returns each distinct command line seen with the pid it belonged to.
pub(crate) struct CommandLineSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Sampled>,
}

/// What a [`CommandLineSampler`] saw.
pub(crate) struct Sampled {
    /// How many times the process table was read.
    pub(crate) rounds: usize,
    /// How many times the skipped process showed a needle (proof that reading works).
    pub(crate) skipped_hits: usize,
    /// Every other process that showed a needle.
    pub(crate) leaks: Vec<String>,
}

impl CommandLineSampler {
    pub(crate) fn start(needles: Vec<String>, skip: Arc<std::sync::atomic::AtomicU32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rounds = 0;
                let mut skipped_hits = 0;
                let mut leaks = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    rounds += 1;
                    let skipped = skip.load(Ordering::SeqCst);
                    for entry in fs_err::read_dir("/proc").into_iter().flatten().flatten() {
                        let name = entry.file_name();
                        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok())
                        else {
                            continue;
                        };
                        if pid == std::process::id() {
                            continue;
                        }
                        let Ok(bytes) = fs_err::read(entry.path().join("cmdline")) else {
                            continue;
                        };
                        let cmdline = String::from_utf8_lossy(&bytes);
                        if !needles
                            .iter()
                            .any(|needle| cmdline.contains(needle.as_str()))
                        {
                            continue;
                        }
                        // A child between fork and exec still shows its parent's argv: the
                        // user's own command line, copied, not a leak.
                        let own_copy = fs_err::read(format!("/proc/{skipped}/cmdline"))
                            .is_ok_and(|own| own == bytes);
                        if pid == skipped || own_copy {
                            skipped_hits += 1;
                        } else {
                            let program = cmdline.split('\0').next().unwrap_or_default().to_owned();
                            leaks.push(format!("pid {pid} ({program})"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Sampled {
                    rounds,
                    skipped_hits,
                    leaks,
                }
            })
        };
        Self { stop, thread }
    }

    /// Stops sampling and says what was seen.
    pub(crate) fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}
