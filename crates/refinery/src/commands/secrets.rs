//! `refinery secrets scan|install`: the secret scanner for files, staged changes and pushes,
//! and plain git hooks that run it. All scanning lives in `refinery-secrets`; this module only
//! turns flags, the pre-commit framework's environment and the hook's stdin into options.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use refinery_secrets::cli::{
    HookKind, IgnoreRules, InstallOptions, OutputFormat, PrePushSource, ScanOptions, ScanStatus,
    ScanTarget,
};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Scan files, the staged diff, outgoing commits or recent history for secrets.
    ///
    /// Exit status: 0 clean, 1 secrets found, 2 the scan could not run (never "clean").
    Scan(ScanArgs),
    /// Install plain git pre-commit and pre-push hooks that run the scanner.
    Install(InstallArgs),
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// Files or folders to scan [default: the workspace].
    #[arg(value_name = "PATH", conflicts_with_all = ["staged", "pre_push", "since"])]
    paths: Vec<PathBuf>,
    /// Scan only the lines added in the staged diff (for a pre-commit hook).
    #[arg(long, conflicts_with_all = ["pre_push", "since"])]
    staged: bool,
    /// Scan the lines added by the commits being pushed, read from git's pre-push stdin (or
    /// from the pre-commit framework's PRE_COMMIT_* variables).
    #[arg(long, conflicts_with = "since")]
    pre_push: bool,
    /// The remote being pushed to (git passes it to a pre-push hook as `$1`).
    #[arg(long, env = "PRE_COMMIT_REMOTE_NAME", value_name = "NAME")]
    remote: Option<String>,
    /// Scan the lines added by the commits in REV..HEAD.
    #[arg(long, value_name = "REV")]
    since: Option<String>,
    /// Print one JSON document.
    #[arg(long, conflicts_with = "sarif")]
    json: bool,
    /// Print a SARIF 2.1.0 log.
    #[arg(long)]
    sarif: bool,
    /// Config file [default: <repository root>/.refinery-secrets.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore file of accepted fingerprints [default: <repository root>/.refinery-secrets-ignore].
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    /// Skip (and count) files larger than this many bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_file_size: Option<u64>,
    /// Also scan files that .gitignore excludes.
    #[arg(long)]
    no_ignore: bool,
    #[arg(long, env = "PRE_COMMIT_FROM_REF", hide = true)]
    from_ref: Option<String>,
    #[arg(long, env = "PRE_COMMIT_TO_REF", hide = true)]
    to_ref: Option<String>,
    #[arg(long, env = "PRE_COMMIT_LOCAL_BRANCH", hide = true)]
    local_branch: Option<String>,
}

#[derive(Debug, Args)]
struct InstallArgs {
    /// Which hook to install [default: both].
    #[arg(long = "hook", value_enum)]
    hooks: Vec<HookArg>,
    /// Replace an existing hook that refinery did not write (it is kept as a backup).
    #[arg(long)]
    force: bool,
    /// The program the hooks run [default: this refinery binary].
    #[arg(long, value_name = "PATH")]
    program: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HookArg {
    PreCommit,
    PrePush,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &SecretsArgs) -> anyhow::Result<ExitStatus> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let working_dir = match &global.workspace {
        Some(path) if path.is_absolute() => path.clone(),
        Some(path) => cwd.join(path),
        None => cwd,
    };
    match &args.command {
        SecretsCommand::Scan(scan) => run_scan(working_dir, scan),
        SecretsCommand::Install(install) => run_install(working_dir, install),
    }
}

fn run_scan(working_dir: PathBuf, args: &ScanArgs) -> anyhow::Result<ExitStatus> {
    let target = if args.staged {
        ScanTarget::Staged
    } else if args.pre_push {
        ScanTarget::PrePush(pre_push_source(args)?)
    } else if let Some(revision) = &args.since {
        ScanTarget::Since(revision.clone())
    } else {
        ScanTarget::Paths(args.paths.clone())
    };
    let mut options = ScanOptions::new(target, working_dir);
    options.format = if args.json {
        OutputFormat::Json
    } else if args.sarif {
        OutputFormat::Sarif
    } else {
        OutputFormat::Human
    };
    options.config_path.clone_from(&args.config);
    options.ignore_path.clone_from(&args.ignore_file);
    options.max_file_size = args.max_file_size;
    options.ignore_rules = if args.no_ignore {
        IgnoreRules::Disregard
    } else {
        IgnoreRules::Respect
    };

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = refinery_secrets::cli::run_scan(&options, &mut stdout, &mut stderr);
    // Findings first, then the summary and hints that refer to them.
    output::bytes(&stdout)?;
    output::stderr_bytes(&stderr);
    Ok(match status {
        ScanStatus::Clean => ExitStatus::Success,
        ScanStatus::Findings => ExitStatus::Negative,
        ScanStatus::Failed => ExitStatus::Error,
    })
}

/// The pre-commit framework consumes git's stdin and exports the range instead; a plain git
/// hook passes stdin through.
fn pre_push_source(args: &ScanArgs) -> anyhow::Result<PrePushSource> {
    if let (Some(from), Some(to)) = (&args.from_ref, &args.to_ref) {
        return Ok(PrePushSource::Range {
            from: from.clone(),
            to: to.clone(),
        });
    }
    if let (Some(local), Some(remote)) = (&args.local_branch, &args.remote) {
        return Ok(PrePushSource::NewBranch {
            local: local.clone(),
            remote: remote.clone(),
        });
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("could not read the pre-push input from stdin")?;
    Ok(PrePushSource::Stdin {
        input,
        remote: args.remote.clone(),
    })
}

fn run_install(working_dir: PathBuf, args: &InstallArgs) -> anyhow::Result<ExitStatus> {
    let hooks = if args.hooks.is_empty() {
        vec![HookKind::PreCommit, HookKind::PrePush]
    } else {
        args.hooks
            .iter()
            .map(|hook| match hook {
                HookArg::PreCommit => HookKind::PreCommit,
                HookArg::PrePush => HookKind::PrePush,
            })
            .collect()
    };
    let program = match &args.program {
        Some(program) => program.clone(),
        None => std::env::current_exe().context("cannot find the path of this refinery binary")?,
    };
    let options = InstallOptions {
        working_dir,
        hooks,
        program,
        force: args.force,
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = refinery_secrets::cli::run_install(&options, &mut stdout, &mut stderr);
    // Findings first, then the summary and hints that refer to them.
    output::bytes(&stdout)?;
    output::stderr_bytes(&stderr);
    Ok(if code == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}
