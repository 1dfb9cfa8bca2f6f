//! The on-disk store: sessions under a state folder, and every operation the tools perform.
//!
//! ```text
//! <state>/session_metadata.json   current-session pointer (read by the MCP servers per call)
//! <state>/environment.json        backends and API key names (never values); refinery-llm writes it
//! <state>/claude_sessions/<id>.json  which Refinery session a Claude Code session works on
//! <state>/objects/                 content-addressed blobs shared by all snapshots (crate::objects)
//! <state>/sessions/<id>/
//!     session.json  criteria.json  state.json  events.jsonl  scope.json  .lock
//!     round_NNN/submission.json  round_NNN/plan.json  round_NNN/.scratch/verification/ (MCP)
//!     archive/reset_K/round_NNN/  rounds set aside by reset_evaluation
//! ```
//!
//! **The journal is the truth.** Every write operation takes the session's lock, reads the
//! state, validates *before* writing anything, and then appends exactly one record to
//! `events.jsonl`, made durable by one `fdatasync` before the call returns (see
//! [`crate::journal`]: concurrent writers share syncs, a torn final record is set aside, damage
//! before the end is an error naming the file and byte offset). What each operation does to
//! the state is defined once, as the effect of its record, and is used both when the record is
//! written and whenever the state is rebuilt, so a crash at any instant leaves nothing for the
//! state and the journal to disagree about. A rejected call writes nothing.
//!
//! `state.json` (state and criteria), `criteria.json`, `round_NNN/plan.json` and
//! `session.json` are caches derived from the journal, written atomically (temporary file and
//! rename) but not synced: `state.json` carries the journal's length and a hash of its last
//! record, and one that is missing, damaged or stale is rebuilt from the journal (by readers in
//! memory, by the next writer on disk, with the other caches). Syncs beyond the journal's one:
//! a new journal also syncs its session folder and `sessions/` (so `init_session` costs three);
//! `reset_evaluation` syncs the folders it moved rounds between before its record; a
//! submission's manifest and objects are synced by `new_answer` before its record. The
//! current-session pointer is replaced atomically but not synced: after a power loss it may
//! still name the session that was current before.
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
use crate::fsutil::{self, LockGuard, read_json, write_atomic, write_json};
use crate::journal::{self, Appended, Journal, Mark, Scan};
use crate::judgment::Gates;
use crate::plan::{self, ImprovementPlan, PlanError};
use crate::restore::{self, RestoreMode};
use crate::scope::{GitListing, WorkspaceScope, resolve_partly};
use crate::session::{SessionId, SessionInfo, SessionSettings};
use crate::snapshot::{ManifestEntry, ObjectStore, Skipped, Snapshot};

const POINTER_FILE: &str = "session_metadata.json";
const SESSIONS_DIR: &str = "sessions";
const OBJECTS_DIR: &str = "objects";
const EVENTS_FILE: &str = "events.jsonl";
const STATE_FILE: &str = "state.json";
const CRITERIA_FILE: &str = "criteria.json";
const PLAN_FILE: &str = "plan.json";
const SCOPE_FILE: &str = "scope.json";
/// The journal operation that fixes a session's scope.
const FREEZE_SCOPE: &str = "freeze_scope";
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
        let id = Self::new_session_folder(&sessions, now, label)?;
        self.write_new_session(&id, label, settings, None, now)
    }

    /// [`StateDir::init_session`] with the session's scope fixed at once (see
    /// [`Session::freeze_scope`]) from git's lists, or from the workspace's `.gitignore` files
    /// when `listing` is `None`: the scope goes into the session's first journal record, so
    /// starting a scoped session costs one record and one sync.
    pub fn init_session_scoped(
        &self,
        label: &str,
        settings: SessionSettings,
        listing: Option<GitListing>,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let scope = self.new_scope(listing)?;
        let label = &crate::session::clean_label(label);
        let (_lock, sessions) = self.lock_sessions()?;
        let id = Self::new_session_folder(&sessions, now, label)?;
        self.write_new_session(&id, label, settings, Some(&scope), now)
    }

    /// A scope for this store's workspace, from git's lists or from its ignore files.
    fn new_scope(&self, listing: Option<GitListing>) -> Result<WorkspaceScope> {
        let state_dirs = [self.root.clone()];
        let workspace = self.workspace();
        match listing {
            Some(listing) => WorkspaceScope::from_git(workspace, &state_dirs, listing),
            None => WorkspaceScope::from_walk(workspace, &state_dirs),
        }
    }

    /// Creates a new session's folder under a fresh id (a counter is added when another
    /// session of the same second and label exists). The caller holds the store's lock.
    fn new_session_folder(sessions: &Path, now: OffsetDateTime, label: &str) -> Result<SessionId> {
        let base = SessionId::generate(now, label);
        let mut id = base.clone();
        let mut counter = 1;
        loop {
            match fs_err::create_dir(sessions.join(id.as_str())) {
                Ok(()) => return Ok(id),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    counter += 1;
                    id = base.with_counter(counter);
                }
                Err(err) => return Err(err.into()),
            }
        }
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
        self.write_new_session(id, label, settings, None, now)
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

    /// The first files of a session whose folder was just created (with its scope, when
    /// one is given: see [`StateDir::init_session_scoped`]).
    fn write_new_session(
        &self,
        id: &SessionId,
        label: &str,
        settings: SessionSettings,
        scope: Option<&WorkspaceScope>,
        now: OffsetDateTime,
    ) -> Result<Session> {
        let session = self.session(id.clone());
        let info = SessionInfo {
            id: id.clone(),
            label: label.to_owned(),
            created_at: now,
            settings,
        };
        let lock = session.lock()?;
        let view = session.load_for_write()?;
        // The record is the session's birth certificate: `session.json` is derived from it.
        let mut record = json!({
            "label": label,
            "cutoff": settings.cutoff.get(),
            "max_rounds": settings.max_rounds,
            "session": info,
        });
        if let Some(scope) = scope {
            record["scope"] =
                serde_json::from_slice(&scope.to_json()?).map_err(std::io::Error::other)?;
        }
        let (_, pending) = session.commit(view, now, "init_session", record)?;
        if scope.is_some() {
            // Writes `scope.json` from the record as stored.
            session.scope_from_journal()?;
        }
        crate::fsutil::write_json_record(&session.dir.join("session.json"), &info)?;
        // The pointer is replaced atomically but not synced: after a power loss it may still
        // name the session that was current before; this session's journal is durable.
        crate::fsutil::write_json_record(
            &self.pointer_path(),
            &SessionPointer {
                session_id: id.to_string(),
                timestamp: rfc3339(now),
                label: label.to_owned(),
            },
        )?;
        session.finish(lock, pending)?;
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

/// The mutable part of a session, derived from its journal (and cached in `state.json`).
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
    /// A checklist closed the next round: it becomes the last result and joins the plateau
    /// window; the plan it answered is spent.
    fn close_scored_round(&mut self, outcome: ChecklistOutcome) {
        self.rounds_used = self.rounds_counted() + 1;
        self.round = outcome.round;
        self.plan = None;
        self.recent.push(RoundScores {
            round: outcome.round,
            scores: outcome
                .items
                .iter()
                .map(|item| (item.id.clone(), item.score))
                .collect(),
        });
        let excess = self.recent.len().saturating_sub(PLATEAU_WINDOW);
        self.recent.drain(..excess);
        self.last_result = Some(outcome);
    }

    /// Rounds that count toward `max_rounds` (states written before `rounds_used` existed
    /// count their round number).
    pub fn rounds_counted(&self) -> u32 {
        self.rounds_used.max(self.round)
    }
}

/// What `state.json` caches: the state, the criteria, and where the journal ended when they
/// were derived from it (a cache whose mark no longer matches the journal is rebuilt).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct View {
    #[serde(flatten)]
    state: SessionState,
    #[serde(default)]
    criteria: Option<CriteriaSet>,
    journal: Mark,
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

/// Submissions parsed lately, with the exact bytes each was parsed from. A round's manifest
/// is read several times (the guard's previous version, the round's checks, the report), and
/// parsing a few hundred entries costs far more than reading the file: a file whose bytes
/// equal those of an entry here is that entry. Exact bytes, not a stat: nothing can be stale.
static SUBMISSIONS: std::sync::Mutex<Vec<(PathBuf, Vec<u8>, Submission)>> =
    std::sync::Mutex::new(Vec::new());
/// Manifests kept in [`SUBMISSIONS`]: a round's and its predecessor's, with room to spare.
const KEPT_SUBMISSIONS: usize = 4;

/// [`read_json`] for a `submission.json`, through [`SUBMISSIONS`].
fn read_submission(path: &Path) -> Result<Option<Submission>> {
    let Some(bytes) = fsutil::read_if_exists(path)? else {
        return Ok(None);
    };
    let kept = || {
        SUBMISSIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((_, _, submission)) = kept()
        .iter()
        .find(|(kept_path, kept_bytes, _)| kept_path == path && *kept_bytes == bytes)
    {
        return Ok(Some(submission.clone()));
    }
    let submission: Submission = fsutil::parse_json(path, &bytes)?;
    let mut kept = kept();
    kept.retain(|(kept_path, _, _)| kept_path != path);
    if kept.len() >= KEPT_SUBMISSIONS {
        kept.remove(0);
    }
    kept.push((path.to_path_buf(), bytes, submission.clone()));
    Ok(Some(submission))
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

    fn journal(&self) -> Journal {
        Journal::new(self.dir.join(EVENTS_FILE))
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The cache if it is intact and still describes the journal as it is now.
    fn fresh_cache(&self, journal: &Journal) -> Result<Option<View>> {
        let cached = match read_json::<View>(&self.state_path()) {
            Ok(cached) => cached,
            // A damaged cache (or one from a version without a journal mark) is rebuilt.
            Err(Error::CorruptFile { .. }) => None,
            Err(err) => return Err(err),
        };
        match cached {
            Some(view) if journal.matches(&view.journal)? => Ok(Some(view)),
            _ => Ok(None),
        }
    }

    /// The session as its journal describes it, for readers: the cache when it is fresh,
    /// else derived from the journal in memory (a torn final record is left for the next
    /// writer to set aside).
    fn view(&self) -> Result<View> {
        let journal = self.journal();
        match self.fresh_cache(&journal)? {
            Some(view) => Ok(view),
            None => self.fold(&journal.scan()?),
        }
    }

    /// [`Session::view`] for a writer holding the lock: a torn final record is set aside
    /// and a stale cache (with the files derived from it) is rewritten.
    fn load_for_write(&self) -> Result<View> {
        let journal = self.journal();
        if let Some(view) = self.fresh_cache(&journal)? {
            return Ok(view);
        }
        let scan = journal.scan()?;
        if let Some(torn) = scan.torn {
            journal.set_aside(torn)?;
        }
        let view = self.fold(&scan)?;
        // An empty journal has nothing to cache: a call refused on a new session writes
        // nothing at all.
        if !scan.entries.is_empty() {
            self.write_derived(&view)?;
        }
        Ok(view)
    }

    /// Rebuilds the view from every record of a journal.
    fn fold(&self, scan: &Scan) -> Result<View> {
        let mut view = View::default();
        for entry in &scan.entries {
            self.apply(&mut view, &entry.value)
                .map_err(|reason| Error::CorruptFile {
                    path: self.journal().path().to_path_buf(),
                    reason: format!("byte offset {}: {reason}", entry.offset),
                })?;
        }
        view.journal = scan.mark.clone();
        Ok(view)
    }

    /// What one record does to the view: the single definition of every operation's effect,
    /// used both when the record is written and whenever the state is rebuilt, so the two
    /// can never disagree.
    fn apply(&self, view: &mut View, record: &Value) -> std::result::Result<(), String> {
        fn field<T: serde::de::DeserializeOwned>(
            record: &Value,
            name: &str,
        ) -> std::result::Result<T, String> {
            serde_json::from_value(record.get(name).cloned().unwrap_or(Value::Null))
                .map_err(|err| format!("`{name}`: {err}"))
        }
        let state = &mut view.state;
        match record.get("op").and_then(Value::as_str).unwrap_or_default() {
            "generate_eval_criteria" => {
                state.criteria_revision = field::<Option<u32>>(record, "criteria_revision")?
                    .unwrap_or(state.criteria_revision + 1);
                state.last_result = None;
                state.plan = None;
                state.recent.clear();
                view.criteria = match record.get("criteria") {
                    Some(criteria) => Some(
                        field(record, "criteria")
                            .map_err(|err| format!("{err} (criteria {criteria})"))?,
                    ),
                    // Journals written before records carried the criteria: the file is
                    // the only copy (it held the latest criteria).
                    None => {
                        read_json(&self.dir.join(CRITERIA_FILE)).map_err(|err| err.to_string())?
                    }
                };
            }
            "submit_checklist" => {
                let outcome: ChecklistOutcome = serde_json::from_value(record.clone())
                    .map_err(|err| format!("a checklist record: {err}"))?;
                state.close_scored_round(outcome);
            }
            "unscored_round" => {
                state.rounds_used = state.rounds_counted() + 1;
                state.round = field(record, "round")?;
                state.plan = None;
            }
            "propose_improvements" => {
                state.plan = if record.get("plan").is_some() {
                    Some(field(record, "plan")?)
                } else {
                    // Older journals: the plan lived only in the round's `plan.json`.
                    let after_round: u32 = field(record, "after_round")?;
                    read_json(&self.round_dir(after_round).join(PLAN_FILE))
                        .map_err(|err| err.to_string())?
                };
            }
            "reset_evaluation" => {
                *state = SessionState {
                    criteria_revision: state.criteria_revision,
                    rounds_used: state.rounds_counted(),
                    resets: state.resets + 1,
                    ..SessionState::default()
                };
            }
            "new_answer" => {
                state.pending_answer = Some(AnswerRef {
                    round: field(record, "round")?,
                    revision: field(record, "revision")?,
                });
            }
            // `init_session`, `freeze_scope` (read by `Session::scope`), `vote` and operations
            // this version does not know change no state.
            _ => {}
        }
        Ok(())
    }

    /// Appends one record for `op` and applies it to `view`: the write every operation ends
    /// with. The record is applied as stored (secrets masked), so the cache written here is
    /// exactly what a rebuild from the journal gives. The caller holds the lock and then
    /// calls [`Session::finish`].
    fn commit(
        &self,
        mut view: View,
        now: OffsetDateTime,
        op: &str,
        detail: Value,
    ) -> Result<(View, Appended)> {
        let mut record = serde_json::Map::new();
        record.insert("ts".to_owned(), Value::String(rfc3339(now)));
        record.insert("op".to_owned(), Value::String(op.to_owned()));
        if let Value::Object(detail) = detail {
            record.extend(detail);
        }
        let line = Journal::encode(&Value::Object(record))?;
        let stored: Value = serde_json::from_slice(&line).map_err(std::io::Error::other)?;
        // Applied before it is appended: a record this version could not replay is never
        // written (it would make the session unreadable).
        self.apply(&mut view, &stored)
            .map_err(|reason| std::io::Error::other(format!("an {op} record: {reason}")))?;
        let (mark, appended) = self.journal().append(&line, &view.journal)?;
        view.journal = mark;
        // Not synced, and a failure is no loss: a cache that does not match the journal is
        // rebuilt by the next reader or writer.
        let _ = journal::write_state_cache(&self.state_path(), &view);
        Ok((view, appended))
    }

    /// Releases the lock, then waits until the record is durable (see [`crate::journal`]:
    /// concurrent writers share one sync).
    fn finish(&self, lock: LockGuard, appended: Appended) -> Result<()> {
        drop(lock);
        self.journal().make_durable(appended)?;
        Ok(())
    }

    /// Rewrites the cache and the files derived from the journal (criteria, the current
    /// plan, the session description), none of them synced.
    fn write_derived(&self, view: &View) -> Result<()> {
        journal::write_state_cache(&self.state_path(), view)?;
        if let Some(criteria) = &view.criteria {
            crate::fsutil::write_json_record(&self.dir.join(CRITERIA_FILE), criteria)?;
        }
        if let Some(plan) = &view.state.plan {
            let round_dir = self.round_dir(plan.after_round);
            if round_dir.is_dir() {
                crate::fsutil::write_json_record(&round_dir.join(PLAN_FILE), plan)?;
            }
        }
        Ok(())
    }

    /// The session's description; an implicit session (such as `default`) that was never
    /// initialised reports default settings. `session.json` is a copy of the journal's
    /// `init_session` record, which is read when the copy is missing or damaged.
    pub fn info(&self) -> Result<SessionInfo> {
        let stored = match read_json::<SessionInfo>(&self.dir.join("session.json")) {
            Ok(Some(info)) => return Ok(info),
            Ok(None) | Err(Error::CorruptFile { .. }) => self
                .journal()
                .scan()?
                .entries
                .into_iter()
                .find(|entry| entry.value.get("op").and_then(Value::as_str) == Some("init_session"))
                .and_then(|entry| entry.value.get("session").cloned())
                .and_then(|info| serde_json::from_value::<SessionInfo>(info).ok()),
            Err(err) => return Err(err),
        };
        Ok(stored.unwrap_or_else(|| SessionInfo {
            id: self.id.clone(),
            label: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            settings: SessionSettings::default(),
        }))
    }

    /// The stored criteria, if any (from the journal; `criteria.json` is a copy for people
    /// and tools that take a criteria file).
    pub fn criteria(&self) -> Result<Option<CriteriaSet>> {
        Ok(self.view()?.criteria)
    }

    fn criteria_path(&self) -> PathBuf {
        self.dir.join(CRITERIA_FILE)
    }

    /// The current state (empty for a new session), as the journal describes it.
    pub fn state(&self) -> Result<SessionState> {
        Ok(self.view()?.state)
    }

    /// The state rebuilt from the journal alone, ignoring `state.json`: what an audit or a
    /// crash test compares the cache with.
    pub fn state_from_journal(&self) -> Result<SessionState> {
        Ok(self.fold(&self.journal().scan()?)?.state)
    }

    /// Makes sure an implicit session has its folder and `session.json`.
    fn ensure_exists(&self, now: OffsetDateTime) -> Result<()> {
        self.state_dir.prepare()?;
        fs_err::create_dir_all(&self.dir)?;
        let path = self.dir.join("session.json");
        if !path.exists() {
            // A session whose `init_session` record made it but whose copy did not (a crash
            // between the two) keeps its label and settings from the record.
            let mut info = self.info()?;
            if info.created_at == OffsetDateTime::UNIX_EPOCH {
                info.created_at = now;
            }
            write_json(&path, &info)?;
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
        let lock = self.lock()?;
        let view = self.load_for_write()?;
        let path = self.criteria_path();
        let ids = criteria.ids();
        let revision = view.state.criteria_revision + 1;
        let (view, appended) = self.commit(
            view,
            now,
            "generate_eval_criteria",
            json!({"criteria_ids": ids, "criteria_revision": revision, "criteria": criteria}),
        )?;
        if let Some(stored) = &view.criteria {
            crate::fsutil::write_json_record(&path, stored)?;
        }
        self.finish(lock, appended)?;
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
        let lock = self.lock()?;
        let view = self.load_for_write()?;
        let criteria = view.criteria.clone().ok_or_else(|| Error::NoCriteria {
            session: self.id.to_string(),
        })?;
        let parsed = checklist::parse_scores(&criteria, scores)?;
        let info = self.info()?;
        let state = &view.state;
        let round = state.round + 1;
        self.check_round_cap(&info, state)?;
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
        let mut event = serde_json::to_value(&record).map_err(std::io::Error::other)?;
        if let Value::Object(map) = &mut event {
            map.remove("timestamp");
        }
        let (_, appended) = self.commit(view, now, "submit_checklist", event)?;
        self.finish(lock, appended)?;
        Ok(record)
    }

    /// Closes a round whose evaluation was unusable (the evaluator's output stayed malformed
    /// after retries). The round counts as done — the next submission is the next round — but
    /// no scores are invented for it: the verdict stays "not converged", the last scored
    /// result is kept, and plateau history is left alone so a missing evaluation can never
    /// look like a stall.
    pub fn record_unscored_round(&self, reason: &str, now: OffsetDateTime) -> Result<u32> {
        let lock = self.lock()?;
        let info = self.info()?;
        let view = self.load_for_write()?;
        let round = view.state.round + 1;
        self.check_round_cap(&info, &view.state)?;
        let submission = view
            .state
            .pending_answer
            .filter(|answer| answer.round == round);
        let (_, appended) = self.commit(
            view,
            now,
            "unscored_round",
            json!({"round": round, "submission": submission, "reason": reason}),
        )?;
        self.finish(lock, appended)?;
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
        let lock = self.lock()?;
        let view = self.load_for_write()?;
        let Some(last) = view.state.last_result.clone() else {
            return Err(PlanError::NoChecklist.into());
        };
        if last.verdict == Verdict::Converge {
            return Err(PlanError::NotIterating.into());
        }
        let criteria = view.criteria.as_ref().ok_or_else(|| Error::NoCriteria {
            session: self.id.to_string(),
        })?;
        let plan = plan::validate_plan(
            criteria,
            &last.failed_criteria,
            last.round,
            improvements,
            preserve,
            vision,
        )?;
        let path = self.round_dir(last.round).join(PLAN_FILE);
        let (view, appended) = self.commit(
            view,
            now,
            "propose_improvements",
            json!({
                "after_round": last.round,
                "improvements_count": plan.entry_count(),
                "non_incremental_count": plan.non_incremental_count(&last.failed_criteria),
                "plan": plan,
            }),
        )?;
        if let Some(stored) = &view.state.plan {
            fs_err::create_dir_all(self.round_dir(last.round))?;
            crate::fsutil::write_json_record(&path, stored)?;
        }
        self.finish(lock, appended)?;
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
        let lock = self.lock()?;
        let view = self.load_for_write()?;
        let mut rounds: Vec<String> = fs_err::read_dir(&self.dir)?
            .filter_map(std::result::Result::ok)
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .filter(|name| name.starts_with("round_"))
            .collect();
        rounds.sort();
        let resets = view.state.resets + 1;
        let archive_dir = if rounds.is_empty() {
            None
        } else {
            let dir = self.dir.join("archive").join(format!("reset_{resets}"));
            fs_err::create_dir_all(&dir)?;
            for name in &rounds {
                fs_err::rename(self.dir.join(name), dir.join(name))?;
            }
            // The moves must be durable before the record that says they happened: a round
            // folder that came back after a power loss would be taken for the new round 1.
            crate::fsutil::sync_dir(&dir)?;
            crate::fsutil::sync_dir(&self.dir)?;
            Some(dir)
        };
        let (_, appended) = self.commit(
            view,
            now,
            "reset_evaluation",
            json!({"archived_rounds": rounds}),
        )?;
        self.finish(lock, appended)?;
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
        self.may_answer(spend, now)?;
        let scope = match self.scope()? {
            Some(scope) => scope,
            None => self.freeze_scope(None, now)?,
        };
        let snapshot = scope.snapshot(&self.state_dir.objects(), paths)?;
        self.record_answer(answer, paths, snapshot, ScratchFolder::Made, now)
    }

    /// Records `snapshot` as the next round's answer: a snapshot the caller already took of
    /// `paths` through this session's scope ([`Session::scope`]), to look at it before
    /// submitting it. What is recorded is then exactly what the caller looked at, and the
    /// workspace is not walked twice. The snapshot's pin keeps its objects from a sweep
    /// until the manifest names them. A session with a cost budget refuses, as
    /// [`Session::new_answer_within`] does without a measured spend. The round folder gets
    /// no `.scratch/verification/` folder: that is where an agent calling the MCP tool keeps
    /// its notes, and the caller of this one keeps none there.
    pub fn new_answer_from_snapshot(
        &self,
        answer: &str,
        paths: &[String],
        snapshot: Snapshot,
        now: OffsetDateTime,
    ) -> Result<Submission> {
        self.may_answer(None, now)?;
        self.record_answer(answer, paths, snapshot, ScratchFolder::Skipped, now)
    }

    /// Makes sure the session exists and refuses a new answer its cost budget does not allow.
    fn may_answer(&self, spend: Option<&MeasuredSpend>, now: OffsetDateTime) -> Result<()> {
        self.ensure_exists(now)?;
        if let Some(limit) = self.info()?.settings.cost_budget {
            budget::check(&self.id, limit, spend)?;
        }
        Ok(())
    }

    /// Writes `snapshot`'s manifest as the next round (or a new revision of a pending one)
    /// and records it in the journal.
    fn record_answer(
        &self,
        answer: &str,
        paths: &[String],
        snapshot: Snapshot,
        scratch: ScratchFolder,
        now: OffsetDateTime,
    ) -> Result<Submission> {
        let lock = self.lock()?;
        let info = self.info()?;
        let view = self.load_for_write()?;
        let round = view.state.round + 1;
        self.check_round_cap(&info, &view.state)?;
        let revision = match view.state.pending_answer {
            Some(pending) if pending.round == round => pending.revision + 1,
            _ => 1,
        };
        let round_dir = self.round_dir(round);
        fs_err::create_dir_all(match scratch {
            ScratchFolder::Made => round_dir.join(".scratch").join("verification"),
            ScratchFolder::Skipped => round_dir.clone(),
        })?;
        if revision == 1 {
            // The round's folder (made now, or earlier by a driver writing its records there)
            // is a name in the session's folder: durable before the record that says the round
            // has an answer, or a power loss could keep the record and lose the manifest.
            crate::fsutil::sync_dir(&self.dir)?;
        }
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
        let (_, appended) = self.commit(
            view,
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
        self.finish(lock, appended)?;
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
        let lock = self.lock()?;
        let view = self.load_for_write()?;
        let round = view.state.round;
        let (_, appended) = self.commit(
            view,
            now,
            "vote",
            json!({"choice": choice, "reasoning": reasoning, "round": round}),
        )?;
        self.finish(lock, appended)?;
        Ok(round)
    }

    /// Every checklist recorded in the journal, oldest first (across resets).
    pub fn history(&self) -> Result<Vec<ChecklistRecord>> {
        let events = self.events()?;
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

    /// Every journal record, oldest first. A torn final record (a crash mid-append) is left
    /// out; damage before the end is an error naming the file and byte offset.
    pub fn events(&self) -> Result<Vec<Value>> {
        Ok(self
            .journal()
            .scan()?
            .entries
            .into_iter()
            .map(|entry| entry.value)
            .collect())
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

    /// Round `round`'s current submission, if it has one on disk (one manifest read, where
    /// [`Session::submissions`] reads them all).
    pub fn submission(&self, round: u32) -> Result<Option<Submission>> {
        read_submission(&self.round_dir(round).join("submission.json"))
    }

    /// Writes round `round`'s submission into `dest`, byte-identical. The manifest is
    /// checked first and nothing is written through a link already in `dest` (see
    /// [`crate::restore`]); with [`RestoreMode::IntoEmpty`] a folder that holds files is
    /// refused.
    pub fn restore_round(&self, round: u32, dest: &Path, mode: RestoreMode) -> Result<Submission> {
        let submission = self.submission(round)?.ok_or_else(|| Error::UnknownRound {
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
    ///
    /// The scope is a journal record (`freeze_scope`), made durable like every other write
    /// by the journal's one sync; `scope.json` is an unsynced copy of it, rebuilt from the
    /// journal when missing or damaged.
    pub fn freeze_scope(
        &self,
        listing: Option<GitListing>,
        now: OffsetDateTime,
    ) -> Result<WorkspaceScope> {
        self.ensure_exists(now)?;
        let lock = self.lock()?;
        if let Some(existing) = self.scope()? {
            return Ok(existing);
        }
        let scope = self.state_dir.new_scope(listing)?;
        let frozen: Value =
            serde_json::from_slice(&scope.to_json()?).map_err(std::io::Error::other)?;
        let view = self.load_for_write()?;
        let (_, appended) = self.commit(view, now, FREEZE_SCOPE, json!({ "scope": frozen }))?;
        // The scope as the journal holds it (secrets masked, as in every record): what a
        // rebuild gives, so the copy and the record cannot differ.
        let scope = self.scope_from_journal()?.ok_or_else(|| {
            std::io::Error::other("the scope just recorded is missing from the journal")
        })?;
        self.finish(lock, appended)?;
        Ok(scope)
    }

    /// The scope fixed for this session, if one was: `scope.json`, or the journal's record
    /// when the copy is missing or damaged. A damaged copy with no record (a session from
    /// before scopes were journaled) is an error, never "no scope": a new scope fixed now
    /// could be wider than the one the run started with.
    pub fn scope(&self) -> Result<Option<WorkspaceScope>> {
        let path = self.dir.join(SCOPE_FILE);
        let damaged = match fs_err::read(&path) {
            Ok(bytes) => {
                match WorkspaceScope::from_json(
                    &bytes,
                    &path,
                    self.state_dir.workspace(),
                    &self.state_dirs(),
                ) {
                    Ok(scope) => return Ok(Some(scope)),
                    Err(err) => Some(err),
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err.into()),
        };
        match (self.scope_from_journal()?, damaged) {
            (Some(scope), _) => Ok(Some(scope)),
            (None, Some(err)) => Err(err),
            (None, None) => Ok(None),
        }
    }

    fn state_dirs(&self) -> [PathBuf; 1] {
        [self.state_dir.root().to_path_buf()]
    }

    /// The scope of the journal's `freeze_scope` record, with `scope.json` rewritten from it.
    fn scope_from_journal(&self) -> Result<Option<WorkspaceScope>> {
        let Some(frozen) = self
            .journal()
            .scan()?
            .entries
            .into_iter()
            .find(|entry| {
                let op = entry.value.get("op").and_then(Value::as_str);
                (op == Some(FREEZE_SCOPE) || op == Some("init_session"))
                    && entry.value.get("scope").is_some()
            })
            .and_then(|entry| entry.value.get("scope").cloned())
        else {
            return Ok(None);
        };
        let path = self.dir.join(SCOPE_FILE);
        let bytes = serde_json::to_vec_pretty(&frozen).map_err(std::io::Error::other)?;
        let scope = WorkspaceScope::from_json(
            &bytes,
            self.journal().path(),
            self.state_dir.workspace(),
            &self.state_dirs(),
        )?;
        // Not synced, and a failure is no loss: the record is the truth.
        let _ = crate::fsutil::write_json_record(&path, &frozen);
        Ok(Some(scope))
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

/// Whether a submission's round folder gets the empty `.scratch/verification/` folder that
/// MassGen's `new_answer` makes for an agent's verification notes. Only callers that have such
/// an agent ask for it: on ext4 without a journal every new folder costs an inode allocation,
/// which steps over each recently freed inode, and a round already creates a dozen files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScratchFolder {
    Made,
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn an_unscored_round_advances_the_round_without_inventing_scores() {
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let now = datetime!(2026-11-24 03:00 UTC);
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
    fn a_rounds_first_answer_makes_the_rounds_folder_durable_before_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let now = datetime!(2026-11-24 03:00 UTC);
        let before = crate::fsutil::synced_folders().len();
        session.new_answer("r2", &[".".to_owned()], now).unwrap();
        let synced = crate::fsutil::synced_folders().split_off(before);
        assert!(
            synced.iter().any(|folder| folder == session.dir()),
            "the session folder, which names round_002, was not synced: {synced:?}"
        );
        // A second revision of the same round finds the folder durable already.
        let before = crate::fsutil::synced_folders().len();
        session
            .new_answer("r2 again", &[".".to_owned()], now)
            .unwrap();
        let synced = crate::fsutil::synced_folders().split_off(before);
        assert!(
            !synced.iter().any(|folder| folder == session.dir()),
            "{synced:?}"
        );
    }

    #[test]
    fn a_submission_changed_on_disk_is_read_anew_even_at_the_same_size_and_time() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let path = session.round_dir(1).join("submission.json");
        let first = session.submission(1).unwrap().unwrap();
        assert_eq!(session.submission(1).unwrap().unwrap(), first);
        // The same length, written in place, with the file's times set back: only the bytes
        // tell the two apart.
        let metadata = fs_err::metadata(&path).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        let summary = format!(
            "\"answer_summary\": {}",
            serde_json::to_string(&first.answer_summary).unwrap()
        );
        assert!(text.contains(&summary), "{text}");
        let changed = "X".repeat(first.answer_summary.len());
        let edited = text.replace(&summary, &format!("\"answer_summary\": \"{changed}\""));
        assert_eq!(edited.len(), text.len());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(edited.as_bytes())
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(metadata.modified().unwrap())
            .unwrap();
        assert_eq!(
            session.submission(1).unwrap().unwrap().answer_summary,
            changed
        );
        // And a damaged one is an error, whatever was read before.
        fs_err::write(&path, &edited[..edited.len() / 2]).unwrap();
        assert!(matches!(
            session.submission(1),
            Err(Error::CorruptFile { .. })
        ));
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

    /// A session with criteria, one scored round and its answer.
    fn scored_session(dir: &Path) -> Session {
        let workspace = dir.join("ws");
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
        session
    }

    #[test]
    fn only_a_tool_submission_gets_a_scratch_folder_for_verification_notes() {
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let now = datetime!(2026-11-24 03:00 UTC);
        // The MCP tool's way (round 1 above): the folder MassGen's agents write notes in.
        assert!(session.round_dir(1).join(".scratch/verification").is_dir());
        let scope = session.scope().unwrap().unwrap();
        let snapshot = scope
            .snapshot(&session.state_dir.objects(), &[".".to_owned()])
            .unwrap();
        let paths = [".".to_owned()];
        let submission = session
            .new_answer_from_snapshot("r2", &paths, snapshot, now)
            .unwrap();
        assert_eq!(submission.round, 2);
        let round_dir = session.round_dir(2);
        assert!(round_dir.join("submission.json").is_file());
        assert!(!round_dir.join(".scratch").exists());
    }

    #[test]
    fn a_torn_final_record_is_set_aside_and_the_history_before_it_stays_readable() {
        let now = datetime!(2026-11-24 04:00 UTC);
        for torn in [
            &b"{\"ts\":\"2026-11-24T04:00:00Z\",\"op\":\"submit_chec"[..],
            b"{\"op\": oops\n",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let session = scored_session(dir.path());
            let journal = session.dir().join(EVENTS_FILE);
            let intact = fs_err::read(&journal).unwrap();
            let state = session.state().unwrap();
            let mut file = fs_err::OpenOptions::new()
                .append(true)
                .open(&journal)
                .unwrap();
            std::io::Write::write_all(&mut file, torn).unwrap();
            drop(file);
            // Readers see the history before the torn record.
            assert_eq!(session.history().unwrap().len(), 1);
            // init, freeze_scope, criteria, new_answer, submit_checklist.
            assert_eq!(session.events().unwrap().len(), 5);
            assert_eq!(session.state().unwrap(), state);
            assert_eq!(session.state_from_journal().unwrap(), state);
            // The next writer keeps the torn bytes aside and appends on a clean line.
            assert_eq!(session.vote("A", "best", now).unwrap(), 1);
            let aside = session
                .dir()
                .join(format!("{EVENTS_FILE}.torn-{}", intact.len()));
            assert_eq!(fs_err::read(&aside).unwrap(), torn);
            let now_bytes = fs_err::read(&journal).unwrap();
            assert!(now_bytes.starts_with(&intact));
            assert_eq!(session.events().unwrap().len(), 6);
            assert_eq!(session.events().unwrap()[5]["op"], "vote");
            assert_eq!(session.state().unwrap(), state);
        }
    }

    #[test]
    fn damage_before_the_end_of_the_journal_is_an_error_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let journal = session.dir().join(EVENTS_FILE);
        let text = fs_err::read_to_string(&journal).unwrap();
        let second = text.find('\n').unwrap() + 1;
        let damaged = format!("{}{{not a record\n{}", &text[..second], &text[second..]);
        fs_err::write(&journal, &damaged).unwrap();
        let expect = |err: Error| {
            let message = err.to_string();
            assert!(message.contains("events.jsonl"), "{message}");
            assert!(
                message.contains(&format!("byte offset {second}")),
                "{message}"
            );
        };
        expect(session.history().unwrap_err());
        expect(session.events().unwrap_err());
        expect(session.state().unwrap_err());
        expect(
            session
                .vote("A", "x", datetime!(2026-11-24 04:00 UTC))
                .unwrap_err(),
        );
        // Nothing was skipped, repaired or appended.
        assert_eq!(fs_err::read_to_string(&journal).unwrap(), damaged);
    }

    #[test]
    fn a_missing_stale_or_damaged_cache_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let state_file = session.dir().join(STATE_FILE);
        let criteria_file = session.dir().join(CRITERIA_FILE);
        let expected = session.state().unwrap();
        assert_eq!(expected.round, 1);
        assert_eq!(session.state_from_journal().unwrap(), expected);
        let stale = fs_err::read(&state_file).unwrap();
        let now = datetime!(2026-11-24 04:00 UTC);
        session.new_answer("r2", &[".".to_owned()], now).unwrap();
        let after = session.state().unwrap();
        assert_eq!(after.pending_answer.unwrap().round, 2);
        for cache in [
            None,
            Some(&b"{\"round\": 7, \"last_res"[..]),
            Some(&stale[..]),
        ] {
            match cache {
                None => fs_err::remove_file(&state_file).unwrap(),
                Some(bytes) => fs_err::write(&state_file, bytes).unwrap(),
            }
            fs_err::remove_file(&criteria_file).ok();
            assert_eq!(session.state().unwrap(), after);
            assert_eq!(session.criteria().unwrap().unwrap().len(), 2);
            // A writer rewrites the cache and the criteria file from the journal.
            session.vote("A", "x", now).unwrap();
            assert_eq!(
                read_json::<View>(&state_file).unwrap().unwrap().state,
                after
            );
            assert!(criteria_file.is_file());
        }
    }

    #[test]
    fn a_state_file_caught_half_rewritten_in_place_is_never_read_as_state() {
        // The cache is rewritten in place (truncated, then written): a reader may find any
        // prefix of the new text, the empty file included.
        let dir = tempfile::tempdir().unwrap();
        let session = scored_session(dir.path());
        let state_file = session.dir().join(STATE_FILE);
        let now = datetime!(2026-11-24 04:00 UTC);
        session.new_answer("r2", &[".".to_owned()], now).unwrap();
        let expected = session.state().unwrap();
        let whole = fs_err::read(&state_file).unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(&state_file).unwrap());
        let step = (whole.len() / 97).max(1);
        for cut in (0..whole.len() - 1).step_by(step).chain([whole.len() - 2]) {
            fs_err::write(&state_file, &whole[..cut]).unwrap();
            assert_eq!(
                session.state().unwrap(),
                expected,
                "a prefix of {cut} bytes"
            );
        }
        // A writer rewrites it whole, in the same file.
        session.vote("A", "x", now).unwrap();
        let rewritten = read_json::<View>(&state_file).unwrap().unwrap();
        assert_eq!(rewritten.state.round, expected.round);
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(&state_file).unwrap()),
            inode
        );
    }

    #[test]
    fn a_lost_session_file_is_recovered_from_the_init_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join(".refinery"), dir.path());
        let now = datetime!(2026-11-24 03:00 UTC);
        let settings = SessionSettings {
            max_rounds: Some(3),
            ..SessionSettings::default()
        };
        let session = store.init_session("kept", settings, now).unwrap();
        // A crash between the record and its copy.
        fs_err::remove_file(session.dir().join("session.json")).unwrap();
        assert_eq!(session.info().unwrap().settings.max_rounds, Some(3));
        session.vote("A", "x", now).unwrap();
        let info = session.info().unwrap();
        assert_eq!(
            (info.label.as_str(), info.settings.max_rounds),
            ("kept", Some(3))
        );
        assert!(session.dir().join("session.json").is_file());
    }
}
