//! The build phase: a fresh builder works in the workspace, told only the task, the criteria
//! and the handoff from the previous round.
//!
//! [`turn`] is one builder call with write access (a new agent process, or a new API
//! conversation with the workspace tools); the fix of `verify` and the repair of `guard` are
//! turns too. How a builder edits files is the backend's business: a whole-file reply format
//! for API builders would be chosen here, per backend, without the phases around it changing.

use std::path::Path;
use std::time::Duration;

use refinery_core::snapshot::take_snapshot;
use refinery_llm::AgentEvent;
use refinery_prompts::Role;

use crate::backend::{Access, Backend, CallSpec};
use crate::briefs::{self, BuilderBrief};
use crate::error::EngineError;
use crate::events::{Phase, RefineEvent};
use crate::phases::Context;
use crate::{pack, whole_file};

/// One builder turn: its final message and everything it did.
#[derive(Clone, Debug, Default)]
pub(crate) struct BuilderTurn {
    /// The builder's closing summary.
    pub text: String,
    /// Its event stream (tool calls, results, usage), for the trace analyzer.
    pub events: Vec<AgentEvent>,
    pub duration: Duration,
}

/// Every turn the builder took in a round, in order: the build, a fix, a repair.
#[derive(Debug, Default)]
pub(crate) struct BuilderTrail {
    pub events: Vec<AgentEvent>,
    pub duration: Duration,
}

impl BuilderTrail {
    pub(crate) fn push(&mut self, turn: BuilderTurn) {
        self.events.extend(turn.events);
        self.duration += turn.duration;
    }
}

impl Extend<BuilderTurn> for BuilderTrail {
    fn extend<T: IntoIterator<Item = BuilderTurn>>(&mut self, turns: T) {
        for turn in turns {
            self.push(turn);
        }
    }
}

/// What the round's build is made from.
pub(crate) struct BuildInput<'a> {
    pub builder: &'a Backend,
    pub brief: BuilderBrief<'a>,
}

/// The round's build: its brief saved (scrubbed) next to the round, then one builder turn.
pub(crate) async fn run(
    ctx: &Context<'_>,
    input: BuildInput<'_>,
) -> Result<BuilderTurn, EngineError> {
    let round = input.brief.round;
    ctx.phase(round, Phase::Build);
    let prompt = briefs::builder(&input.brief);
    // A record for people (a resumed round writes its own), written off this thread while
    // the builder works: atomic and scrubbed by the process scrubber, not synced.
    ctx.copies.write(
        ctx.session.round_dir(round).join("builder_prompt.md"),
        prompt.as_bytes(),
    );
    turn(ctx, input.builder, round, prompt).await
}

/// One builder call in the workspace, its tool use forwarded as activity events.
pub(crate) async fn turn(
    ctx: &Context<'_>,
    builder: &Backend,
    round: u32,
    prompt: String,
) -> Result<BuilderTurn, EngineError> {
    let place = Place {
        dir: ctx.workspace(),
        budget_share: 1.0,
    };
    turn_in(ctx, builder, round, prompt, place).await
}

/// Where a builder turn works, and how much of the remaining budget it may take (turns that
/// run in parallel split it).
pub(crate) struct Place<'a> {
    pub dir: &'a Path,
    pub budget_share: f64,
}

/// One builder call in `place` (a multi-model run's agents each work in their own copy).
pub(crate) async fn turn_in(
    ctx: &Context<'_>,
    builder: &Backend,
    round: u32,
    prompt: String,
    place: Place<'_>,
) -> Result<BuilderTurn, EngineError> {
    let prompt = with_files(ctx, builder, place.dir, prompt)?;
    let mut forward = |event: &AgentEvent| {
        if let AgentEvent::ToolUse { name, .. } = event {
            ctx.emit(&RefineEvent::Activity {
                round,
                tool: name.clone(),
            });
        }
    };
    let reply = builder
        .call(
            CallSpec {
                role: Role::Builder,
                prompt,
                workdir: place.dir,
                access: Access::Write,
                schema: None,
                max_tokens: 16_384,
                budget_share: place.budget_share,
                timeout: ctx.env.call_timeout,
                forbidden: vec![ctx.store.root().to_path_buf()],
                off_limits: ctx.scope.off_limits(),
                scrubber: &ctx.env.scrubber,
            },
            ctx.meter,
            ctx.cancel,
            &mut forward,
        )
        .await?;
    ctx.emit_spend();
    Ok(BuilderTurn {
        text: reply.text,
        events: reply.events,
        duration: reply.duration,
    })
}

/// A whole-file builder cannot open files: its brief carries those of `dir` (scrubbed, within
/// the backend's budget; the state folder left out). Other builders read files themselves and
/// get `prompt` unchanged.
fn with_files(
    ctx: &Context<'_>,
    builder: &Backend,
    dir: &Path,
    prompt: String,
) -> Result<String, EngineError> {
    let Some(budget) = builder.file_contents_budget() else {
        return Ok(prompt);
    };
    let objects = ctx.store.objects();
    let forbidden = [ctx.store.root().to_path_buf()];
    let snapshot = take_snapshot(&objects, dir, &forbidden, &[".".to_owned()])?;
    let files = pack::render_limited(&objects, &snapshot.entries, &ctx.env.scrubber, budget);
    Ok(format!(
        "{prompt}{}",
        whole_file::files_section(&files, budget)
    ))
}
