//! The answer phase of a multi-model run: agents answer (or carry out their improvement) in
//! parallel, each a fresh builder turn in its own copy of the workspace, and each result is
//! snapshotted into the object store as that agent's next answer.
//!
//! One agent's backend failing is that agent's result (the sequencer drops it and goes on);
//! a halt (Ctrl-C, a budget) stops the phase for everyone.

use refinery_core::votes::Agent;
use refinery_core::{ManifestEntry, Snapshot};

use crate::backend::Backend;
use crate::error::EngineError;
use crate::phases::Context;
use crate::phases::build::{self, Place};
use crate::workspace::AgentCopies;

/// One agent's turn.
pub(crate) struct AnswerTurn<'a> {
    pub agent: Agent,
    pub backend: &'a Backend,
    pub prompt: String,
    /// The files the copy must hold before the turn (an improvement's base); `None` keeps the
    /// copy as it is.
    pub start_from: Option<Vec<ManifestEntry>>,
}

/// What a turn produced.
#[derive(Debug)]
pub(crate) struct Made {
    /// The closing summary, scrubbed, with the copy's own path shown as `.`.
    pub summary: String,
    /// The copy as the agent left it.
    pub snapshot: Snapshot,
}

/// Runs `turns` in parallel in their agents' copies. The outer `Err` is a halt; each turn's
/// own backend failure is its `Err` in the list, in `turns` order.
pub(crate) async fn make(
    ctx: &Context<'_>,
    round: u32,
    copies: &AgentCopies,
    turns: Vec<AnswerTurn<'_>>,
) -> Result<Vec<(Agent, Result<Made, EngineError>)>, EngineError> {
    #[allow(clippy::cast_precision_loss, reason = "at most eight agents")]
    let share = 1.0 / turns.len().max(1) as f64;
    let results = futures::future::join_all(turns.into_iter().map(|turn| async move {
        let agent = turn.agent;
        (agent, one(ctx, round, copies, turn, share).await)
    }))
    .await;
    if let Some(halt) = results.iter().find_map(|(_, result)| match result {
        Err(EngineError::Halted(halt)) => Some(*halt),
        _ => None,
    }) {
        return Err(halt.into());
    }
    Ok(results)
}

async fn one(
    ctx: &Context<'_>,
    round: u32,
    copies: &AgentCopies,
    turn: AnswerTurn<'_>,
    budget_share: f64,
) -> Result<Made, EngineError> {
    let index = turn.agent.0;
    if let Some(files) = &turn.start_from {
        copies.reset(ctx.store, index, files)?;
    }
    let dir = copies
        .path(index)
        .ok_or_else(|| EngineError::Setup(format!("no workspace copy for {}", turn.agent)))?;
    let place = Place { dir, budget_share };
    let built = build::turn_in(ctx, turn.backend, round, turn.prompt, place).await?;
    let snapshot = copies.snapshot(ctx.store, index)?;
    // A summary that names the copy's path would tell judges which copy is whose.
    let shown = built.text.replace(&dir.display().to_string(), ".");
    Ok(Made {
        summary: ctx.env.scrubber.scrub(&shown),
        snapshot,
    })
}
