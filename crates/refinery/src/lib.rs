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
    tune_allocator();
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

/// glibc's allocator maps every block over 128 KiB afresh and unmaps it when freed, and
/// gives the top of the heap back beyond 128 KiB free. A run builds, scans and encodes
/// briefs of a quarter megabyte several times a round, so each touched its pages anew: about
/// half of a run's page faults (measured in docs/BENCHMARKS.md). Blocks up to 32 MiB now come
/// from the heap, and up to 64 MiB of freed heap is kept for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt is glibc's documented interface for these settings"
)]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called first thing, before
    // this process starts any thread, and glibc serialises it with allocation anyway.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TOP_PAD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
