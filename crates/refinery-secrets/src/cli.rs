//! The scan and install drivers behind `refinery secrets ...`, independent of clap: the binary
//! resolves flags, environment and stdin into [`ScanOptions`] / [`InstallOptions`] and calls
//! [`run_scan`] / [`run_install`], which write to the given streams and return the exit status.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{AllowedPaths, CONFIG_FILE_NAME, Config};
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::git::{Additions, Git};
use crate::ignore_file::{IGNORE_FILE_NAME, IgnoreList};
use crate::report::render;
use crate::scanner::Scanner;
use crate::walk::{FileContent, display_path, is_binary, list_files, read_file};

pub use crate::git::PushUpdate;
pub use crate::hooks::{HookKind, InstallOptions, InstalledHook, install};
pub use crate::report::{OutputFormat, ScanReport, ScanStats, ScanStatus};
pub use crate::walk::IgnoreRules;

/// Files above this size are skipped (and counted) unless the config or a flag says otherwise:
/// secrets live in config and source files, and megabytes of generated data only cost time.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// What to scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanTarget {
    /// Files and directories (walked, gitignore-aware).
    Paths(Vec<PathBuf>),
    /// Lines added in the staged diff (`git diff --cached`).
    Staged,
    /// Lines added by the commits being pushed.
    PrePush(PrePushSource),
    /// Lines added by the commits in `REV..HEAD`.
    Since(String),
}

/// Where the pre-push mode learns what is being pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrePushSource {
    /// git's pre-push hook stdin, and the remote name git passed as `$1` (if known).
    Stdin {
        /// The hook's stdin, read by the caller.
        input: String,
        /// The remote's name, to exclude what its remote-tracking refs already have.
        remote: Option<String>,
    },
    /// The pre-commit framework's `PRE_COMMIT_FROM_REF`..`PRE_COMMIT_TO_REF`.
    Range {
        /// What the remote has.
        from: String,
        /// What is being pushed.
        to: String,
    },
    /// The pre-commit framework pushing a new branch with its root commit: everything
    /// reachable from `local` that no ref of `remote` has.
    NewBranch {
        /// `PRE_COMMIT_LOCAL_BRANCH`.
        local: String,
        /// `PRE_COMMIT_REMOTE_NAME`.
        remote: String,
    },
}

/// Options of one scan, fully resolved (no clap types, no environment lookups here).
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// What to scan.
    pub target: ScanTarget,
    /// How to print the result.
    pub format: OutputFormat,
    /// The directory the command runs in; relative paths and git discovery start here.
    pub working_dir: PathBuf,
    /// Config file; default: `.refinery-secrets.toml` at the root.
    pub config_path: Option<PathBuf>,
    /// Ignore file; default: `.refinery-secrets-ignore` at the root.
    pub ignore_path: Option<PathBuf>,
    /// Size limit override (bytes).
    pub max_file_size: Option<u64>,
    /// Whether path scans honour `.gitignore`.
    pub ignore_rules: IgnoreRules,
}

impl ScanOptions {
    /// Options for `target` in `working_dir` with every other setting at its default.
    pub fn new(target: ScanTarget, working_dir: impl Into<PathBuf>) -> Self {
        Self {
            target,
            format: OutputFormat::Human,
            working_dir: working_dir.into(),
            config_path: None,
            ignore_path: None,
            max_file_size: None,
            ignore_rules: IgnoreRules::Respect,
        }
    }
}

/// Runs a scan and renders it to `stdout`/`stderr`. Returns how it ended; a failure to write
/// the report is itself a failure.
pub fn run_scan(
    options: &ScanOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ScanStatus {
    let (report, setup) = scan(options);
    let scanner: &Scanner = match &setup {
        Some(setup) => setup.scanner(),
        None => Scanner::builtin(),
    };
    match render(&report, options.format, scanner, stdout, stderr) {
        Ok(()) => report.status(),
        Err(error) => {
            // stderr may be the broken stream; nothing more can be done than the status.
            let _ = writeln!(stderr, "error: {error}");
            ScanStatus::Failed
        }
    }
}

/// Runs a scan and returns the report without rendering it (for callers that render
/// themselves, e.g. the engine before sending files to a model).
pub fn scan_report(options: &ScanOptions) -> ScanReport {
    scan(options).0
}

/// The scan, with its setup when it could be loaded (the renderer lists the configured rules).
fn scan(options: &ScanOptions) -> (ScanReport, Option<Setup>) {
    let mut report = ScanReport::default();
    let setup = match Setup::load(options) {
        Ok(setup) => setup,
        Err(error) => {
            report.errors.push(error.to_string());
            return (report, None);
        }
    };
    let result = match &options.target {
        ScanTarget::Paths(paths) => {
            setup.scan_paths(options, paths, &mut report);
            Ok(())
        }
        ScanTarget::Staged => setup
            .git()
            .and_then(Git::staged_additions)
            .map(|additions| setup.scan_additions(&additions, &mut report)),
        ScanTarget::Since(revision) => setup
            .git()
            .and_then(|git| git.log_additions(&[format!("{revision}..HEAD")]))
            .map(|additions| setup.scan_additions(&additions, &mut report)),
        ScanTarget::PrePush(source) => setup.scan_pre_push(source, &mut report),
    };
    if let Err(error) = result {
        report.errors.push(error.to_string());
    }
    report.findings.sort_by(|left, right| {
        (&left.path, &left.commit, left.line, left.column).cmp(&(
            &right.path,
            &right.commit,
            right.line,
            right.column,
        ))
    });
    (report, Some(setup))
}

struct Setup {
    root: PathBuf,
    git: Option<Git>,
    /// `None`: the built-in rules, compiled once per process.
    configured_scanner: Option<Scanner>,
    ignore_list: IgnoreList,
    allowed_paths: AllowedPaths,
    max_file_size: u64,
}

impl Setup {
    fn load(options: &ScanOptions) -> Result<Self> {
        let needs_git = !matches!(options.target, ScanTarget::Paths(_));
        let git = match Git::discover(&options.working_dir) {
            Ok(git) => Some(git),
            Err(error) if needs_git => return Err(error),
            Err(_) => None,
        };
        let root = git
            .as_ref()
            .map_or_else(|| options.working_dir.clone(), |git| git.root().to_owned());
        let config_path = options
            .config_path
            .clone()
            .unwrap_or_else(|| root.join(CONFIG_FILE_NAME));
        let config = Config::load(&config_path)?;
        let ignore_path = options
            .ignore_path
            .clone()
            .unwrap_or_else(|| root.join(IGNORE_FILE_NAME));
        let ignore_list = IgnoreList::load(&ignore_path)?;
        let allowed_paths = config.allowed_paths(&root, &config_path)?;
        let configured_scanner = if config.rules.is_empty() && config.disable.is_empty() {
            None
        } else {
            Some(config.scanner()?)
        };
        Ok(Self {
            root,
            git,
            configured_scanner,
            ignore_list,
            allowed_paths,
            max_file_size: options
                .max_file_size
                .or(config.max_file_size)
                .unwrap_or(DEFAULT_MAX_FILE_SIZE),
        })
    }

    fn scanner(&self) -> &Scanner {
        self.configured_scanner
            .as_ref()
            .unwrap_or_else(|| Scanner::builtin())
    }

    fn git(&self) -> Result<&Git> {
        self.git.as_ref().ok_or_else(|| Error::GitParse {
            what: "not inside a git repository".to_owned(),
        })
    }

    fn scan_paths(&self, options: &ScanOptions, paths: &[PathBuf], report: &mut ScanReport) {
        let paths: Vec<PathBuf> = if paths.is_empty() {
            vec![options.working_dir.clone()]
        } else {
            paths
                .iter()
                .map(|path| options.working_dir.join(path))
                .collect()
        };
        let (files, walk_errors) = list_files(&paths, options.ignore_rules);
        report
            .errors
            .extend(walk_errors.iter().map(ToString::to_string));
        for file in files {
            let shown = self.shown_path(&file);
            match read_file(&file, self.max_file_size) {
                Ok(FileContent::Text(bytes)) => {
                    report.stats.files_scanned += 1;
                    report.stats.bytes_scanned += bytes.len() as u64;
                    for mut finding in self.scanner().scan(&bytes) {
                        finding.path = Some(shown.clone());
                        self.keep(finding, report);
                    }
                }
                Ok(FileContent::Binary) => report.stats.skipped_binary += 1,
                Ok(FileContent::TooLarge) => report.stats.skipped_too_large += 1,
                Err(error) => report.errors.push(error.to_string()),
            }
        }
    }

    /// Root-relative when the file is under the root, as given otherwise.
    fn shown_path(&self, file: &Path) -> String {
        file.strip_prefix(&self.root)
            .map_or_else(|_| display_path(file), display_path)
    }

    fn scan_additions(&self, additions: &Additions, report: &mut ScanReport) {
        let mut seen = BTreeSet::new();
        for file in &additions.files {
            let size: usize = file.blocks.iter().map(|block| block.text.len()).sum();
            if file.binary || file.blocks.iter().any(|block| is_binary(&block.text)) {
                report.stats.skipped_binary += 1;
                continue;
            }
            if size as u64 > self.max_file_size {
                report.stats.skipped_too_large += 1;
                continue;
            }
            if file.blocks.is_empty() {
                continue;
            }
            report.stats.files_scanned += 1;
            report.stats.bytes_scanned += size as u64;
            for block in &file.blocks {
                for mut finding in self.scanner().scan(&block.text) {
                    finding.line += block.first_line - 1;
                    finding.path = Some(file.path.clone());
                    finding.commit.clone_from(&file.commit);
                    let key = (
                        finding.commit.clone(),
                        file.path.clone(),
                        finding.line,
                        finding.column,
                        finding.rule_id.clone(),
                    );
                    if seen.insert(key) {
                        self.keep(finding, report);
                    }
                }
            }
        }
        report.stats.commits_scanned += additions.commits as u64;
    }

    fn scan_pre_push(&self, source: &PrePushSource, report: &mut ScanReport) -> Result<()> {
        let git = self.git()?;
        let revision_sets: Vec<Vec<String>> = match source {
            PrePushSource::Stdin { input, remote } => {
                let mut sets = Vec::new();
                for update in crate::git::parse_pre_push(input)? {
                    if let Some(revisions) = git.push_revisions(&update, remote.as_deref()) {
                        sets.push(revisions);
                    }
                }
                sets
            }
            PrePushSource::Range { from, to } => vec![vec![to.clone(), format!("^{from}")]],
            PrePushSource::NewBranch { local, remote } => vec![vec![
                local.clone(),
                "--not".to_owned(),
                format!("--remotes={remote}"),
            ]],
        };
        let mut additions = Additions::default();
        for revisions in &revision_sets {
            let more = git.log_additions(revisions)?;
            additions.files.extend(more.files);
            additions.commits += more.commits;
        }
        self.scan_additions(&additions, report);
        Ok(())
    }

    fn keep(&self, finding: Finding, report: &mut ScanReport) {
        let path = finding.path.as_deref();
        let ignored = self.ignore_list.is_ignored(finding.fingerprint, path)
            || path.is_some_and(|path| self.allowed_paths.is_allowed(path));
        if ignored {
            report.stats.ignored_findings += 1;
        } else {
            report.findings.push(finding);
        }
    }
}

/// Installs the plain git hooks and reports what was written. Returns the exit code: 0 on
/// success, 2 when a hook could not be installed (a foreign hook without `--force`, I/O).
pub fn run_install(options: &InstallOptions, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    match install(options) {
        Ok(installed) => {
            for hook in installed {
                let written = writeln!(stdout, "installed {}", hook.path.display()).and_then(
                    |()| match &hook.backup {
                        Some(backup) => {
                            writeln!(stdout, "  previous hook kept as {}", backup.display())
                        }
                        None => Ok(()),
                    },
                );
                if written.is_err() {
                    return 2;
                }
            }
            0
        }
        Err(error) => {
            let _ = writeln!(stderr, "error: {error}");
            2
        }
    }
}
