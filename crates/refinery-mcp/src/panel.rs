//! `submit_checklist` with `panel_session`: the scores of a `refinery evaluate` panel (the
//! plugin's `--eval-backends`) are read from the file our code wrote, not retyped by the
//! model, so the loop records exactly what the panel's combination rule produced.
//!
//! It fails closed: the panel must have scored, judged the loop's own criteria (same ids and
//! texts) and exactly the bytes the loop's pending submission holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use refinery_core::{Error, Result, Session, StateDir};

/// The parts of `evaluation.json` (`refinery evaluate --json`'s report) used here.
#[derive(Deserialize)]
struct PanelReport {
    criteria: Vec<PanelCriterion>,
    scores: BTreeMap<String, u8>,
    #[serde(default)]
    evidence: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    unscored_reason: Option<String>,
}

#[derive(Deserialize)]
struct PanelCriterion {
    id: String,
    text: String,
}

/// What `submit_checklist` records for a panel.
pub(crate) struct PanelScores {
    /// Criterion id → `{score, reasoning}` (the panel's evidence as the reasoning).
    pub(crate) scores: Value,
    /// The panel's `evaluation.md`, when it lies inside the workspace.
    pub(crate) report_path: Option<String>,
}

/// Reads the panel session `raw_id`'s report and checks it against `loop_session`.
pub(crate) fn load(store: &StateDir, loop_session: &Session, raw_id: &str) -> Result<PanelScores> {
    let panel = store.existing_session(raw_id)?;
    let path = panel.dir().join("evaluation.json");
    let bad = |reason: String| Error::BadPath {
        path: path.display().to_string(),
        reason,
    };
    let text = fs_err::read_to_string(&path).map_err(|_| {
        bad(
            "does not exist; run `refinery evaluate … --json` and pass the `session` it prints"
                .to_owned(),
        )
    })?;
    let report: PanelReport = serde_json::from_str(&text)
        .map_err(|err| bad(format!("is not a `refinery evaluate` report ({err})")))?;
    if let Some(reason) = report.unscored_reason.filter(|_| report.scores.is_empty()) {
        return Err(bad(format!(
            "holds no scores (the panel's output was unusable: {reason}); run the panel again"
        )));
    }
    check_criteria(loop_session, &report.criteria).map_err(bad)?;
    check_snapshot(loop_session, &panel).map_err(bad)?;
    let scores = report
        .scores
        .iter()
        .map(|(id, score)| {
            let evidence = report.evidence.get(id).map(|found| found.join("; "));
            let reasoning = evidence.unwrap_or_default();
            (id.clone(), json!({"score": score, "reasoning": reasoning}))
        })
        .collect::<serde_json::Map<_, _>>();
    Ok(PanelScores {
        scores: Value::Object(scores),
        report_path: inside(store.workspace(), &panel.dir().join("evaluation.md")),
    })
}

/// The panel judged the loop's criteria, word for word.
fn check_criteria(
    loop_session: &Session,
    judged: &[PanelCriterion],
) -> std::result::Result<(), String> {
    let Ok(Some(criteria)) = loop_session.criteria() else {
        return Err(
            "cannot be checked: this loop has no criteria yet; call generate_eval_criteria first"
                .to_owned(),
        );
    };
    let ours: Vec<(&str, &str)> = criteria
        .as_slice()
        .iter()
        .map(|criterion| (criterion.id.as_str(), criterion.text.as_str()))
        .collect();
    let theirs: Vec<(&str, &str)> = judged
        .iter()
        .map(|criterion| (criterion.id.as_str(), criterion.text.as_str()))
        .collect();
    if ours == theirs {
        Ok(())
    } else {
        Err(format!(
            "was judged against other criteria than this loop's; run the panel with --criteria-file {}",
            loop_session.dir().join("criteria.json").display()
        ))
    }
}

/// The panel judged exactly the files of the loop's pending submission.
fn check_snapshot(loop_session: &Session, panel: &Session) -> std::result::Result<(), String> {
    let files = |session: &Session, round: u32| -> Option<Vec<(String, String)>> {
        let submissions = session.submissions().ok()?;
        let submission = submissions.get(&round)?;
        let mut files: Vec<(String, String)> = submission
            .files
            .iter()
            .map(|entry| (entry.path.clone(), entry.hash.clone()))
            .collect();
        files.sort();
        Some(files)
    };
    let pending = loop_session
        .state()
        .ok()
        .and_then(|state| state.pending_answer)
        .ok_or_else(|| {
            "cannot be matched to a submission: call new_answer before the panel judges it"
                .to_owned()
        })?;
    let submitted = files(loop_session, pending.round);
    if submitted.is_some() && submitted == files(panel, 1) {
        Ok(())
    } else {
        Err(format!(
            "judged other files than round {}'s submission; run the panel on the submitted paths after new_answer",
            pending.round
        ))
    }
}

/// `path` relative to `workspace` when it lies inside it.
fn inside(workspace: &Path, path: &Path) -> Option<String> {
    let workspace: PathBuf = fs_err::canonicalize(workspace).ok()?;
    let path = fs_err::canonicalize(path).ok()?;
    path.strip_prefix(&workspace)
        .ok()
        .map(|relative| relative.display().to_string())
}
