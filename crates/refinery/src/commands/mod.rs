//! One module per subcommand, each with a `run_main` taking its parsed arguments.

pub(crate) mod ask;
pub(crate) mod batch;
pub(crate) mod ci;
pub(crate) mod doctor;
pub(crate) mod hook;
pub(crate) mod local;
pub(crate) mod mcp;
pub(crate) mod media;
pub(crate) mod progress;
pub(crate) mod refine;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod session;
pub(crate) mod tmux;
pub(crate) mod trace;
pub(crate) mod watch;

use crate::ExitStatus;
use crate::cli::{Cli, Command};

pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Mcp(args) => mcp::run_main(&cli.global, &args),
        Command::Media(args) => media::run_main(&cli.global, &args),
        Command::Session(args) => session::run_main(&cli.global, &args),
        Command::Runs(args) => runs::run_main(&cli.global, &args),
        Command::Secrets(args) => secrets::run_main(&cli.global, &args),
        Command::Doctor(args) => doctor::run_main(&cli.global, &args),
        Command::Ask(args) => ask::run_main(&cli.global, &args),
        Command::Local(args) => local::run_main(&args),
        Command::Hook(args) => hook::run_main(&cli.global, &args),
        Command::Trace(args) => trace::run_main(&args),
        Command::Tmux(args) => tmux::run_main(&args),
        Command::Ci(args) => ci::run_main(&args),
        Command::Batch(args) => Ok(batch::run_main(&cli.global, &args)),
        Command::Refine(args) => Ok(refine::run_refine(&cli.global, &args)),
        Command::Evaluate(args) => Ok(refine::run_evaluate(&cli.global, &args)),
        Command::Run(args) => Ok(run::run_main(&cli.global, &args)),
        Command::Report(args) => report::run_main(&cli.global, &args),
        Command::Watch(args) => watch::run_main(&cli.global, &args),
    }
}
