//! `progress.jsonl`: the driver's event stream, kept in the session folder so a report can show
//! the time and cost of every phase and `refinery watch` can follow a run from another
//! terminal.
//!
//! The core's journal (`events.jsonl`) records what the loop decided; it knows nothing of
//! phases, spending or the builder's tool calls, which only the driver sees. So the driver
//! appends each event it renders here, as one JSON line with `ts_ms` (Unix milliseconds)
//! added; each process first writes a `driver` line with its pid. The log is advisory: a
//! failed append is not worth stopping a run for, and a torn last line (a reader racing the
//! writer) is skipped when read.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::files::SpendFile;

/// The file's name in the session folder.
pub const PROGRESS_FILE: &str = "progress.jsonl";

/// Appends events to a session's `progress.jsonl`.
#[derive(Debug)]
pub struct ProgressLog {
    path: PathBuf,
    file: fs_err::File,
}

impl ProgressLog {
    /// Opens (creating) the log of the session in `session_dir` and records that process
    /// `pid` now drives it with `command` (`refine`, `evaluate`).
    pub fn open(session_dir: &Path, command: &str, pid: u32, now_ms: i64) -> std::io::Result<Self> {
        let path = session_dir.join(PROGRESS_FILE);
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut log = Self { path, file };
        let mut driver = Map::new();
        driver.insert("event".to_owned(), Value::from("driver"));
        driver.insert("command".to_owned(), Value::from(command));
        driver.insert("pid".to_owned(), Value::from(pid));
        log.append(driver, now_ms, &|text| text.to_owned())?;
        Ok(log)
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (a JSON object with an `event` field) at `now_ms`. `scrub` masks
    /// secrets in the serialized line before it is written.
    pub fn append(
        &mut self,
        mut event: Map<String, Value>,
        now_ms: i64,
        scrub: &dyn Fn(&str) -> String,
    ) -> std::io::Result<()> {
        event.insert("ts_ms".to_owned(), Value::from(now_ms));
        let mut line = scrub(&Value::Object(event).to_string());
        line.push('\n');
        // One write per line, so a concurrent reader sees whole lines or a torn last one.
        self.file.write_all(line.as_bytes())
    }
}

/// One line of the log.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) ts_ms: i64,
    pub(crate) event: Value,
}

impl Entry {
    fn kind(&self) -> &str {
        self.event["event"].as_str().unwrap_or_default()
    }

    fn round(&self) -> u32 {
        self.event["round"]
            .as_u64()
            .and_then(|round| u32::try_from(round).ok())
            .unwrap_or(0)
    }
}

/// Every readable line of the session's log, in order.
pub(crate) fn read(session_dir: &Path) -> Vec<Entry> {
    let Some(text) = crate::files::read_text(&session_dir.join(PROGRESS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| {
            let ts_ms = event["ts_ms"].as_i64()?;
            Some(Entry { ts_ms, event })
        })
        .collect()
}

/// One phase of a round as the log saw it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PhaseSpan {
    /// The engine's name for it (`build`, `verify`, `evaluate`, …).
    pub(crate) phase: String,
    pub(crate) started_ms: i64,
    /// `None` while it runs.
    pub(crate) ended_ms: Option<i64>,
    /// What the phase spent.
    pub(crate) spend: SpendFile,
}

/// One round as the log saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RoundSpan {
    pub(crate) started_ms: Option<i64>,
    pub(crate) ended_ms: Option<i64>,
    pub(crate) phases: Vec<PhaseSpan>,
}

/// What a log says about a run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    /// Rounds by number; round 0 holds what ran before round 1 (writing criteria).
    pub(crate) rounds: BTreeMap<u32, RoundSpan>,
    /// The latest totals and active time.
    pub(crate) spend: Option<(SpendFile, u64)>,
    /// The round and phase under way (the last phase not yet followed by a decision).
    pub(crate) current: Option<(u32, String)>,
    /// The builder's latest tool call in the current phase.
    pub(crate) activity: Option<String>,
    /// `max_rounds` from the latest `round_started`.
    pub(crate) max_rounds: Option<u32>,
    /// The pid of the last driver process.
    pub(crate) pid: Option<u32>,
    pub(crate) first_ms: Option<i64>,
    pub(crate) last_ms: Option<i64>,
}

impl Timeline {
    /// Replays `entries`.
    pub(crate) fn from_entries(entries: &[Entry]) -> Self {
        let mut replay = Replay::default();
        for entry in entries {
            replay.apply(entry);
        }
        replay.timeline
    }

    /// Ends the open phase, if any, at `ts_ms` with what it spent.
    fn close_phase(&mut self, ts_ms: i64, spend_now: SpendFile, spend_start: SpendFile) {
        let Some((round, _)) = &self.current else {
            return;
        };
        if let Some(phase) = self
            .rounds
            .get_mut(round)
            .and_then(|span| span.phases.last_mut())
            .filter(|phase| phase.ended_ms.is_none())
        {
            phase.ended_ms = Some(ts_ms);
            phase.spend = spend_now.since(spend_start);
        }
    }
}

/// A timeline being built, with the running totals phases are measured against.
#[derive(Default)]
struct Replay {
    timeline: Timeline,
    spend_now: SpendFile,
    phase_start: SpendFile,
}

impl Replay {
    fn apply(&mut self, entry: &Entry) {
        let timeline = &mut self.timeline;
        timeline.first_ms.get_or_insert(entry.ts_ms);
        timeline.last_ms = Some(entry.ts_ms);
        let number = |key: &str| {
            entry.event[key]
                .as_u64()
                .and_then(|value| u32::try_from(value).ok())
        };
        match entry.kind() {
            "driver" => {
                // A new process: whatever phase was open was cut short there.
                timeline.close_phase(entry.ts_ms, self.spend_now, self.phase_start);
                timeline.current = None;
                timeline.pid = number("pid");
            }
            "round_started" => {
                timeline.close_phase(entry.ts_ms, self.spend_now, self.phase_start);
                // A round started again (after a resume) replaces the cut-short attempt.
                let span = RoundSpan {
                    started_ms: Some(entry.ts_ms),
                    ..RoundSpan::default()
                };
                timeline.rounds.insert(entry.round(), span);
                timeline.current = Some((entry.round(), "starting".to_owned()));
                timeline.max_rounds = number("max_rounds");
            }
            "phase" => {
                timeline.close_phase(entry.ts_ms, self.spend_now, self.phase_start);
                let phase = entry.event["phase"].as_str().unwrap_or("phase").to_owned();
                let span = timeline.rounds.entry(entry.round()).or_default();
                span.started_ms.get_or_insert(entry.ts_ms);
                span.phases.push(PhaseSpan {
                    phase: phase.clone(),
                    started_ms: entry.ts_ms,
                    ended_ms: None,
                    spend: SpendFile::default(),
                });
                self.phase_start = self.spend_now;
                timeline.current = Some((entry.round(), phase));
                timeline.activity = None;
            }
            "activity" => timeline.activity = entry.event["tool"].as_str().map(str::to_owned),
            "spend" => {
                if let Ok(spend) = serde_json::from_value::<SpendFile>(entry.event["spend"].clone())
                {
                    self.spend_now = spend;
                    let elapsed = entry.event["elapsed_ms"].as_u64().unwrap_or_default();
                    timeline.spend = Some((spend, elapsed));
                }
            }
            "decision" | "finished" => {
                timeline.close_phase(entry.ts_ms, self.spend_now, self.phase_start);
                if let Some(span) = timeline
                    .rounds
                    .get_mut(&entry.round())
                    .filter(|_| entry.kind() == "decision")
                {
                    span.ended_ms = Some(entry.ts_ms);
                }
                timeline.current = None;
            }
            _ => {}
        }
    }
}

/// How a phase name from the engine reads.
pub(crate) fn phase_label(phase: &str) -> &str {
    match phase {
        "criteria" => "writing criteria",
        "build" => "building",
        "verify" => "verifying",
        "fix" => "fixing failed checks",
        "regression_guard" => "regression guard",
        "repair" => "repairing a regression",
        "submit" => "snapshot",
        "evaluate" => "evaluating",
        "starting" => "starting",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(ts_ms: i64, event: Value) -> Entry {
        Entry { ts_ms, event }
    }

    fn spend(usd: f64, input: u64) -> Value {
        json!({"event": "spend", "spend": {"usd": usd, "unknown_cost_calls": 0, "input_tokens": input, "output_tokens": 10, "calls": 1}, "elapsed_ms": 5})
    }

    #[test]
    fn phases_get_their_time_and_spend_and_a_resume_replaces_the_cut_round() {
        let entries = vec![
            entry(0, json!({"event": "driver", "pid": 7})),
            entry(
                10,
                json!({"event": "round_started", "round": 1, "max_rounds": 3}),
            ),
            entry(10, json!({"event": "phase", "round": 1, "phase": "build"})),
            entry(400, spend(0.5, 100)),
            entry(
                500,
                json!({"event": "phase", "round": 1, "phase": "evaluate"}),
            ),
            entry(900, spend(0.75, 150)),
            entry(
                1000,
                json!({"event": "scored", "round": 1, "scores": {"E1": 4}, "verdict": "iterate"}),
            ),
            entry(
                1000,
                json!({"event": "decision", "round": 1, "next": {"next": "continue", "change_approach_for": []}}),
            ),
            entry(
                1100,
                json!({"event": "round_started", "round": 2, "max_rounds": 3}),
            ),
            entry(
                1100,
                json!({"event": "phase", "round": 2, "phase": "build"}),
            ),
            // Killed here; a new process resumes and runs round 2 again.
            entry(5000, json!({"event": "driver", "pid": 8})),
            entry(
                5100,
                json!({"event": "round_started", "round": 2, "max_rounds": 4}),
            ),
            entry(
                5100,
                json!({"event": "phase", "round": 2, "phase": "build"}),
            ),
        ];
        let timeline = Timeline::from_entries(&entries);
        let first = &timeline.rounds[&1];
        assert_eq!((first.started_ms, first.ended_ms), (Some(10), Some(1000)));
        assert_eq!(first.phases.len(), 2);
        assert_eq!(first.phases[0].ended_ms, Some(500));
        assert!((first.phases[0].spend.usd - 0.5).abs() < 1e-9);
        assert!((first.phases[1].spend.usd - 0.25).abs() < 1e-9);
        assert_eq!(first.phases[1].spend.input_tokens, 50);
        let second = &timeline.rounds[&2];
        assert_eq!(second.started_ms, Some(5100));
        assert_eq!(second.phases.len(), 1);
        assert_eq!(second.phases[0].ended_ms, None);
        assert_eq!(timeline.current, Some((2, "build".to_owned())));
        assert_eq!((timeline.pid, timeline.max_rounds), (Some(8), Some(4)));
    }
}
