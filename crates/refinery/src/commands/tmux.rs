//! `refinery tmux launch|watch`: run Claude Code in tmux so every refine round starts with a
//! fresh context.
//!
//! At the end of a round the refine skill exits plan mode; Claude Code then asks whether to
//! proceed, and "Yes, clear context" (shown only with `showClearContextOnPlanAccept`) starts
//! the next round from the plan alone. That choice exists only in the terminal UI, so
//! `launch` starts Claude Code with the option enabled and a watcher that presses Enter on it.
//! The watcher presses only when option 1 is focused, waits before pressing (an Enter sent
//! the instant the dialog appears can be lost), confirms the dialog went away, retries a
//! bounded number of times, and exits when the pane dies.

mod dialog;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::ExitStatus;
use crate::output;

use dialog::{Dialog, classify};

/// Every tmux call is short; one that hangs means tmux itself is stuck.
const TMUX_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pane size Claude Code's dialog was observed at; narrower panes wrap option labels.
const PANE_WIDTH: &str = "200";
const PANE_HEIGHT: &str = "50";
const CLEAR_CONTEXT_SETTINGS: &str = r#"{"showClearContextOnPlanAccept":true}"#;

#[derive(Debug, Args)]
pub(crate) struct TmuxArgs {
    #[command(subcommand)]
    command: TmuxCommand,
}

#[derive(Debug, Subcommand)]
enum TmuxCommand {
    /// Start Claude Code in a tmux session with "clear context" enabled, plus the watcher.
    Launch(LaunchArgs),
    /// Watch a pane and accept "Yes, clear context" on the plan dialog (started by launch).
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
struct LaunchArgs {
    /// The tmux session name [default: `refinery-<folder>`].
    #[arg(long, value_name = "NAME")]
    session: Option<String>,
    /// Use a private tmux server: a socket name (`tmux -L`) or a path containing `/` (`tmux -S`).
    #[arg(long, value_name = "NAME|PATH")]
    socket: Option<String>,
    /// The Claude Code executable.
    #[arg(
        long,
        env = "REFINERY_CLAUDE_BIN",
        default_value = "claude",
        value_name = "PATH"
    )]
    claude_bin: PathBuf,
    /// Do not attach to the session; print how to attach instead.
    #[arg(long)]
    no_attach: bool,
    /// Arguments passed to Claude Code (after `--`).
    #[arg(last = true, value_name = "CLAUDE ARGS")]
    claude_args: Vec<String>,
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// The pane to watch (`%N`, as printed by launch).
    #[arg(long, value_name = "PANE")]
    pane: String,
    /// The tmux server, if not the default one: a socket name (`-L`) or a path (`-S`).
    #[arg(long, value_name = "NAME|PATH")]
    socket: Option<String>,
    /// How often to read the screen, in milliseconds.
    #[arg(long, default_value_t = 250, value_name = "MS", value_parser = crate::files::positive_u64)]
    poll_ms: u64,
    /// How long the dialog must stay up before Enter is pressed, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// How long to wait for the dialog to go away after a press, in milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS", value_parser = crate::files::positive_u64)]
    confirm_ms: u64,
    /// Presses per dialog before giving up on it.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = crate::files::positive_u32)]
    max_presses: u32,
}

pub(crate) fn run_main(args: &TmuxArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        TmuxCommand::Launch(launch_args) => launch(launch_args),
        TmuxCommand::Watch(watch_args) => watch(watch_args),
    }
}

/// `tmux -L NAME` for a socket name, `tmux -S PATH` for a socket path.
fn socket_args(socket: &str) -> [&str; 2] {
    if socket.contains('/') {
        ["-S", socket]
    } else {
        ["-L", socket]
    }
}

/// Runs one tmux command on the chosen server, bounded by [`TMUX_CALL_TIMEOUT`].
fn tmux(socket: Option<&str>, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new("tmux");
    if let Some(socket) = socket {
        command.args(socket_args(socket));
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "`tmux` is not installed; install it (e.g. `apt-get install tmux`), or run `claude` directly and choose option 1, \"Yes, clear context\", at the end of each round"
            )
        } else {
            anyhow::Error::new(err).context("could not run tmux")
        }
    })?;
    let deadline = Instant::now() + TMUX_CALL_TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`tmux {}` did not answer within {TMUX_CALL_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tmux_ok(socket: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let output = tmux(socket, args)?;
    if !output.status.success() {
        bail!(
            "`tmux {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn launch(args: &LaunchArgs) -> anyhow::Result<ExitStatus> {
    let socket = args.socket.as_deref();
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let base = args.session.clone().unwrap_or_else(|| {
        let folder = cwd
            .file_name()
            .map(|name| refinery_core::session::slugify(&name.to_string_lossy()))
            .filter(|slug| !slug.is_empty())
            .unwrap_or_else(|| "project".to_owned());
        format!("refinery-{folder}")
    });
    let mut name = base.clone();
    for counter in 2.. {
        // `=` asks tmux for this exact name; without it, names are prefix-matched.
        let exists = tmux(socket, &["has-session", "-t", &format!("={name}")])?
            .status
            .success();
        if !exists {
            break;
        }
        name = format!("{base}-{counter}");
    }
    let cwd_text = cwd.display().to_string();
    let claude = args.claude_bin.display().to_string();
    let mut new_session = vec![
        "new-session",
        "-d",
        "-P",
        "-F",
        "#{pane_id}",
        "-s",
        &name,
        "-x",
        PANE_WIDTH,
        "-y",
        PANE_HEIGHT,
        "-c",
        &cwd_text,
        "--",
        &claude,
        "--settings",
        CLEAR_CONTEXT_SETTINGS,
    ];
    new_session.extend(args.claude_args.iter().map(String::as_str));
    let pane = tmux_ok(socket, &new_session)?.trim().to_owned();
    if !pane.starts_with('%') {
        bail!("tmux did not report a pane id for the new session (got `{pane}`)");
    }
    let refinery = std::env::current_exe().context("cannot find the refinery executable")?;
    let refinery = refinery.display().to_string();
    // A hidden window of the same session: it lives and dies with Claude Code's pane.
    let target = format!("={name}:");
    let mut watcher = vec![
        "new-window",
        "-d",
        "-t",
        &target,
        "-n",
        "refinery-watch",
        "--",
        &refinery,
        "tmux",
        "watch",
        "--pane",
        &pane,
    ];
    if let Some(socket) = socket {
        watcher.extend(["--socket", socket]);
    }
    tmux_ok(socket, &watcher)?;
    let attach_hint = match socket {
        Some(socket) => format!("tmux {} attach -t {name}", socket_args(socket).join(" ")),
        None => format!("tmux attach -t {name}"),
    };
    if args.no_attach || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        output::line(&format!(
            "Claude Code is running in tmux session `{name}` (pane {pane}) with context clearing between rounds; attach with: {attach_hint}"
        ))?;
        return Ok(ExitStatus::Success);
    }
    let mut attach = Command::new("tmux");
    if let Some(socket) = socket {
        attach.args(socket_args(socket));
    }
    let status = attach
        .args(["attach-session", "-t", &format!("={name}")])
        .status()
        .context("could not attach to the tmux session")?;
    Ok(if status.success() {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}

/// Whether the pane still runs its program. A pane that no longer exists is dead too.
fn pane_is_alive(socket: Option<&str>, pane: &str) -> anyhow::Result<bool> {
    let output = tmux(
        socket,
        &["display-message", "-p", "-t", pane, "#{pane_dead}"],
    )?;
    Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn capture(socket: Option<&str>, pane: &str) -> anyhow::Result<Option<String>> {
    let output = tmux(socket, &["capture-pane", "-p", "-J", "-t", pane])?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// Polls until `done` holds or `timeout` passes; every wait is bounded.
fn wait_until(
    timeout: Duration,
    poll: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn watch(args: &WatchArgs) -> anyhow::Result<ExitStatus> {
    let socket = args.socket.as_deref();
    let pane = args.pane.as_str();
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let settle = Duration::from_millis(args.settle_ms);
    let confirm = Duration::from_millis(args.confirm_ms);
    let shows_clear_dialog = || -> anyhow::Result<bool> {
        Ok(capture(socket, pane)?
            .is_some_and(|screen| classify(&screen) == Dialog::ClearContextSelected))
    };
    let mut dialogs = 0u32;
    while pane_is_alive(socket, pane)? {
        if !shows_clear_dialog()? {
            std::thread::sleep(poll);
            continue;
        }
        // Let the dialog settle, then make sure it is still there with option 1 focused.
        std::thread::sleep(settle);
        if !shows_clear_dialog()? {
            continue;
        }
        dialogs += 1;
        let mut accepted = false;
        for attempt in 1..=args.max_presses {
            tmux_ok(socket, &["send-keys", "-t", pane, "Enter"])?;
            if wait_until(confirm, poll, || Ok(!shows_clear_dialog()?))? {
                output::line(&format!(
                    "dialog {dialogs}: chose \"Yes, clear context\" (press {attempt})"
                ))?;
                accepted = true;
                break;
            }
        }
        if !accepted {
            output::line(&format!(
                "dialog {dialogs}: still shown after {} presses; leaving it to you",
                args.max_presses
            ))?;
            // Never keep pressing on a dialog that ignores Enter: wait for it to change.
            while pane_is_alive(socket, pane)? && shows_clear_dialog()? {
                std::thread::sleep(poll);
            }
        }
    }
    Ok(ExitStatus::Success)
}
