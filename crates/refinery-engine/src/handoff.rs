//! The handoff: everything the next round's fresh builder is told about the previous ones.
//!
//! A new round starts a new agent process, so nothing of the previous conversation survives;
//! what carries over is this document and the files. It is rendered from data only — the
//! verdict, the evaluator's findings, the improvement spec, the preserve list and the learnings
//! — so it can never leak a transcript into the next context.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use refinery_core::{ChecklistOutcome, CriteriaSet};

use crate::outputs::{Evaluation, TraceLessons};

/// What a handoff is made from.
#[derive(Clone, Copy, Debug)]
pub struct HandoffInput<'a> {
    /// The task as the user gave it.
    pub task: &'a str,
    /// The criteria.
    pub criteria: &'a CriteriaSet,
    /// The verdict of the round just finished.
    pub outcome: &'a ChecklistOutcome,
    /// The evaluator's findings, if its output was usable.
    pub evaluation: Option<&'a Evaluation>,
    /// Criteria whose approach must change (a plateau forced it).
    pub change_approach_for: &'a [String],
    /// Accumulated learnings (`learnings.md`).
    pub learnings: &'a str,
    /// Earlier rounds' scores per criterion, oldest first (`None` for an unscored round): the
    /// trajectory the builder and the report see. Judges never do.
    pub trajectory: &'a BTreeMap<String, Vec<Option<u8>>>,
}

/// Renders `handoff.md`.
pub fn render_handoff(input: &HandoffInput<'_>) -> String {
    let outcome = input.outcome;
    let mut out = String::new();
    let _ = writeln!(out, "# Handoff after round {}\n", outcome.round);
    let _ = writeln!(out, "## Task\n\n{}\n", input.task.trim());
    let _ = writeln!(
        out,
        "## Verdict\n\n{} — {} of {} criteria at or above the cutoff of {}.\n",
        outcome.verdict.as_str(),
        outcome.items.iter().filter(|item| item.passed).count(),
        outcome.items.len(),
        outcome.cutoff
    );
    let _ = writeln!(
        out,
        "| criterion | category | score | status |\n|---|---|---|---|"
    );
    for item in &outcome.items {
        let category = input
            .criteria
            .get(&item.id)
            .map_or("standard", |criterion| criterion.category.as_str());
        let status = match (&item.refused, item.passed) {
            (Some(reason), _) => format!("not accepted: {}", one_line(reason)),
            (None, true) => "passes".to_owned(),
            (None, false) => "below the bar".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} {} | {category} | {} | {status} |",
            item.id,
            one_line(&item.text),
            item.score
        );
    }
    out.push('\n');
    if !outcome.blocked_by.is_empty() {
        out.push_str("The round cannot converge, whatever its scores, while:\n\n");
        for block in &outcome.blocked_by {
            let _ = writeln!(out, "- {block}");
        }
        out.push('\n');
    }
    render_trajectory(&mut out, outcome, input.trajectory);
    if !input.change_approach_for.is_empty() {
        let _ = writeln!(
            out,
            "## Change of approach required\n\n{} stopped improving under the current approach. Do not polish it again: choose a different approach for these criteria and say in your summary what you changed.\n",
            input.change_approach_for.join(", ")
        );
    }
    match input.evaluation {
        Some(evaluation) => render_findings(&mut out, outcome, evaluation),
        None => {
            out.push_str("## Findings\n\nThe evaluator's output for this round was unusable, so the round counts as iterate. Re-check every criterion yourself before building.\n\n");
        }
    }
    if !input.learnings.trim().is_empty() {
        let _ = writeln!(out, "## Learnings so far\n\n{}\n", input.learnings.trim());
    }
    out
}

/// Every criterion's scores over the rounds so far, this one last.
fn render_trajectory(
    out: &mut String,
    outcome: &ChecklistOutcome,
    trajectory: &BTreeMap<String, Vec<Option<u8>>>,
) {
    if trajectory.values().all(Vec::is_empty) {
        return;
    }
    out.push_str("## Scores so far\n\n");
    for item in &outcome.items {
        let earlier = trajectory.get(&item.id).map_or(&[][..], Vec::as_slice);
        let series: Vec<String> = earlier
            .iter()
            .map(|score| score.map_or_else(|| "–".to_owned(), |score| score.to_string()))
            .chain(std::iter::once(item.score.to_string()))
            .collect();
        let _ = writeln!(out, "- {}: {}", item.id, series.join(" → "));
    }
    out.push('\n');
}

/// The evaluator's findings, critique, improvement spec and preserve list.
fn render_findings(out: &mut String, outcome: &ChecklistOutcome, evaluation: &Evaluation) {
    out.push_str("## Findings\n\n");
    for item in &outcome.items {
        let _ = writeln!(out, "### {} — {}/10\n", item.id, item.score);
        if !item.reasoning.trim().is_empty() {
            let _ = writeln!(out, "{}\n", item.reasoning.trim());
        }
        if let Some(finding) = evaluation.findings.get(&item.id) {
            for line in finding
                .evidence
                .iter()
                .filter(|line| !line.trim().is_empty())
            {
                let _ = writeln!(out, "- {}", one_line(line));
            }
            out.push('\n');
        }
    }
    if !evaluation.critique.trim().is_empty() {
        let _ = writeln!(out, "## Critique\n\n{}\n", evaluation.critique.trim());
    }
    if !evaluation.improvement_spec.is_empty() {
        out.push_str("## Improvement spec (in order)\n\n");
        for (index, item) in evaluation.improvement_spec.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}. [{}, {}] {}",
                index + 1,
                item.criterion,
                item.impact.to_ascii_lowercase(),
                one_line(&item.change)
            );
        }
        out.push('\n');
    }
    if !evaluation.preserve.is_empty() {
        out.push_str("## Preserve\n\n");
        for item in &evaluation.preserve {
            let _ = writeln!(out, "- {}", one_line(item));
        }
        out.push('\n');
    }
}

/// Appends one round's process lessons to the learnings document.
pub fn append_learnings(existing: &str, round: u32, lessons: &TraceLessons) -> String {
    let mut out = existing.trim_end().to_owned();
    if lessons.keep_doing.is_empty()
        && lessons.stop_doing.is_empty()
        && lessons.critical_errors.is_empty()
    {
        return if out.is_empty() { out } else { out + "\n" };
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    let _ = writeln!(out, "### Round {round}");
    for (label, items) in [
        ("Critical", &lessons.critical_errors),
        ("Do", &lessons.keep_doing),
        ("Don't", &lessons.stop_doing),
    ] {
        for item in items.iter().filter(|item| !item.trim().is_empty()) {
            let _ = writeln!(out, "- {label}: {}", one_line(item));
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use refinery_core::{Cutoff, checklist};
    use serde_json::json;

    #[test]
    fn the_handoff_carries_verdict_findings_spec_preserve_and_learnings() {
        let criteria = CriteriaSet::from_json(&json!([
            {"id": "E1", "text": "States the outcome", "category": "primary"},
            {"id": "E2", "text": "Renders cleanly"},
        ]))
        .unwrap();
        let reply = json!({
            "scores": {
                "E1": {"score": 4, "evidence": ["index.html:2 `<h1>Welcome</h1>`"], "reasoning": "says nothing about the product"},
                "E2": {"score": 9, "evidence": ["chromium screenshot: no overflow"], "reasoning": "clean"}
            },
            "critique": "The hero is generic.",
            "improvement_spec": [{"criterion": "E1", "change": "lead with the measurable outcome", "impact": "Structural"}],
            "preserve": ["the colour palette"]
        })
        .to_string();
        let evaluation = crate::outputs::parse_evaluator(&criteria, &reply).unwrap();
        let outcome = checklist::evaluate(&criteria, &evaluation.scores(), Cutoff::DEFAULT, 2, &[]);
        let text = render_handoff(&HandoffInput {
            task: "Build a landing page",
            criteria: &criteria,
            outcome: &outcome,
            evaluation: Some(&evaluation),
            change_approach_for: &["E1".to_owned()],
            learnings: "### Round 1\n- Do: run the page before submitting",
            trajectory: &[
                ("E1".to_owned(), vec![Some(3)]),
                ("E2".to_owned(), vec![None]),
            ]
            .into(),
        });
        for needle in [
            "# Handoff after round 2",
            "Build a landing page",
            "iterate — 1 of 2 criteria",
            "| E1 States the outcome | primary | 4 | below the bar |",
            "Change of approach required",
            "says nothing about the product",
            "- index.html:2 `<h1>Welcome</h1>`",
            "1. [E1, structural] lead with the measurable outcome",
            "- the colour palette",
            "- Do: run the page before submitting",
            "## Scores so far\n\n- E1: 3 → 4\n- E2: – → 9",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn an_unusable_evaluation_is_said_plainly() {
        let criteria = CriteriaSet::from_json(&json!([{"id": "E1", "text": "a"}])).unwrap();
        let scores = checklist::parse_scores(&criteria, &json!({"E1": 0})).unwrap();
        let outcome = checklist::evaluate(&criteria, &scores, Cutoff::DEFAULT, 1, &[]);
        let text = render_handoff(&HandoffInput {
            task: "t",
            criteria: &criteria,
            outcome: &outcome,
            evaluation: None,
            change_approach_for: &[],
            learnings: "",
            trajectory: &BTreeMap::new(),
        });
        assert!(text.contains("unusable"));
        assert!(!text.contains("Scores so far"));
        assert!(!text.contains("Learnings so far"));
    }

    #[test]
    fn learnings_accumulate_per_round() {
        let first = append_learnings(
            "",
            1,
            &TraceLessons {
                keep_doing: vec!["ran tests".into()],
                ..TraceLessons::default()
            },
        );
        let second = append_learnings(
            &first,
            2,
            &TraceLessons {
                critical_errors: vec!["deleted the config".into()],
                stop_doing: vec!["guessing paths".into()],
                ..TraceLessons::default()
            },
        );
        assert_eq!(
            second,
            "### Round 1\n- Do: ran tests\n\n### Round 2\n- Critical: deleted the config\n- Don't: guessing paths\n"
        );
        assert_eq!(
            append_learnings(&second, 3, &TraceLessons::default()),
            second
        );
    }
}
