//! Who plays a role: an agent CLI (a new process per call) or an API model (a new conversation
//! per call). Either way nothing survives from one call to the next except files — the fresh
//! context the loop is built on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use refinery_llm::{
    AgentCli, AgentEvent, AgentRequest, AgentRunner, CallOptions, ChatModel, ChatRequest, Cost,
    Message, PriceTable, Provider, Usage, chat_structured,
};
use refinery_prompts::Role;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{EngineError, Halt};
use crate::meter::Meter;
use crate::pack::Scrubber;
use crate::tools::Workspace;
use crate::whole_file;

/// A backend as the user names it: `claude`, `codex`, `gemini`, `copilot` (optionally with
/// a model: `claude:claude-opus-4-5`), or `provider/model`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// A headless agent CLI, with the model to ask it for (else its default).
    Agent(AgentCli, Option<String>),
    /// An API model, `provider/model`.
    Model(String),
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let name = raw.trim();
        let (program, model) = match name.split_once(':') {
            Some((program, model)) => (program, Some(model.trim())),
            None => (name, None),
        };
        if let Some(cli) = AgentCli::ALL
            .into_iter()
            .find(|cli| cli.program() == program)
        {
            return match model {
                Some("") => Err(format!(
                    "`{raw}` names no model after the colon; write {program}:<model> or just {program}"
                )),
                model => Ok(BackendSpec::Agent(cli, model.map(str::to_owned))),
            };
        }
        if name.contains('/') && !name.starts_with('/') && !name.ends_with('/') {
            return Ok(BackendSpec::Model(name.to_owned()));
        }
        Err(format!(
            "`{raw}` is not a backend; use claude, codex, gemini or copilot (optionally cli:model), or provider/model (for example anthropic/claude-sonnet-4-5)"
        ))
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Agent(cli, None) => formatter.write_str(cli.program()),
            BackendSpec::Agent(cli, Some(model)) => write!(formatter, "{}:{model}", cli.program()),
            BackendSpec::Model(name) => formatter.write_str(name),
        }
    }
}

/// How to start an agent CLI.
#[derive(Clone, Debug)]
pub struct AgentSetup {
    /// Which CLI.
    pub cli: AgentCli,
    /// Its executable; `None` looks it up on `env["PATH"]`.
    pub program: Option<PathBuf>,
    /// The model to ask for, if not the CLI's default.
    pub model: Option<String>,
    /// The child's complete environment.
    pub env: BTreeMap<String, String>,
}

/// A ready backend.
#[derive(Clone)]
pub struct Backend {
    spec: BackendSpec,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Agent(AgentSetup),
    Api {
        model: Arc<dyn ChatModel>,
        prices: Arc<PriceTable>,
        /// How it builds; shared by clones, because a switch to whole files is for good.
        format: Arc<FormatChoice>,
        /// Tokens of context per request, where the server says.
        context_window: Option<u32>,
    },
}

/// How an API builder changes files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuilderFormat {
    /// File tools (list, read, write, delete). A reply without any tool call whose text holds
    /// file blocks or tool calls written as text is applied as whole files, and the backend
    /// builds with [`BuilderFormat::WholeFile`] from then on.
    Tools,
    /// No tools: the files are in the brief, and the model answers with each changed file in
    /// a fenced block headed by its path ([`crate::whole_file`]). For models that do not make
    /// reliable tool calls; the default for `local/` and `ollama/` models.
    WholeFile,
}

impl BuilderFormat {
    /// The format a provider's models start with. Small local models were measured never to
    /// emit a real tool call (they write the call as text), so local servers start with whole
    /// files.
    pub fn for_provider(provider: Provider) -> Self {
        match provider {
            Provider::Local | Provider::Ollama => BuilderFormat::WholeFile,
            _ => BuilderFormat::Tools,
        }
    }
}

/// The format in use: `whole_file` is set once and never cleared.
#[derive(Debug)]
struct FormatChoice {
    whole_file: AtomicBool,
}

impl FormatChoice {
    fn new(format: BuilderFormat) -> Arc<Self> {
        Arc::new(Self {
            whole_file: AtomicBool::new(format == BuilderFormat::WholeFile),
        })
    }

    fn get(&self) -> BuilderFormat {
        if self.whole_file.load(Ordering::Relaxed) {
            BuilderFormat::WholeFile
        } else {
            BuilderFormat::Tools
        }
    }

    fn switch_to_whole_file(&self) {
        self.whole_file.store(true, Ordering::Relaxed);
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Backend")
            .field("spec", &self.spec.to_string())
            .finish_non_exhaustive()
    }
}

/// Whether a call may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Builders: read and write the workspace.
    Write,
    /// Judges: look, run, do not change.
    Inspect,
}

/// One call of a role.
pub(crate) struct CallSpec<'a> {
    pub role: Role,
    pub prompt: String,
    pub workdir: &'a Path,
    pub access: Access,
    /// The JSON schema the reply must follow (judges).
    pub schema: Option<Value>,
    /// Most output tokens per API call (bounds the cost estimate).
    pub max_tokens: u32,
    /// Share of the remaining budget an agent CLI may spend (calls in parallel split it).
    pub budget_share: f64,
    /// Longest the call may take.
    pub timeout: Duration,
    /// Folders an API builder must not touch.
    pub forbidden: Vec<PathBuf>,
    /// Paths outside the run's scope an API builder must not touch either.
    pub off_limits: refinery_core::OffLimits,
    /// Masks secrets in the prompt and in tool results before they reach the model.
    pub scrubber: &'a Scrubber,
}

/// What a call produced.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallReply {
    pub text: String,
    pub events: Vec<AgentEvent>,
    pub duration: Duration,
}

/// Most model turns an API builder gets in one call.
const MAX_TOOL_STEPS: usize = 40;

/// Characters per token, low on purpose: an estimate of input tokens must not undercount.
const CHARS_PER_TOKEN: f64 = 3.0;

impl Backend {
    /// An agent CLI backend.
    pub fn agent(setup: AgentSetup) -> Self {
        Self {
            spec: BackendSpec::Agent(setup.cli, setup.model.clone()),
            kind: Kind::Agent(setup),
        }
    }

    /// An API model backend; `prices` bounds each call's cost before it is made. It builds
    /// in its provider's [`BuilderFormat`] with no known context window until told otherwise.
    pub fn api(model: Arc<dyn ChatModel>, prices: Arc<PriceTable>) -> Self {
        let format = FormatChoice::new(BuilderFormat::for_provider(model.id().provider));
        Self {
            spec: BackendSpec::Model(model.id().to_string()),
            kind: Kind::Api {
                model,
                prices,
                format,
                context_window: None,
            },
        }
    }

    /// Builds in `format` (API models only; agent CLIs have their own tools).
    #[must_use]
    pub fn with_builder_format(mut self, new_format: BuilderFormat) -> Self {
        if let Kind::Api { format, .. } = &mut self.kind {
            *format = FormatChoice::new(new_format);
        }
        self
    }

    /// The model's context per request in tokens (API models only): every call's
    /// `max_tokens` is cut to fit it.
    #[must_use]
    pub fn with_context_window(mut self, tokens: Option<u32>) -> Self {
        if let Kind::Api { context_window, .. } = &mut self.kind {
            *context_window = tokens.filter(|&tokens| tokens > 0);
        }
        self
    }

    /// How this backend builds now: `None` for agent CLIs.
    pub fn builder_format(&self) -> Option<BuilderFormat> {
        match &self.kind {
            Kind::Agent(_) => None,
            Kind::Api { format, .. } => Some(format.get()),
        }
    }

    /// Whether a builder brief must carry the workspace's files (whole-file builders cannot
    /// read them), and at most how many characters of them fit.
    pub fn file_contents_budget(&self) -> Option<usize> {
        match &self.kind {
            Kind::Api {
                format,
                context_window,
                ..
            } if format.get() == BuilderFormat::WholeFile => Some(
                // A quarter of the context (at 3 characters a token) for the files, the rest
                // for the brief and the answer; 96 KiB when the context is unknown.
                context_window.map_or(96 * 1024, |tokens| tokens as usize * 3 / 4),
            ),
            _ => None,
        }
    }

    /// The name as the user gave it.
    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    /// Whether calls work on files on disk (agent CLIs) rather than only on the text they are
    /// sent (API models); judges get a copy of the deliverable on disk only when they do.
    pub fn reads_files(&self) -> bool {
        matches!(self.kind, Kind::Agent(_))
    }

    /// How this backend should be shown a deliverable.
    pub fn view(&self) -> crate::pack::View {
        if self.reads_files() {
            crate::pack::View::Listing
        } else {
            crate::pack::View::Contents
        }
    }

    /// What a judge is told about where the files are.
    pub(crate) fn files_note(&self) -> &'static str {
        if self.reads_files() {
            "The deliverable's files are in the current folder (a copy: changes you make there are discarded). Open, run and measure them yourself; they are listed below."
        } else {
            "The deliverable's files and their contents follow."
        }
    }

    /// Why a cost budget cannot be enforced with this backend, if it cannot.
    pub fn budget_problem(&self) -> Option<String> {
        match &self.kind {
            Kind::Agent(setup) if setup.cli == AgentCli::Claude => None,
            Kind::Agent(setup) => Some(format!(
                "{} does not report what a run costs, so --cost-budget cannot be enforced with it; use claude or an API model with a known price, or drop --cost-budget",
                setup.cli.program()
            )),
            Kind::Api { model, prices, .. } => prices.price(model.id()).is_none().then(|| {
                format!(
                    "{} has no price in Refinery's price table, so --cost-budget cannot be enforced with it; pick a listed model or drop --cost-budget",
                    model.id()
                )
            }),
        }
    }

    pub(crate) async fn call(
        &self,
        mut spec: CallSpec<'_>,
        meter: &Meter,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<CallReply, EngineError> {
        // Replaced only when something was masked: a brief is a quarter megabyte, and a clean
        // one (nearly all are) need not be copied to stay as it is.
        if let Cow::Owned(masked) = spec.scrubber.scrub_cow(&spec.prompt) {
            spec.prompt = masked;
        }
        match &self.kind {
            Kind::Agent(setup) => self.call_agent(setup, spec, meter, cancel, on_event).await,
            Kind::Api {
                model,
                prices,
                format,
                context_window,
            } => {
                let api = ApiCall {
                    model: model.as_ref(),
                    prices,
                    context_window: *context_window,
                };
                match (spec.access, format.get()) {
                    (Access::Write, BuilderFormat::Tools) => {
                        self.build_with_tools(&api, format, spec, meter, cancel, on_event)
                            .await
                    }
                    (Access::Write, BuilderFormat::WholeFile) => {
                        self.build_whole_file(&api, spec, meter, cancel, on_event)
                            .await
                    }
                    (Access::Inspect, _) => self.ask_model(&api, spec, meter, cancel).await,
                }
            }
        }
    }

    /// Names a failed call: Ctrl-C and a used-up time budget are halts (state is saved, the
    /// run stops cleanly); anything else is the backend's error.
    fn failure(&self, role: Role, source: refinery_llm::Error, meter: &Meter) -> EngineError {
        match source {
            refinery_llm::Error::Cancelled => EngineError::Halted(Halt::Cancelled),
            _ if meter.check_time().is_err() => EngineError::Halted(Halt::TimeBudget),
            error => EngineError::Backend {
                role: role_label(role),
                backend: self.spec.to_string(),
                error,
            },
        }
    }

    async fn call_agent(
        &self,
        setup: &AgentSetup,
        spec: CallSpec<'_>,
        meter: &Meter,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<CallReply, EngineError> {
        let reservation = meter.reserve_share_waiting(spec.budget_share).await?;
        let timeout = meter
            .time_left()
            .map_or(spec.timeout, |left| left.min(spec.timeout));
        let mut prompt = spec.prompt;
        if let Some(schema) = &spec.schema {
            prompt.push_str(&schema_instructions(schema));
        }
        let mut request = AgentRequest::new(setup.cli, spec.workdir, prompt);
        request.program.clone_from(&setup.program);
        request.model.clone_from(&setup.model);
        request.env.clone_from(&setup.env);
        request.system_prompt = Some(spec.role.prompt().to_owned());
        request.timeout = timeout;
        request.max_budget_usd = reservation.as_ref().map(crate::meter::Reservation::usd);
        if setup.cli == AgentCli::Claude {
            request.allowed_tools = match spec.access {
                Access::Write => ["Read", "Write", "Edit", "MultiEdit", "Bash", "Glob", "Grep"],
                Access::Inspect => ["Read", "Glob", "Grep", "Bash", "LS", "NotebookRead", "Task"],
            }
            .iter()
            .map(ToString::to_string)
            .collect();
        }
        let result = AgentRunner.run(&request, cancel, on_event).await;
        match result {
            Ok(outcome) => {
                meter.settle(reservation, outcome.usage, outcome.cost);
                Ok(CallReply {
                    text: outcome.text,
                    events: outcome.events,
                    duration: outcome.duration,
                })
            }
            Err(error) => {
                // A failed process reports no usage we can trust, but it may have spent up to
                // its cap: count that cap (unknown without a budget to cap it).
                let cost = reservation
                    .as_ref()
                    .map_or(Cost::Unknown, |held| Cost::Usd(held.usd()));
                meter.settle(reservation, None, cost);
                Err(self.failure(spec.role, error, meter))
            }
        }
    }

    fn estimate(
        prices: &PriceTable,
        model: &dyn ChatModel,
        input_chars: usize,
        max_tokens: u32,
    ) -> Option<f64> {
        let price = prices.price(model.id())?;
        #[allow(
            clippy::cast_precision_loss,
            reason = "an estimate; prompt sizes are far below 2^52"
        )]
        let input_tokens = input_chars as f64 / CHARS_PER_TOKEN;
        Some((input_tokens * price.input + f64::from(max_tokens) * price.output) / 1_000_000.0)
    }

    /// `--call-timeout` bounds the whole call and each request in it: a local server on a
    /// CPU may take minutes before its first token (a 12k-token brief took 223 s to read on a
    /// 0.5B model), so a fixed per-request timeout below the call's would cut it off.
    fn options(meter: &Meter, spec: &CallSpec<'_>, cancel: &CancellationToken) -> CallOptions {
        let deadline = meter
            .time_left()
            .map_or(spec.timeout, |left| left.min(spec.timeout));
        CallOptions {
            request_timeout: deadline,
            deadline: Some(deadline),
            schema_retries: 1,
            cancel: cancel.clone(),
            ..CallOptions::default()
        }
    }

    async fn ask_model(
        &self,
        api: &ApiCall<'_>,
        mut spec: CallSpec<'_>,
        meter: &Meter,
        cancel: &CancellationToken,
    ) -> Result<CallReply, EngineError> {
        let ApiCall { model, prices, .. } = *api;
        let started = Instant::now();
        let options = Self::options(meter, &spec, cancel);
        let input_chars = spec.prompt.len() + spec.role.prompt().len();
        let mut request = ChatRequest::new(std::mem::take(&mut spec.prompt))
            .with_system(spec.role.prompt().to_owned());
        let schema_chars = spec
            .schema
            .as_ref()
            .map_or(0, |schema| schema.to_string().len());
        let max_tokens = api.max_tokens(spec.max_tokens, input_chars + schema_chars);
        request.max_tokens = Some(max_tokens);
        let Some(schema) = spec.schema.clone() else {
            let response = self
                .metered_chat(api, &request, input_chars, &options, meter, spec.role)
                .await?;
            return Ok(CallReply {
                text: response.text,
                events: Vec::new(),
                duration: started.elapsed(),
            });
        };
        let schema_text = schema.to_string();
        request = request.with_schema(schema_name(spec.role), schema);
        // Every schema attempt may cost a full call.
        let attempts = f64::from(options.schema_retries + 1);
        let estimate = Self::estimate(prices, model, input_chars + schema_text.len(), max_tokens)
            .map(|one| one * attempts);
        let reservation = meter.reserve_waiting(estimate).await?;
        match chat_structured(model, request, &options, None).await {
            Ok(structured) => {
                meter.settle(Some(reservation), Some(structured.usage), structured.cost);
                Ok(CallReply {
                    text: structured.value.to_string(),
                    events: Vec::new(),
                    duration: started.elapsed(),
                })
            }
            Err(error) => {
                settle_failed(meter, reservation, estimate, &error);
                // A reply that never validated is an error that says why; the judge phase
                // treats it like any other malformed output (retried, then fails closed).
                Err(self.failure(spec.role, error, meter))
            }
        }
    }

    /// One metered API request: reserve what it could cost, make it, settle what it cost.
    async fn metered_chat(
        &self,
        api: &ApiCall<'_>,
        request: &ChatRequest,
        input_chars: usize,
        options: &CallOptions,
        meter: &Meter,
        role: Role,
    ) -> Result<refinery_llm::ChatResponse, EngineError> {
        let max_tokens = request.max_tokens.unwrap_or(0);
        let estimate = Self::estimate(api.prices, api.model, input_chars, max_tokens);
        let reservation = meter.reserve_waiting(estimate).await?;
        match api.model.chat(request, options).await {
            Ok(response) => {
                meter.settle(Some(reservation), Some(response.usage), response.cost);
                Ok(response)
            }
            Err(error) => {
                settle_failed(meter, reservation, estimate, &error);
                Err(self.failure(role, error, meter))
            }
        }
    }

    async fn build_with_tools(
        &self,
        api: &ApiCall<'_>,
        format: &FormatChoice,
        spec: CallSpec<'_>,
        meter: &Meter,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<CallReply, EngineError> {
        let started = Instant::now();
        let workspace = Workspace::new(spec.workdir, &spec.forbidden, spec.off_limits.clone())?;
        let options = Self::options(meter, &spec, cancel);
        let mut request = ChatRequest::new(spec.prompt.clone())
            .with_system(spec.role.prompt().to_owned())
            .with_tools(Workspace::specs());
        let mut trail = Trail::new(on_event);
        let mut usage = Usage::default();
        let mut cost = Cost::Usd(0.0);
        let mut final_text = String::new();
        let mut any_tool_call = false;
        let tool_chars: usize = Workspace::specs()
            .iter()
            .map(|tool| tool.description.len() + tool.parameters.to_string().len())
            .sum();
        let fixed_chars = spec.role.prompt().len() + tool_chars;
        for step in 0..MAX_TOOL_STEPS {
            if cancel.is_cancelled() {
                return Err(Halt::Cancelled.into());
            }
            let input_chars =
                fixed_chars + request.messages.iter().map(message_chars).sum::<usize>();
            request.max_tokens = Some(api.max_tokens(spec.max_tokens, input_chars));
            let response = self
                .metered_chat(api, &request, input_chars, &options, meter, spec.role)
                .await?;
            usage.add(response.usage);
            cost = cost.plus(response.cost);
            trail.reply(&response.text, response.usage);
            if response.tool_calls.is_empty() {
                // A model that never made a real call but wrote files (or calls) as text
                // gets them applied, and builds with whole files from now on.
                if !any_tool_call && trail.apply_text_edits(&workspace, &response.text, &spec) {
                    format.switch_to_whole_file();
                }
                final_text = response.text;
                break;
            }
            any_tool_call = true;
            request.messages.push(Message::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                let content = trail.run_tool(&workspace, call, &spec);
                request.messages.push(Message::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content,
                });
            }
            if step + 1 == MAX_TOOL_STEPS {
                final_text =
                    format!("(stopped after {MAX_TOOL_STEPS} model turns without a final answer)");
            }
        }
        Ok(trail.finish(final_text, usage, cost, started))
    }

    /// One call without tools: the brief (which carries the files) plus the whole-file
    /// instructions in, the files of the reply written through the file tools.
    async fn build_whole_file(
        &self,
        api: &ApiCall<'_>,
        spec: CallSpec<'_>,
        meter: &Meter,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<CallReply, EngineError> {
        let started = Instant::now();
        let workspace = Workspace::new(spec.workdir, &spec.forbidden, spec.off_limits.clone())?;
        let options = Self::options(meter, &spec, cancel);
        let prompt = format!("{}{}", spec.prompt, whole_file::INSTRUCTIONS);
        let schema = whole_file::schema();
        let input_chars = prompt.len() + spec.role.prompt().len() + schema.to_string().len();
        let max_tokens = api.max_tokens(spec.max_tokens, input_chars);
        // Plain `chat`, not `chat_structured`: a reply that ignores the schema may still hold
        // file blocks, which the parser reads.
        let mut request = ChatRequest::new(prompt)
            .with_system(spec.role.prompt().to_owned())
            .with_schema("files", schema);
        request.max_tokens = Some(max_tokens);
        let response = self
            .metered_chat(api, &request, input_chars, &options, meter, spec.role)
            .await?;
        let mut trail = Trail::new(on_event);
        trail.reply(&response.text, response.usage);
        // Real tool calls are still honoured (only write and delete: nothing answers them).
        for call in &response.tool_calls {
            trail.run_tool(&workspace, call, &spec);
        }
        if response.tool_calls.is_empty() {
            trail.apply_text_edits(&workspace, &response.text, &spec);
        }
        let text = whole_file::summary_of(&response.text).unwrap_or(response.text);
        Ok(trail.finish(text, response.usage, response.cost, started))
    }
}

/// The parts of an API backend one call needs.
struct ApiCall<'a> {
    model: &'a dyn ChatModel,
    prices: &'a PriceTable,
    context_window: Option<u32>,
}

impl ApiCall<'_> {
    fn max_tokens(&self, requested: u32, input_chars: usize) -> u32 {
        refinery_llm::local::fit_max_tokens(requested, self.context_window, input_chars)
    }
}

/// What an API builder did, as agent events: each one reported as it happens and kept for the
/// trace.
struct Trail<'a> {
    on_event: &'a mut (dyn FnMut(&AgentEvent) + Send),
    events: Vec<AgentEvent>,
}

impl<'a> Trail<'a> {
    fn new(on_event: &'a mut (dyn FnMut(&AgentEvent) + Send)) -> Self {
        Self {
            on_event,
            events: Vec::new(),
        }
    }

    fn emit(&mut self, event: AgentEvent) {
        (self.on_event)(&event);
        self.events.push(event);
    }

    fn reply(&mut self, text: &str, usage: Usage) {
        self.emit(AgentEvent::Usage { usage });
        if !text.trim().is_empty() {
            self.emit(AgentEvent::Text {
                text: text.to_owned(),
            });
        }
    }

    /// Runs one tool call and returns what the model is told (secrets masked).
    fn run_tool(
        &mut self,
        workspace: &Workspace,
        call: &refinery_llm::ToolCall,
        spec: &CallSpec<'_>,
    ) -> String {
        self.emit(AgentEvent::ToolUse {
            id: call.id.clone(),
            name: call.name.clone(),
            input: call.arguments.clone(),
        });
        let mut output = workspace.run(call);
        output.content = spec.scrubber.scrub(&output.content);
        self.emit(AgentEvent::ToolResult {
            id: call.id.clone(),
            output: output.content.clone(),
            is_error: output.is_error,
        });
        output.content
    }

    /// Applies the file blocks and text-written calls of `text`; whether there were any.
    fn apply_text_edits(&mut self, workspace: &Workspace, text: &str, spec: &CallSpec<'_>) -> bool {
        let parsed = whole_file::parse(text);
        if parsed.edits.is_empty() {
            return false;
        }
        for applied in whole_file::apply(workspace, &parsed) {
            let whole_file::Applied { call, output } = applied;
            self.emit(AgentEvent::ToolUse {
                id: call.id.clone(),
                name: call.name.clone(),
                input: call.arguments,
            });
            self.emit(AgentEvent::ToolResult {
                id: call.id,
                output: spec.scrubber.scrub(&output.content),
                is_error: output.is_error,
            });
        }
        true
    }

    fn finish(mut self, text: String, usage: Usage, cost: Cost, started: Instant) -> CallReply {
        self.emit(AgentEvent::Result {
            text: text.clone(),
            usage: Some(usage),
            cost,
            num_turns: None,
            is_error: false,
        });
        CallReply {
            text,
            events: self.events,
            duration: started.elapsed(),
        }
    }
}

/// Settles a model call that failed. Attempts the provider answered were paid for whether or
/// not their output was usable: with the usage it reported (replies that never matched the
/// schema), that is what the call cost; without it (an HTTP error, a cut stream, a timeout)
/// the call is counted at the most it could have cost, its estimate, so a run that keeps
/// failing still reaches its budget instead of spending unseen.
fn settle_failed(
    meter: &Meter,
    reservation: crate::meter::Reservation,
    estimate: Option<f64>,
    error: &refinery_llm::Error,
) {
    match error {
        refinery_llm::Error::InvalidStructuredOutput { usage, cost, .. }
            if *usage != Usage::default() =>
        {
            meter.settle(Some(reservation), Some(*usage), *cost);
        }
        // Refused before anything was sent: nothing was spent.
        refinery_llm::Error::MissingKey { .. }
        | refinery_llm::Error::InvalidSchema { .. }
        | refinery_llm::Error::Json(_) => meter.settle(Some(reservation), None, Cost::Usd(0.0)),
        _ => meter.settle(
            Some(reservation),
            None,
            estimate.map_or(Cost::Unknown, Cost::Usd),
        ),
    }
}

fn message_chars(message: &Message) -> usize {
    match message {
        Message::User { text } => text.len(),
        Message::Assistant { text, tool_calls } => {
            text.len()
                + tool_calls
                    .iter()
                    .map(|call| call.name.len() + call.arguments.to_string().len())
                    .sum::<usize>()
        }
        Message::ToolResult { content, name, .. } => content.len() + name.len(),
    }
}

fn schema_name(role: Role) -> &'static str {
    match role {
        Role::CriteriaWriter => "criteria",
        Role::RoundEvaluator => "evaluation",
        Role::RegressionGuard => "comparison",
        Role::ExecutionTraceAnalyzer => "lessons",
        Role::Builder | Role::MediaWorker => "answer",
        Role::AnswerJudge => "judgment",
    }
}

/// The name used in messages and events.
pub(crate) fn role_label(role: Role) -> &'static str {
    match role {
        Role::CriteriaWriter => "criteria writer",
        Role::RoundEvaluator => "round evaluator",
        Role::RegressionGuard => "regression guard",
        Role::ExecutionTraceAnalyzer => "trace analyzer",
        Role::Builder => "builder",
        Role::MediaWorker => "media worker",
        Role::AnswerJudge => "answer judge",
    }
}

/// What an agent CLI is told about the reply format (API models get the schema natively).
fn schema_instructions(schema: &Value) -> String {
    format!(
        "\n\n## Reply format\n\nReply with exactly one JSON object and nothing else, following this JSON Schema:\n\n```json\n{schema}\n```\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!(
            "claude".parse::<BackendSpec>(),
            Ok(BackendSpec::Agent(AgentCli::Claude, None))
        );
        let with_model = "codex:gpt-5-codex".parse::<BackendSpec>().unwrap();
        assert_eq!(
            with_model,
            BackendSpec::Agent(AgentCli::Codex, Some("gpt-5-codex".to_owned()))
        );
        assert_eq!(with_model.to_string(), "codex:gpt-5-codex");
        assert!("claude:".parse::<BackendSpec>().is_err());
        assert_eq!(
            "openrouter/meta/llama".parse::<BackendSpec>(),
            Ok(BackendSpec::Model("openrouter/meta/llama".to_owned()))
        );
        for bad in ["", "gpt", "/x", "anthropic/"] {
            let error = bad.parse::<BackendSpec>().unwrap_err();
            assert!(error.contains("provider/model"), "{error}");
        }
    }
}
