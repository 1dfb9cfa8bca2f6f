//! Which Refinery session a Claude Code session works on.
//!
//! Peer loop plugins keep one state file per folder, so two Claude Code sessions in the same
//! folder hijack each other's loop. Refinery keys loop state by Claude Code's own session id
//! instead: `<state>/claude_sessions/<claude-session-id>.json` binds one Claude Code session
//! to at most one Refinery session.
//!
//! Claude Code gives that id to every process it starts: hooks read it from their stdin JSON
//! (`session_id`), and MCP servers and hooks both get `CLAUDE_CODE_SESSION_ID` in their
//! environment (observed with Claude Code 2.1.330). An MCP server keeps the id it was started
//! with; when the context is cleared Claude Code opens a *new* session id in the same
//! process, so the SessionStart hook carries the binding over to the new id from the
//! binding of the same Claude Code process ([`inherited_binding`]). A fresh start never
//! inherits anything, so a new Claude Code window never continues someone else's loop.
//!
//! Without a Claude Code session id (another MCP client, a terminal) the servers fall back
//! to the folder-wide pointer `session_metadata.json`, as MassGen does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::fsutil::{LockGuard, read_json, write_json};
use crate::session::SessionId;
use crate::store::{StateDir, rfc3339};

const BINDINGS_DIR: &str = "claude_sessions";
/// Claude Code ids are UUIDs; anything much longer is not one of its ids.
const MAX_CLAUDE_ID_LEN: usize = 128;

/// A Claude Code session id, validated so it is safe as a file name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClaudeSessionId(String);

impl ClaudeSessionId {
    /// Validates an id that Claude Code passed in (hook stdin or `CLAUDE_CODE_SESSION_ID`).
    pub fn parse(raw: &str) -> Result<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_CLAUDE_ID_LEN
            && raw.as_bytes()[0].is_ascii_alphanumeric()
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidClaudeSessionId { id: raw.to_owned() })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClaudeSessionId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<ClaudeSessionId> for String {
    fn from(value: ClaudeSessionId) -> Self {
        value.0
    }
}

impl std::fmt::Display for ClaudeSessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why Claude Code started a session (the SessionStart hook's `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartSource {
    /// A new Claude Code process or `/new`-style start.
    Startup,
    /// `--resume` / `--continue`.
    Resume,
    /// `/clear`, or "Yes, clear context" after a plan.
    Clear,
    /// After compaction.
    Compact,
    /// A forked session.
    Fork,
    /// A value this version does not know; treated like a fresh start.
    #[serde(other)]
    Other,
}

impl StartSource {
    /// Parses the hook's `source` field; unknown values become [`StartSource::Other`].
    pub fn parse(raw: &str) -> Self {
        match raw {
            "startup" => Self::Startup,
            "resume" => Self::Resume,
            "clear" => Self::Clear,
            "compact" => Self::Compact,
            "fork" => Self::Fork,
            _ => Self::Other,
        }
    }

    /// Whether a session started this way continues the work of the same Claude Code
    /// process (and so may inherit its Refinery session).
    pub fn continues_process(self) -> bool {
        match self {
            Self::Clear | Self::Compact | Self::Resume => true,
            // A fork is a deliberate branch: it must not advance the original's loop.
            Self::Startup | Self::Fork | Self::Other => false,
        }
    }
}

/// What one Claude Code session is bound to, stored as `claude_sessions/<id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaudeBinding {
    /// The Claude Code session.
    pub claude_session_id: ClaudeSessionId,
    /// The Refinery session it works on, once `init_session` ran or one was inherited.
    #[serde(default)]
    pub refinery_session: Option<SessionId>,
    /// The Claude Code process (`CLAUDE_PID`), to carry the binding across a context clear.
    #[serde(default)]
    pub claude_pid: Option<u32>,
    /// The Claude Code transcript of this session, for the execution-trace analyzer.
    #[serde(default)]
    pub transcript_path: Option<String>,
    /// How the session started, as the hook reported it.
    #[serde(default)]
    pub source: Option<StartSource>,
    /// The Claude Code session this one inherited its Refinery session from.
    #[serde(default)]
    pub inherited_from: Option<ClaudeSessionId>,
    /// API responses already in the transcript when this Claude Code session was bound to
    /// its Refinery session: spent before the loop began, so not part of its cost budget.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub messages_before_loop: BTreeSet<String>,
    /// First seen, RFC 3339.
    pub created_at: String,
    /// Last changed, RFC 3339.
    pub updated_at: String,
}

/// What the SessionStart hook learned about a starting Claude Code session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaudeSessionStart {
    /// The session id from the hook's stdin.
    pub claude_session_id: ClaudeSessionId,
    /// `source` from the hook's stdin.
    pub source: StartSource,
    /// `transcript_path` from the hook's stdin.
    pub transcript_path: Option<String>,
    /// `CLAUDE_PID` from the hook's environment.
    pub claude_pid: Option<u32>,
}

/// Which session a tool call works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// A session named explicitly (`--session`, `REFINERY_SESSION`).
    Pinned(SessionId),
    /// The session bound to this Claude Code session.
    Claude(ClaudeSessionId),
    /// The folder-wide pointer `session_metadata.json` (MassGen's behaviour).
    Pointer,
}

/// Picks the binding a newly started Claude Code session continues, if any: only a start
/// that continues the same process (clear, compact, resume), only a binding of that same
/// process that has a Refinery session, and of those the most recently updated one.
pub fn inherited_binding<'a>(
    start: &ClaudeSessionStart,
    candidates: &'a [ClaudeBinding],
) -> Option<&'a ClaudeBinding> {
    if !start.source.continues_process() {
        return None;
    }
    let pid = start.claude_pid?;
    candidates
        .iter()
        .filter(|binding| binding.claude_session_id != start.claude_session_id)
        .filter(|binding| binding.claude_pid == Some(pid))
        .filter(|binding| binding.refinery_session.is_some())
        .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
}

impl StateDir {
    fn bindings_dir(&self) -> PathBuf {
        self.root().join(BINDINGS_DIR)
    }

    fn binding_path(&self, id: &ClaudeSessionId) -> PathBuf {
        self.bindings_dir().join(format!("{id}.json"))
    }

    /// The binding of a Claude Code session, if it has one.
    pub fn claude_binding(&self, id: &ClaudeSessionId) -> Result<Option<ClaudeBinding>> {
        read_json(&self.binding_path(id))
    }

    /// Every binding on disk (unreadable or foreign files are skipped: they cannot belong to
    /// a live Claude Code session we are asked about).
    pub fn claude_bindings(&self) -> Result<Vec<ClaudeBinding>> {
        let entries = match fs_err::read_dir(self.bindings_dir()) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut bindings = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "json")
                && let Ok(Some(binding)) = read_json::<ClaudeBinding>(&path)
            {
                bindings.push(binding);
            }
        }
        bindings.sort_by(|a, b| a.claude_session_id.cmp(&b.claude_session_id));
        Ok(bindings)
    }

    /// Records a starting Claude Code session (the SessionStart hook). An existing binding
    /// keeps its Refinery session; a new one inherits the session of the same Claude Code
    /// process when the start continues it (see [`inherited_binding`]).
    pub fn record_claude_session_start(
        &self,
        start: &ClaudeSessionStart,
        now: OffsetDateTime,
    ) -> Result<ClaudeBinding> {
        self.prepare()?;
        fs_err::create_dir_all(self.bindings_dir())?;
        let _lock = LockGuard::acquire(&self.bindings_dir().join(".lock"))?;
        let stamp = rfc3339(now);
        let binding = if let Some(mut existing) = self.claude_binding(&start.claude_session_id)? {
            existing.claude_pid = start.claude_pid.or(existing.claude_pid);
            if start.transcript_path.is_some() {
                existing.transcript_path.clone_from(&start.transcript_path);
            }
            existing.source = Some(start.source);
            existing.updated_at = stamp;
            existing
        } else {
            let all = self.claude_bindings()?;
            let parent = inherited_binding(start, &all);
            ClaudeBinding {
                claude_session_id: start.claude_session_id.clone(),
                refinery_session: parent.and_then(|parent| parent.refinery_session.clone()),
                claude_pid: start.claude_pid,
                transcript_path: start.transcript_path.clone(),
                source: Some(start.source),
                inherited_from: parent.map(|parent| parent.claude_session_id.clone()),
                // A new Claude Code session's transcript starts empty: all of it is the loop's.
                messages_before_loop: BTreeSet::new(),
                created_at: stamp.clone(),
                updated_at: stamp,
            }
        };
        write_json(&self.binding_path(&start.claude_session_id), &binding)?;
        Ok(binding)
    }

    /// Binds a Claude Code session to a Refinery session (`init_session` from Claude Code),
    /// creating the binding when the hook did not run.
    pub fn bind_claude_session(
        &self,
        claude: &ClaudeSessionId,
        session: &SessionId,
        now: OffsetDateTime,
    ) -> Result<ClaudeBinding> {
        self.prepare()?;
        fs_err::create_dir_all(self.bindings_dir())?;
        let _lock = LockGuard::acquire(&self.bindings_dir().join(".lock"))?;
        let stamp = rfc3339(now);
        let mut binding = self
            .claude_binding(claude)?
            .unwrap_or_else(|| ClaudeBinding {
                claude_session_id: claude.clone(),
                refinery_session: None,
                claude_pid: None,
                transcript_path: None,
                source: None,
                inherited_from: None,
                messages_before_loop: BTreeSet::new(),
                created_at: stamp.clone(),
                updated_at: stamp.clone(),
            });
        if binding.refinery_session.as_ref() != Some(session) {
            // What this Claude Code session spent before it joined this loop is not the
            // loop's; a transcript that cannot be read now leaves the set empty, so the
            // budget counts more rather than less.
            binding.messages_before_loop = binding
                .transcript_path
                .as_deref()
                .and_then(|path| crate::transcript::read_messages(Path::new(path)).ok())
                .map(|messages| messages.into_keys().collect())
                .unwrap_or_default();
        }
        binding.refinery_session = Some(session.clone());
        binding.updated_at = stamp;
        write_json(&self.binding_path(claude), &binding)?;
        Ok(binding)
    }

    /// The session a tool call works on. A Claude Code session that was never bound gets an
    /// error rather than the folder-wide pointer: the pointer may belong to another Claude
    /// Code session in the same folder, and silently continuing its loop is the hijack this
    /// module exists to prevent.
    pub fn resolve_session(&self, selector: &SessionSelector) -> Result<SessionId> {
        match selector {
            SessionSelector::Pinned(id) => Ok(id.clone()),
            SessionSelector::Pointer => self.current_session_id(),
            SessionSelector::Claude(claude) => self
                .claude_binding(claude)?
                .and_then(|binding| binding.refinery_session)
                .ok_or_else(|| Error::UnboundClaudeSession {
                    claude_session: claude.to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use time::macros::datetime;

    fn claude(id: &str) -> ClaudeSessionId {
        ClaudeSessionId::parse(id).unwrap()
    }

    fn binding(id: &str, pid: Option<u32>, session: Option<&str>, updated: &str) -> ClaudeBinding {
        ClaudeBinding {
            claude_session_id: claude(id),
            refinery_session: session.map(|raw| SessionId::parse(raw).unwrap()),
            claude_pid: pid,
            transcript_path: None,
            source: Some(StartSource::Startup),
            inherited_from: None,
            messages_before_loop: BTreeSet::new(),
            created_at: updated.to_owned(),
            updated_at: updated.to_owned(),
        }
    }

    fn start(id: &str, source: StartSource, pid: Option<u32>) -> ClaudeSessionStart {
        ClaudeSessionStart {
            claude_session_id: claude(id),
            source,
            transcript_path: None,
            claude_pid: pid,
        }
    }

    #[test]
    fn claude_ids_must_be_file_name_safe() {
        for bad in ["", "../x", "a/b", "a.b", "-a", &"a".repeat(129)] {
            assert!(ClaudeSessionId::parse(bad).is_err(), "{bad:?}");
        }
        let uuid = "f0041b2f-f96c-4c8a-a256-733724550128";
        assert_eq!(ClaudeSessionId::parse(uuid).unwrap().as_str(), uuid);
    }

    #[test]
    fn start_sources_parse_and_decide_continuation() {
        let table = [
            ("startup", StartSource::Startup, false),
            ("resume", StartSource::Resume, true),
            ("clear", StartSource::Clear, true),
            ("compact", StartSource::Compact, true),
            ("fork", StartSource::Fork, false),
            ("something-new", StartSource::Other, false),
        ];
        for (raw, source, continues) in table {
            assert_eq!(StartSource::parse(raw), source, "{raw}");
            assert_eq!(source.continues_process(), continues, "{raw}");
        }
    }

    #[test]
    fn inheritance_follows_only_the_same_process_after_a_clear() {
        let bindings = vec![
            binding("old-a", Some(100), Some("s_a"), "2026-11-24T01:00:00Z"),
            binding("old-a2", Some(100), Some("s_a2"), "2026-11-24T01:05:00Z"),
            binding("unbound", Some(100), None, "2026-11-24T01:09:00Z"),
            binding("other", Some(200), Some("s_b"), "2026-11-24T01:10:00Z"),
            binding("no-pid", None, Some("s_c"), "2026-11-24T01:11:00Z"),
        ];
        let table: [(ClaudeSessionStart, Option<&str>); 7] = [
            // After "clear context" in process 100: its newest bound session.
            (start("new", StartSource::Clear, Some(100)), Some("old-a2")),
            (
                start("new", StartSource::Compact, Some(100)),
                Some("old-a2"),
            ),
            // Another process in the same folder never inherits process 100's loop.
            (start("new", StartSource::Clear, Some(300)), None),
            (start("new", StartSource::Clear, Some(200)), Some("other")),
            // A fresh start or a fork never inherits, even with a matching pid (pid reuse).
            (start("new", StartSource::Startup, Some(100)), None),
            (start("new", StartSource::Fork, Some(100)), None),
            // Without a pid there is nothing safe to match on.
            (start("new", StartSource::Clear, None), None),
        ];
        for (start, expected) in table {
            let found = inherited_binding(&start, &bindings)
                .map(|binding| binding.claude_session_id.as_str());
            assert_eq!(found, expected, "{start:?}");
        }
    }

    #[test]
    fn two_claude_sessions_in_one_folder_stay_separate() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join(".refinery"), dir.path());
        let now = datetime!(2026-11-24 01:00:00 UTC);
        let (one, two) = (claude("one"), claude("two"));
        store
            .record_claude_session_start(&start("one", StartSource::Startup, Some(1)), now)
            .unwrap();
        store
            .record_claude_session_start(&start("two", StartSource::Startup, Some(2)), now)
            .unwrap();
        let first = store
            .init_session("first", crate::SessionSettings::default(), now)
            .unwrap();
        store.bind_claude_session(&one, first.id(), now).unwrap();
        // The pointer now names `first`, but session two must not follow it.
        assert!(matches!(
            store.resolve_session(&SessionSelector::Claude(two.clone())),
            Err(Error::UnboundClaudeSession { .. })
        ));
        let second = store
            .init_session("second", crate::SessionSettings::default(), now)
            .unwrap();
        store.bind_claude_session(&two, second.id(), now).unwrap();
        assert_eq!(
            store
                .resolve_session(&SessionSelector::Claude(one))
                .unwrap(),
            *first.id()
        );
        assert_eq!(
            store
                .resolve_session(&SessionSelector::Claude(two))
                .unwrap(),
            *second.id()
        );
        assert_eq!(
            store.resolve_session(&SessionSelector::Pointer).unwrap(),
            *second.id()
        );
    }

    #[test]
    fn a_cleared_context_continues_the_same_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join(".refinery"), dir.path());
        let now = datetime!(2026-11-24 01:00:00 UTC);
        store
            .record_claude_session_start(&start("round-1", StartSource::Startup, Some(7)), now)
            .unwrap();
        let session = store
            .init_session("loop", crate::SessionSettings::default(), now)
            .unwrap();
        store
            .bind_claude_session(&claude("round-1"), session.id(), now)
            .unwrap();
        let later = datetime!(2026-11-24 01:20:00 UTC);
        let next = store
            .record_claude_session_start(&start("round-2", StartSource::Clear, Some(7)), later)
            .unwrap();
        assert_eq!(next.refinery_session.as_ref(), Some(session.id()));
        assert_eq!(next.inherited_from, Some(claude("round-1")));
        // Recording the same start again keeps the binding.
        let again = store
            .record_claude_session_start(&start("round-2", StartSource::Resume, Some(8)), later)
            .unwrap();
        assert_eq!(again.refinery_session.as_ref(), Some(session.id()));
        assert_eq!(again.claude_pid, Some(8));
    }
}
