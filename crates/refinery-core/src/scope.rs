//! A run's scope: the workspace paths a run may snapshot, send to a judge, restore or delete.
//!
//! User files are sacred. The scope is fixed once, when a run or a plugin session starts, from
//! git's view of the workspace at that moment (tracked files plus untracked files that are not
//! ignored), and it is persisted in the session so a resumed run and every later tool call use
//! the same one. Nothing a run does afterwards can widen it:
//!
//! - the ignore rules are frozen with their text, so a builder that edits `.gitignore` (to
//!   un-ignore `.env.local` or `private/`, say) changes nothing: new files the run creates are
//!   judged by the rules as they were at the start;
//! - a path that was ignored at the start stays out forever, whatever the rules say later;
//! - `.git`, every `.env*` file and the state folder never enter a snapshot, even when a caller
//!   names them explicitly.
//!
//! The core never spawns processes, so git's lists come from the caller
//! ([`GitListing`], built by `refinery_engine::git_view`); a folder that is not a git work tree
//! gets a scope from its `.gitignore` files instead ([`WorkspaceScope::from_walk`]). Reading
//! an ignore file never blocks: a fifo or device where a `.gitignore` should be is skipped and
//! reported, never opened for reading.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::Skipped;

/// Ignore files larger than this are not read (git itself would take them, but no real
/// `.gitignore` is this large, and reading one must stay cheap).
const MAX_IGNORE_FILE_BYTES: u64 = 1024 * 1024;
/// The persisted format; bumped when the meaning of a field changes.
const SCOPE_VERSION: u32 = 1;

/// Where a set of ignore patterns came from, which decides its precedence (as in git: a
/// folder's `.gitignore` beats the repository's exclude file, which beats the global one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesKind {
    /// A folder's `.gitignore`; deeper folders win.
    Directory,
    /// The repository's `$GIT_DIR/info/exclude`.
    RepositoryExclude,
    /// The user's `core.excludesFile`.
    GlobalExclude,
}

/// The folder a set of patterns is relative to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "at")]
pub enum RulesBase {
    /// A folder inside the workspace, `/`-separated, `""` for the workspace itself.
    Inside {
        /// The folder, relative to the workspace.
        folder: String,
    },
    /// A folder above the workspace (a parent `.gitignore`, or the repository root when the
    /// workspace is a sub-folder of the repository).
    Above {
        /// How many levels above the workspace the folder is (1 for the parent).
        levels: u32,
        /// The workspace's path relative to that folder, `/`-separated (`apps/web`).
        workspace_path: String,
    },
}

/// One ignore file's patterns, frozen with their text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoreRules {
    /// Where the patterns apply.
    pub base: RulesBase,
    /// What kind of file they came from.
    pub kind: RulesKind,
    /// The lines as written.
    pub lines: Vec<String>,
}

impl IgnoreRules {
    /// Reads an ignore file without ever blocking: `Ok(None)` when it does not exist, an
    /// error reason when it is not a regular file or cannot be read.
    pub fn read(
        path: &Path,
        base: RulesBase,
        kind: RulesKind,
    ) -> std::result::Result<Option<Self>, String> {
        match read_small_regular(path, MAX_IGNORE_FILE_BYTES) {
            Ok(Some(text)) => Ok(Some(Self {
                base,
                kind,
                lines: text.lines().map(str::to_owned).collect(),
            })),
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
        }
    }
}

/// Git's view of the workspace when a run starts, as the caller listed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitListing {
    /// `git ls-files -z --cached --others --exclude-standard`, relative to the workspace:
    /// tracked files and untracked files that are not ignored.
    pub included: Vec<String>,
    /// `git ls-files -z --others --ignored --exclude-standard --directory`: ignored files,
    /// and whole ignored folders ending in `/`.
    pub ignored: Vec<String>,
    /// Rules from outside the workspace tree: parent folders' `.gitignore` files up to the
    /// repository root, `$GIT_DIR/info/exclude` and `core.excludesFile`. The `.gitignore`
    /// files inside the workspace are read by [`WorkspaceScope::from_git`] itself.
    pub outer_rules: Vec<IgnoreRules>,
}

/// How a scope was fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeSource {
    /// From git's lists.
    Git,
    /// From the `.gitignore` files found by walking a folder that is not a git work tree.
    Walk,
}

/// Why a path is outside the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfScope {
    /// Inside a `.git` folder (or a `.git` file).
    GitDir,
    /// A `.env*` file or folder: credentials live there.
    SecretFile,
    /// Refinery's state folder.
    StateFolder,
    /// Git ignored it when the run started.
    IgnoredAtStart,
    /// The ignore rules as they were when the run started match it.
    Ignored,
}

/// The paths a builder's file tools refuse ([`WorkspaceScope::off_limits`]): credentials,
/// `.git`, and what git ignored at the start. Files the run creates later stay usable, so a
/// builder can read its own build output; what existed out of scope is never read (it would
/// reach a model) nor replaced (no snapshot could bring it back).
#[derive(Clone, Debug, Default)]
pub struct OffLimits {
    ignored_at_start: std::sync::Arc<BTreeSet<String>>,
}

impl OffLimits {
    /// Why `relative` (a `/`-separated workspace path) is off limits, if it is.
    pub fn refuses(&self, relative: &str) -> Option<OutOfScope> {
        let parts: Vec<&str> = relative
            .split('/')
            .filter(|part| !part.is_empty())
            .collect();
        for (index, part) in parts.iter().enumerate() {
            if *part == ".git" {
                return Some(OutOfScope::GitDir);
            }
            if part.starts_with(".env") {
                return Some(OutOfScope::SecretFile);
            }
            let prefix = parts[..=index].join("/");
            if self.ignored_at_start.contains(&prefix)
                || self.ignored_at_start.contains(&format!("{prefix}/"))
            {
                return Some(OutOfScope::IgnoredAtStart);
            }
        }
        None
    }
}

impl OutOfScope {
    /// The reason, as shown to users and models.
    pub fn reason(self) -> &'static str {
        match self {
            Self::GitDir => "is inside `.git`, which is never snapshotted",
            Self::SecretFile => {
                "is a `.env*` file, where credentials live; it is never snapshotted"
            }
            Self::StateFolder => "is inside Refinery's state folder, which is never snapshotted",
            Self::IgnoredAtStart => {
                "was ignored by git when the session started; ignored files stay out of every snapshot and restore"
            }
            Self::Ignored => {
                "is ignored by the ignore rules as they were when the session started; ignored files stay out of every snapshot and restore"
            }
        }
    }
}

/// What a walk should do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryDecision {
    /// In scope.
    In,
    /// An ignored folder that still holds files git tracks: enter it, but only those files
    /// are in scope.
    EnterForTracked,
    /// Out of scope.
    Out(OutOfScope),
}

/// The frozen part, as stored in `scope.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Frozen {
    version: u32,
    source: ScopeSource,
    /// Every ignore file in force at the start, with its text.
    rules: Vec<IgnoreRules>,
    /// Paths out of scope at the start: ignored files and folders (`dir/`).
    ignored_at_start: BTreeSet<String>,
    /// Files git listed as in scope although the frozen rules match them (tracked files
    /// under an ignore pattern keep being followed, as git does).
    listed_despite_rules: BTreeSet<String>,
    /// Ignore files that could not be read when the scope was fixed.
    #[serde(default)]
    notes: Vec<Skipped>,
}

struct Matcher {
    base: RulesBase,
    kind: RulesKind,
    /// Precedence among folder rules: deeper wins.
    depth: i64,
    gitignore: Gitignore,
}

impl Matcher {
    /// The path as the patterns see it, or `None` when the rules do not apply to it.
    fn local_path(&self, relative: &str) -> Option<String> {
        match &self.base {
            RulesBase::Inside { folder } if folder.is_empty() => Some(relative.to_owned()),
            RulesBase::Inside { folder } => relative
                .strip_prefix(folder.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| !rest.is_empty())
                .map(str::to_owned),
            RulesBase::Above { workspace_path, .. } if workspace_path.is_empty() => {
                Some(relative.to_owned())
            }
            RulesBase::Above { workspace_path, .. } => Some(format!("{workspace_path}/{relative}")),
        }
    }
}

/// Which workspace paths a run may snapshot, send to a judge, restore or delete.
///
/// Build it once when a run starts ([`WorkspaceScope::from_git`] or
/// [`WorkspaceScope::from_walk`]), keep it with the session (`Session::freeze_scope`), and
/// take every snapshot ([`WorkspaceScope::snapshot`]) and restore
/// ([`WorkspaceScope::restore_exact`]) through it.
pub struct WorkspaceScope {
    workspace: PathBuf,
    /// State folders inside the workspace, relative; never in scope.
    state_relative: Vec<String>,
    /// State folders as absolute paths, to refuse links into them.
    state_absolute: Vec<PathBuf>,
    frozen: Frozen,
    matchers: Vec<Matcher>,
}

impl std::fmt::Debug for WorkspaceScope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WorkspaceScope")
            .field("workspace", &self.workspace)
            .field("source", &self.frozen.source)
            .field("rules", &self.frozen.rules.len())
            .field("ignored_at_start", &self.frozen.ignored_at_start.len())
            .finish_non_exhaustive()
    }
}

impl WorkspaceScope {
    /// The scope from git's lists. `state_dirs` are never in scope.
    pub fn from_git(workspace: &Path, state_dirs: &[PathBuf], listing: GitListing) -> Result<Self> {
        let (workspace, state_relative, state_absolute) = locate(workspace, state_dirs)?;
        let mut notes = Vec::new();
        let mut rules = listing.outer_rules;
        // Every folder holding a listed file may hold a `.gitignore` that git applied.
        let mut folders: BTreeSet<String> = BTreeSet::from([String::new()]);
        let included: Vec<String> = listing
            .included
            .into_iter()
            .filter_map(|path| clean_relative(&path))
            .collect();
        for path in &included {
            let mut folder = path.as_str();
            while let Some((parent, _)) = folder.rsplit_once('/') {
                folders.insert(parent.to_owned());
                folder = parent;
            }
        }
        for folder in folders {
            let file = if folder.is_empty() {
                workspace.join(".gitignore")
            } else {
                workspace.join(&folder).join(".gitignore")
            };
            let base = RulesBase::Inside {
                folder: folder.clone(),
            };
            match IgnoreRules::read(&file, base, RulesKind::Directory) {
                Ok(Some(found)) => rules.push(found),
                Ok(None) => {}
                Err(reason) => notes.push(Skipped {
                    path: join_relative(&folder, ".gitignore"),
                    reason,
                }),
            }
        }
        let ignored_at_start = listing
            .ignored
            .iter()
            .filter_map(|path| {
                let is_folder = path.ends_with('/');
                clean_relative(path).map(|clean| {
                    if is_folder {
                        format!("{clean}/")
                    } else {
                        clean
                    }
                })
            })
            .collect();
        let mut scope = Self::assemble(
            workspace,
            state_relative,
            state_absolute,
            Frozen {
                version: SCOPE_VERSION,
                source: ScopeSource::Git,
                rules,
                ignored_at_start,
                listed_despite_rules: BTreeSet::new(),
                notes,
            },
        )?;
        // Git is the authority on what was in scope at the start: a listed file the frozen
        // rules would ignore (a tracked file under an ignore pattern) stays in.
        let despite: BTreeSet<String> = included
            .into_iter()
            .filter(|path| scope.ignored_by_rules(path, false))
            .collect();
        scope.frozen.listed_despite_rules = despite;
        Ok(scope)
    }

    /// The scope of a folder that is not a git work tree: its `.gitignore` files (read
    /// top-down, never from inside an ignored folder) and `.git/info/exclude` if present.
    pub fn from_walk(workspace: &Path, state_dirs: &[PathBuf]) -> Result<Self> {
        let (workspace, state_relative, state_absolute) = locate(workspace, state_dirs)?;
        let mut scope = Self::assemble(
            workspace,
            state_relative,
            state_absolute,
            Frozen {
                version: SCOPE_VERSION,
                source: ScopeSource::Walk,
                rules: Vec::new(),
                ignored_at_start: BTreeSet::new(),
                listed_despite_rules: BTreeSet::new(),
                notes: Vec::new(),
            },
        )?;
        let exclude = scope.workspace.join(".git").join("info").join("exclude");
        scope.add_rules_file(
            &exclude,
            ".git/info/exclude",
            RulesBase::Inside {
                folder: String::new(),
            },
            RulesKind::RepositoryExclude,
        )?;
        scope.collect_rules("")?;
        Ok(scope)
    }

    fn add_rules_file(
        &mut self,
        path: &Path,
        shown: &str,
        base: RulesBase,
        kind: RulesKind,
    ) -> Result<()> {
        match IgnoreRules::read(path, base, kind) {
            Ok(Some(rules)) => {
                self.matchers.push(build_matcher(&rules)?);
                self.frozen.rules.push(rules);
                sort_matchers(&mut self.matchers);
            }
            Ok(None) => {}
            Err(reason) => self.frozen.notes.push(Skipped {
                path: shown.to_owned(),
                reason,
            }),
        }
        Ok(())
    }

    /// Reads the `.gitignore` of `folder`, then of every sub-folder the rules so far keep.
    fn collect_rules(&mut self, folder: &str) -> Result<()> {
        let absolute = self.absolute(folder);
        self.add_rules_file(
            &absolute.join(".gitignore"),
            &join_relative(folder, ".gitignore"),
            RulesBase::Inside {
                folder: folder.to_owned(),
            },
            RulesKind::Directory,
        )?;
        let Ok(entries) = fs_err::read_dir(&absolute) else {
            // An unreadable folder contributes no rules; the snapshot walk reports it.
            return Ok(());
        };
        let mut folders = Vec::new();
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let relative = join_relative(folder, &name);
            if self.decide_entry(&relative, true, false) == EntryDecision::In {
                folders.push(relative);
            }
        }
        folders.sort();
        for child in folders {
            self.collect_rules(&child)?;
        }
        Ok(())
    }

    fn assemble(
        workspace: PathBuf,
        state_relative: Vec<String>,
        state_absolute: Vec<PathBuf>,
        frozen: Frozen,
    ) -> Result<Self> {
        let mut matchers = frozen
            .rules
            .iter()
            .map(build_matcher)
            .collect::<Result<Vec<_>>>()?;
        sort_matchers(&mut matchers);
        Ok(Self {
            workspace,
            state_relative,
            state_absolute,
            frozen,
            matchers,
        })
    }

    /// Reads a scope stored by [`WorkspaceScope::to_json`] for this workspace.
    pub(crate) fn from_json(
        bytes: &[u8],
        origin: &Path,
        workspace: &Path,
        state_dirs: &[PathBuf],
    ) -> Result<Self> {
        let frozen: Frozen = serde_json::from_slice(bytes).map_err(|err| Error::CorruptFile {
            path: origin.to_path_buf(),
            reason: err.to_string(),
        })?;
        if frozen.version != SCOPE_VERSION {
            return Err(Error::CorruptFile {
                path: origin.to_path_buf(),
                reason: format!(
                    "scope format {} is not the {SCOPE_VERSION} this version reads",
                    frozen.version
                ),
            });
        }
        let (workspace, state_relative, state_absolute) = locate(workspace, state_dirs)?;
        Self::assemble(workspace, state_relative, state_absolute, frozen)
    }

    /// The frozen scope as stored in the session.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(&self.frozen).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The workspace root (canonical).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// How the scope was fixed.
    pub fn source(&self) -> ScopeSource {
        self.frozen.source
    }

    /// Ignore files that could not be read when the scope was fixed (a fifo named
    /// `.gitignore`, an unreadable one), with the reason.
    pub fn notes(&self) -> &[Skipped] {
        &self.frozen.notes
    }

    pub(crate) fn absolute(&self, relative: &str) -> PathBuf {
        if relative.is_empty() || relative == "." {
            self.workspace.clone()
        } else {
            self.workspace.join(relative)
        }
    }

    pub(crate) fn is_state_path(&self, absolute: &Path) -> bool {
        self.state_absolute
            .iter()
            .any(|state| absolute.starts_with(state))
    }

    /// What a builder's own file tools must never read, write or delete: `.git`, `.env*` and
    /// every path git ignored when the run started. A copy, so tools can carry it.
    pub fn off_limits(&self) -> OffLimits {
        OffLimits {
            ignored_at_start: std::sync::Arc::new(self.frozen.ignored_at_start.clone()),
        }
    }

    /// Whether `relative` (a `/`-separated path inside the workspace) is in scope, checking
    /// every folder on the way. `is_dir` says whether the path itself is a folder.
    pub fn check(&self, relative: &str, is_dir: bool) -> std::result::Result<(), OutOfScope> {
        if relative.is_empty() || relative == "." {
            return Ok(());
        }
        let parts: Vec<&str> = relative.split('/').collect();
        let mut inside_ignored = false;
        for end in 1..=parts.len() {
            let prefix = parts[..end].join("/");
            let last = end == parts.len();
            match self.decide_entry(&prefix, !last || is_dir, inside_ignored) {
                EntryDecision::In => {}
                EntryDecision::EnterForTracked => inside_ignored = true,
                EntryDecision::Out(reason) => return Err(reason),
            }
        }
        Ok(())
    }

    /// The decision for one entry whose parent folder is known to be walkable;
    /// `inside_ignored` says whether that parent is an ignored folder entered only for the
    /// tracked files it holds.
    pub(crate) fn decide_entry(
        &self,
        relative: &str,
        is_dir: bool,
        inside_ignored: bool,
    ) -> EntryDecision {
        if let Some(reason) = self.protected(relative) {
            return EntryDecision::Out(reason);
        }
        let ignored_at_start = self.frozen.ignored_at_start.contains(relative)
            || (is_dir
                && self
                    .frozen
                    .ignored_at_start
                    .contains(&format!("{relative}/")));
        if ignored_at_start {
            return EntryDecision::Out(OutOfScope::IgnoredAtStart);
        }
        if !is_dir && self.frozen.listed_despite_rules.contains(relative) {
            return EntryDecision::In;
        }
        let ignored = inside_ignored || self.rules_decision(relative, is_dir) == Some(true);
        if !ignored {
            return EntryDecision::In;
        }
        if is_dir && self.has_listed_under(relative) {
            EntryDecision::EnterForTracked
        } else {
            EntryDecision::Out(OutOfScope::Ignored)
        }
    }

    /// `.git`, `.env*` and the state folder: out whatever the lists and rules say.
    fn protected(&self, relative: &str) -> Option<OutOfScope> {
        for part in relative.split('/') {
            if part == ".git" {
                return Some(OutOfScope::GitDir);
            }
            if part.starts_with(".env") {
                return Some(OutOfScope::SecretFile);
            }
        }
        let in_state = self.state_relative.iter().any(|state| {
            relative == state
                || relative
                    .strip_prefix(state.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        in_state.then_some(OutOfScope::StateFolder)
    }

    fn has_listed_under(&self, folder: &str) -> bool {
        let prefix = format!("{folder}/");
        self.frozen
            .listed_despite_rules
            .range(prefix.clone()..)
            .next()
            .is_some_and(|path| path.starts_with(&prefix))
    }

    /// What the frozen rules say about this one path (not its folders): `Some(true)` ignored,
    /// `Some(false)` explicitly re-included, `None` no rule matches.
    fn rules_decision(&self, relative: &str, is_dir: bool) -> Option<bool> {
        for matcher in &self.matchers {
            let Some(local) = matcher.local_path(relative) else {
                continue;
            };
            let found = matcher.gitignore.matched(Path::new(&local), is_dir);
            if found.is_ignore() {
                return Some(true);
            }
            if found.is_whitelist() {
                return Some(false);
            }
        }
        None
    }

    /// Whether the frozen rules ignore `relative` or one of its folders (git never
    /// re-includes a file inside an ignored folder).
    fn ignored_by_rules(&self, relative: &str, is_dir: bool) -> bool {
        let parts: Vec<&str> = relative.split('/').collect();
        (1..=parts.len()).any(|end| {
            let last = end == parts.len();
            self.rules_decision(&parts[..end].join("/"), !last || is_dir) == Some(true)
        })
    }
}

fn build_matcher(rules: &IgnoreRules) -> Result<Matcher> {
    // Paths are matched relative to the rules' folder (see `Matcher::local_path`); a root of
    // `.` tells the matcher not to strip anything itself.
    let mut builder = GitignoreBuilder::new(".");
    for line in &rules.lines {
        // A pattern git would reject is skipped the same way git skips it.
        let _ = builder.add_line(None, line);
    }
    let gitignore = builder.build().map_err(|err| Error::CorruptFile {
        path: PathBuf::from("scope.json"),
        reason: format!("ignore rules could not be compiled: {err}"),
    })?;
    let depth = match &rules.base {
        RulesBase::Inside { folder } if folder.is_empty() => 0,
        RulesBase::Inside { folder } => {
            i64::try_from(folder.split('/').count()).unwrap_or(i64::MAX)
        }
        RulesBase::Above { levels, .. } => -i64::from(*levels),
    };
    Ok(Matcher {
        base: rules.base.clone(),
        kind: rules.kind,
        depth,
        gitignore,
    })
}

/// Most specific first: folder rules by depth, then the repository's, then the global ones.
fn sort_matchers(matchers: &mut [Matcher]) {
    matchers.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.depth.cmp(&a.depth)));
}

/// The canonical workspace and the state folders, relative (inside it) and absolute.
fn locate(
    workspace: &Path,
    state_dirs: &[PathBuf],
) -> Result<(PathBuf, Vec<String>, Vec<PathBuf>)> {
    let workspace = fs_err::canonicalize(workspace)?;
    let mut relative = Vec::new();
    let mut absolute = Vec::new();
    for state in state_dirs {
        let real = resolve_partly(state);
        if let Ok(inside) = real.strip_prefix(&workspace) {
            let text: Vec<&str> = inside
                .components()
                .filter_map(|component| match component {
                    Component::Normal(part) => part.to_str(),
                    _ => None,
                })
                .collect();
            if !text.is_empty() {
                relative.push(text.join("/"));
            }
        }
        absolute.push(real);
    }
    Ok((workspace, relative, absolute))
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest, so a folder
/// that does not exist yet still compares correctly with real paths.
pub(crate) fn resolve_partly(path: &Path) -> PathBuf {
    let normalized = normalize(path);
    let mut existing = normalized.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs_err::canonicalize(&existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(std::ffi::OsStr::to_os_string),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalized,
        }
    }
}

/// Removes `.` and resolves `..` without touching the disk.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A `/`-separated relative path with no `.`, `..` or empty parts, or `None`.
fn clean_relative(raw: &str) -> Option<String> {
    let trimmed = raw.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    let clean = !trimmed.is_empty()
        && parts
            .iter()
            .all(|part| !part.is_empty() && *part != "." && *part != "..");
    clean.then(|| trimmed.to_owned())
}

pub(crate) fn join_relative(folder: &str, name: &str) -> String {
    if folder.is_empty() || folder == "." {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// Opens `path` for reading only if it is a regular file, without following a final
/// symbolic link and without ever blocking: a fifo, socket or device gives `Ok(None)`.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let mut options = fs_err::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        // O_NONBLOCK: opening a fifo with no writer would otherwise wait forever.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    {
        match fs_err::symlink_metadata(path) {
            Ok(metadata) if !metadata.is_file() => return Ok(None),
            Ok(_) => {}
            Err(err) => return Err(err),
        }
    }
    let file = options.open(path)?.into_parts().0;
    if file.metadata()?.is_file() {
        Ok(Some(file))
    } else {
        Ok(None)
    }
}

/// Reads a small regular file as text: `Ok(None)` when missing, an error reason when it is
/// not a regular file, cannot be read or is larger than `limit`.
fn read_small_regular(path: &Path, limit: u64) -> std::result::Result<Option<String>, String> {
    match fs_err::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("could not be read: {}", err.kind())),
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(
                "is a symbolic link; ignore files are only read from regular files".to_owned(),
            );
        }
        Ok(_) => {}
    }
    let file = match open_regular(path) {
        Ok(Some(file)) => file,
        Ok(None) => {
            return Err(
                "is not a regular file (a fifo, socket or device); it was not read".to_owned(),
            );
        }
        Err(err) => return Err(format!("could not be read: {}", err.kind())),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("could not be read: {}", err.kind()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "is larger than {} KiB; it was not read",
            limit / 1024
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(included: &[&str], ignored: &[&str]) -> GitListing {
        GitListing {
            included: included.iter().map(|p| (*p).to_owned()).collect(),
            ignored: ignored.iter().map(|p| (*p).to_owned()).collect(),
            outer_rules: Vec::new(),
        }
    }

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ws = fs_err::canonicalize(dir.path()).unwrap().join("ws");
        fs_err::create_dir_all(&ws).unwrap();
        (dir, ws)
    }

    #[test]
    fn decisions_table() {
        let (_dir, ws) = workspace();
        fs_err::write(
            ws.join(".gitignore"),
            "*.log\nbuild/\nprivate/\n!keep.log\n",
        )
        .unwrap();
        fs_err::create_dir_all(ws.join("web")).unwrap();
        fs_err::write(ws.join("web/.gitignore"), "/dist\n").unwrap();
        let scope = WorkspaceScope::from_git(
            &ws,
            &[ws.join(".refinery")],
            listing(
                &[
                    ".gitignore",
                    "web/.gitignore",
                    "src/a.rs",
                    "build/tracked.txt",
                ],
                &["private/", "x.log"],
            ),
        )
        .unwrap();
        let table: [(&str, bool, std::result::Result<(), OutOfScope>); 16] = [
            ("src/a.rs", false, Ok(())),
            ("src/new.rs", false, Ok(())),
            (".env", false, Err(OutOfScope::SecretFile)),
            (".env.local", false, Err(OutOfScope::SecretFile)),
            ("config/.env.production", false, Err(OutOfScope::SecretFile)),
            (".git/config", false, Err(OutOfScope::GitDir)),
            (".refinery/objects/ab", false, Err(OutOfScope::StateFolder)),
            ("private/notes.txt", false, Err(OutOfScope::IgnoredAtStart)),
            ("private", true, Err(OutOfScope::IgnoredAtStart)),
            ("x.log", false, Err(OutOfScope::IgnoredAtStart)),
            ("new.log", false, Err(OutOfScope::Ignored)),
            ("keep.log", false, Ok(())),
            ("build/out.o", false, Err(OutOfScope::Ignored)),
            // Tracked under an ignored folder: git keeps following it, so do we.
            ("build/tracked.txt", false, Ok(())),
            ("web/dist/app.js", false, Err(OutOfScope::Ignored)),
            ("dist/app.js", false, Ok(())),
        ];
        for (path, is_dir, expected) in table {
            assert_eq!(scope.check(path, is_dir), expected, "{path}");
        }
    }

    #[test]
    fn builder_tools_are_kept_off_what_was_out_of_scope_at_the_start() {
        let (_dir, ws) = workspace();
        let scope = WorkspaceScope::from_git(
            &ws,
            &[ws.join(".refinery")],
            listing(&["src/a.rs"], &["private/", "notes.local"]),
        )
        .unwrap();
        let off = scope.off_limits();
        let table: [(&str, Option<OutOfScope>); 9] = [
            ("src/a.rs", None),
            // Created by the run later, even where ignore rules match: the builder's own.
            ("build/out.o", None),
            ("notes.local", Some(OutOfScope::IgnoredAtStart)),
            ("private", Some(OutOfScope::IgnoredAtStart)),
            ("private/notes.txt", Some(OutOfScope::IgnoredAtStart)),
            (".env", Some(OutOfScope::SecretFile)),
            ("app/.env.local", Some(OutOfScope::SecretFile)),
            (".git/config", Some(OutOfScope::GitDir)),
            ("src/.git", Some(OutOfScope::GitDir)),
        ];
        for (path, expected) in table {
            assert_eq!(off.refuses(path), expected, "{path}");
        }
    }

    #[test]
    fn frozen_rules_survive_edits_and_the_round_trip() {
        let (_dir, ws) = workspace();
        fs_err::write(ws.join(".gitignore"), "secret.txt\n").unwrap();
        let scope = WorkspaceScope::from_walk(&ws, &[]).unwrap();
        assert_eq!(scope.check("secret.txt", false), Err(OutOfScope::Ignored));
        // The builder rewrites the rules: nothing changes for this run.
        fs_err::write(ws.join(".gitignore"), "").unwrap();
        let stored = scope.to_json().unwrap();
        let again = WorkspaceScope::from_json(&stored, Path::new("scope.json"), &ws, &[]).unwrap();
        assert_eq!(again.check("secret.txt", false), Err(OutOfScope::Ignored));
        assert_eq!(again.source(), ScopeSource::Walk);
    }

    #[test]
    fn rules_from_above_the_workspace_apply_with_its_path() {
        let (_dir, ws) = workspace();
        let rules = IgnoreRules {
            base: RulesBase::Above {
                levels: 2,
                workspace_path: "apps/ws".to_owned(),
            },
            kind: RulesKind::Directory,
            lines: vec!["/apps/ws/generated/".to_owned(), "*.tmp".to_owned()],
        };
        let scope = WorkspaceScope::from_git(
            &ws,
            &[],
            GitListing {
                included: vec!["a.txt".to_owned()],
                ignored: Vec::new(),
                outer_rules: vec![rules],
            },
        )
        .unwrap();
        assert_eq!(
            scope.check("generated/x.rs", false),
            Err(OutOfScope::Ignored)
        );
        assert_eq!(scope.check("deep/y.tmp", false), Err(OutOfScope::Ignored));
        assert_eq!(scope.check("src/generated.rs", false), Ok(()));
    }
}
