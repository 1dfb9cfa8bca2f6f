//! The library call the engine runs on text before it goes to a model.

use refinery_secrets::{contains_secret, redact};

use crate::corpus::{self, Rng};
use crate::support::assert_no_leak;

#[test]
fn redacts_every_secret_and_keeps_the_rest() {
    let mut rng = Rng::new(21);
    let anthropic = corpus::secret("anthropic-api-key", &mut rng);
    let github = corpus::secret("github-pat", &mut rng);
    let text = format!("Caf\u{e9} \u{2603}\nANTHROPIC_API_KEY={anthropic}\ntoken: {github} done\n");
    let (clean, findings) = redact(&text);
    assert_eq!(
        clean,
        "Caf\u{e9} \u{2603}\nANTHROPIC_API_KEY=[REDACTED:anthropic-api-key]\ntoken: [REDACTED:github-pat] done\n"
    );
    assert_eq!(findings.len(), 2);
    assert_no_leak(&clean, &anthropic);
    assert_no_leak(&format!("{findings:?}"), &github);
    assert!(contains_secret(&text));
    assert!(!contains_secret(&clean));
}

#[test]
fn redaction_ignores_allow_comments() {
    let mut rng = Rng::new(22);
    let key = corpus::secret("openai-project-key", &mut rng);
    let text = format!("OPENAI_API_KEY={key} # refinery:allow\n");
    let (clean, findings) = redact(&text);
    assert_eq!(findings.len(), 1);
    assert_no_leak(&clean, &key);
}

#[test]
fn redacts_whole_private_key_blocks() {
    let mut rng = Rng::new(23);
    let block = corpus::secret("private-key", &mut rng);
    let text = format!("before\n{block}after\n");
    let (clean, _) = redact(&text);
    assert_eq!(clean, "before\n[REDACTED:private-key]\nafter\n");
}

#[test]
fn clean_text_is_returned_unchanged() {
    let text = "No secrets here: max_tokens = 4096, see https://example.com.\n";
    let (clean, findings) = redact(text);
    assert_eq!(clean, text);
    assert!(findings.is_empty());
}
