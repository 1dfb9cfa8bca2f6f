//! `refinery batch FILE`: many refine tasks, each in its own worktree and branch, up to
//! `--jobs N` at once, under one total `--cost-budget`.
//!
//! The tasks run in this one process so they can share one budget pool
//! ([`refinery_engine::meter::SharedBudget`]): every model call of every task holds its upper
//! bound in the pool before it starts, so no task can start a call the shared budget cannot
//! cover, whatever the others are doing. The batch's state (which task ran in which session
//! and worktree, and how it ended) is saved after every change in
//! `<state dir>/batches/<name>.json`, so running the same command again after Ctrl-C or a crash
//! skips finished tasks and resumes unfinished ones from their last finished round.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use refinery_core::StateDir;
use refinery_core::fsutil::{LockGuard, read_json, write_json};
use refinery_core::rounds::{LoopLimits, StopReason};
use refinery_engine::meter::{BudgetPool, PoolHold, SharedBudget};
use refinery_engine::{Environment, Halt, RefineConfig, Refiner, RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::commands::refine::{
    Machine, cancel_on_ctrl_c, checked_limits, commit_message, parse_duration, runtime, store_for,
};
use crate::commands::report;
use crate::output;
use crate::worktree;

#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// The tasks: TOML (`[defaults]` and `[[task]]` tables) or JSONL (one task object a line;
    /// a line `{"defaults": {…}}` sets defaults). See docs/PARALLEL.md.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Run at most this many tasks at once.
    #[arg(long, default_value_t = 2, value_name = "N")]
    jobs: usize,
    /// One total for every task of the batch, in US dollars (earlier sessions of a resumed
    /// batch included): no task starts a call the rest of it cannot cover.
    #[arg(long, value_name = "USD")]
    cost_budget: Option<f64>,
    /// Run only these tasks (repeatable; a CI matrix runs one task per job).
    #[arg(long, value_name = "ID")]
    only: Vec<String>,
    /// Print the task list as JSON (`[{"id", "task"}]`, for a CI matrix) and run nothing; with
    /// --cost-budget each entry also gets its share of the total as `cost_budget`.
    #[arg(long)]
    list_json: bool,
    /// One JSON object per event on stdout, and the batch summary as the last one.
    #[arg(long)]
    json: bool,
    /// Longest one builder or judge call may take, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    call_timeout: u64,
    /// Longest one verify command may take, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    verify_timeout: u64,
}

/// What a task entry (or the defaults) may say; a task's own fields win over the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Option<String>,
    task: Option<String>,
    criteria: Option<String>,
    verify: Option<Vec<String>>,
    builder: Option<String>,
    evaluator: Option<Vec<String>>,
    max_rounds: Option<u32>,
    min_rounds: Option<u32>,
    cost_budget: Option<f64>,
    time_budget: Option<String>,
}

impl Entry {
    fn over(self, defaults: &Entry) -> Entry {
        let d = defaults.clone();
        Entry {
            id: self.id,
            task: self.task.or(d.task),
            criteria: self.criteria.or(d.criteria),
            verify: self.verify.or(d.verify),
            builder: self.builder.or(d.builder),
            evaluator: self.evaluator.or(d.evaluator),
            max_rounds: self.max_rounds.or(d.max_rounds),
            min_rounds: self.min_rounds.or(d.min_rounds),
            cost_budget: self.cost_budget.or(d.cost_budget),
            time_budget: self.time_budget.or(d.time_budget),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    defaults: Entry,
    #[serde(default)]
    task: Vec<Entry>,
}

/// One task, resolved and checked.
#[derive(Clone, Debug)]
struct Task {
    id: String,
    entry: Entry,
    limits: LoopLimits,
}

/// Reads and checks the batch file: every task has a text and a unique, safe id.
fn load_tasks(path: &Path) -> anyhow::Result<Vec<Task>> {
    let text = fs_err::read_to_string(path)
        .with_context(|| format!("reading the batch file {}", path.display()))?;
    let is_toml = path.extension().is_some_and(|ext| ext == "toml");
    let (defaults, entries) = if is_toml {
        let file: TomlFile = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid batch file (TOML)", path.display()))?;
        (file.defaults, file.task)
    } else {
        parse_jsonl(&text).with_context(|| format!("{}", path.display()))?
    };
    if entries.is_empty() {
        bail!(
            "{} holds no task; add [[task]] tables (TOML) or one task object a line (JSONL)",
            path.display()
        );
    }
    let mut tasks: Vec<Task> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let entry = entry.over(&defaults);
        let id = entry
            .id
            .clone()
            .unwrap_or_else(|| format!("task-{}", index + 1));
        if id.is_empty()
            || id.len() > 40
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("task id `{id}`: use up to 40 letters, digits, `-` or `_`");
        }
        if tasks.iter().any(|task| task.id == id) {
            bail!("task id `{id}` appears twice; give every task its own id");
        }
        if entry
            .task
            .as_deref()
            .is_none_or(|text| text.trim().is_empty())
        {
            bail!("task `{id}` has no `task` text");
        }
        let base = LoopLimits::default();
        let time_budget = match &entry.time_budget {
            Some(raw) => Some(
                parse_duration(raw)
                    .map_err(|err| anyhow::anyhow!("task `{id}`: time_budget: {err}"))?,
            ),
            None => None,
        };
        let limits = checked_limits(LoopLimits {
            max_rounds: entry.max_rounds.unwrap_or(base.max_rounds),
            min_rounds: entry.min_rounds.unwrap_or(base.min_rounds),
            cost_budget_usd: entry.cost_budget,
            time_budget,
        })
        .with_context(|| format!("task `{id}`"))?;
        tasks.push(Task { id, entry, limits });
    }
    Ok(tasks)
}

fn parse_jsonl(text: &str) -> anyhow::Result<(Entry, Vec<Entry>)> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DefaultsLine {
        defaults: Entry,
    }
    let mut defaults = Entry::default();
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Ok(found) = serde_json::from_str::<DefaultsLine>(line) {
            defaults = found.defaults;
            continue;
        }
        let entry: Entry = serde_json::from_str(line).with_context(|| {
            format!(
                "line {}: not a task object (fields: id, task, criteria, verify, builder, evaluator, max_rounds, min_rounds, cost_budget, time_budget)",
                number + 1
            )
        })?;
        entries.push(entry);
    }
    Ok((defaults, entries))
}

/// How a task stands in the batch's state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskStatus {
    Pending,
    Running,
    Converged,
    /// Stopped by its own cap or a plateau: finished, not run again.
    Stopped,
    /// Stopped because the shared budget could not cover its next call: a resumed batch
    /// (with budget left) continues it.
    OutOfBudget,
    Interrupted,
    Failed,
}

impl TaskStatus {
    fn finished(self) -> bool {
        matches!(self, Self::Converged | Self::Stopped)
    }

    /// Its name in the state file and the summary table (`out_of_budget`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Converged => "converged",
            Self::Stopped => "stopped",
            Self::OutOfBudget => "out_of_budget",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
        }
    }
}

/// How a task stands: saved in the batch's state file and shown in its events and summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TaskState {
    pub(crate) status: TaskStatus,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) session: Option<String>,
    #[serde(default)]
    pub(crate) branch: Option<String>,
    #[serde(default)]
    pub(crate) worktree: Option<PathBuf>,
    #[serde(default)]
    workspace: Option<PathBuf>,
    #[serde(default)]
    pub(crate) rounds: usize,
    #[serde(default)]
    pub(crate) spend_usd: f64,
    #[serde(default)]
    commit: Option<String>,
}

impl TaskState {
    fn pending() -> Self {
        Self {
            status: TaskStatus::Pending,
            reason: None,
            session: None,
            branch: None,
            worktree: None,
            workspace: None,
            rounds: 0,
            spend_usd: 0.0,
            commit: None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BatchState {
    file: PathBuf,
    tasks: BTreeMap<String, TaskState>,
}

/// The batch's state, saved atomically after every change.
struct Ledger {
    path: PathBuf,
    state: Mutex<BatchState>,
    /// Held for the batch's whole life: a second `refinery batch` of the same file would run
    /// the same tasks again in new worktrees and fight over the ones it resumes.
    _lock: LockGuard,
}

impl Ledger {
    fn update(&self, id: &str, change: impl FnOnce(&mut TaskState)) -> anyhow::Result<()> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = state
            .tasks
            .entry(id.to_owned())
            .or_insert_with(TaskState::pending);
        change(entry);
        write_json(&self.path, &*state)?;
        Ok(())
    }

    fn get(&self, id: &str) -> TaskState {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tasks
            .get(id)
            .cloned()
            .unwrap_or_else(TaskState::pending)
    }
}

/// One task's view of the shared pool: it remembers whether the pool refused this task a
/// call, which is how a stop for the shared budget is told from a stop for the task's own.
#[derive(Debug)]
struct TaskPool {
    shared: Arc<SharedBudget>,
    refused: AtomicBool,
}

impl BudgetPool for TaskPool {
    fn hold(&self, usd: Option<f64>) -> Result<PoolHold, Halt> {
        let held = self.shared.hold(usd);
        // The last answer counts: a refusal the task then waited out is not why it stopped.
        self.refused.store(held.is_err(), Ordering::SeqCst);
        held
    }
    fn left(&self) -> f64 {
        self.shared.left()
    }
    fn release(&self, hold: PoolHold, spent_usd: Option<f64>) {
        self.shared.release(hold, spent_usd);
    }
    fn left_once_settled(&self) -> f64 {
        self.shared.left_once_settled()
    }
    fn releases(&self) -> Arc<tokio::sync::Notify> {
        self.shared.releases()
    }
}

pub(crate) fn run_main(global: &GlobalArgs, args: &BatchArgs) -> ExitStatus {
    match batch_inner(global, args) {
        Ok(status) => status,
        Err(err) if err.is::<output::BrokenPipe>() => ExitStatus::Success,
        Err(err) => {
            output::error(&err);
            ExitStatus::Failed
        }
    }
}

/// Everything the tasks share.
struct Shared<'a> {
    machine: Machine,
    user_workspace: PathBuf,
    pool: Option<Arc<SharedBudget>>,
    ledger: Ledger,
    args: &'a BatchArgs,
    cancel: CancellationToken,
}

fn batch_inner(global: &GlobalArgs, args: &BatchArgs) -> anyhow::Result<ExitStatus> {
    let mut tasks = load_tasks(&args.file)?;
    if let Some(unknown) = args
        .only
        .iter()
        .find(|id| !tasks.iter().any(|task| &task.id == *id))
    {
        bail!(
            "--only {unknown}: no task has that id in {}",
            args.file.display()
        );
    }
    if !args.only.is_empty() {
        tasks.retain(|task| args.only.contains(&task.id));
    }
    if args.list_json {
        return list_json(&tasks, args.cost_budget);
    }
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let budget = match args.cost_budget {
        Some(budget) => {
            checked_limits(LoopLimits {
                cost_budget_usd: Some(budget),
                ..LoopLimits::default()
            })?
            .cost_budget_usd
        }
        None => None,
    };
    let store = store_for(global, None)?;
    let user_workspace = store.workspace().to_path_buf();
    // The state folder (with its `.gitignore`) must exist before the batch's state is saved
    // there, or the state file would show in `git status` and the next task's worktree would
    // see "uncommitted changes".
    store.prepare()?;
    let ledger = open_ledger(&store, &args.file)?;
    let spent_before = refresh_spend(&ledger, &tasks);
    let pool = budget.map(|budget| Arc::new(SharedBudget::new(budget, spent_before)));
    let shared = Shared {
        machine: Machine::load(&user_workspace, global)?,
        user_workspace,
        pool,
        ledger,
        args,
        cancel: CancellationToken::new(),
    };
    let runtime = runtime()?;
    runtime.block_on(async {
        cancel_on_ctrl_c(&shared.cancel);
        let shared = &shared;
        let mut runs = futures::stream::iter(tasks.iter().map(|task| run_task(shared, task)))
            .buffer_unordered(args.jobs);
        while let Some(result) = runs.next().await {
            result?;
        }
        anyhow::Ok(())
    })?;
    finish(&shared, &tasks, budget)
}

/// `--list-json`: the tasks as matrix entries. With `--cost-budget`, each entry carries its
/// share of the total (or its own smaller cap) as `cost_budget`: machines of a CI matrix cannot
/// share one budget pool, so each task gets a fixed part and its machine enforces it.
fn list_json(tasks: &[Task], total: Option<f64>) -> anyhow::Result<ExitStatus> {
    let share = match total {
        Some(total) => Some(
            refinery_core::budget_split::per_task_share(total, tasks.len()).with_context(|| {
                format!(
                    "--cost-budget {total} cannot be split over {} task(s): each share must be a positive number of US dollars, at least $0.0001",
                    tasks.len()
                )
            })?,
        ),
        None => None,
    };
    let list: Vec<_> = tasks
        .iter()
        .map(|task| {
            let mut entry = serde_json::json!({"id": task.id, "task": task.entry.task});
            let own = task.limits.cost_budget_usd;
            let cap = match (own, share) {
                (Some(own), Some(share)) => Some(own.min(share)),
                (own, share) => own.or(share),
            };
            if let (Some(cap), serde_json::Value::Object(map)) = (cap, &mut entry) {
                map.insert("cost_budget".to_owned(), cap.into());
            }
            entry
        })
        .collect();
    output::line(&serde_json::Value::Array(list).to_string())?;
    Ok(ExitStatus::Success)
}

fn open_ledger(store: &StateDir, file: &Path) -> anyhow::Result<Ledger> {
    let name = file.file_stem().map_or_else(
        || "batch".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let path = store.root().join("batches").join(format!("{name}.json"));
    let lock_path = path.with_extension("lock");
    let Some(lock) = LockGuard::try_acquire(&lock_path)? else {
        bail!(
            "the batch `{name}` is already running in another process (it holds {}); wait for it to end or stop it (Ctrl-C) first",
            lock_path.display()
        );
    };
    let state = read_json::<BatchState>(&path)
        .with_context(|| format!("reading the batch state {}", path.display()))?
        .unwrap_or_else(|| BatchState {
            file: file.to_path_buf(),
            tasks: BTreeMap::new(),
        });
    Ok(Ledger {
        path,
        state: Mutex::new(state),
        _lock: lock,
    })
}

/// Each started task's spend as its own `run.json` says (the truth after a crash), saved in
/// the ledger; their sum is what earlier sessions of this batch spent.
fn refresh_spend(ledger: &Ledger, tasks: &[Task]) -> f64 {
    let mut total = 0.0;
    for task in tasks {
        let state = ledger.get(&task.id);
        if let Some(store) = task_store(&state)
            && let Some(session) = &state.session
            && let Ok((_, record)) = refinery_engine::load_run(&store, session)
        {
            total += record.spend.usd;
            let usd = record.spend.usd;
            let _ = ledger.update(&task.id, |entry| entry.spend_usd = usd);
        } else {
            total += state.spend_usd;
        }
    }
    total
}

fn task_store(state: &TaskState) -> Option<StateDir> {
    let worktree = state.worktree.as_ref()?;
    let workspace = state.workspace.clone()?;
    Some(StateDir::new(worktree::state_dir(worktree), workspace))
}

/// Runs one task to its end (or skips it when an earlier session of the batch finished it).
async fn run_task(shared: &Shared<'_>, task: &Task) -> anyhow::Result<()> {
    let before = shared.ledger.get(&task.id);
    if before.status.finished() {
        event(shared, &task.id, "skipped", &before)?;
        return Ok(());
    }
    if shared.cancel.is_cancelled() {
        return Ok(());
    }
    let started = match prepare(shared, task, &before) {
        Ok(started) => started,
        Err(err) => {
            fail(shared, &task.id, &err)?;
            event(shared, &task.id, "failed", &shared.ledger.get(&task.id))?;
            return Ok(());
        }
    };
    let (mut refiner, store, task_pool) = started;
    if let Some(pool) = &task_pool {
        refiner.share_budget(pool.clone());
    }
    let session = refiner.session().clone();
    shared.ledger.update(&task.id, |entry| {
        entry.status = TaskStatus::Running;
        entry.reason = None;
    })?;
    event(shared, &task.id, "started", &shared.ledger.get(&task.id))?;
    let log = Mutex::new(report::open_progress_log(&session, "batch"));
    let json = shared.args.json;
    let id = task.id.clone();
    let mut on_event = |inner: &refinery_engine::RefineEvent| {
        if let Some(log) = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            log.append(inner);
        }
        if json {
            let line = serde_json::json!({"event": "task_event", "task": id, "data": inner});
            let _ = output::line(&line.to_string());
        }
    };
    let result = refiner.run(&shared.cancel, &mut on_event).await;
    let _ = report::write_after_run(&store, &session, &shared.machine.report_scrub());
    let refused = task_pool
        .as_ref()
        .is_some_and(|pool| pool.refused.load(Ordering::SeqCst));
    match result {
        Ok(summary) => record_end(shared, task, &store, &summary, refused)?,
        Err(err) => fail(shared, &task.id, &anyhow::Error::from(err))?,
    }
    let state = shared.ledger.get(&task.id);
    let name = serde_json::to_value(state.status)?
        .as_str()
        .unwrap_or("ended")
        .to_owned();
    event(shared, &task.id, &name, &state)
}

/// Marks a task failed with `err` (scrubbed of secrets) as its reason.
fn fail(shared: &Shared<'_>, id: &str, err: &anyhow::Error) -> anyhow::Result<()> {
    let message = Machine::scrubber().scrub(&format!("{err:#}"));
    shared.ledger.update(id, |entry| {
        entry.status = TaskStatus::Failed;
        entry.reason = Some(message);
    })
}

type Started = (Refiner, StateDir, Option<Arc<TaskPool>>);

/// A new run in a new worktree, or the task's earlier run resumed in its worktree.
fn prepare(shared: &Shared<'_>, task: &Task, before: &TaskState) -> anyhow::Result<Started> {
    let args = shared.args;
    let environment = Environment {
        env: shared.machine.env.clone(),
        scrubber: Machine::scrubber(),
        call_timeout: Duration::from_secs(args.call_timeout),
        verify_timeout: Duration::from_secs(args.verify_timeout),
    };
    let opener = shared.machine.opener();
    let builder = match &task.entry.builder {
        Some(name) => name.clone(),
        None => shared.machine.default_backend(&opener)?,
    };
    let judges = task
        .entry
        .evaluator
        .clone()
        .unwrap_or_else(|| vec![builder.clone()]);
    let roles = shared.machine.roles(&opener, &builder, &judges)?;
    // Under a shared budget each task also gets the total as its own cap (or its own smaller
    // one): the engine then checks up front that every backend has a known price.
    let mut limits = task.limits;
    if let Some(total) = shared.pool.as_ref().and(shared.args.cost_budget) {
        limits.cost_budget_usd = Some(limits.cost_budget_usd.map_or(total, |own| own.min(total)));
    }
    let task_pool = shared.pool.as_ref().map(|pool| {
        Arc::new(TaskPool {
            shared: pool.clone(),
            refused: AtomicBool::new(false),
        })
    });
    if let (Some(store), Some(session)) = (task_store(before), &before.session)
        && refinery_engine::run_started(&store, session)
    {
        let refiner = Refiner::resume(store.clone(), session, limits, roles, environment)?;
        return Ok((refiner, store, task_pool));
    }
    let (checkout, workspace, id) = task_worktree(shared, task, before)?;
    let store = StateDir::new(worktree::state_dir(&checkout), workspace.clone());
    let criteria = match &task.entry.criteria {
        Some(text) => Some(crate::commands::refine::parse_criteria_text(text)?),
        None => None,
    };
    let task_text = task.entry.task.clone().unwrap_or_default();
    let config = RefineConfig {
        task: task_text,
        criteria,
        prior_answer: None,
        limits,
        verify: task.entry.verify.clone().unwrap_or_default(),
        label: task.id.clone(),
    };
    shared
        .ledger
        .update(&task.id, |entry| entry.session = Some(id.to_string()))?;
    let refiner = Refiner::start_as(store.clone(), id, config, roles, environment)?;
    Ok((refiner, store, task_pool))
}

/// The worktree a task's new run starts in, and its session id. A task whose earlier start was
/// cut short (killed after its worktree was made, before its run was recorded) starts again in
/// that same worktree, under a fresh session id, rather than leaving it orphaned.
fn task_worktree(
    shared: &Shared<'_>,
    task: &Task,
    before: &TaskState,
) -> anyhow::Result<(PathBuf, PathBuf, refinery_core::SessionId)> {
    let now = time::OffsetDateTime::now_utc();
    if let (Some(checkout), Some(workspace)) = (&before.worktree, &before.workspace)
        && worktree::origin(&worktree::state_dir(checkout))?.is_some()
    {
        let mut id = refinery_core::SessionId::generate(now, &task.id);
        if before.session.as_deref() == Some(id.as_str()) {
            id = refinery_core::SessionId::parse(&format!("{id}-2"))?;
        }
        return Ok((checkout.clone(), workspace.clone(), id));
    }
    // A start cut short between its branch and its worktree's origin: given back first, so
    // the task keeps one branch.
    if let (Some(checkout), Some(branch)) = (&before.worktree, &before.branch) {
        worktree::discard_unstarted(&shared.user_workspace, checkout, branch)?;
    }
    // Saved before the branch is made, so a crash from then on finds this start again.
    let mut workspace = PathBuf::new();
    let created = worktree::create_noting(&shared.user_workspace, &task.id, now, |reserved| {
        workspace = worktree::workspace_in(reserved.path, &shared.user_workspace)?;
        shared.ledger.update(&task.id, |entry| {
            entry.session = Some(reserved.id.to_string());
            entry.branch = Some(reserved.branch.to_owned());
            entry.worktree = Some(reserved.path.to_owned());
            entry.workspace = Some(workspace.clone());
        })
    })?;
    Ok((created.path, workspace, created.id))
}

/// Saves how a task ended and commits its delivered round on its branch.
fn record_end(
    shared: &Shared<'_>,
    task: &Task,
    store: &StateDir,
    summary: &RunSummary,
    refused: bool,
) -> anyhow::Result<()> {
    // A task without a cap of its own runs under the shared total alone (its meter gets the
    // total only so prices are checked up front): any cost stop of it is the shared budget's.
    let refused = refused || (shared.pool.is_some() && task.limits.cost_budget_usd.is_none());
    let (status, reason) = match &summary.status {
        RunStatus::Converged => (TaskStatus::Converged, None),
        RunStatus::Stopped {
            reason: StopReason::CostBudget,
            ..
        } if refused => (
            TaskStatus::OutOfBudget,
            Some("the shared --cost-budget could not cover its next call".to_owned()),
        ),
        RunStatus::Stopped { reason, .. } => (
            TaskStatus::Stopped,
            Some(
                serde_json::to_value(reason)?
                    .as_str()
                    .unwrap_or("stopped")
                    .to_owned(),
            ),
        ),
        RunStatus::Interrupted { .. } => (TaskStatus::Interrupted, Some("Ctrl-C".to_owned())),
        RunStatus::Running => (TaskStatus::Interrupted, None),
        RunStatus::Failed { error } => (TaskStatus::Failed, Some(error.clone())),
    };
    // Only a finished task's round is committed: one that will be resumed commits when it ends.
    let commit = if status.finished() && !summary.rounds.is_empty() {
        let checkout = worktree::checkout_root(store.workspace())?;
        match worktree::commit_all(&checkout, &commit_message(summary))? {
            Some(commit) => Some(commit),
            // Nothing new to commit: a batch killed between this task's commit and its record
            // below already made it, and the resumed run ended at once.
            None => worktree::last_own_commit(&checkout)?,
        }
    } else {
        None
    };
    let rounds = summary.rounds.len();
    let usd = summary.spend.usd;
    shared.ledger.update(&task.id, |entry| {
        entry.status = status;
        entry.reason = reason;
        entry.rounds = rounds;
        entry.spend_usd = usd;
        if commit.is_some() {
            entry.commit = commit;
        }
    })
}

/// One batch event: a JSON line with `--json`, a plain progress line otherwise.
fn event(shared: &Shared<'_>, id: &str, what: &str, state: &TaskState) -> anyhow::Result<()> {
    let (running, done, spent) = totals(shared);
    if shared.args.json {
        let line = serde_json::json!({
            "event": "task",
            "task": id,
            "what": what,
            "state": state,
            "running": running,
            "done": done,
            "spent_usd": spent,
        });
        return output::line(&line.to_string());
    }
    let reason = state
        .reason
        .as_ref()
        .map_or_else(String::new, |reason| format!(" ({reason})"));
    output::line(&format!(
        "[batch] {id}: {what}{reason} — {running} running, {done} finished, ${spent:.4} spent"
    ))
}

fn totals(shared: &Shared<'_>) -> (usize, usize, f64) {
    let state = shared
        .ledger
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let running = state
        .tasks
        .values()
        .filter(|task| task.status == TaskStatus::Running)
        .count();
    let done = state
        .tasks
        .values()
        .filter(|task| task.status.finished())
        .count();
    let spent = shared.pool.as_ref().map_or_else(
        || state.tasks.values().map(|task| task.spend_usd).sum(),
        |pool| pool.spent(),
    );
    (running, done, spent)
}

/// The batch's summary table in Markdown: a row per task with its status, rounds, cost,
/// branch and why it stopped, every text passed through `cell` (the CI summary escapes it).
pub(crate) fn task_table(
    states: &[(String, TaskState)],
    cell: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut lines = vec![
        "| task | status | rounds | cost | branch | why |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    for (id, state) in states {
        lines.push(format!(
            "| {} | {} | {} | ${:.4} | {} | {} |",
            cell(id),
            state.status.name(),
            state.rounds,
            state.spend_usd,
            cell(state.branch.as_deref().unwrap_or("-")),
            cell(state.reason.as_deref().unwrap_or("")),
        ));
    }
    lines
}

/// The summary table (or event) and the exit code: 0 when every task converged, 130 after
/// Ctrl-C, 1 when a task failed, 2 when one stopped or ran out of the shared budget.
fn finish(shared: &Shared<'_>, tasks: &[Task], budget: Option<f64>) -> anyhow::Result<ExitStatus> {
    let (_, _, spent) = totals(shared);
    let states: Vec<(String, TaskState)> = tasks
        .iter()
        .map(|task| (task.id.clone(), shared.ledger.get(&task.id)))
        .collect();
    if shared.args.json {
        let rows: Vec<_> = states
            .iter()
            .map(|(id, state)| serde_json::json!({"id": id, "state": state}))
            .collect();
        output::line(
            &serde_json::json!({
                "event": "batch_summary",
                "tasks": rows,
                "spent_usd": spent,
                "budget_usd": budget,
                "state_file": shared.ledger.path,
            })
            .to_string(),
        )?;
    } else {
        for line in task_table(&states, &str::to_owned) {
            output::line(&line)?;
        }
        let budget = budget.map_or_else(String::new, |budget| format!(" of ${budget:.4}"));
        output::line(&format!(
            "Spent ${spent:.4}{budget}. Run the same command again to continue unfinished tasks."
        ))?;
    }
    let any = |status: TaskStatus| states.iter().any(|(_, state)| state.status == status);
    Ok(
        if shared.cancel.is_cancelled() || any(TaskStatus::Interrupted) {
            ExitStatus::Interrupted
        } else if any(TaskStatus::Failed) {
            ExitStatus::Failed
        } else if states
            .iter()
            .all(|(_, state)| state.status == TaskStatus::Converged)
        {
            ExitStatus::Success
        } else {
            ExitStatus::Stopped
        },
    )
}
