//! `refinery session list|show|restore|gc`: read what the loop and the MCP tools recorded, and
//! clear out what an interrupted snapshot left in the object store.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use refinery_core::{RestoreMode, Session, StateDir, Verdict, rfc3339};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::resolve_store;

#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// List sessions with their progress.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session: settings, criteria, checklist history, rounds and plan.
    Show {
        /// The session id (see `refinery session list`).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a round's snapshot into a folder, byte-identical.
    Restore {
        /// The session id.
        id: String,
        /// The round to restore.
        #[arg(long)]
        round: u32,
        /// The folder to write into: created if missing; it must be empty unless --force.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Write into a folder that already holds files, replacing same-named files (nothing
        /// else there is touched, and nothing is ever written through a link in it).
        #[arg(long)]
        force: bool,
    },
    /// Delete stored objects that no session names (left by a snapshot interrupted before
    /// its round was recorded). Small objects live in packs, one per snapshot: a pack none of
    /// whose objects is named is deleted; a pack only some of whose objects are named is
    /// rewritten with just those (the new pack is made durable before the old one is
    /// deleted). Does nothing while a run or MCP server is writing a snapshot.
    Gc {
        /// Keep unreferenced objects younger than this many minutes (a packed object is as old
        /// as its pack, which a snapshot wrote).
        #[arg(long, value_name = "MINUTES", default_value_t = 60)]
        keep_recent: u64,
    },
}

pub(crate) fn run_main(global: &GlobalArgs, args: &SessionArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    match &args.command {
        SessionCommand::List { json } => list(&store, *json),
        SessionCommand::Show { id, json } => show(&store, id, *json),
        SessionCommand::Restore {
            id,
            round,
            to,
            force,
        } => {
            let session = store.existing_session(id)?;
            let mode = if *force {
                RestoreMode::Overwrite
            } else {
                RestoreMode::IntoEmpty
            };
            let submission = session
                .restore_round(*round, to, mode)
                .with_context(|| format!("restoring round {round} of `{id}`"))?;
            output::line(&format!(
                "restored {} file(s), {} into {}",
                submission.files.len(),
                human_bytes(submission.total_bytes),
                to.display()
            ))?;
            Ok(ExitStatus::Success)
        }
        SessionCommand::Gc { keep_recent } => gc(&store, *keep_recent),
    }
}

fn gc(store: &StateDir, keep_recent: u64) -> anyhow::Result<ExitStatus> {
    let grace = Duration::from_secs(keep_recent.saturating_mul(60));
    let objects = store.objects();
    // The whole state folder is the root set: any file there naming an object keeps it.
    let Some(report) = objects.sweep(&[store.root().to_path_buf()], grace)? else {
        output::line(&format!(
            "{} is in use by a snapshot being written (a run or an MCP server); nothing was \
             removed. Run `refinery session gc` again when it is idle.",
            objects.dir().display()
        ))?;
        return Ok(ExitStatus::Negative);
    };
    output::line(&format!(
        "removed {} unreferenced object(s) ({}) and {} temporary file(s); kept {} object(s); \
         deleted {} pack(s), wrote {} to hold the named objects of packs only partly named",
        report.removed,
        human_bytes(report.removed_bytes),
        report.temporary_files,
        report.kept,
        report.packs_removed,
        report.packs_written
    ))?;
    if report.damaged_packs.is_empty() {
        return Ok(ExitStatus::Success);
    }
    for pack in &report.damaged_packs {
        output::line(&format!(
            "kept `{}`: it is damaged and could not be read, so what it holds is unknown",
            pack.display()
        ))?;
    }
    Ok(ExitStatus::Negative)
}

struct Row {
    id: String,
    label: String,
    created: String,
    criteria: Option<usize>,
    rounds: u32,
    verdict: Option<Verdict>,
    current: bool,
    problem: Option<String>,
}

fn summarize(session: &Session, current: Option<&str>) -> Row {
    let mut row = Row {
        id: session.id().to_string(),
        label: String::new(),
        created: String::new(),
        criteria: None,
        rounds: 0,
        verdict: None,
        current: current == Some(session.id().as_str()),
        problem: None,
    };
    // A damaged session must not hide the others: report its problem in its own row.
    let result = (|| -> refinery_core::Result<()> {
        let info = session.info()?;
        row.label = info.label;
        row.created = if info.created_at == time::OffsetDateTime::UNIX_EPOCH {
            String::new()
        } else {
            rfc3339(info.created_at)
        };
        row.criteria = session.criteria()?.map(|criteria| criteria.len());
        let state = session.state()?;
        row.rounds = state.round;
        row.verdict = state.last_result.map(|result| result.verdict);
        Ok(())
    })();
    if let Err(err) = result {
        row.problem = Some(err.to_string());
    }
    row
}

fn list(store: &StateDir, as_json: bool) -> anyhow::Result<ExitStatus> {
    let current = store.current_session_id().ok().map(|id| id.to_string());
    let rows: Vec<Row> = store
        .list_sessions()?
        .iter()
        .map(|session| summarize(session, current.as_deref()))
        .collect();
    if as_json {
        let items: Vec<Value> = rows
            .iter()
            .map(|row| {
                json!({
                    "id": row.id, "label": row.label, "created_at": row.created,
                    "criteria_count": row.criteria, "rounds": row.rounds,
                    "last_verdict": row.verdict, "current": row.current, "error": row.problem,
                })
            })
            .collect();
        output::json(&json!({"state_dir": store.root(), "sessions": items}))?;
        return Ok(ExitStatus::Success);
    }
    if rows.is_empty() {
        output::line(&format!(
            "no sessions under {} (sessions are created by the MCP tools, e.g. init_session)",
            store.root().display()
        ))?;
        return Ok(ExitStatus::Success);
    }
    let mut table = vec![vec![
        String::new(),
        "ID".into(),
        "LABEL".into(),
        "CRITERIA".into(),
        "ROUNDS".into(),
        "LAST VERDICT".into(),
    ]];
    for row in &rows {
        table.push(vec![
            if row.current {
                "*".into()
            } else {
                String::new()
            },
            row.id.clone(),
            row.label.clone(),
            row.criteria
                .map_or_else(|| "-".into(), |count| count.to_string()),
            row.rounds.to_string(),
            match (&row.problem, row.verdict) {
                (Some(problem), _) => format!("error: {problem}"),
                (None, Some(verdict)) => verdict.as_str().to_owned(),
                (None, None) => "-".into(),
            },
        ]);
    }
    for line in render_table(&table) {
        output::line(&line)?;
    }
    Ok(ExitStatus::Success)
}

fn show(store: &StateDir, id: &str, as_json: bool) -> anyhow::Result<ExitStatus> {
    let session = store.existing_session(id)?;
    let info = session.info()?;
    let criteria = session.criteria()?;
    let state = session.state()?;
    let history = session.history()?;
    let submissions = session.submissions()?;
    if as_json {
        let rounds: Vec<Value> = submissions
            .values()
            .map(|submission| {
                json!({
                    "round": submission.round, "revision": submission.revision,
                    "timestamp": submission.timestamp, "answer_summary": submission.answer_summary,
                    "files": submission.files.len(), "total_bytes": submission.total_bytes,
                    "new_bytes": submission.new_bytes, "skipped": submission.skipped,
                })
            })
            .collect();
        output::json(&json!({
            "session": info,
            "session_dir": session.dir(),
            "criteria": criteria,
            "state": {
                "round": state.round, "criteria_revision": state.criteria_revision,
                "last_verdict": state.last_result.as_ref().map(|result| result.verdict),
                "pending_answer": state.pending_answer, "resets": state.resets,
            },
            "history": history,
            "rounds": rounds,
            "plan": state.plan,
        }))?;
        return Ok(ExitStatus::Success);
    }
    let mut lines = vec![format!("Session {}", info.id)];
    if !info.label.is_empty() {
        lines.push(format!("  label        {}", info.label));
    }
    if info.created_at != time::OffsetDateTime::UNIX_EPOCH {
        lines.push(format!("  created      {}", rfc3339(info.created_at)));
    }
    lines.push(format!("  folder       {}", session.dir().display()));
    lines.push(format!(
        "  cutoff       {} (every criterion must score at least this)",
        info.settings.cutoff.get()
    ));
    lines.push(format!(
        "  max rounds   {}",
        info.settings
            .max_rounds
            .map_or_else(|| "none".to_owned(), |max| max.to_string())
    ));
    lines.push(format!(
        "  scored       {} round(s), last verdict {}",
        state.round,
        state
            .last_result
            .as_ref()
            .map_or("-", |result| result.verdict.as_str())
    ));
    lines.push(String::new());
    match &criteria {
        None => lines.push("Criteria: none yet".to_owned()),
        Some(criteria) => {
            lines.push("Criteria".to_owned());
            let mut table = vec![vec!["ID".into(), "CATEGORY".into(), "TEXT".into()]];
            for criterion in criteria.as_slice() {
                table.push(vec![
                    criterion.id.clone(),
                    criterion.category.as_str().to_owned(),
                    criterion.text.clone(),
                ]);
            }
            lines.extend(
                render_table(&table)
                    .into_iter()
                    .map(|line| format!("  {line}")),
            );
        }
    }
    lines.push(String::new());
    if history.is_empty() {
        lines.push("Checklist history: none yet".to_owned());
    } else {
        lines.push("Checklist history".to_owned());
        let ids: Vec<String> = history
            .last()
            .map(|record| {
                record
                    .outcome
                    .items
                    .iter()
                    .map(|item| item.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut header = vec!["ROUND".to_owned(), "VERDICT".to_owned()];
        header.extend(ids.iter().cloned());
        let mut table = vec![header];
        for record in &history {
            let mut row = vec![
                record.outcome.round.to_string(),
                record.outcome.verdict.as_str().to_owned(),
            ];
            for id in &ids {
                let score = record
                    .outcome
                    .items
                    .iter()
                    .find(|item| &item.id == id)
                    .map_or_else(|| "-".to_owned(), |item| item.score.to_string());
                row.push(score);
            }
            table.push(row);
        }
        lines.extend(
            render_table(&table)
                .into_iter()
                .map(|line| format!("  {line}")),
        );
    }
    lines.push(String::new());
    if submissions.is_empty() {
        lines.push("Rounds: no submissions yet".to_owned());
    } else {
        lines.push("Rounds".to_owned());
        let mut table = vec![vec![
            "ROUND".into(),
            "REV".into(),
            "FILES".into(),
            "SIZE".into(),
            "NEW".into(),
            "ANSWER".into(),
        ]];
        for submission in submissions.values() {
            table.push(vec![
                submission.round.to_string(),
                submission.revision.to_string(),
                submission.files.len().to_string(),
                human_bytes(submission.total_bytes),
                human_bytes(submission.new_bytes),
                first_line(&submission.answer_summary, 60),
            ]);
        }
        lines.extend(
            render_table(&table)
                .into_iter()
                .map(|line| format!("  {line}")),
        );
    }
    if let Some(plan) = &state.plan {
        lines.push(String::new());
        lines.push(format!("Plan after round {}", plan.after_round));
        for (id, entries) in &plan.improvements {
            for entry in entries {
                let impact = serde_json::to_value(entry.impact)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default();
                lines.push(format!("  {id} [{impact}] {}", first_line(&entry.plan, 90)));
            }
        }
    }
    for line in lines {
        output::line(&line)?;
    }
    Ok(ExitStatus::Success)
}

fn render_table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(column, cell)| format!("{cell:<width$}", width = widths[column]))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
