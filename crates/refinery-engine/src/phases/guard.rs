//! The regression guard phase: from round 2 on, the new version is compared blind with the
//! version the previous round delivered, once in each order, so position bias cannot pass for
//! a regression. A criterion worse in both orders earns the builder one repair turn; still
//! worse after it, the previous version is put back (what it replaces is kept in the session).
//! What counts as a regression and what to do about it are the core's rules
//! ([`regression_action`]).
//!
//! The guard fails closed: output still unusable after its retry (the parser's complaint fed
//! back once), a timeout included, leaves the round **unchecked** ([`GuardAction::Unchecked`])
//! — never accepted, never "repaired" — and an unchecked round cannot converge. The guard sees
//! only the two versions and the criteria: no scores, no verdicts.

use std::collections::BTreeMap;
use std::path::Path;

use refinery_core::rounds::{BlindComparisons, RegressionAction, regression_action};
use refinery_core::{CriteriaSet, ManifestEntry};
use refinery_prompts::Role;

use crate::backend::Backend;
use crate::briefs;
use crate::error::EngineError;
use crate::events::{Phase, RefineEvent};
use crate::outputs::{GuardComparison, guard_schema, parse_regression_guard};
use crate::pack;
use crate::phases::Context;
use crate::phases::ask::{Ask, JudgeReply, ask};
use crate::phases::build::{self, BuilderTurn};
use crate::phases::verify;
use crate::record::{GuardAction, RegressionReport};
use crate::verify::VerifyResult;
use crate::workspace;

/// Most text of the previous version put in a repair brief.
const REPAIR_PACK_LIMIT: usize = 64 * 1024;

/// What the guard compares and who acts on its finding.
pub(crate) struct GuardInput<'a> {
    /// The round being guarded (2 or later).
    pub round: u32,
    pub task: &'a str,
    pub criteria: &'a CriteriaSet,
    /// Judges the two versions.
    pub judge: &'a Backend,
    /// Repairs a regression.
    pub builder: &'a Backend,
    /// `--verify` commands, run again when a repair or revert changed the files.
    pub verify: &'a [String],
    /// The workspace as the build left it (snapshotted through the run's scope).
    pub current: &'a [ManifestEntry],
    /// What the previous round delivered, when the caller has it; read from its manifest
    /// otherwise.
    pub previous: Option<&'a [ManifestEntry]>,
}

/// What the guard did.
#[derive(Debug)]
pub(crate) struct Guarded {
    pub report: RegressionReport,
    /// The builder's repair turn, if there was one.
    pub repair: Option<BuilderTurn>,
    /// The checks' results after a repair or revert (they replace the round's earlier ones).
    pub verify: Option<Vec<VerifyResult>>,
}

/// The outcome of one pair of blind comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Comparison {
    /// Both orders gave usable preferences.
    Made {
        comparisons: BlindComparisons,
        /// The guard's reasoning, both orders.
        reasoning: String,
    },
    /// At least one order stayed unusable.
    Unusable {
        /// What was wrong with it.
        problem: String,
    },
}

/// Compares the round with the previous one and accepts, repairs or reverts it.
pub(crate) async fn run(ctx: &Context<'_>, input: GuardInput<'_>) -> Result<Guarded, EngineError> {
    ctx.phase(input.round, Phase::RegressionGuard);
    let read;
    let previous = if let Some(previous) = input.previous {
        previous
    } else {
        read = workspace::delivered(ctx.session, input.round - 1)?;
        &read
    };
    let guarded = match compare(ctx, &input, previous, input.current).await? {
        Comparison::Unusable { problem } => Guarded {
            report: RegressionReport {
                regressed: Vec::new(),
                action: GuardAction::Unchecked,
                reasoning: format!(
                    "the regression guard's output stayed unusable ({problem}); the round is unchecked and cannot converge"
                ),
            },
            repair: None,
            verify: None,
        },
        Comparison::Made {
            comparisons,
            reasoning,
        } => match regression_action(&comparisons, false) {
            RegressionAction::Accept => Guarded {
                report: RegressionReport {
                    regressed: Vec::new(),
                    action: GuardAction::Accepted,
                    reasoning,
                },
                repair: None,
                verify: None,
            },
            RegressionAction::Repair { criteria } | RegressionAction::Revert { criteria } => {
                repair(ctx, &input, previous, criteria, reasoning).await?
            }
        },
    };
    ctx.emit(&RefineEvent::Regression {
        round: input.round,
        report: guarded.report.clone(),
    });
    Ok(guarded)
}

/// One repair turn aimed at `regressed`, a second look, and a revert if it is still worse.
async fn repair(
    ctx: &Context<'_>,
    input: &GuardInput<'_>,
    previous: &[ManifestEntry],
    regressed: Vec<String>,
    reasoning: String,
) -> Result<Guarded, EngineError> {
    ctx.phase(input.round, Phase::Repair);
    let previous_text = changed_since(ctx, previous)?;
    let prompt = briefs::repair(
        input.task,
        input.criteria,
        &regressed,
        &reasoning,
        &previous_text,
    );
    let turn = build::turn(ctx, input.builder, input.round, prompt).await?;
    let mut checks = recheck(ctx, input).await?;
    let repaired = workspace::snapshot(ctx.store, ctx.scope)?;
    let again = compare(ctx, input, previous, &repaired.entries).await?;
    let action = match &again {
        Comparison::Made { comparisons, .. } => regression_action(comparisons, true),
        // Nobody could say whether the repair worked: not "repaired", and not converged on.
        Comparison::Unusable { problem } => {
            return Ok(Guarded {
                report: RegressionReport {
                    regressed,
                    action: GuardAction::Unchecked,
                    reasoning: format!(
                        "{}\nThe repair could not be checked: the guard's output stayed unusable ({problem}); the round is unchecked and cannot converge.",
                        reasoning.trim()
                    ),
                },
                repair: Some(turn),
                verify: checks,
            });
        }
    };
    let report = match action {
        RegressionAction::Revert { .. } => {
            let backup = ctx.session.round_dir(input.round).join("discarded.json");
            workspace::restore(ctx.store, ctx.scope, ctx.session, previous, &backup)?;
            checks = recheck(ctx, input).await?;
            RegressionReport {
                regressed,
                action: GuardAction::Reverted,
                reasoning: match again {
                    Comparison::Made { reasoning, .. } => reasoning,
                    Comparison::Unusable { .. } => reasoning,
                },
            }
        }
        RegressionAction::Accept | RegressionAction::Repair { .. } => RegressionReport {
            regressed,
            action: GuardAction::Repaired,
            reasoning,
        },
    };
    Ok(Guarded {
        report,
        repair: Some(turn),
        verify: checks,
    })
}

/// The checks again after the files changed; `None` without `--verify` commands.
async fn recheck(
    ctx: &Context<'_>,
    input: &GuardInput<'_>,
) -> Result<Option<Vec<VerifyResult>>, EngineError> {
    if input.verify.is_empty() {
        return Ok(None);
    }
    Ok(Some(verify::check(ctx, input.round, input.verify).await?))
}

/// Two blind comparisons of `current` (the workspace's snapshot) with `previous` (previous
/// as A, then current as A), in parallel.
async fn compare(
    ctx: &Context<'_>,
    input: &GuardInput<'_>,
    previous: &[ManifestEntry],
    current: &[ManifestEntry],
) -> Result<Comparison, EngineError> {
    let objects = ctx.store.objects();
    let view = input.judge.view();
    let scrubber = &ctx.env.scrubber;
    let pair = pack::render_pair(view, &objects, previous, current, scrubber);
    let (previous_text, current_text) = (&pair.first, &pair.second);
    // An agent-CLI guard opens the two versions in a folder of its own; an API guard reads
    // them in its brief, and nothing is created for it.
    let dir = if input.judge.reads_files() {
        Some(
            tempfile::Builder::new()
                .prefix("refinery-guard-")
                .tempdir()?,
        )
    } else {
        None
    };
    let (first_dir, second_dir) = match &dir {
        Some(dir) => (
            dir.path().join("previous_first"),
            dir.path().join("current_first"),
        ),
        None => (std::env::temp_dir(), std::env::temp_dir()),
    };
    if dir.is_some() {
        for (folder, a, b) in [
            (&first_dir, previous, current),
            (&second_dir, current, previous),
        ] {
            fs_err::create_dir_all(folder)?;
            refinery_core::snapshot::restore(&objects, a, &folder.join("A"))?;
            refinery_core::snapshot::restore(&objects, b, &folder.join("B"))?;
        }
    }
    let criteria = input.criteria;
    let (previous_a, current_b) = (
        note(view, previous_text, "A"),
        note(view, current_text, "B"),
    );
    let (current_a, previous_b) = (
        note(view, current_text, "A"),
        note(view, previous_text, "B"),
    );
    let briefs = [
        briefs::regression_guard(criteria, &pair.shared, &previous_a, &current_b),
        briefs::regression_guard(criteria, &pair.shared, &current_a, &previous_b),
    ];
    // Each brief is scanned for secrets when it is sent, one after the other on this task.
    // Scanned here on two threads instead, each is found clean (or not) at once when sent.
    std::thread::scope(|threads| {
        let [first, second] = &briefs;
        threads.spawn(|| drop(scrubber.scrub_cow(first)));
        drop(scrubber.scrub_cow(second));
    });
    let [first_brief, second_brief] = briefs;
    let (previous_first, current_first) = tokio::join!(
        blind(ctx, input, first_brief, &first_dir),
        blind(ctx, input, second_brief, &second_dir),
    );
    Ok(match (previous_first?, current_first?) {
        (JudgeReply::Usable(first), JudgeReply::Usable(second)) => Comparison::Made {
            reasoning: format!(
                "Previous shown as A: {}\nCurrent shown as A: {}",
                first.reasoning.trim(),
                second.reasoning.trim()
            ),
            comparisons: BlindComparisons {
                previous_first: first.preferences,
                current_first: second.preferences,
            },
        },
        (first, second) => Comparison::Unusable {
            problem: [first.problem(), second.problem()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
        },
    })
}

/// A version as the guard's brief shows it: agent-CLI judges open the files in `./A` and
/// `./B`, API judges read them in the brief.
fn note<'t>(view: pack::View, text: &'t str, folder: &str) -> std::borrow::Cow<'t, str> {
    match view {
        pack::View::Listing => format!("(files in `./{folder}/`)\n\n{text}").into(),
        pack::View::Contents => text.into(),
    }
}

/// One blind comparison of answer A with answer B, as `brief` puts them.
async fn blind(
    ctx: &Context<'_>,
    input: &GuardInput<'_>,
    brief: String,
    workdir: &Path,
) -> Result<JudgeReply<GuardComparison>, EngineError> {
    let criteria = input.criteria;
    ask(
        ctx,
        &Ask {
            backend: input.judge,
            role: Role::RegressionGuard,
            schema: guard_schema(criteria),
            workdir,
            budget_share: 0.5,
        },
        brief,
        |text| parse_regression_guard(criteria, text),
    )
    .await
}

/// The previous version of the files this round changed or deleted, for a repair brief:
/// what the builder needs to restore, bounded so any CLI can take it as an argument.
fn changed_since(ctx: &Context<'_>, previous: &[ManifestEntry]) -> Result<String, EngineError> {
    let current = workspace::snapshot(ctx.store, ctx.scope)?;
    let now: BTreeMap<&str, &str> = current
        .entries
        .iter()
        .map(|entry| (entry.path.as_str(), entry.hash.as_str()))
        .collect();
    let changed: Vec<ManifestEntry> = previous
        .iter()
        .filter(|entry| now.get(entry.path.as_str()) != Some(&entry.hash.as_str()))
        .cloned()
        .collect();
    if changed.is_empty() {
        return Ok("(no file of the previous version was changed or deleted)".to_owned());
    }
    Ok(pack::render_limited(
        &ctx.store.objects(),
        &changed,
        &ctx.env.scrubber,
        REPAIR_PACK_LIMIT,
    ))
}
