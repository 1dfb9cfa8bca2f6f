//! The criteria phase: when the user gave no criteria, the criteria writer drafts them from
//! the task (and the existing deliverable, if there is one). Used by `refine` and `run` before
//! round 1 ([`settle`]) and by `evaluate`.

use std::path::Path;

use refinery_core::CriteriaSet;
use refinery_prompts::Role;
use time::OffsetDateTime;

use crate::backend::Backend;
use crate::briefs;
use crate::error::EngineError;
use crate::events::{Phase, RefineEvent, lines};
use crate::outputs::{criteria_writer_schema, parse_criteria_writer};
use crate::phases::Context;
use crate::phases::ask::{Ask, JUDGE_ATTEMPTS, JudgeReply, ask};
use crate::record::CriteriaSource;
use crate::{pack, workspace};

/// What the criteria writer works from.
pub(crate) struct CriteriaInput<'a> {
    pub writer: &'a Backend,
    pub task: &'a str,
    /// The deliverable as it is, rendered for the writer; `None` when there is none yet.
    pub existing: Option<&'a str>,
    /// Where the writer runs.
    pub workdir: &'a Path,
}

/// Has the criteria writer draft the criteria. Unusable output is an error here: a run
/// without criteria cannot start, and the message says how to give them instead.
pub(crate) async fn write(
    ctx: &Context<'_>,
    input: CriteriaInput<'_>,
) -> Result<CriteriaSet, EngineError> {
    ctx.phase(0, Phase::Criteria);
    let prompt = briefs::criteria_writer(input.task, input.existing);
    let reply = ask(
        ctx,
        &Ask {
            backend: input.writer,
            role: Role::CriteriaWriter,
            schema: criteria_writer_schema(),
            workdir: input.workdir,
            budget_share: 1.0,
        },
        prompt,
        parse_criteria_writer,
    )
    .await?;
    ctx.emit_spend();
    match reply {
        JudgeReply::Usable(criteria) => Ok(criteria),
        JudgeReply::Unusable { problem } => Err(EngineError::Setup(format!(
            "the criteria writer gave no usable criteria after {JUDGE_ATTEMPTS} attempts ({problem}); pass --criteria or --criteria-file, or try another --evaluator"
        ))),
    }
}

/// The criteria a run works to: the session's (announced with `source`, the user's when not
/// known), or the criteria writer's from the task and the workspace as it is, stored in the
/// session. Returns them and where they came from.
pub(crate) async fn settle(
    ctx: &Context<'_>,
    writer: &Backend,
    task: &str,
    source: Option<CriteriaSource>,
) -> Result<(CriteriaSet, CriteriaSource), EngineError> {
    if let Some(criteria) = ctx.session.criteria()? {
        let source = source.unwrap_or(CriteriaSource::User);
        ctx.emit(&RefineEvent::Criteria {
            source,
            criteria: lines(&criteria),
            warnings: advice(&criteria),
        });
        return Ok((criteria, source));
    }
    let current = workspace::snapshot(ctx.store, ctx.scope)?;
    let existing = (!current.entries.is_empty()).then(|| {
        let objects = ctx.store.objects();
        pack::render_view(writer.view(), &objects, &current.entries, &ctx.env.scrubber)
    });
    let input = CriteriaInput {
        writer,
        task,
        existing: existing.as_deref(),
        workdir: ctx.workspace(),
    };
    let criteria = write(ctx, input).await?;
    ctx.session
        .register_criteria(&criteria, OffsetDateTime::now_utc())?;
    ctx.emit(&RefineEvent::Criteria {
        source: CriteriaSource::Writer,
        criteria: lines(&criteria),
        warnings: Vec::new(),
    });
    Ok((criteria, CriteriaSource::Writer))
}

/// What is worth saying about a set of criteria without refusing it.
pub(crate) fn advice(criteria: &CriteriaSet) -> Vec<String> {
    let count = criteria.len();
    if crate::outputs::CRITERIA_RANGE.contains(&count) {
        Vec::new()
    } else {
        vec![format!(
            "{count} criteria given; 3 to 7 usually work best (fewer miss failure modes, more dilute every verdict)"
        )]
    }
}
