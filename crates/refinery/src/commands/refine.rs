//! `refinery refine` and `refinery evaluate`: the standalone loop.
//!
//! This module turns flags into an engine configuration — backends opened, criteria parsed,
//! the workspace checked to be a git repository — and renders the engine's events. It makes
//! no quality decision itself: the engine sequences rounds and the core decides.
//!
//! Exit codes (documented in docs/USAGE.md): 0 converged (or, for `evaluate`, meets the bar),
//! 2 stopped by a cap or a plateau (or below the bar), 1 error, 130 interrupted by Ctrl-C.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use refinery_core::rounds::LoopLimits;
use refinery_core::{CriteriaSet, StateDir};
use refinery_engine::pack::Scrubber;
use refinery_engine::{
    AgentSetup, Backend, BackendSpec, Environment, EvaluateConfig, RefineConfig, Refiner, Roles,
    RunStatus, RunSummary,
};
use refinery_llm::doctor::{self, DoctorOptions};
use refinery_llm::{Credentials, PriceTable};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::backends::ModelOpener;
use crate::cli::GlobalArgs;
use crate::commands::progress::Progress;
use crate::commands::report;
use crate::output;
use crate::settings::{load_credentials, process_env, resolve_store};
use crate::worktree;

#[derive(Debug, Args)]
pub(crate) struct RefineArgs {
    /// The task ("Build a landing page for …"), or the path of an existing deliverable to
    /// improve.
    #[arg(required_unless_present = "resume", value_name = "TASK|PATH")]
    target: Option<String>,
    #[command(flatten)]
    criteria: CriteriaArgs,
    /// An existing version to start from (copied into the workspace when it is outside).
    #[arg(long, value_name = "PATH")]
    prior_answer: Option<PathBuf>,
    /// Never run more rounds than this [default: 5].
    #[arg(long, value_name = "N")]
    max_rounds: Option<u32>,
    /// Never converge before this many rounds [default: 1].
    #[arg(long, value_name = "N")]
    min_rounds: Option<u32>,
    /// Stop before a call could take the total past this many US dollars.
    #[arg(long, value_name = "USD")]
    cost_budget: Option<f64>,
    /// Stop once this much time has passed (`90s`, `20m`, `1h30m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    time_budget: Option<Duration>,
    #[command(flatten)]
    backends: BackendArgs,
    /// A command that checks the deliverable (repeatable); run in the workspace after each
    /// build, its output goes to the evaluator.
    #[arg(long = "verify", value_name = "COMMAND")]
    verify: Vec<String>,
    /// Continue a stopped or interrupted run (its session id; see `refinery session list`).
    #[arg(long, value_name = "SESSION", conflicts_with_all = ["target", "criteria", "criteria_file", "prior_answer", "verify", "worktree"])]
    resume: Option<String>,
    /// Run in a new git worktree on a new branch `refinery/<session>` started from HEAD
    /// (uncommitted changes are refused); the delivered round is committed on that branch.
    /// Your working tree, index and branch are not touched; see `refinery runs`.
    #[arg(long)]
    worktree: bool,
    /// One JSON object per event on stdout, and the summary as the last one.
    #[arg(long)]
    json: bool,
    /// Answer yes to questions (run `git init` when the workspace is not a repository).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Longest one builder or judge call may take, in seconds; it also bounds each HTTP
    /// request of an API model, so a local server that reads a long brief slowly is not cut
    /// off.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    call_timeout: u64,
    /// Longest one --verify command may take, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    verify_timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    /// The deliverable: files or folders inside the workspace.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    criteria: CriteriaArgs,
    /// What the deliverable is for, so criteria and judgement fit it.
    #[arg(long, value_name = "TEXT")]
    task: Option<String>,
    /// The backend that judges (and writes criteria): claude, codex, gemini, copilot
    /// (optionally cli:model) or provider/model [default: the first usable one `refinery
    /// doctor` finds]. Repeat it for a panel that scores blind (lower median per criterion).
    #[arg(long, value_name = "BACKEND")]
    evaluator: Vec<String>,
    /// Stop before a call could take the total past this many US dollars.
    #[arg(long, value_name = "USD")]
    cost_budget: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Answer yes to questions (run `git init` when the workspace is not a repository).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Longest one judge call may take, in seconds (each HTTP request of an API model
    /// included).
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    call_timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct CriteriaArgs {
    /// The criteria, as "E1: …, E2: …" [default: written by the criteria writer].
    #[arg(
        long,
        value_name = "\"E1: …, E2: …\"",
        conflicts_with = "criteria_file"
    )]
    criteria: Option<String>,
    /// Criteria from a file: JSON (a list of criteria, or {"criteria": [...]}) or
    /// "E1: …" lines.
    #[arg(long, value_name = "FILE")]
    criteria_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BackendArgs {
    /// Who builds: claude, codex, gemini, copilot (optionally cli:model) or provider/model
    /// [default: the first usable one `refinery doctor` finds].
    #[arg(long, value_name = "BACKEND")]
    builder: Option<String>,
    /// Who judges, writes criteria and reviews traces [default: as --builder]. Repeat it for
    /// a panel: every judge scores each round blind, and each criterion gets the lower median.
    #[arg(long, value_name = "BACKEND")]
    evaluator: Vec<String>,
}

/// Parses `90s`, `20m`, `2h`, `1h30m`, or a plain number of seconds.
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("empty duration; use for example 90s, 20m or 1h30m".to_owned());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit = match character {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "`{raw}` is not a duration; use h, m and s, for example 1h30m"
                ));
            }
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("`{raw}` is not a duration; put a number before each unit"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{raw}` ends in a number without a unit; add h, m or s"
        ));
    }
    // Zero is refused with the other zero limits (`refuse_zero_limits`), as an error of the
    // run (exit 1) rather than of the command line.
    Ok(Duration::from_secs(total))
}

/// Parses `E1: text, E2: text` (ids optional only when there is a single criterion).
pub(crate) fn parse_criteria_text(raw: &str) -> anyhow::Result<CriteriaSet> {
    let text = raw.trim();
    let mut markers = Vec::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let at_boundary = index == 0 || {
            // Only spaces are skipped: a newline is itself a separator (one criterion a line).
            let before = text[..index].trim_end_matches([' ', '\t']);
            before.is_empty() || before.ends_with([',', ';', '\n', '\r'])
        };
        if at_boundary && (bytes[index] == b'E' || bytes[index] == b'e') {
            let digits = text[index + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
            let after = index + 1 + digits;
            if digits > 0 && text[after..].trim_start().starts_with(':') {
                let colon = after + text[after..].find(':').unwrap_or(0);
                markers.push((index, colon + 1, text[index..after].to_ascii_uppercase()));
                index = colon + 1;
                continue;
            }
        }
        index += text[index..].chars().next().map_or(1, char::len_utf8);
    }
    if markers.is_empty() {
        bail!("--criteria needs ids: write it as \"E1: first criterion, E2: second criterion\"");
    }
    let mut items = Vec::new();
    for (position, (_, body_start, id)) in markers.iter().enumerate() {
        let end = markers
            .get(position + 1)
            .map_or(text.len(), |(next, _, _)| *next);
        let body = text[*body_start..end]
            .trim()
            .trim_end_matches([',', ';'])
            .trim();
        if body.is_empty() {
            bail!("criterion {id} is empty; give each id a text");
        }
        items.push(serde_json::json!({"id": id, "text": body}));
    }
    CriteriaSet::from_json(&Value::Array(items)).map_err(|err| anyhow::anyhow!("--criteria: {err}"))
}

impl CriteriaArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Option<CriteriaSet>> {
        if let Some(text) = &self.criteria {
            return parse_criteria_text(text).map(Some);
        }
        let Some(path) = &self.criteria_file else {
            return Ok(None);
        };
        let text = crate::files::read_argument_file(path, "--criteria-file")?;
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => {
                let list = value.get("criteria").cloned().unwrap_or(value);
                CriteriaSet::from_json(&list)
                    .map(Some)
                    .map_err(|err| anyhow::anyhow!("--criteria-file `{}`: {err}", path.display()))
            }
            Err(_) => parse_criteria_text(&text)
                .map(Some)
                .with_context(|| format!("--criteria-file `{}`", path.display())),
        }
    }
}

/// Everything resolved from the machine: keys, environment, what doctor sees.
pub(crate) struct Machine {
    pub(crate) env: BTreeMap<String, String>,
    credentials: Credentials,
    workspace: PathBuf,
    base_url: Option<String>,
}

impl Machine {
    pub(crate) fn load(workspace: &Path, global: &GlobalArgs) -> anyhow::Result<Self> {
        let env = process_env();
        let credentials = load_credentials(&env, workspace)?;
        Ok(Self {
            env,
            credentials,
            workspace: workspace.to_path_buf(),
            base_url: global.base_url.clone(),
        })
    }

    fn doctor_options(&self) -> DoctorOptions {
        DoctorOptions::new(
            self.env.clone(),
            self.workspace.clone(),
            crate::backends::recorded_server(&self.env).as_deref(),
        )
    }

    /// What `refinery doctor` would find, without running anything (CLIs looked up on PATH).
    fn quick_doctor(&self) -> anyhow::Result<doctor::DoctorReport> {
        Ok(doctor::quick_report(&self.doctor_options())?)
    }

    /// The process scrubber: loading the credentials registered every secret-named value.
    pub(crate) fn scrubber() -> Scrubber {
        refinery_secrets::process_scrubber()
    }

    /// The same masking for the report.
    pub(crate) fn report_scrub(&self) -> refinery_report::Scrub {
        refinery_report::Scrub::with_known_secrets(
            self.credentials
                .exposed_keys()
                .map(|(_, key)| key.expose().to_owned()),
        )
    }

    /// The backend `refinery doctor` names as the default: the same report (CLIs run with
    /// `--version`, local servers probed) and the same rule ([`doctor::default_backend`]), so
    /// the two always agree.
    pub(crate) fn default_backend(&self, opener: &ModelOpener<'_>) -> anyhow::Result<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = runtime
            .block_on(doctor::run_doctor(&self.doctor_options()))
            .context("looking for a backend")?;
        opener.know_servers(report.local_servers.clone());
        match report.default_backend {
            Some(backend) => Ok(backend.name),
            None => bail!(
                "no usable backend: no agent CLI (claude, codex, gemini, copilot) is on PATH, no API key is set and no local model server answers. The shortest ways to get one:\n  - a model on this machine, offline: `refinery local setup && refinery local serve`\n  - Claude Code: `npm install -g @anthropic-ai/claude-code`\n  - an API key, e.g. `export ANTHROPIC_API_KEY=…`\nRun `refinery doctor` for the full picture, or name a backend with --builder/--evaluator"
            ),
        }
    }

    pub(crate) fn opener(&self) -> ModelOpener<'_> {
        ModelOpener::new(&self.env, &self.credentials, self.base_url.clone(), false)
    }

    /// The builder and the judges: the first judge also writes criteria, runs the regression
    /// guard and analyzes traces; the others only score rounds.
    pub(crate) fn roles(
        &self,
        opener: &ModelOpener<'_>,
        builder: &str,
        judges: &[String],
    ) -> anyhow::Result<Roles> {
        let Some((first, rest)) = judges.split_first() else {
            bail!("no evaluator given");
        };
        Ok(Roles {
            builder: self.open(opener, builder)?,
            evaluator: self.open(opener, first)?,
            panel: rest
                .iter()
                .map(|name| self.open(opener, name))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    pub(crate) fn open(&self, opener: &ModelOpener<'_>, name: &str) -> anyhow::Result<Backend> {
        if crate::backends::local_name(name).is_some() {
            return Self::open_model(opener, name);
        }
        let spec: BackendSpec = name.parse().map_err(anyhow::Error::msg)?;
        match spec {
            BackendSpec::Agent(cli, model) => {
                let report = self.quick_doctor()?;
                let found = report
                    .agent_clis
                    .iter()
                    .find(|status| status.cli == cli)
                    .and_then(|status| status.path.clone());
                let Some(program) = found else {
                    bail!(
                        "`{}` is not on PATH; install it with `npm install -g {}` or pick another backend",
                        cli.program(),
                        cli.npm_package()
                    );
                };
                Ok(Backend::agent(AgentSetup {
                    cli,
                    program: Some(program),
                    model,
                    env: self.env.clone(),
                }))
            }
            BackendSpec::Model(name) => Self::open_model(opener, &name),
        }
    }

    fn open_model(opener: &ModelOpener<'_>, name: &str) -> anyhow::Result<Backend> {
        let opened = opener.open(name)?;
        Ok(
            Backend::api(Arc::new(opened.model), Arc::new(PriceTable::builtin()))
                .with_context_window(opened.context_window),
        )
    }
}

/// The workspace must be a git repository (the loop's snapshots and the user's own history
/// live side by side). Offers `git init`; never touches the index or commits.
pub(crate) fn ensure_git(workspace: &Path, yes: bool) -> anyhow::Result<()> {
    let inside = std::process::Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(workspace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match inside {
        Err(err) => bail!(
            "git is required (the workspace must be a git repository) but could not be run: {err}; install git"
        ),
        Ok(status) if status.success() => return Ok(()),
        Ok(_) => {}
    }
    let agree = if yes {
        true
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        output::note(&format!(
            "{} is not a git repository. Run `git init` there? [y/N] ",
            workspace.display()
        ));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
    } else {
        false
    };
    if !agree {
        bail!(
            "{} is not a git repository; run `git init` there, or pass --yes to let Refinery do it",
            workspace.display()
        );
    }
    let status = std::process::Command::new("git")
        .args(["init", "--quiet"])
        .current_dir(workspace)
        .status()
        .context("running git init")?;
    if !status.success() {
        bail!("`git init` failed in {}", workspace.display());
    }
    output::note(&format!(
        "initialised a git repository in {}",
        workspace.display()
    ));
    Ok(())
}

/// The runtime of a run (or a batch of runs). One thread: the engine awaits its models and
/// processes on this thread anyway (a batch's runs are futures of one task), and with
/// worker threads every HTTP exchange hopped between threads, each hop a wake-up.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Cancels `token` on the first Ctrl-C (the engine then stops its processes and saves); a
/// second Ctrl-C exits at once, keeping the state of the last save. Listening for SIGINT
/// replaces its default action, so without the second case a stuck shutdown could not be
/// interrupted at all. The listener has a thread of its own: the run's one thread may be
/// busy between awaits (a snapshot, a scan) when the second Ctrl-C comes.
pub(crate) fn cancel_on_ctrl_c(token: &CancellationToken) {
    let token = token.clone();
    let listen = move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                token.cancel();
                output::note("stopping: saving the state (Ctrl-C again to quit at once)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    #[allow(
                        clippy::exit,
                        reason = "the user asked twice to stop; the state is as of the last atomic save"
                    )]
                    std::process::exit(130);
                }
            }
        });
    };
    // Without the thread Ctrl-C keeps its default action: the process ends at once.
    drop(
        std::thread::Builder::new()
            .name("ctrl-c".to_owned())
            .spawn(listen),
    );
}

fn relative_to(workspace: &Path, path: &Path) -> Option<String> {
    let real = fs_err::canonicalize(path).ok()?;
    let root = fs_err::canonicalize(workspace).ok()?;
    real.strip_prefix(&root)
        .ok()
        .map(|relative| relative.to_string_lossy().replace('\\', "/"))
}

pub(crate) fn run_refine(global: &GlobalArgs, args: &RefineArgs) -> ExitStatus {
    match refine_inner(global, args) {
        Ok(status) => status,
        Err(err) if err.is::<output::BrokenPipe>() => ExitStatus::Success,
        Err(err) => {
            output::error(&err);
            ExitStatus::Failed
        }
    }
}

pub(crate) fn run_evaluate(global: &GlobalArgs, args: &EvaluateArgs) -> ExitStatus {
    match evaluate_inner(global, args) {
        Ok(status) => status,
        Err(err) if err.is::<output::BrokenPipe>() => ExitStatus::Success,
        Err(err) => {
            output::error(&err);
            ExitStatus::Failed
        }
    }
}

/// Where the deliverable lives and what the task says, from `TASK|PATH` and the flags.
struct Target {
    task: String,
    workspace_override: Option<PathBuf>,
    existing: Option<PathBuf>,
}

fn read_target(global: &GlobalArgs, raw: &str) -> Target {
    let path = Path::new(raw);
    let looks_like_path = !raw.contains('\n') && raw.len() < 4096 && path.exists();
    if !looks_like_path {
        return Target {
            task: raw.to_owned(),
            workspace_override: None,
            existing: None,
        };
    }
    let workspace_override = if global.workspace.is_some() {
        None
    } else if path.is_dir() {
        Some(path.to_path_buf())
    } else {
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .map(Path::to_path_buf)
    };
    Target {
        task: String::new(),
        workspace_override,
        existing: Some(path.to_path_buf()),
    }
}

pub(crate) fn store_for(
    global: &GlobalArgs,
    workspace: Option<PathBuf>,
) -> anyhow::Result<StateDir> {
    let global = GlobalArgs {
        state_dir: global.state_dir.clone(),
        workspace: workspace.or_else(|| global.workspace.clone()),
        base_url: global.base_url.clone(),
    };
    resolve_store(&global)
}

/// Zero timeouts and budgets would stop every call (or the run) at once; they are refused
/// before anything starts, naming the flag. `--cost-budget` and `--max-rounds` are checked
/// with the other limits.
fn refuse_zero_limits(limits: &[(&str, Option<u64>)]) -> anyhow::Result<()> {
    for (flag, value) in limits {
        if *value == Some(0) {
            bail!("{flag} must be more than zero: a zero limit would stop every call at once");
        }
    }
    Ok(())
}

fn limits_from(args: &RefineArgs, stored: Option<LoopLimits>) -> anyhow::Result<LoopLimits> {
    let base = stored.unwrap_or_default();
    checked_limits(LoopLimits {
        max_rounds: args.max_rounds.unwrap_or(base.max_rounds),
        min_rounds: args.min_rounds.unwrap_or(base.min_rounds),
        cost_budget_usd: args.cost_budget.or(base.cost_budget_usd),
        time_budget: args.time_budget.or(base.time_budget),
    })
}

/// `limits`, once its cost budget is known to be a positive amount (`refine` and `run`).
pub(crate) fn checked_limits(limits: LoopLimits) -> anyhow::Result<LoopLimits> {
    if let Some(budget) = limits.cost_budget_usd
        && (!budget.is_finite() || budget <= 0.0)
    {
        bail!("--cost-budget must be a positive number of US dollars");
    }
    Ok(limits)
}

fn refine_inner(global: &GlobalArgs, args: &RefineArgs) -> anyhow::Result<ExitStatus> {
    // Before anything is touched (no `git init`, no session).
    refuse_zero_limits(&[
        ("--call-timeout", Some(args.call_timeout)),
        ("--verify-timeout", Some(args.verify_timeout)),
        (
            "--time-budget",
            args.time_budget.map(|budget| budget.as_secs()),
        ),
    ])?;
    if let Some(budget) = args.cost_budget
        && (!budget.is_finite() || budget <= 0.0)
    {
        bail!("--cost-budget must be a positive number of US dollars");
    }
    let environment = |machine: &Machine| Environment {
        env: machine.env.clone(),
        scrubber: Machine::scrubber(),
        call_timeout: Duration::from_secs(args.call_timeout),
        verify_timeout: Duration::from_secs(args.verify_timeout),
    };
    let (refiner, progress, machine, store) = if let Some(session_id) = &args.resume {
        let store = store_for(global, None)?;
        let (_, record) = refinery_engine::load_run(&store, session_id)?;
        let machine = Machine::load(store.workspace(), global)?;
        let opener = machine.opener();
        let builder = args
            .backends
            .builder
            .clone()
            .unwrap_or(record.builder.clone());
        let judges = if args.backends.evaluator.is_empty() {
            std::iter::once(record.evaluator.clone())
                .chain(record.panel.iter().cloned())
                .collect()
        } else {
            args.backends.evaluator.clone()
        };
        let roles = machine.roles(&opener, &builder, &judges)?;
        let limits = limits_from(args, Some(record.limits))?;
        let refiner = Refiner::resume(
            store.clone(),
            session_id,
            limits,
            roles,
            environment(&machine),
        )?;
        let progress = Progress::new(args.json, limits.max_rounds);
        (refiner, progress, machine, store)
    } else {
        start_new(global, args, &environment)?
    };
    let session = refiner.session().clone();
    let session_id = session.id().to_string();
    let runtime = runtime()?;
    let mut progress = progress;
    // The events also go to the session's progress log, for `refinery watch` and the report.
    let mut log = report::open_progress_log(&session, "refine");
    let summary = runtime.block_on(async {
        let cancel = CancellationToken::new();
        cancel_on_ctrl_c(&cancel);
        let mut on_event = |event: &refinery_engine::RefineEvent| {
            progress.event(event);
            if let Some(log) = &mut log {
                log.append(event);
            }
        };
        refiner.run(&cancel, &mut on_event).await
    });
    progress.finish();
    let report = report::write_after_run(&store, &session, &machine.report_scrub());
    // The cause first, then what to do; each said once.
    let summary = summary.map_err(|error| {
        let report = report.as_ref().map_or_else(String::new, |path| {
            format!("; the report so far is {}", path.display())
        });
        anyhow::anyhow!(
            "{:#}\nthe run's state is saved; continue it with `refinery refine --resume {session_id}`{report}",
            anyhow::Error::from(error)
        )
    })?;
    progress.summary(&summary, report.as_deref())?;
    finish_refine_worktree(&store, &summary, args.json)?;
    Ok(match summary.status {
        RunStatus::Converged => ExitStatus::Success,
        RunStatus::Stopped { .. } => ExitStatus::Stopped,
        RunStatus::Interrupted { .. } => ExitStatus::Interrupted,
        RunStatus::Running | RunStatus::Failed { .. } => ExitStatus::Failed,
    })
}

/// A new run: the target, the workspace (or a new worktree of it), the roles, the session.
fn start_new(
    global: &GlobalArgs,
    args: &RefineArgs,
    environment: &dyn Fn(&Machine) -> Environment,
) -> anyhow::Result<(Refiner, Progress, Machine, StateDir)> {
    let raw = args.target.as_deref().unwrap_or_default();
    let target = read_target(global, raw);
    if let Some(existing) = &target.existing {
        crate::files::require_file_or_folder(existing, "the deliverable")?;
    }
    let user_store = store_for(global, target.workspace_override.clone())?;
    let user_workspace = user_store.workspace().to_path_buf();
    // Backends first: with none usable, stop before touching anything (no `git init`).
    let machine = Machine::load(&user_workspace, global)?;
    let opener = machine.opener();
    let builder_name = match &args.backends.builder {
        Some(name) => name.clone(),
        None => machine.default_backend(&opener)?,
    };
    let judges = if args.backends.evaluator.is_empty() {
        vec![builder_name.clone()]
    } else {
        args.backends.evaluator.clone()
    };
    let roles = machine.roles(&opener, &builder_name, &judges)?;
    if !args.worktree {
        ensure_git(&user_workspace, args.yes)?;
    }
    let criteria = args.criteria.load()?;
    let mut prior_answer = None;
    let mut task = target.task.clone();
    if let Some(existing) = &target.existing {
        let relative = relative_to(&user_workspace, existing).with_context(|| {
            format!(
                "`{}` is not inside the workspace {}; pass --workspace with a folder that holds it",
                existing.display(),
                user_workspace.display()
            )
        })?;
        let shown = if relative.is_empty() {
            ".".to_owned()
        } else {
            relative
        };
        task =
            format!("Improve the existing deliverable at `{shown}` so it meets every criterion.");
        prior_answer = Some(shown);
    }
    let limits = limits_from(args, None)?;
    let label = label_for(&task);
    // A worktree run works in its own checkout of HEAD: the same relative paths, none of the
    // user's files.
    let (store, session_id) = if args.worktree {
        let (store, id) = open_worktree(&user_workspace, &label)?;
        (store, Some(id))
    } else {
        (user_store, None)
    };
    if let Some(path) = &args.prior_answer {
        prior_answer = Some(place_prior_answer(store.workspace(), path)?);
    }
    let config = RefineConfig {
        task,
        criteria,
        prior_answer,
        limits,
        verify: args.verify.clone(),
        label,
    };
    let refiner = match session_id {
        Some(id) => Refiner::start_as(store.clone(), id, config, roles, environment(&machine))?,
        None => Refiner::start(store.clone(), config, roles, environment(&machine))?,
    };
    let progress = Progress::new(args.json, limits.max_rounds);
    Ok((refiner, progress, machine, store))
}

/// A new worktree run's place (`refine --worktree`, `run --worktree`): a new worktree on a
/// new branch `refinery/<session>` from `HEAD`, the state folder inside it, and the session id
/// that names both.
pub(crate) fn open_worktree(
    user_workspace: &Path,
    label: &str,
) -> anyhow::Result<(StateDir, refinery_core::SessionId)> {
    let created = worktree::create(user_workspace, label, time::OffsetDateTime::now_utc())?;
    let workspace = created.workspace_for(user_workspace)?;
    output::note(&format!(
        "working in worktree {} on branch {}",
        created.path.display(),
        created.origin.branch
    ));
    let store = StateDir::new(worktree::state_dir(&created.path), workspace);
    Ok((store, created.id))
}

/// After a worktree run (started or resumed) that delivered something: the delivered round is
/// committed on the run's branch with the verdict, the scores and the session id.
fn finish_refine_worktree(
    store: &StateDir,
    summary: &RunSummary,
    json: bool,
) -> anyhow::Result<()> {
    let delivered = matches!(
        summary.status,
        RunStatus::Converged | RunStatus::Stopped { .. }
    ) && !summary.rounds.is_empty();
    finish_worktree(store, delivered, &commit_message(summary), json)
}

/// After a run in a worktree (nothing for a run in the user's own folder): what it delivered
/// is committed on its branch with `message`; the branch is reported (plain or `--json`).
pub(crate) fn finish_worktree(
    store: &StateDir,
    delivered: bool,
    message: &str,
    json: bool,
) -> anyhow::Result<()> {
    let Some(origin) = worktree::origin(store.root())? else {
        return Ok(());
    };
    let checkout = worktree::checkout_root(store.workspace())?;
    let commit = if delivered {
        worktree::commit_all(&checkout, message)?
    } else {
        None
    };
    if json {
        let event = serde_json::json!({
            "event": "worktree",
            "session": origin.session,
            "branch": origin.branch,
            "base": origin.base,
            "worktree": checkout,
            "commit": commit,
        });
        output::line(&event.to_string())?;
    } else {
        let what = match (&commit, delivered) {
            (Some(commit), _) => format!("committed {} on", &commit[..commit.len().min(12)]),
            (None, true) => "nothing changed since the last commit of".to_owned(),
            (None, false) => "nothing committed (the run did not finish) on".to_owned(),
        };
        output::line(&format!(
            "Branch: {what} {} (worktree {}); nothing was pushed or merged",
            origin.branch,
            checkout.display()
        ))?;
    }
    Ok(())
}

/// The commit message of a worktree run's result: verdict, delivered round, the score table
/// and the session id.
pub(crate) fn commit_message(summary: &RunSummary) -> String {
    let verdict = match &summary.status {
        RunStatus::Converged => "converged".to_owned(),
        RunStatus::Stopped { reason, .. } => format!(
            "stopped ({})",
            serde_json::to_value(reason)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        other => format!("{other:?}"),
    };
    let rounds = summary.rounds.len();
    // What the workspace holds: the best round, else the cut round's unevaluated files (no
    // round was scored), else the last round.
    let delivered = match (&summary.best_round, &summary.status) {
        (Some(best), _) => format!("round {} delivered", best.round),
        (
            None,
            RunStatus::Stopped {
                interrupted_round: Some(cut),
                ..
            },
        ) => format!("round {cut} delivered unevaluated"),
        (None, _) => format!("round {rounds} delivered"),
    };
    let mut lines = vec![
        format!("refinery: {verdict} after {rounds} round(s), {delivered}"),
        String::new(),
        format!("Session: {}", summary.session),
        String::new(),
    ];
    let numbers: Vec<u32> = summary.rounds.iter().map(|round| round.round).collect();
    lines.extend(score_table(
        &numbers,
        &summary.score_history,
        &str::to_owned,
    ));
    lines.push(String::new());
    lines.join("\n")
}

/// A Markdown table of each criterion's score in each round (`-` where a round was not
/// scored): one column per round of `rounds`, one row per criterion, headed by `label(id)`.
/// The worktree commit message and the CI summary both use it.
pub(crate) fn score_table(
    rounds: &[u32],
    history: &BTreeMap<String, Vec<Option<u8>>>,
    label: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let header: Vec<String> = rounds.iter().map(|round| format!("r{round}")).collect();
    let mut lines = vec![
        format!("| criterion | {} |", header.join(" | ")),
        format!("|---|{}", "---|".repeat(rounds.len())),
    ];
    for (id, scores) in history {
        let cells: Vec<String> = scores
            .iter()
            .map(|score| score.map_or_else(|| "-".to_owned(), |score| score.to_string()))
            .collect();
        lines.push(format!("| {} | {} |", label(id), cells.join(" | ")));
    }
    lines
}

/// `--prior-answer`: a path inside the workspace is used where it is; a file outside is
/// copied into the workspace root (never over an existing file).
fn place_prior_answer(workspace: &Path, path: &Path) -> anyhow::Result<String> {
    if !path.exists() {
        bail!("--prior-answer `{}` does not exist", path.display());
    }
    crate::files::require_file_or_folder(path, "--prior-answer")?;
    if let Some(relative) = relative_to(workspace, path) {
        return Ok(if relative.is_empty() {
            ".".to_owned()
        } else {
            relative
        });
    }
    if !path.is_file() {
        bail!(
            "--prior-answer `{}` is a folder outside the workspace; copy it into {} first",
            path.display(),
            workspace.display()
        );
    }
    let name = path
        .file_name()
        .context("--prior-answer has no file name")?
        .to_string_lossy()
        .into_owned();
    let destination = workspace.join(&name);
    if destination.exists() {
        bail!(
            "--prior-answer would be copied to {}, which already exists; move one of them",
            destination.display()
        );
    }
    fs_err::copy(path, &destination)?;
    Ok(name)
}

/// A short, file-name-safe label from the task's first words, taken from the task with its
/// secrets masked and its key-like words dropped ([`refinery_core::session::clean_label`]).
pub(crate) fn label_for(task: &str) -> String {
    let words: Vec<String> = refinery_core::session::clean_label(task)
        .split(|character: char| !character.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(4)
        .map(str::to_ascii_lowercase)
        .collect();
    let mut label = words.join("-");
    label.truncate(40);
    label
}

fn evaluate_inner(global: &GlobalArgs, args: &EvaluateArgs) -> anyhow::Result<ExitStatus> {
    refuse_zero_limits(&[("--call-timeout", Some(args.call_timeout))])?;
    let store = store_for(global, None)?;
    let workspace = store.workspace().to_path_buf();
    let mut paths = Vec::new();
    for path in &args.paths {
        let joined = if path.is_absolute() {
            path.clone()
        } else {
            std::env::current_dir()?.join(path)
        };
        if !joined.exists() {
            bail!("`{}` does not exist", path.display());
        }
        crate::files::require_file_or_folder(&joined, "the deliverable")?;
        let relative = relative_to(&workspace, &joined).with_context(|| {
            format!(
                "`{}` is not inside the workspace {}; pass --workspace with a folder that holds it",
                path.display(),
                workspace.display()
            )
        })?;
        paths.push(if relative.is_empty() {
            ".".to_owned()
        } else {
            relative
        });
    }
    let machine = Machine::load(&workspace, global)?;
    let opener = machine.opener();
    let judges = if args.evaluator.is_empty() {
        vec![machine.default_backend(&opener)?]
    } else {
        args.evaluator.clone()
    };
    let evaluator = machine.open(&opener, &judges[0])?;
    let panel = judges[1..]
        .iter()
        .map(|name| machine.open(&opener, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure_git(&workspace, args.yes)?;
    if let Some(budget) = args.cost_budget
        && (!budget.is_finite() || budget <= 0.0)
    {
        bail!("--cost-budget must be a positive number of US dollars");
    }
    let config = EvaluateConfig {
        paths,
        task: args.task.clone(),
        criteria: args.criteria.load()?,
        cost_budget_usd: args.cost_budget,
    };
    let env = Environment {
        env: machine.env.clone(),
        scrubber: Machine::scrubber(),
        call_timeout: Duration::from_secs(args.call_timeout),
        verify_timeout: Duration::from_mins(1),
    };
    let runtime = runtime()?;
    // Progress on stderr as `refine` shows it; with --json stdout carries only the report.
    let mut progress = (!args.json).then(|| Progress::new(false, 1));
    let report = runtime.block_on(async {
        let cancel = CancellationToken::new();
        cancel_on_ctrl_c(&cancel);
        let mut on_event = |event: &refinery_engine::RefineEvent| {
            if let Some(progress) = progress.as_mut() {
                progress.event(event);
            }
        };
        refinery_engine::evaluate_once(
            store.clone(),
            config,
            evaluator,
            panel,
            env,
            &cancel,
            &mut on_event,
        )
        .await
    });
    if let Some(progress) = progress.as_mut() {
        progress.finish();
    }
    let report = match report {
        Err(refinery_engine::EngineError::Halted(refinery_engine::Halt::Cancelled)) => {
            output::note("interrupted; nothing was scored");
            return Ok(ExitStatus::Interrupted);
        }
        Err(refinery_engine::EngineError::Halted(halt)) => {
            output::note(&format!(
                "stopped before the evaluation: {halt}; nothing was scored"
            ));
            return Ok(ExitStatus::Stopped);
        }
        other => other?,
    };
    let html = store
        .existing_session(&report.session)
        .ok()
        .and_then(|session| report::write_after_run(&store, &session, &machine.report_scrub()));
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let (Value::Object(map), Some(path)) = (&mut value, &html) {
            map.insert("html_report".to_owned(), path.display().to_string().into());
        }
        output::json(&value)?;
    } else {
        crate::commands::progress::print_evaluation(&report, html.as_deref())?;
    }
    Ok(if report.passed {
        ExitStatus::Success
    } else {
        ExitStatus::Stopped
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_mins(20)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_duration("2h5s"), Ok(Duration::from_secs(7205)));
        for bad in ["", "5x", "m", "10m5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn criteria_text_keeps_commas_inside_criteria() {
        let set = parse_criteria_text(
            "E1: Fast, accessible and clear, E2: Every link works; E3:Tested on mobile",
        )
        .unwrap();
        let texts: Vec<(&str, &str)> = set
            .as_slice()
            .iter()
            .map(|criterion| (criterion.id.as_str(), criterion.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("E1", "Fast, accessible and clear"),
                ("E2", "Every link works"),
                ("E3", "Tested on mobile")
            ]
        );
        let lines =
            parse_criteria_text("E1: First, with a comma\nE2: Second\r\nE3: Third\n").unwrap();
        assert_eq!(lines.ids(), ["E1", "E2", "E3"]);
        assert_eq!(lines.as_slice()[0].text, "First, with a comma");
        assert!(parse_criteria_text("just some text").is_err());
        assert!(parse_criteria_text("E1: , E2: x").is_err());
        assert!(parse_criteria_text("E1: a, E1: b").is_err());
    }

    #[test]
    fn labels_are_short_and_safe() {
        assert_eq!(
            label_for("Build a landing page for Acme!"),
            "build-a-landing-page"
        );
        assert_eq!(label_for(""), "");
        // Assembled at run time: a key at the start of a task never reaches the label.
        let key = format!(
            "sk-ant-api03-{}",
            "q7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu".repeat(3)
        );
        assert_eq!(label_for(&format!("{key} build a page")), "build-a-page");
    }
}
