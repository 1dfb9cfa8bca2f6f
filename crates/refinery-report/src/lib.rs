//! Refinery's session report and live status.
//!
//! [`write_report`] turns a session folder into one self-contained HTML file: the task and
//! criteria (tiers, anti-patterns), an SVG chart of every criterion's score per round with the
//! pass mark, each round's verdict and why (computed reasons, failing criteria, plateaus,
//! caps), the judges' evidence and critiques (per judge, with their spread, for a panel), the
//! regression guard, time and cost per round and phase, the files changed between rounds as
//! unified diffs, the learnings, and where the deliverable is. [`live_status`] reads where a
//! running session stands, for `refinery watch`.
//!
//! It works for every driver: sessions run by `refinery refine` or `refinery evaluate`, and
//! sessions driven through the MCP tools (the Claude Code plugin), which have only the core's
//! files. It reads through `refinery-core` and renders; it never changes a session, never
//! makes a network request, and never shows a string that has not passed the secret scrubber
//! ([`Scrub`]): session text is model output and is treated as hostile (escaped, and kept
//! from running or loading anything by the page's Content-Security-Policy).
//!
//! ```no_run
//! use refinery_core::StateDir;
//! use refinery_report::{Scrub, write_report};
//!
//! let store = StateDir::new(".refinery", ".");
//! let session = store.existing_session("20261124_031958_build-a-landing-page")?;
//! let path = write_report(&session, &store, &Scrub::default(), None)?;
//! println!("{}", path.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod chart;
mod diff;
mod error;
mod files;
pub mod format;
mod html;
mod live;
mod load;
mod model;
mod progress;
mod scrub;

use std::path::{Path, PathBuf};

use refinery_core::{Session, StateDir};

pub use error::{Error, Result};
pub use live::{LiveRound, LiveSpend, LiveStatus, live_status};
pub use progress::{PROGRESS_FILE, ProgressLog};
pub use scrub::{Scrub, Text};

/// The report's file name in the session folder.
pub const REPORT_FILE: &str = "report.html";

/// The report of `session` as one HTML document.
pub fn render_report(session: &Session, store: &StateDir, scrub: &Scrub) -> Result<String> {
    let view = load::load(store, session, scrub)?;
    Ok(html::page(&view))
}

/// Writes the report of `session` to `out`, or to `report.html` in the session folder, and
/// returns where. The file is replaced atomically.
pub fn write_report(
    session: &Session,
    store: &StateDir,
    scrub: &Scrub,
    out: Option<&Path>,
) -> Result<PathBuf> {
    let page = render_report(session, store, scrub)?;
    let path = out.map_or_else(|| session.dir().join(REPORT_FILE), Path::to_path_buf);
    refinery_core::fsutil::write_atomic(&path, page.as_bytes()).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
