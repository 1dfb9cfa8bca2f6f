//! The one error type of `refinery-core`.
//!
//! Variants carry data (paths, ids, values) rather than preformatted strings, so the MCP layer
//! can map them to stable codes and the CLI can print them with context added once. Every
//! message says what was wrong and what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed; `fs_err` already names the path in the inner error.
    /// Returned by every store operation; the caller reports it and leaves state as it was.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A state file exists but is not what we wrote. Never reset silently: the user decides.
    #[error("state file `{}` is corrupt ({reason}); repair or move it away — it is never reset silently", path.display())]
    CorruptFile {
        /// The file that failed to parse.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// A session id that could leave the sessions folder or is otherwise unusable.
    #[error("invalid session id `{id}`: {reason}")]
    InvalidSessionId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A Claude Code session id (hook stdin or `CLAUDE_CODE_SESSION_ID`) that is not usable as
    /// a file name. Returned by the hook and the MCP servers at start-up.
    #[error(
        "invalid Claude Code session id `{id}`: only ASCII letters, digits, `-` and `_` are allowed"
    )]
    InvalidClaudeSessionId {
        /// The rejected id.
        id: String,
    },

    /// A tool was called from a Claude Code session that has no Refinery session yet. The
    /// caller starts one with init_session (or resumes one) — never falls back to another
    /// session's loop.
    #[error(
        "this Claude Code session (`{claude_session}`) has no Refinery session yet; call init_session first, or init_session with `resume` set to an existing session id to continue it"
    )]
    UnboundClaudeSession {
        /// The Claude Code session.
        claude_session: String,
    },

    /// The current-session pointer names an id that is not valid.
    #[error("`{}` names session `{id}`, which is not a valid session id; call init_session to start a new session", path.display())]
    BadSessionPointer {
        /// The pointer file.
        path: PathBuf,
        /// The id it holds.
        id: String,
    },

    /// A session that does not exist on disk.
    #[error("no session `{id}` under `{}`; list sessions with `refinery session list`", sessions_dir.display())]
    UnknownSession {
        /// The id asked for.
        id: String,
        /// Where we looked.
        sessions_dir: PathBuf,
    },

    /// A criteria list that cannot be stored.
    #[error("invalid criteria: {0}")]
    InvalidCriteria(String),

    /// A checklist or plan was submitted before any criteria were stored.
    #[error(
        "session `{session}` has no criteria yet; call generate_eval_criteria with 1 or more criteria first"
    )]
    NoCriteria {
        /// The session.
        session: String,
    },

    /// Scores that cannot be accepted.
    #[error(transparent)]
    Scores(#[from] crate::checklist::ScoreError),

    /// An improvement plan that cannot be accepted.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),

    /// A round cap configured on the session was reached.
    #[error(
        "session `{session}` is capped at {max_rounds} round(s) and round {round} would exceed it; stop the loop and report the best round"
    )]
    MaxRoundsReached {
        /// The session.
        session: String,
        /// The configured cap.
        max_rounds: u32,
        /// The round that was refused.
        round: u32,
    },

    /// A path given by a caller that cannot be used.
    #[error("path `{path}` {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A round that has no snapshot.
    #[error("session `{session}` has no submission for round {round}")]
    UnknownRound {
        /// The session.
        session: String,
        /// The round asked for.
        round: u32,
    },

    /// A stored object is missing or does not match its hash.
    #[error("snapshot object `{hash}` is missing or damaged in `{}`", objects_dir.display())]
    DamagedObject {
        /// The content hash.
        hash: String,
        /// The object store.
        objects_dir: PathBuf,
    },

    /// A pack of small objects whose bytes are not what its writer made them: its trailer or
    /// index does not check out, or an object in it does not match its hash. Never answered
    /// with wrong bytes; restore the pack from a backup or delete the rounds that need it.
    #[error("object pack `{}` is damaged at byte {offset}: {damage}", pack.display())]
    DamagedPack {
        /// The pack file.
        pack: PathBuf,
        /// Where in it the damage was found.
        offset: u64,
        /// What was wrong there.
        damage: PackDamage,
    },

    /// A vote that cannot be recorded.
    #[error("invalid vote: {0}")]
    InvalidVote(String),

    /// A session setting outside its range (a cost budget that is not a positive amount).
    #[error("invalid setting: {0}")]
    InvalidSetting(String),

    /// A snapshot manifest that could not have been written by Refinery (it was edited): a
    /// restore refuses it before writing anything.
    #[error("manifest entry `{entry}` {reason}; the manifest was altered, so nothing was restored")]
    BadManifest {
        /// The entry's path as the manifest gives it.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `refinery session restore --to` named a folder that already holds files.
    #[error("`{}` is not empty; restore into a new or empty folder, or pass --force to write over same-named files there (nothing else in it is touched)", dest.display())]
    DestinationNotEmpty {
        /// The destination.
        dest: PathBuf,
    },

    /// Something already in a restore's destination would make the restore write through a
    /// link or destroy a folder; the restore stops rather than follow it.
    #[error("restore stopped at `{}`: {reason}", path.display())]
    UnsafeDestination {
        /// Where it stopped.
        path: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },

    /// The state folder is the workspace or one of its parents: snapshots and restores would
    /// reach into it and its `.gitignore` could hide the user's files.
    #[error("the state folder `{}` is the workspace `{}` or one of its parents; use a folder inside the workspace (the default `.refinery`) or one outside it", state_dir.display(), workspace.display())]
    StateDirContainsWorkspace {
        /// The state folder asked for.
        state_dir: PathBuf,
        /// The workspace.
        workspace: PathBuf,
    },

    /// A checklist for a round that has no answer: the tools only score what was submitted.
    #[error(
        "round {round} of session `{session}` has no answer to score; call new_answer with this round's deliverable first"
    )]
    NoAnswerForRound {
        /// The session.
        session: String,
        /// The round that has no answer.
        round: u32,
    },

    /// The session's cost budget is spent; the tools refuse a new round.
    #[error(
        "session `{session}` has spent ${spent_usd:.4} of its ${budget_usd:.4} cost budget, so no new round can start; stop the loop and report the best round"
    )]
    CostBudgetReached {
        /// The session.
        session: String,
        /// What the Claude Code transcripts of this session cost so far.
        spent_usd: f64,
        /// The budget set with init_session.
        budget_usd: f64,
    },

    /// A session with a cost budget whose spending cannot be measured: fail closed.
    #[error(
        "session `{session}` has a cost budget but its spending cannot be measured ({reason}), so no new round can start"
    )]
    CostUnmeasured {
        /// The session.
        session: String,
        /// Why not.
        reason: String,
    },
}

/// What [`Error::DamagedPack`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackDamage {
    /// The file is shorter than a pack can be, or its first or last bytes are not a pack's.
    #[error("it is not a complete pack (too short, or its start or end marker is wrong)")]
    NotAPack,
    /// The index's checksum, or an offset in it, is wrong.
    #[error("its index does not match its checksum or points outside the pack")]
    Index,
    /// An object's bytes do not hash to the name the index gives them.
    #[error("object `{hash}` does not match its hash")]
    Object {
        /// The hash the index gives.
        hash: String,
    },
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short stable code for clients (the MCP layer sends it beside the message).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "io_error",
            Error::CorruptFile { .. } => "corrupt_state",
            Error::InvalidSessionId { .. }
            | Error::BadSessionPointer { .. }
            | Error::InvalidClaudeSessionId { .. } => "invalid_session",
            Error::UnboundClaudeSession { .. } => "no_session",
            Error::UnknownSession { .. } => "unknown_session",
            Error::InvalidCriteria(_) => "invalid_criteria",
            Error::NoCriteria { .. } => "no_criteria",
            Error::Scores(_) => "invalid_scores",
            Error::Plan(_) => "invalid_plan",
            Error::MaxRoundsReached { .. } => "max_rounds_reached",
            Error::BadPath { .. } => "bad_path",
            Error::UnknownRound { .. } => "unknown_round",
            Error::DamagedObject { .. } | Error::DamagedPack { .. } => "damaged_object",
            Error::InvalidVote(_) => "invalid_vote",
            Error::InvalidSetting(_) => "invalid_setting",
            Error::BadManifest { .. } => "bad_manifest",
            Error::DestinationNotEmpty { .. } => "destination_not_empty",
            Error::UnsafeDestination { .. } => "unsafe_destination",
            Error::StateDirContainsWorkspace { .. } => "bad_state_dir",
            Error::NoAnswerForRound { .. } => "no_answer",
            Error::CostBudgetReached { .. } => "cost_budget_reached",
            Error::CostUnmeasured { .. } => "cost_unmeasured",
        }
    }
}
