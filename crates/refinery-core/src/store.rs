//! The on-disk store: sessions under a state folder, and every operation the tools perform.
//!
//! ```text
//! <state>/session_metadata.json   current-session pointer (read by the MCP servers per call)
//! <state>/environment.json        backends and API key names (never values); refinery-llm writes it
//! <state>/claude_sessions/<id>.json  which Refinery session a Claude Code session works on
//! <state>/objects/                 content-addressed blobs shared by all snapshots (crate::objects)
//! <state>/sessions/<id>/
//!     session.json  criteria.json  state.json  events.jsonl  scope.json  .lock
//!     round_NNN/submission.json  round_NNN/plan.json  round_NNN/.scratch/verification/
//!     archive/reset_K/round_NNN/  rounds set aside by reset_evaluation
//! ```
//!
//! Every mutating operation takes the session's lock, reads `state.json`, validates *before*
//! writing anything, writes `state.json` atomically and then appends one line to
//! `events.jsonl`. So concurrent callers in several processes never lose an update, and a
//! rejected call leaves every file as it was. `state.json` stays small (no growing history):
//! the full checklist history lives in the append-only journal.
//!
//! Every writer first calls [`StateDir::prepare`], which creates the state folder and, only
//! in a folder Refinery created (or one that holds nothing but Refinery's own files), writes
//! the `.gitignore` (`*`) that keeps snapshots and sessions out of the user's commits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::budget::{self, MeasuredSpend};
use crate::checklist::{self, ChecklistOutcome, PLATEAU_WINDOW, RoundScores, Verdict};
use crate::criteria::{Category, CriteriaSet};
use crate::error::{Error, Result};
use crate::fsutil::{
    LockGuard, append_json_line, read_json, read_json_lines, write_atomic, write_json,
};
use crate::judgment::Gates;
use crate::plan::{self, ImprovementPlan, PlanError};
use crate::restore::{self, RestoreMode};
use crate::scope::{GitListing, WorkspaceScope, resolve_partly};
use crate::session::{SessionId, SessionInfo, SessionSettings};
use crate::snapshot::{ManifestEntry, ObjectStore, Skipped};

const POINTER_FILE: &str = "session_metadata.json";
const SESSIONS_DIR: &str = "sessions";
const OBJECTS_DIR: &str = "objects";
const EVENTS_FILE: &str = "events.jsonl";
const SCOPE_FILE: &str = "scope.json";
const GITIGNORE_FILE: &str = ".gitignore";
/// Names Refinery itself creates at the top of a state folder; a folder holding only these
/// (and temporary files of an atomic write) is Refinery's own.
const OWN_ENTRIES: [&str; 8] = [
    SESSIONS_DIR,
    OBJECTS_DIR,
    POINTER_FILE,
    "environment.json",
    "claude_sessions",
    ".lock",
    GITIGNORE_FILE,
    // A `refine --worktree` run's origin, written before its first session.
    "worktree.json",
];

/// A state folder and the workspace it belongs to.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    workspace: PathBuf,
}

/// What the current-session pointer holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPointer {
    /// The current session.
    pub session_id: String,
    /// When it was set, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The label given to `init_session`.
    #[serde(default)]
    pub label: String,
}

impl StateDir {
    /// A state folder at `root` for the project at `workspace`. Nothing is created yet.
    pub fn new(root: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            workspace: workspace.into(),
        }
    }

    /// Like [`StateDir::new`], but refuses a state folder that is the workspace or one of its
    /// parents: snapshots and restores would then reach into the state, and a `.gitignore`
    /// written there would hide the user's own files from git.
    pub fn checked(root: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Result<Self> {
        let (root, workspace) = (root.into(), workspace.into());
        if resolve_partly(&workspace).starts_with(resolve_partly(&root)) {
            return Err(Error::StateDirContainsWorkspace {
                state_dir: root,
                workspace,
            });
        }
        Ok(Self::new(root, workspace))
    }

    /// Creates the state folder if needed. The `.gitignore` (`*`) goes only into a folder
    /// Refinery creates here, or one that holds nothing but Refinery's own files (a state
    /// folder from an older version); an existing `.gitignore` is never replaced. Every
    /// writer calls this first, so the CLI and the MCP servers behave alike.
    pub fn prepare(&self) -> Result<()> {
        let ignore_file = self.root.join(GITIGNORE_FILE);
        match fs_err::symlink_metadata(&self.root) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = self.root.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                match fs_err::create_dir(&self.root) {
                    Ok(()) => return write_atomic(&ignore_file, b"*\n"),
                    // Another writer created it a moment ago: judge it like any existing one.
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
        if fs_err::symlink_metadata(&ignore_file).is_ok() {
            return Ok(());
        }
        let mut names = Vec::new();
        for entry in fs_err::read_dir(&self.root)? {
            names.push(entry?.file_name());
        }
        let ours = !names.is_empty()
            && names.iter().all(|name| {
                name.to_str()
                    .is_some_and(|name| OWN_ENTRIES.contains(&name) || name.starts_with(".tmp-"))
            });
        if ours {
            write_atomic(&ignore_file, b"*\n")?;
        }
        Ok(())
    }

    /// The state folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The project folder that snapshots are taken from.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Where sessions live.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join(SESSIONS_DIR)
    }

    /// The shared object store.
    pub fn objects(&self) -> ObjectStore {
        ObjectStore::new(self.root.join(OBJECTS_DIR))
    }

    /// The pointer file path.
    pub fn pointer_path(&self) -> PathBuf {
        self.root.join(POINTER_FILE)
    }

    /// Starts a new session and makes it current. Ids are unique: a second session in the
    /// same second with the same label gets a counter (`…_2`) instead of sharing a folder.
    pub fn init_session(
        &self,
        label: &str,
        settings: SessionSettings,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let label = &crate::session::clean_label(label);
        let (_lock, sessions) = self.lock_sessions()?;
        let base = SessionId::generate(now, label);
        let mut id = base.clone();
        let mut counter = 1;
        loop {
            match fs_err::create_dir(sessions.join(id.as_str())) {
                Ok(()) => break,
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    counter += 1;
                    id = base.with_counter(counter);
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.write_new_session(&id, label, settings, now)
    }

    /// Starts a new session under an id the caller chose (a worktree run names its branch
    /// and folder after the session before the session exists), and makes it current. Fails
    /// with `AlreadyExists` when a session of that id is already there: ids are never shared.
    pub fn init_session_with_id(
        &self,
        id: &SessionId,
        label: &str,
        settings: SessionSettings,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let (_lock, sessions) = self.lock_sessions()?;
        fs_err::create_dir(sessions.join(id.as_str()))?;
        self.write_new_session(id, label, settings, now)
    }

    /// The store's lock (new sessions are created one at a time) and the sessions folder,
    /// created if missing.
    fn lock_sessions(&self) -> Result<(LockGuard, PathBuf)> {
        // Every session creator prepares the state folder (and its `.gitignore`) first.
        self.prepare()?;
        let lock = LockGuard::acquire(&self.root.join(".lock"))?;
        let sessions = self.sessions_dir();
        fs_err::create_dir_all(&sessions)?;
        Ok((lock, sessions))
    }

    /// The first files of a session whose folder was just created.
    fn write_new_session(
        &self,
        id: &SessionId,
        label: &str,
        settings: SessionSettings,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let session = self.session(id.clone());
        let info = SessionInfo {
            id: id.clone(),
            label: label.to_owned(),
            created_at: now,
            settings,
        };
        write_json(&session.dir.join("session.json"), &info)?;
        write_json(
            &self.pointer_path(),
            &SessionPointer {
                session_id: id.to_string(),
                timestamp: rfc3339(now),
                label: label.to_owned(),
            },
        )?;
        let _session_lock = session.lock()?;
        session.log(
            now,
            "init_session",
            json!({"label": label, "cutoff": settings.cutoff.get(), "max_rounds": settings.max_rounds}),
        )?;
        Ok(session)
    }

    /// Makes an existing session current (the pointer), as `init_session` does for a new one.
    pub fn make_current(&self, session: &Session, now: OffsetDateTime) -> Result<()> {
        self.prepare()?;
        let _lock = LockGuard::acquire(&self.root.join(".lock"))?;
        let label = session.info()?.label;
        write_json(
            &self.pointer_path(),
            &SessionPointer {
                session_id: session.id().to_string(),
                timestamp: rfc3339(now),
                label,
            },
        )
    }

    /// The session the pointer names, or `default` when there is no pointer.
    pub fn current_session_id(&self) -> Result<SessionId> {
        let path = self.pointer_path();
        let Some(value) = read_json::<Value>(&path)? else {
            return Ok(SessionId::default_session());
        };
        let raw = match value.get("session_id") {
            None | Some(Value::Null) => return Ok(SessionId::default_session()),
            Some(Value::String(raw)) if raw.is_empty() => return Ok(SessionId::default_session()),
            Some(Value::String(raw)) => raw.clone(),
            Some(_) => {
                return Err(Error::CorruptFile {
                    path,
                    reason: "`session_id` is not a string".to_owned(),
                });
            }
        };
        SessionId::parse(&raw).map_err(|_| Error::BadSessionPointer { path, id: raw })
    }

    /// A handle on a session (it may not exist yet; write operations create it).
    pub fn session(&self, id: SessionId) -> Session {
        Session {
            dir: self.sessions_dir().join(id.as_str()),
            id,
            state_dir: self.clone(),
        }
    }

    /// A handle on a session that must already exist.
    pub fn existing_session(&self, raw_id: &str) -> Result<Session> {
        let id = SessionId::parse(raw_id)?;
        let session = self.session(id);
        if session.dir.is_dir() {
            Ok(session)
        } else {
            Err(Error::UnknownSession {
                id: raw_id.to_owned(),
                sessions_dir: self.sessions_dir(),
            })
        }
    }

    /// Every session folder, sorted by id (ids start with their creation time).
    pub fn list_sessions(&self) -> Result<Vec<Session>> {
        let dir = self.sessions_dir();
        let entries = match fs_err::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut sessions = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(id) = SessionId::parse(&name) {
                sessions.push(self.session(id));
            }
        }
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(sessions)
    }
}

/// The mutable part of a session, rewritten atomically on every operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// Checklists recorded since the last reset; the next checklist is round `round + 1`.
    pub round: u32,
    /// Rounds closed in this session (scored or unscored), across resets and criteria
    /// revisions: what `max_rounds` counts, so neither gives rounds back.
    #[serde(default)]
    pub rounds_used: u32,
    /// Bumped every time criteria are stored; plateaus only compare rounds of one revision.
    #[serde(default)]
    pub criteria_revision: u32,
    /// The latest checklist result.
    #[serde(default)]
    pub last_result: Option<ChecklistOutcome>,
    /// Scores of the last few rounds, for plateau detection.
    #[serde(default)]
    pub recent: Vec<RoundScores>,
    /// The submission waiting to be scored.
    #[serde(default)]
    pub pending_answer: Option<AnswerRef>,
    /// The plan accepted after the latest iterate verdict.
    #[serde(default)]
    pub plan: Option<ImprovementPlan>,
    /// How many times the evaluation was reset.
    #[serde(default)]
    pub resets: u32,
}

impl SessionState {
    /// Rounds that count toward `max_rounds` (states written before `rounds_used` existed
    /// count their round number).
    pub fn rounds_counted(&self) -> u32 {
        self.rounds_used.max(self.round)
    }
}

/// Which submission a checklist scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRef {
    /// The round it was submitted for.
    pub round: u32,
    /// 1 for the first submission of the round, 2 for a replacement, …
    pub revision: u32,
}

/// A checklist as recorded in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistRecord {
    /// When it was recorded.
    pub timestamp: String,
    /// The criteria revision it was scored against.
    pub criteria_revision: u32,
    /// The submission it scored, if one was made for that round.
    pub submission: Option<AnswerRef>,
    /// The report the evaluator pointed at.
    pub report_path: Option<String>,
    /// The result.
    #[serde(flatten)]
    pub outcome: ChecklistOutcome,
}

/// The manifest of one round's submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The round.
    pub round: u32,
    /// Which submission of the round this is.
    pub revision: u32,
    /// When it was taken.
    pub timestamp: String,
    /// The builder's summary of the answer.
    pub answer_summary: String,
    /// The paths as given.
    pub original_paths: Vec<String>,
    /// The stored paths, relative to the workspace.
    pub snapshot_paths: Vec<String>,
    /// Every stored file with its hash.
    pub files: Vec<ManifestEntry>,
    /// Paths left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Files left out by ignore rules.
    #[serde(default)]
    pub ignored: u64,
    /// Total size of the stored files.
    pub total_bytes: u64,
    /// Bytes this submission added to the object store.
    pub new_bytes: u64,
}

/// What `register_criteria` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CriteriaStored {
    /// How many criteria were stored.
    pub criteria_count: usize,
    /// Where.
    pub path: PathBuf,
    /// The stored ids in order.
    pub criteria_ids: Vec<String>,
    /// Advice that did not block storing (count outside 3–7, primaries).
    pub warnings: Vec<String>,
}

/// What `propose_improvements` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanAccepted {
    /// The validated plan.
    pub plan: ImprovementPlan,
    /// Where it was saved.
    pub path: PathBuf,
    /// The failing criteria it answers.
    pub failed_criteria: Vec<String>,
}

/// What `reset_evaluation` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResetDone {
    /// Round folders moved aside.
    pub archived_rounds: Vec<String>,
    /// Where they went.
    pub archive_dir: Option<PathBuf>,
}

/// A handle on one session's folder.
#[derive(Clone, Debug)]
pub struct Session {
    id: SessionId,
    dir: PathBuf,
    state_dir: StateDir,
}

impl Session {
    /// The id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of round `round`.
    pub fn round_dir(&self, round: u32) -> PathBuf {
        self.dir.join(format!("round_{round:03}"))
    }

    fn lock(&self) -> Result<LockGuard> {
        self.state_dir.prepare()?;
        LockGuard::acquire(&self.dir.join(".lock"))
    }

    fn log(&self, now: OffsetDateTime, op: &str, detail: Value) -> Result<()> {
        let mut line = serde_json::Map::new();
        line.insert("ts".to_owned(), Value::String(rfc3339(now)));
        line.insert("op".to_owned(), Value::String(op.to_owned()));
        if let Value::Object(detail) = detail {
            line.extend(detail);
        }
        append_json_line(&self.dir.join(EVENTS_FILE), &Value::Object(line))
    }

    /// The session's description; an implicit session (such as `default`) that was never
    /// initialised reports default settings.
    pub fn info(&self) -> Result<SessionInfo> {
        let stored = read_json::<SessionInfo>(&self.dir.join("session.json"))?;
        Ok(stored.unwrap_or_else(|| SessionInfo {
            id: self.id.clone(),
            label: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            settings: SessionSettings::default(),
        }))
    }

    /// The stored criteria, if any.
    pub fn criteria(&self) -> Result<Option<CriteriaSet>> {
        read_json(&self.criteria_path())
    }

    fn criteria_path(&self) -> PathBuf {
        self.dir.join("criteria.json")
    }

    /// The current state (empty for a new session).
    pub fn state(&self) -> Result<SessionState> {
        Ok(read_json(&self.dir.join("state.json"))?.unwrap_or_default())
    }

    fn write_state(&self, state: &SessionState) -> Result<()> {
        write_json(&self.dir.join("state.json"), state)
    }

    /// Makes sure an implicit session has its folder and `session.json`.
    fn ensure_exists(&self, now: OffsetDateTime) -> Result<()> {
        self.state_dir.prepare()?;
        fs_err::create_dir_all(&self.dir)?;
        let path = self.dir.join("session.json");
        if !path.exists() {
            write_json(
                &path,
                &SessionInfo {
                    id: self.id.clone(),
                    label: String::new(),
                    created_at: now,
                    settings: SessionSettings::default(),
                },
            )?;
        }
        Ok(())
    }

    /// Stores the criteria, replacing earlier ones. Replacing criteria starts a new criteria
    /// revision: the last verdict and plan no longer apply and plateaus start over.
    pub fn register_criteria(
        &self,
        criteria: &CriteriaSet,
        now: OffsetDateTime,
    ) -> Result<CriteriaStored> {
        self.ensure_exists(now)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let path = self.criteria_path();
        write_json(&path, criteria)?;
        state.criteria_revision += 1;
        state.last_result = None;
        state.plan = None;
        state.recent.clear();
        self.write_state(&state)?;
        let ids = criteria.ids();
        self.log(
            now,
            "generate_eval_criteria",
            json!({"criteria_ids": ids, "criteria_revision": state.criteria_revision}),
        )?;
        Ok(CriteriaStored {
            criteria_count: criteria.len(),
            path,
            criteria_ids: ids,
            warnings: criteria_warnings(criteria),
        })
    }

    /// Scores a round. Nothing is written unless the scores are valid.
    pub fn submit_checklist(
        &self,
        scores: &Value,
        report_path: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ChecklistRecord> {
        self.submit_checklist_with(scores, report_path, &Gates::default(), now)
    }

    /// Scores a round with the checks made in code applied on top of the scores
    /// ([`checklist::evaluate_gated`]): refused criteria do not pass, and blocks keep the
    /// verdict at iterate. What is recorded is the gated outcome, so every reader of the
    /// journal sees the same verdict.
    pub fn submit_gated_checklist(
        &self,
        scores: &Value,
        gates: &Gates,
        now: OffsetDateTime,
    ) -> Result<ChecklistRecord> {
        self.submit_checklist_with(scores, None, gates, now)
    }

    fn submit_checklist_with(
        &self,
        scores: &Value,
        report_path: Option<&str>,
        gates: &Gates,
        now: OffsetDateTime,
    ) -> Result<ChecklistRecord> {
        let _lock = self.lock()?;
        let criteria = self.criteria()?.ok_or_else(|| Error::NoCriteria {
            session: self.id.to_string(),
        })?;
        let parsed = checklist::parse_scores(&criteria, scores)?;
        let info = self.info()?;
        let mut state = self.state()?;
        let round = state.round + 1;
        self.check_round_cap(&info, &state)?;
        // Only an answer can be scored: a checklist with no `new_answer` for its round would
        // close a round nobody can restore or audit.
        let submission = state
            .pending_answer
            .filter(|answer| answer.round == round)
            .ok_or_else(|| Error::NoAnswerForRound {
                session: self.id.to_string(),
                round,
            })?;
        let report_path = match report_path.map(str::trim).filter(|path| !path.is_empty()) {
            Some(raw) => Some(self.check_report_path(raw)?),
            None => None,
        };
        let outcome = checklist::evaluate_gated(
            &criteria,
            &parsed,
            info.settings.cutoff,
            round,
            &state.recent,
            gates,
        );
        let record = ChecklistRecord {
            timestamp: rfc3339(now),
            criteria_revision: state.criteria_revision,
            submission: Some(submission),
            report_path,
            outcome,
        };
        state.rounds_used = state.rounds_counted() + 1;
        state.round = round;
        state.last_result = Some(record.outcome.clone());
        state.plan = None;
        state.recent.push(RoundScores {
            round,
            scores: record
                .outcome
                .items
                .iter()
                .map(|item| (item.id.clone(), item.score))
                .collect(),
        });
        let excess = state.recent.len().saturating_sub(PLATEAU_WINDOW);
        state.recent.drain(..excess);
        self.write_state(&state)?;
        let mut event = serde_json::to_value(&record).map_err(std::io::Error::other)?;
        if let Value::Object(map) = &mut event {
            map.remove("timestamp");
        }
        self.log(now, "submit_checklist", event)?;
        Ok(record)
    }

    /// Closes a round whose evaluation was unusable (the evaluator's output stayed malformed
    /// after retries). The round counts as done — the next submission is the next round — but
    /// no scores are invented for it: the verdict stays "not converged", the last scored
    /// result is kept, and plateau history is left alone so a missing evaluation can never
    /// look like a stall.
    pub fn record_unscored_round(&self, reason: &str, now: OffsetDateTime) -> Result<u32> {
        let _lock = self.lock()?;
        let info = self.info()?;
        let mut state = self.state()?;
        let round = state.round + 1;
        self.check_round_cap(&info, &state)?;
        let submission = state.pending_answer.filter(|answer| answer.round == round);
        state.rounds_used = state.rounds_counted() + 1;
        state.round = round;
        state.plan = None;
        self.write_state(&state)?;
        self.log(
            now,
            "unscored_round",
            json!({"round": round, "submission": submission, "reason": reason}),
        )?;
        Ok(round)
    }

    /// Refuses a round past the session's `max_rounds`: the cap is enforced by the tools,
    /// not left to a prompt, and counts every round the session closed (a reset or new
    /// criteria restart the round numbers, never the count).
    fn check_round_cap(&self, info: &SessionInfo, state: &SessionState) -> Result<()> {
        let round = state.rounds_counted() + 1;
        match info.settings.max_rounds {
            Some(max_rounds) if round > max_rounds => Err(Error::MaxRoundsReached {
                session: self.id.to_string(),
                max_rounds,
                round,
            }),
            _ => Ok(()),
        }
    }

    fn check_report_path(&self, raw: &str) -> Result<String> {
        let workspace = fs_err::canonicalize(self.state_dir.workspace())?;
        let given = Path::new(raw);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            workspace.join(given)
        };
        let bad = |reason: &str| Error::BadPath {
            path: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let real = fs_err::canonicalize(&joined)
            .map_err(|_| bad("does not exist; write the report first or leave report_path out"))?;
        if !real.starts_with(&workspace) {
            return Err(bad("is outside the workspace"));
        }
        if !real.is_file() {
            return Err(bad("is not a file"));
        }
        Ok(real.strip_prefix(&workspace).map_or_else(
            |_| raw.to_owned(),
            |relative| relative.display().to_string(),
        ))
    }

    /// Validates and stores an improvement plan for the latest iterate verdict.
    pub fn propose_improvements(
        &self,
        improvements: &Value,
        preserve: Option<Value>,
        vision: Option<String>,
        now: OffsetDateTime,
    ) -> Result<PlanAccepted> {
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let Some(last) = state.last_result.clone() else {
            return Err(PlanError::NoChecklist.into());
        };
        if last.verdict == Verdict::Converge {
            return Err(PlanError::NotIterating.into());
        }
        let criteria = self.criteria()?.ok_or_else(|| Error::NoCriteria {
            session: self.id.to_string(),
        })?;
        let plan = plan::validate_plan(
            &criteria,
            &last.failed_criteria,
            last.round,
            improvements,
            preserve,
            vision,
        )?;
        let path = self.round_dir(last.round).join("plan.json");
        write_json(&path, &plan)?;
        state.plan = Some(plan.clone());
        self.write_state(&state)?;
        self.log(
            now,
            "propose_improvements",
            json!({
                "after_round": last.round,
                "improvements_count": plan.entry_count(),
                "non_incremental_count": plan.non_incremental_count(&last.failed_criteria),
            }),
        )?;
        Ok(PlanAccepted {
            plan,
            path,
            failed_criteria: last.failed_criteria,
        })
    }

    /// Forgets checklist results while keeping the criteria. Round folders are moved to
    /// `archive/reset_K/` so the next round 1 never overwrites or merges into an old one.
    pub fn reset_evaluation(&self, now: OffsetDateTime) -> Result<ResetDone> {
        self.ensure_exists(now)?;
        let _lock = self.lock()?;
        let old = self.state()?;
        let mut rounds: Vec<String> = fs_err::read_dir(&self.dir)?
            .filter_map(std::result::Result::ok)
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .filter(|name| name.starts_with("round_"))
            .collect();
        rounds.sort();
        let resets = old.resets + 1;
        let archive_dir = if rounds.is_empty() {
            None
        } else {
            let dir = self.dir.join("archive").join(format!("reset_{resets}"));
            fs_err::create_dir_all(&dir)?;
            for name in &rounds {
                fs_err::rename(self.dir.join(name), dir.join(name))?;
            }
            Some(dir)
        };
        let state = SessionState {
            criteria_revision: old.criteria_revision,
            rounds_used: old.rounds_counted(),
            resets,
            ..SessionState::default()
        };
        self.write_state(&state)?;
        self.log(now, "reset_evaluation", json!({"archived_rounds": rounds}))?;
        Ok(ResetDone {
            archived_rounds: rounds,
            archive_dir,
        })
    }

    /// Snapshots the deliverable for the next round to be scored, through the session's
    /// scope (fixed by [`Session::freeze_scope`], or now, from the workspace's ignore files,
    /// if the session has none yet).
    ///
    /// Files are hashed into the shared store, and made durable in one batch, before the
    /// lock is taken (objects are immutable and content-addressed, so concurrent writers
    /// cannot conflict); the manifest written next is the commit point. The round
    /// number is assigned under the lock. A second submission before the round is scored
    /// replaces the first, which stays on disk as `submission.<revision>.json`.
    pub fn new_answer(
        &self,
        answer: &str,
        paths: &[String],
        now: OffsetDateTime,
    ) -> Result<Submission> {
        self.new_answer_within(answer, paths, None, now)
    }

    /// [`Session::new_answer`] for a session that may have a cost budget: `spend` is what
    /// the session's Claude Code transcripts cost so far, measured by the caller. A session
    /// with a budget refuses the round when the budget is spent or `spend` is unknown.
    pub fn new_answer_within(
        &self,
        answer: &str,
        paths: &[String],
        spend: Option<&MeasuredSpend>,
        now: OffsetDateTime,
    ) -> Result<Submission> {
        self.ensure_exists(now)?;
        if let Some(limit) = self.info()?.settings.cost_budget {
            budget::check(&self.id, limit, spend)?;
        }
        let scope = match self.scope()? {
            Some(scope) => scope,
            None => self.freeze_scope(None, now)?,
        };
        let snapshot = scope.snapshot(&self.state_dir.objects(), paths)?;
        let _lock = self.lock()?;
        let info = self.info()?;
        let mut state = self.state()?;
        let round = state.round + 1;
        self.check_round_cap(&info, &state)?;
        let revision = match state.pending_answer {
            Some(pending) if pending.round == round => pending.revision + 1,
            _ => 1,
        };
        let round_dir = self.round_dir(round);
        fs_err::create_dir_all(round_dir.join(".scratch").join("verification"))?;
        let manifest_path = round_dir.join("submission.json");
        if revision > 1 && manifest_path.exists() {
            fs_err::rename(
                &manifest_path,
                round_dir.join(format!("submission.{}.json", revision - 1)),
            )?;
        }
        let submission = Submission {
            round,
            revision,
            timestamp: rfc3339(now),
            answer_summary: answer.to_owned(),
            original_paths: paths.to_vec(),
            snapshot_paths: snapshot
                .entries
                .iter()
                .map(|entry| entry.path.clone())
                .collect(),
            total_bytes: snapshot.total_bytes(),
            new_bytes: snapshot.new_bytes,
            files: snapshot.entries,
            skipped: snapshot.skipped,
            ignored: snapshot.ignored,
        };
        write_json(&manifest_path, &submission)?;
        state.pending_answer = Some(AnswerRef { round, revision });
        self.write_state(&state)?;
        self.log(
            now,
            "new_answer",
            json!({
                "round": round,
                "revision": revision,
                "files": submission.files.len(),
                "skipped": submission.skipped.len(),
                "total_bytes": submission.total_bytes,
                "new_bytes": submission.new_bytes,
            }),
        )?;
        Ok(submission)
    }

    /// Records a vote in the journal.
    pub fn vote(&self, choice: &str, reasoning: &str, now: OffsetDateTime) -> Result<u32> {
        let choice = choice.trim();
        if choice.is_empty() {
            return Err(Error::InvalidVote(
                "`choice` is empty; name the answer you vote for".to_owned(),
            ));
        }
        self.ensure_exists(now)?;
        let _lock = self.lock()?;
        let state = self.state()?;
        self.log(
            now,
            "vote",
            json!({"choice": choice, "reasoning": reasoning, "round": state.round}),
        )?;
        Ok(state.round)
    }

    /// Every checklist recorded in the journal, oldest first (across resets).
    pub fn history(&self) -> Result<Vec<ChecklistRecord>> {
        let events: Vec<Value> = read_json_lines(&self.dir.join(EVENTS_FILE))?;
        events
            .into_iter()
            .filter(|event| event.get("op").and_then(Value::as_str) == Some("submit_checklist"))
            .map(|mut event| {
                if let Value::Object(map) = &mut event {
                    if let Some(ts) = map.remove("ts") {
                        map.insert("timestamp".to_owned(), ts);
                    }
                    map.remove("op");
                }
                serde_json::from_value(event).map_err(|err| Error::CorruptFile {
                    path: self.dir.join(EVENTS_FILE),
                    reason: err.to_string(),
                })
            })
            .collect()
    }

    /// Every journal line, oldest first.
    pub fn events(&self) -> Result<Vec<Value>> {
        read_json_lines(&self.dir.join(EVENTS_FILE))
    }

    /// The current submission of each round present on disk, by round.
    pub fn submissions(&self) -> Result<BTreeMap<u32, Submission>> {
        let mut rounds = BTreeMap::new();
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(rounds),
            Err(err) => return Err(err.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_prefix("round_"))
                .and_then(|digits| digits.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(submission) =
                read_json::<Submission>(&entry.path().join("submission.json"))?
            {
                rounds.insert(number, submission);
            }
        }
        Ok(rounds)
    }

    /// Writes round `round`'s submission into `dest`, byte-identical. The manifest is
    /// checked first and nothing is written through a link already in `dest` (see
    /// [`crate::restore`]); with [`RestoreMode::IntoEmpty`] a folder that holds files is
    /// refused.
    pub fn restore_round(&self, round: u32, dest: &Path, mode: RestoreMode) -> Result<Submission> {
        let submission = read_json::<Submission>(&self.round_dir(round).join("submission.json"))?
            .ok_or_else(|| Error::UnknownRound {
            session: self.id.to_string(),
            round,
        })?;
        restore::restore_into(&self.state_dir.objects(), &submission.files, dest, mode)?;
        Ok(submission)
    }

    /// Fixes this session's scope (see [`crate::scope`]) from git's lists, or from the
    /// workspace's `.gitignore` files when `listing` is `None`. A scope is fixed once: when
    /// the session already has one, that one is returned unchanged, so a resumed run and
    /// every later tool call keep the scope of the start.
    pub fn freeze_scope(
        &self,
        listing: Option<GitListing>,
        now: OffsetDateTime,
    ) -> Result<WorkspaceScope> {
        self.ensure_exists(now)?;
        let _lock = self.lock()?;
        if let Some(existing) = self.scope()? {
            return Ok(existing);
        }
        let state_dirs = [self.state_dir.root().to_path_buf()];
        let workspace = self.state_dir.workspace();
        let scope = match listing {
            Some(listing) => WorkspaceScope::from_git(workspace, &state_dirs, listing)?,
            None => WorkspaceScope::from_walk(workspace, &state_dirs)?,
        };
        write_atomic(&self.dir.join(SCOPE_FILE), &scope.to_json()?)?;
        Ok(scope)
    }

    /// The scope fixed for this session, if one was.
    pub fn scope(&self) -> Result<Option<WorkspaceScope>> {
        let path = self.dir.join(SCOPE_FILE);
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let state_dirs = [self.state_dir.root().to_path_buf()];
        WorkspaceScope::from_json(&bytes, &path, self.state_dir.workspace(), &state_dirs).map(Some)
    }
}

fn criteria_warnings(criteria: &CriteriaSet) -> Vec<String> {
    let mut warnings = Vec::new();
    let count = criteria.len();
    if !(3..=7).contains(&count) {
        warnings.push(format!(
            "{count} criteria stored; 3–7 usually works best (fewer miss failure modes, more dilute the verdict)"
        ));
    }
    let primaries = criteria
        .as_slice()
        .iter()
        .filter(|criterion| criterion.category == Category::Primary)
        .count();
    if primaries > 1 {
        warnings.push(format!(
            "{primaries} criteria are primary; one primary criterion keeps the focus clear"
        ));
    }
    warnings
}

/// Formats a time as RFC 3339 in UTC, to the second (what people and journals need).
pub fn rfc3339(now: OffsetDateTime) -> String {
    now.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn an_unscored_round_advances_the_round_without_inventing_scores() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        fs_err::create_dir_all(&workspace).unwrap();
        fs_err::write(workspace.join("a.txt"), "one").unwrap();
        let store = StateDir::new(workspace.join(".refinery"), &workspace);
        let now = datetime!(2026-11-24 03:00 UTC);
        let session = store
            .init_session("t", SessionSettings::default(), now)
            .unwrap();
        let criteria =
            CriteriaSet::from_json(&json!([{"id": "E1", "text": "a"}, {"id": "E2", "text": "b"}]))
                .unwrap();
        session.register_criteria(&criteria, now).unwrap();
        session.new_answer("r1", &[".".to_owned()], now).unwrap();
        session
            .submit_checklist(&json!({"E1": 5, "E2": 9}), None, now)
            .unwrap();
        session.new_answer("r2", &[".".to_owned()], now).unwrap();
        assert_eq!(session.record_unscored_round("no JSON", now).unwrap(), 2);
        let state = session.state().unwrap();
        assert_eq!(state.round, 2);
        assert_eq!(
            state.recent.len(),
            1,
            "no made-up scores in the plateau window"
        );
        assert_eq!(state.last_result.unwrap().round, 1);
        assert_eq!(session.history().unwrap().len(), 1);
        // The next submission is round 3, not a replacement of round 2.
        assert_eq!(
            session
                .new_answer("r3", &[".".to_owned()], now)
                .unwrap()
                .round,
            3
        );
        let events = session.events().unwrap();
        assert!(events.iter().any(|event| event["op"] == "unscored_round"
            && event["reason"] == "no JSON"
            && event["submission"]["round"] == 2));
    }

    #[test]
    fn a_chosen_session_id_is_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join(".refinery"), dir.path());
        let now = datetime!(2026-11-24 03:00 UTC);
        let id = SessionId::parse("20261124_030000_chosen").unwrap();
        let session = store
            .init_session_with_id(&id, "first", SessionSettings::default(), now)
            .unwrap();
        assert_eq!(session.id(), &id);
        assert_eq!(store.current_session_id().unwrap(), id);
        let again = store.init_session_with_id(&id, "second", SessionSettings::default(), now);
        assert!(again.is_err());
        // The first session is untouched.
        assert_eq!(
            store
                .existing_session(id.as_str())
                .unwrap()
                .info()
                .unwrap()
                .label,
            "first"
        );
    }
}
