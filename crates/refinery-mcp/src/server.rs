//! The tool handlers: each one parses its arguments, makes one call into `refinery-core`
//! on a blocking thread (store calls take file locks and may wait), and renders the result.

use std::path::Path;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ServerCapabilities, ServerConfig as McpServerConfig,
};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use time::OffsetDateTime;

use refinery_core::{
    ClaudeSessionId, CostBudget, CriteriaSet, Cutoff, MeasuredSpend, PlanAccepted, Session,
    SessionId, SessionSelector, SessionSettings, StateDir,
};
use refinery_engine::{git_view, plugin_spend};
use refinery_llm::PriceTable;

use crate::error::{internal_error, tool_error};
use crate::protocol::{
    GenerateEvalCriteriaParams, GenerateEvalCriteriaResponse, InitSessionParams,
    InitSessionResponse, NewAnswerArguments, NewAnswerParams, NewAnswerResponse,
    ProposeImprovementsParams, ProposeImprovementsResponse, ResetEvaluationParams,
    ResetEvaluationResponse, SubmitChecklistParams, SubmitChecklistResponse, VoteArguments,
    VoteParams, VoteResponse,
};

const WORKFLOW_SERVER_NAME: &str = "refinery_workflow";

/// Which tools a server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolSet {
    /// Criteria, checklist, plans, reset.
    Quality,
    /// Answers and votes.
    Workflow,
    /// Both on one connection (plus the media tools when attached with
    /// [`RefineryServer::with_media`]).
    All,
    /// Only the media tools (attach them with [`RefineryServer::with_media`]).
    Media,
}

/// Where a server keeps its state and which session it serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The state folder and workspace.
    pub store: StateDir,
    /// Serve this session instead of the one the pointer file names.
    pub session: Option<SessionId>,
    /// The Claude Code session this server was started by (`CLAUDE_CODE_SESSION_ID`): tools
    /// then work on the Refinery session bound to it, never on another Claude Code
    /// session's loop in the same folder.
    pub claude_session: Option<ClaudeSessionId>,
}

impl ServerConfig {
    /// Which session tool calls work on: a pinned session, else the Claude Code session's
    /// binding, else the folder-wide pointer.
    pub fn selector(&self) -> SessionSelector {
        match (&self.session, &self.claude_session) {
            (Some(id), _) => SessionSelector::Pinned(id.clone()),
            (None, Some(claude)) => SessionSelector::Claude(claude.clone()),
            (None, None) => SessionSelector::Pointer,
        }
    }
}

/// An MCP server exposing Refinery's tools.
#[derive(Clone)]
pub struct RefineryServer {
    tool_router: ToolRouter<Self>,
    config: ServerConfig,
    pub(crate) media: Option<std::sync::Arc<refinery_media::Media>>,
    /// Prices the plugin's spending for `cost_budget` (the CLI's own table).
    prices: Arc<PriceTable>,
}

impl RefineryServer {
    /// A server offering `tools`.
    pub fn new(tools: ToolSet, config: ServerConfig) -> Self {
        let tool_router = match tools {
            ToolSet::Quality => Self::quality_router(),
            ToolSet::Workflow => Self::workflow_router(),
            ToolSet::All => Self::quality_router() + Self::workflow_router(),
            ToolSet::Media => ToolRouter::new(),
        };
        Self {
            tool_router,
            config,
            media: None,
            prices: Arc::new(PriceTable::builtin()),
        }
    }

    /// Adds `generate_media` and `read_media`, served by `media`.
    #[must_use]
    pub fn with_media(mut self, media: refinery_media::Media) -> Self {
        self.tool_router.merge(Self::media_router());
        self.media = Some(std::sync::Arc::new(media));
        self
    }

    fn current_session(config: &ServerConfig) -> refinery_core::Result<Session> {
        let id = config.store.resolve_session(&config.selector())?;
        Ok(config.store.session(id))
    }

    /// What the session's Claude Code transcripts cost so far, when it has a budget.
    fn spend(
        config: &ServerConfig,
        session: &Session,
        prices: &PriceTable,
    ) -> refinery_core::Result<Option<MeasuredSpend>> {
        if session.info()?.settings.cost_budget.is_none() {
            return Ok(None);
        }
        plugin_spend::measure(&config.store, session.id(), prices).map(Some)
    }

    /// Runs a store operation on a blocking thread and renders its result.
    async fn call<T, F>(&self, op: F) -> Result<CallToolResult, ErrorData>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&ServerConfig, OffsetDateTime) -> refinery_core::Result<T> + Send + 'static,
    {
        let config = self.config.clone();
        let outcome =
            tokio::task::spawn_blocking(move || op(&config, OffsetDateTime::now_utc())).await;
        Ok(match outcome {
            Ok(Ok(response)) => match serde_json::to_value(response) {
                Ok(value) => CallToolResult::structured(value),
                Err(err) => internal_error(&format!("could not encode the result: {err}")),
            },
            Ok(Err(err)) => {
                tracing::debug!(code = err.code(), "tool call refused");
                tool_error(&err)
            }
            Err(join_error) => {
                tracing::error!(%join_error, "tool worker failed");
                internal_error("the tool failed unexpectedly; state was not changed by this call")
            }
        })
    }

    async fn propose(
        &self,
        params: ProposeImprovementsParams,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |config, now| {
            let session = Self::current_session(config)?;
            let PlanAccepted {
                plan,
                path,
                failed_criteria: failed,
            } = session.propose_improvements(
                &params.improvements,
                params.preserve,
                params.vision,
                now,
            )?;
            let non_incremental = plan.non_incremental_count(&failed);
            Ok(ProposeImprovementsResponse {
                status: "accepted".to_owned(),
                valid: true,
                message: format!(
                    "Plan accepted for {} failing criteria ({non_incremental} structural or transformative change(s)). Build it next round, keeping what works.",
                    failed.len()
                ),
                improvements_count: plan.entry_count(),
                non_incremental_count: non_incremental,
                failed_criteria: failed,
                plan_path: display(&path),
            })
        })
        .await
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[tool_router(router = quality_router, vis = "pub(crate)")]
impl RefineryServer {
    #[tool(
        description = "Start a refinement session and make it current. Optional: label, cutoff (pass mark 1-10, default 7), max_rounds, cost_budget (USD, measured from Claude Code's transcripts). resume=<session id> continues an existing session.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<InitSessionResponse>()
    )]
    async fn init_session(
        &self,
        Parameters(params): Parameters<InitSessionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |config, now| {
            let store = &config.store;
            let session = match params.resume.as_deref().map(str::trim) {
                Some(resume) if !resume.is_empty() => {
                    let session = store.existing_session(resume)?;
                    store.make_current(&session, now)?;
                    session
                }
                _ => {
                    let cutoff = params
                        .cutoff
                        .map(Cutoff::new)
                        .transpose()?
                        .unwrap_or_default();
                    let cost_budget = params.cost_budget.map(CostBudget::from_usd).transpose()?;
                    if cost_budget.is_some() && config.claude_session.is_none() {
                        return Err(refinery_core::Error::CostUnmeasured {
                            session: "(new)".to_owned(),
                            reason: "cost_budget is measured from Claude Code's transcripts, and this server was not started by Claude Code; leave cost_budget out".to_owned(),
                        });
                    }
                    let settings = SessionSettings {
                        cutoff,
                        max_rounds: params.max_rounds,
                        cost_budget,
                    };
                    // The scope is fixed in the session's first record: one sync for both.
                    store.init_session_scoped(
                        &params.label,
                        settings,
                        git_view::git_listing(store.workspace()),
                        now,
                    )?
                }
            };
            if let Some(claude) = &config.claude_session {
                store.bind_claude_session(claude, session.id(), now)?;
            }
            // The scope is fixed now, before any building: later edits to ignore files
            // cannot widen what this session snapshots.
            git_view::ensure_session_scope(&session, store.workspace(), now)?;
            let settings = session.info()?.settings;
            let state = session.state()?;
            Ok(InitSessionResponse {
                status: "ok".to_owned(),
                session_id: session.id().to_string(),
                session_dir: display(session.dir()),
                cutoff: settings.cutoff.get(),
                max_rounds: settings.max_rounds,
                round: state.round,
                rounds_used: state.rounds_counted(),
                cost_budget: settings.cost_budget.map(CostBudget::usd),
            })
        })
        .await
    }

    #[tool(
        description = "Store the evaluation criteria for this session (replaces earlier ones). Each criterion: id, text, and optionally category, rationale, anti_patterns, score_anchors, verify_by.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<GenerateEvalCriteriaResponse>()
    )]
    async fn generate_eval_criteria(
        &self,
        Parameters(params): Parameters<GenerateEvalCriteriaParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |config, now| {
            let criteria = CriteriaSet::from_json(&params.criteria)?;
            let session = Self::current_session(config)?;
            let stored = session.register_criteria(&criteria, now)?;
            Ok(GenerateEvalCriteriaResponse {
                status: "ok".to_owned(),
                criteria_count: stored.criteria_count,
                path: display(&stored.path),
                criteria_ids: stored.criteria_ids,
                warnings: stored.warnings,
            })
        })
        .await
    }

    #[tool(
        description = "Record this round's scores (every criterion, whole numbers 0-10 with reasoning), or a `refinery evaluate` panel's by its `panel_session`, and get the verdict: converge when all meet the cutoff, else iterate. Call new_answer for the round first.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<SubmitChecklistResponse>()
    )]
    async fn submit_checklist(
        &self,
        Parameters(params): Parameters<SubmitChecklistParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let prices = Arc::clone(&self.prices);
        self.call(move |config, now| {
            let session = Self::current_session(config)?;
            let record = match params.panel_session.as_deref() {
                Some(panel) => {
                    if !params.scores.is_null() {
                        return Err(refinery_core::Error::BadPath {
                            path: panel.to_owned(),
                            reason: "came with scores; leave scores out, a panel's scores are read from its report".to_owned(),
                        });
                    }
                    let scored = crate::panel::load(&config.store, &session, panel)?;
                    session.submit_checklist(&scored.scores, scored.report_path.as_deref(), now)?
                }
                None if params.scores.is_null() => {
                    // Checked before the store so a missing argument is named as such.
                    return Err(refinery_core::checklist::ScoreError::NotAnObject {
                        found: "nothing (give scores, or panel_session for a refinery evaluate panel)",
                    }
                    .into());
                }
                None => {
                    session.submit_checklist(&params.scores, params.report_path.as_deref(), now)?
                }
            };
            let settings = session.info()?.settings;
            // Reported only: the round is already built, and scoring it is what the budget
            // paid for. The next new_answer is what a spent budget refuses.
            let spent_usd = Self::spend(config, &session, &prices)
                .ok()
                .flatten()
                .filter(|spend| spend.problems.is_empty() && spend.unpriced_models.is_empty())
                .map(|spend| spend.usd);
            let rounds_used = session.state()?.rounds_counted();
            let outcome = record.outcome;
            Ok(SubmitChecklistResponse {
                status: "accepted".to_owned(),
                verdict: outcome.verdict,
                round: outcome.round,
                cutoff: outcome.cutoff,
                explanation: outcome.explanation,
                items: outcome.items,
                failed_criteria: outcome.failed_criteria,
                failing_criteria_detail: outcome.failing_criteria_detail,
                plateaued_criteria: outcome.plateaued_criteria,
                submission: record.submission,
                report_path: record.report_path,
                max_rounds: settings.max_rounds,
                rounds_used,
                cost_budget: settings.cost_budget.map(CostBudget::usd),
                spent_usd,
            })
        })
        .await
    }

    #[tool(
        description = "After an iterate verdict: plan the next round. Give every failing criterion at least one {plan, impact} entry; at least one must be structural or transformative.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<ProposeImprovementsResponse>()
    )]
    async fn propose_improvements(
        &self,
        Parameters(params): Parameters<ProposeImprovementsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.propose(params).await
    }

    #[tool(
        description = "Same as propose_improvements (kept for MassGen compatibility).",
        output_schema = rmcp::handler::server::tool::schema_for_output::<ProposeImprovementsResponse>()
    )]
    async fn draft_approach(
        &self,
        Parameters(params): Parameters<ProposeImprovementsParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.propose(params).await
    }

    #[tool(
        description = "Forget this session's scores and plans but keep the criteria; round folders are archived and the next checklist is round 1. Rounds already used still count toward max_rounds.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<ResetEvaluationResponse>()
    )]
    async fn reset_evaluation(
        &self,
        Parameters(_params): Parameters<ResetEvaluationParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |config, now| {
            let session = Self::current_session(config)?;
            let done = session.reset_evaluation(now)?;
            Ok(ResetEvaluationResponse {
                status: "ok".to_owned(),
                message: format!(
                    "Scores and plans cleared; criteria kept. {} earlier round folder(s) archived.",
                    done.archived_rounds.len()
                ),
                archived_rounds: done.archived_rounds,
            })
        })
        .await
    }
}

#[tool_router(router = workflow_router, vis = "pub(crate)")]
impl RefineryServer {
    #[tool(
        description = "Submit this round's deliverable: snapshots the listed files and folders (relative to the workspace). Files git ignored at the session's start, .env*, .git and the state folder are never taken. Refused past max_rounds or cost_budget.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<NewAnswerResponse>()
    )]
    async fn new_answer(
        &self,
        Parameters(params): Parameters<NewAnswerParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let prices = Arc::clone(&self.prices);
        self.call(move |config, now| {
            let session = Self::current_session(config)?;
            // A session that never called init_session (MassGen's flow) gets its scope here.
            git_view::ensure_session_scope(&session, config.store.workspace(), now)?;
            let spend = Self::spend(config, &session, &prices)?;
            let paths = params.file_paths.clone().unwrap_or_default();
            let submission =
                session.new_answer_within(&params.answer, &paths, spend.as_ref(), now)?;
            let cost_budget = session.info()?.settings.cost_budget.map(CostBudget::usd);
            let round_dir = session.round_dir(submission.round);
            Ok(NewAnswerResponse {
                status: "ok".to_owned(),
                server: WORKFLOW_SERVER_NAME.to_owned(),
                tool_name: "new_answer".to_owned(),
                round: submission.round,
                revision: submission.revision,
                session_id: session.id().to_string(),
                session_dir: display(session.dir()),
                scratch_dir: display(&round_dir.join(".scratch")),
                round_dir: display(&round_dir),
                snapshots: submission.snapshot_paths,
                skipped: submission.skipped,
                ignored: submission.ignored,
                total_bytes: submission.total_bytes,
                new_bytes: submission.new_bytes,
                cost_budget,
                spent_usd: spend.map(|spend| spend.usd),
                arguments: NewAnswerArguments {
                    answer: params.answer,
                    file_paths: params.file_paths,
                },
            })
        })
        .await
    }

    #[tool(
        description = "Vote for an answer (by its label) with your reasoning; the vote is recorded in the session journal.",
        output_schema = rmcp::handler::server::tool::schema_for_output::<VoteResponse>()
    )]
    async fn vote(
        &self,
        Parameters(params): Parameters<VoteParams>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |config, now| {
            let session = Self::current_session(config)?;
            let round = session.vote(&params.choice, &params.reasoning, now)?;
            Ok(VoteResponse {
                status: "ok".to_owned(),
                server: WORKFLOW_SERVER_NAME.to_owned(),
                tool_name: "vote".to_owned(),
                recorded: true,
                round,
                arguments: VoteArguments {
                    choice: params.choice,
                    reasoning: params.reasoning,
                },
            })
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for RefineryServer {
    fn get_info(&self) -> McpServerConfig {
        McpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("refinery", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Refinery's refinement tools. Typical round: new_answer (snapshot the work), submit_checklist (scores → verdict), and after iterate, propose_improvements. Start with init_session and generate_eval_criteria.",
            )
    }
}
