//! The `refinery` command: parses arguments, resolves settings, and hands each subcommand to
//! its `run_main`. Human and `--json` output come from the same results; nothing here decides
//! anything about quality — that lives in `refinery-core` (and later the engine).

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod backends;
mod cli;
mod commands;
mod files;
mod log_format;
mod output;
mod redact;
mod settings;
mod worktree;

use std::process::ExitCode;

use clap::Parser as _;

/// How the process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// The command ran but its answer is negative (reserved for verdicts and findings).
    Negative,
    /// The command could not do its job.
    Error,
    /// `refine`/`evaluate`: a cap or plateau stopped the loop, or the work is below the bar.
    Stopped,
    /// `refine`/`evaluate`: the loop itself failed (the contract: 1 is an error there).
    Failed,
    /// Ctrl-C; the state is saved.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Negative | ExitStatus::Failed => ExitCode::from(1),
            ExitStatus::Error | ExitStatus::Stopped => ExitCode::from(2),
            ExitStatus::Interrupted => ExitCode::from(130),
        }
    }
}

/// Runs the command line of this process.
pub fn run() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version to stdout and usage errors to stderr itself.
            let _ = err.print();
            return if err.use_stderr() {
                ExitStatus::Error.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    // Every secret-named variable of this process is masked wherever text leaves it, from
    // the first line of output on; `.env` files add theirs when credentials are loaded.
    let env = settings::process_env();
    refinery_secrets::remember_secret_vars(
        env.iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    init_tracing();
    match commands::dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) if err.is::<output::BrokenPipe>() => ExitStatus::Success.into(),
        Err(err) => {
            output::error(&err);
            ExitStatus::Error.into()
        }
    }
}

/// Logs go to stderr only (stdout may be an MCP stream). Without `RUST_LOG`, warnings and
/// errors are plain sentences; `RUST_LOG` picks the level and tracing's own format.
fn init_tracing() {
    // `log_internal_errors(false)`: on a failed write the subscriber would report it with
    // `eprintln!`, which panics when stderr is gone; our writer never fails either.
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(redact::RedactingStderr)
                .log_internal_errors(false)
                .with_ansi(false)
                .try_init();
        }
        Err(_) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_writer(redact::RedactingStderr)
                .log_internal_errors(false)
                .with_ansi(false)
                .event_format(log_format::PlainFormat)
                .try_init();
        }
    }
}
