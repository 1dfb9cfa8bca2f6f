//! The verify phase: the `--verify` commands run in the workspace (through
//! [`crate::verify`]); if any fails, the builder gets one bounded fix turn and the commands run
//! again. Their output is scrubbed before it is kept or shown to a judge.

use crate::backend::Backend;
use crate::briefs;
use crate::error::EngineError;
use crate::events::{Phase, RefineEvent};
use crate::phases::Context;
use crate::phases::build::{self, BuilderTurn};
use crate::verify::{self, VerifyResult};

/// What the verify phase checks, and who fixes it.
pub(crate) struct VerifyInput<'a> {
    pub round: u32,
    pub task: &'a str,
    pub commands: &'a [String],
    pub builder: &'a Backend,
}

/// The checks' last results, and the fix turn if one was needed.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    /// Empty without `--verify` commands.
    pub results: Vec<VerifyResult>,
    pub fix: Option<BuilderTurn>,
}

/// Runs the checks, and on a failure one fix turn and the checks again.
pub(crate) async fn run(
    ctx: &Context<'_>,
    input: VerifyInput<'_>,
) -> Result<Verified, EngineError> {
    if input.commands.is_empty() {
        return Ok(Verified::default());
    }
    let results = check(ctx, input.round, input.commands).await?;
    let failures: Vec<&VerifyResult> = results.iter().filter(|result| !result.passed).collect();
    if failures.is_empty() {
        return Ok(Verified { results, fix: None });
    }
    ctx.phase(input.round, Phase::Fix);
    let prompt = briefs::fix(input.task, &failures);
    let fix = build::turn(ctx, input.builder, input.round, prompt).await?;
    Ok(Verified {
        results: check(ctx, input.round, input.commands).await?,
        fix: Some(fix),
    })
}

/// Runs the commands once (within what is left of the time budget) and reports each.
pub(crate) async fn check(
    ctx: &Context<'_>,
    round: u32,
    commands: &[String],
) -> Result<Vec<VerifyResult>, EngineError> {
    ctx.phase(round, Phase::Verify);
    let timeout = ctx
        .meter
        .time_left()
        .map_or(ctx.env.verify_timeout, |left| {
            left.min(ctx.env.verify_timeout)
        });
    let mut results =
        verify::run_all(commands, ctx.workspace(), &ctx.env.env, timeout, ctx.cancel).await?;
    for result in &mut results {
        result.output = ctx.env.scrubber.scrub(&result.output);
        ctx.emit(&RefineEvent::Verify {
            round,
            command: result.command.clone(),
            passed: result.passed,
            exit_code: result.exit_code,
        });
    }
    Ok(results)
}
