//! `refinery report [SESSION] [--out FILE]`: one self-contained HTML file about a session,
//! and the helpers `refine` and `evaluate` use to write it when they finish.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use refinery_core::{Session, StateDir};
use refinery_report::Scrub;

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::{load_credentials, process_env, resolve_store};

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The session (see `refinery session list`) [default: the session started last].
    #[arg(value_name = "SESSION")]
    session: Option<String>,
    /// Write the report here instead of `report.html` in the session folder.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &ReportArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    let session = pick_session(&store, args.session.as_deref())?;
    // Mask the values of the keys this machine has, too: a key pasted into a file of the
    // session matches no rule when its format is unknown.
    let credentials = load_credentials(&process_env(), store.workspace())?;
    let scrub = Scrub::with_known_secrets(
        credentials
            .exposed_keys()
            .map(|(_, key)| key.expose().to_owned()),
    );
    let path = refinery_report::write_report(&session, &store, &scrub, args.out.as_deref())
        .with_context(|| format!("writing the report of `{}`", session.id()))?;
    output::line(&path.display().to_string())?;
    Ok(ExitStatus::Success)
}

/// The session named, else the one the current-session pointer names (the one started
/// last), else the newest folder.
pub(crate) fn pick_session(store: &StateDir, raw: Option<&str>) -> anyhow::Result<Session> {
    if let Some(raw) = raw {
        return Ok(store.existing_session(raw)?);
    }
    if let Ok(id) = store.current_session_id() {
        let session = store.session(id);
        if session.dir().is_dir() {
            return Ok(session);
        }
    }
    store.list_sessions()?.pop().with_context(|| {
        format!(
            "no session in {}; start one with `refinery refine` or name the state folder with --state-dir",
            store.sessions_dir().display()
        )
    })
}

/// Writes the session's report at the end of a run. A report that cannot be written is a
/// warning, never a failed run: the run's state is saved either way.
pub(crate) fn write_after_run(
    store: &StateDir,
    session: &Session,
    scrub: &Scrub,
) -> Option<PathBuf> {
    match refinery_report::write_report(session, store, scrub, None) {
        Ok(path) => Some(path),
        Err(err) => {
            output::note(&format!(
                "warning: the report could not be written ({err}); `refinery report {}` tries again",
                session.id()
            ));
            None
        }
    }
}

/// The progress log of a run, or `None` (with a warning) when it cannot be opened.
pub(crate) fn open_progress_log(session: &Session, command: &str) -> Option<ProgressWriter> {
    let now = now_ms();
    match refinery_report::ProgressLog::open(session.dir(), command, std::process::id(), now) {
        Ok(log) => Some(ProgressWriter { log, failed: false }),
        Err(err) => {
            output::note(&format!(
                "warning: {} cannot be written ({err}); `refinery watch` and the report will show less of this run",
                Path::new(refinery_report::PROGRESS_FILE).display()
            ));
            None
        }
    }
}

/// Appends the events of a run to its progress log; the first failure is reported once.
pub(crate) struct ProgressWriter {
    log: refinery_report::ProgressLog,
    failed: bool,
}

impl ProgressWriter {
    /// Appends `event`, masked by the process scrubber string by string (a rule that needs a
    /// line end sees the real one inside a string, not JSON's `\n`).
    pub(crate) fn append(&mut self, event: &impl serde::Serialize) {
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(event) else {
            return;
        };
        let scrubber = refinery_secrets::process_scrubber();
        let scrub = |line: &str| {
            scrubber
                .scrub_json_text(line, refinery_secrets::JsonStyle::Compact)
                .into_owned()
        };
        if let Err(err) = self.log.append(map, now_ms(), &scrub)
            && !self.failed
        {
            self.failed = true;
            output::note(&format!(
                "warning: writing {} failed ({err}); the run goes on",
                self.log.path().display()
            ));
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}
