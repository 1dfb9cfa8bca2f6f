//! `refinery watch [SESSION]`: follow a running session from another terminal, whoever
//! drives it (`refinery refine`, or Claude Code through the plugin's tools), until it ends.
//!
//! It reads the session's files again whenever they change (the core's journal, and the
//! progress log a CLI run keeps) and shows the round, the phase, the scores so far, the
//! spending and the time since the session started. On a terminal that is a live status line
//! (indicatif, as `refine` draws its own) under the finished rounds; otherwise one plain line
//! per change. It never writes to the session.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use refinery_report::format::{duration_ms, money, tokens};
use refinery_report::{LiveStatus, Scrub, live_status};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::commands::report::pick_session;
use crate::output;
use crate::settings::resolve_store;

/// How often the session's files are checked for changes.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The session (see `refinery session list`) [default: the session started last].
    #[arg(value_name = "SESSION")]
    session: Option<String>,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &WatchArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    let session = pick_session(&store, args.session.as_deref())?;
    let scrub = Scrub::default();
    let mut view = View::new(std::io::stdout().is_terminal());
    view.say(&format!(
        "watching session {} (Ctrl-C stops watching, not the run)",
        session.id()
    ))?;
    let mut shown: Option<LiveStatus> = None;
    let mut last_change = Instant::now();
    loop {
        let status = live_status(&session, &scrub)?;
        if shown.as_ref() == Some(&status) {
            view.tick(&status);
        } else {
            view.update(shown.as_ref(), &status)?;
            shown = Some(status.clone());
            last_change = Instant::now();
        }
        if let Some(end) = &status.end {
            view.finish();
            output::line(&format!("ended: {end}"))?;
            return Ok(ExitStatus::Success);
        }
        // A CLI run records its pid; if that process is gone and the run never said it ended,
        // it was killed or crashed, and nothing will write to the session again.
        if last_change.elapsed() > Duration::from_secs(1)
            && let Some(pid) = status.driver_pid
            && !process_alive(pid)
        {
            view.finish();
            output::line(&format!(
                "ended: the process running it ({pid}) is gone without recording an end (killed or crashed); `refinery refine --resume {}` continues it",
                status.session
            ))?;
            return Ok(ExitStatus::Failed);
        }
        std::thread::sleep(POLL);
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks for existence; EPERM means it exists under another user.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

enum View {
    Bar(ProgressBar),
    Lines,
}

impl View {
    fn new(terminal: bool) -> Self {
        if !terminal {
            return Self::Lines;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn say(&self, text: &str) -> anyhow::Result<()> {
        match self {
            Self::Bar(bar) => {
                bar.println(text);
                Ok(())
            }
            Self::Lines => output::line(text),
        }
    }

    fn update(&mut self, before: Option<&LiveStatus>, now: &LiveStatus) -> anyhow::Result<()> {
        let known = before.map_or(0, |status| status.rounds.len());
        for round in now.rounds.iter().skip(known) {
            let scores: Vec<String> = round
                .scores
                .iter()
                .map(|(id, score)| format!("{id} {score}"))
                .collect();
            self.say(&format!(
                "round {}: {} → {}",
                round.round,
                if scores.is_empty() {
                    "no scores".to_owned()
                } else {
                    scores.join(" · ")
                },
                round.verdict
            ))?;
        }
        match self {
            Self::Bar(bar) => {
                bar.set_message(status_line(now));
                Ok(())
            }
            Self::Lines => {
                let moved = before
                    .is_none_or(|before| (before.round, &before.phase) != (now.round, &now.phase));
                if moved && now.end.is_none() {
                    output::line(&status_line(now))?;
                }
                Ok(())
            }
        }
    }

    /// Keeps the elapsed time moving on a terminal.
    fn tick(&self, status: &LiveStatus) {
        if let Self::Bar(bar) = self {
            bar.set_message(status_line(status));
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn status_line(status: &LiveStatus) -> String {
    let mut parts = Vec::new();
    match (status.round, status.max_rounds) {
        (Some(round), Some(max)) => parts.push(format!("round {round}/{max}")),
        (Some(round), None) => parts.push(format!("round {round}")),
        _ => {}
    }
    if let Some(phase) = &status.phase {
        match &status.activity {
            Some(tool) => parts.push(format!("{phase} ({tool})")),
            None => parts.push(phase.to_string()),
        }
    }
    match &status.spend {
        Some(spend) => parts.push(format!(
            "{} · {} tokens",
            money(spend.usd),
            tokens(spend.input_tokens + spend.output_tokens)
        )),
        None => parts.push("cost not measured".to_owned()),
    }
    if let Some(started) = status.started_ms {
        let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        parts.push(format!("{} since it started", duration_ms(now - started)));
    }
    parts.join(" · ")
}
