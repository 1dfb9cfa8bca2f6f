//! Every rule against secrets generated at test time (true positives, in several file shapes)
//! and against its look-alikes (false positives).

use refinery_secrets::Scanner;

use crate::corpus::{self, Rng};
use crate::support::assert_no_leak;

#[test]
fn every_rule_has_generators_and_decoys() {
    let scanner = Scanner::builtin();
    let ids: Vec<&str> = scanner.rules().map(|rule| rule.id).collect();
    assert_eq!(ids.len(), corpus::RULES.len(), "{ids:?}");
    let decoys = corpus::decoys(&mut Rng::new(1));
    for id in ids {
        assert!(
            corpus::RULES.contains(&id),
            "rule `{id}` has no true-positive generator"
        );
        assert!(
            decoys
                .iter()
                .any(|decoy| decoy.rule == id && !decoy.is_hard),
            "rule `{id}` has no decoy"
        );
    }
}

#[test]
fn every_rule_finds_its_generated_secrets() {
    let scanner = Scanner::builtin();
    let mut rng = Rng::new(0x5eed);
    for &rule in corpus::RULES {
        for round in 0..10 {
            let secret = corpus::secret(rule, &mut rng);
            let sample = corpus::place(rule, secret, round, &mut rng);
            let findings = scanner.scan(sample.content.as_bytes());
            assert!(
                findings.iter().any(|finding| finding.rule_id == rule),
                "{rule} missed in {}: got {findings:?}",
                sample.file_name
            );
            assert_no_leak(&format!("{findings:?}"), &sample.secret);
            let json = serde_json::to_string(&findings).unwrap();
            assert_no_leak(&json, &sample.secret);
        }
    }
}

#[test]
fn decoys_are_not_findings() {
    let scanner = Scanner::builtin();
    for seed in 0..20 {
        for decoy in corpus::decoys(&mut Rng::new(seed)) {
            if decoy.is_hard {
                continue;
            }
            let findings = scanner.scan(decoy.content.as_bytes());
            assert!(
                findings.is_empty(),
                "decoy for {} in {} was flagged: {findings:?}\n{}",
                decoy.rule,
                decoy.file_name,
                decoy.content
            );
        }
    }
}

#[test]
fn the_specific_rule_wins_over_the_generic_one() {
    let mut rng = Rng::new(7);
    let key = corpus::secret("github-pat", &mut rng);
    let findings = Scanner::builtin().scan(format!("api_token = \"{key}\"\n").as_bytes());
    let rules: Vec<&str> = findings
        .iter()
        .map(|finding| finding.rule_id.as_str())
        .collect();
    assert_eq!(rules, ["github-pat"]);
}

#[test]
fn findings_carry_line_column_and_a_redacted_preview() {
    let mut rng = Rng::new(8);
    let key = corpus::secret("anthropic-api-key", &mut rng);
    let text = format!("first\n  second\nKEY={key}\n");
    let findings = Scanner::builtin().scan(text.as_bytes());
    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!((finding.line, finding.column), (3, 5));
    assert_eq!(finding.preview.length(), key.len());
    assert!(key.starts_with(finding.preview.prefix()));
    assert!(finding.preview.prefix().len() <= key.len() / 6);
    assert_eq!(finding.fingerprint.to_string().len(), 16);
    // The same secret elsewhere has the same fingerprint: no line numbers in it.
    let moved = Scanner::builtin().scan(format!("\n\n\n\nOTHER={key}").as_bytes());
    assert_eq!(moved[0].fingerprint, finding.fingerprint);
}

#[test]
fn allow_comments_accept_a_line() {
    let mut rng = Rng::new(9);
    let key = corpus::secret("stripe-secret-key", &mut rng);
    let scanner = Scanner::builtin();
    let same_line = format!("STRIPE={key} # refinery:allow test fixture\n");
    assert!(scanner.scan(same_line.as_bytes()).is_empty());
    let next_line = format!("// refinery:allow-next-line\nSTRIPE={key}\n");
    assert!(scanner.scan(next_line.as_bytes()).is_empty());
    let unrelated = format!("// refinery:allow-next-line\n\nSTRIPE={key}\n");
    assert_eq!(scanner.scan(unrelated.as_bytes()).len(), 1);
}

#[test]
fn private_key_blocks_are_found_whole_and_in_json_strings() {
    let mut rng = Rng::new(10);
    for kind in ["RSA", "EC", "OPENSSH", "", "PGP"] {
        let body = corpus::key_body(&mut rng, 10, 64);
        let block = if kind == "PGP" {
            let mut lines = vec!["Version: GnuPG v2".to_owned(), String::new()];
            lines.extend(body);
            lines.push(format!("={}", rng.string(corpus::BASE64, 4)));
            corpus::pem("PGP", &lines).replace("PRIVATE KEY-----", "PRIVATE KEY BLOCK-----")
        } else {
            corpus::pem(kind, &body)
        };
        let findings = Scanner::builtin().scan(block.as_bytes());
        assert_eq!(findings.len(), 1, "{kind}: {findings:?}");
        assert_eq!(findings[0].rule_id, "private-key");
        assert_eq!(findings[0].span, 0..block.trim_end().len(), "{kind}");
        let escaped = format!("{{\"private_key\": \"{}\"}}", block.replace('\n', "\\n"));
        let findings = Scanner::builtin().scan(escaped.as_bytes());
        assert_eq!(findings.len(), 1, "{kind} escaped: {findings:?}");
    }
}

#[test]
fn crlf_and_long_lines_are_handled() {
    let mut rng = Rng::new(11);
    let key = corpus::secret("npm-token", &mut rng);
    let crlf = format!("a=1\r\nNPM_TOKEN={key}\r\nb=2\r\n");
    assert_eq!(Scanner::builtin().scan(crlf.as_bytes()).len(), 1);
    let minified = format!(
        "{}var t=\"{key}\";{}",
        "x=1;".repeat(5000),
        "y=2;".repeat(5000)
    );
    let findings = Scanner::builtin().scan(minified.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].line, 1);
}
