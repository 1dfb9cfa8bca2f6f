//! Hermetic test directories and the environment maps tests hand to child processes.
//!
//! Isolation a [`TestContext`] applies: a fresh temp root holding a throwaway `HOME`, a
//! project folder, a state dir and a `TMPDIR`; child environments are built from scratch
//! (only `PATH` is inherited, and only when asked), so the developer's keys, config files
//! and proxies never reach a test. The process environment is never mutated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A throwaway HOME, project folder and state dir under one temp root.
pub struct TestContext {
    root: tempfile::TempDir,
}

impl TestContext {
    pub fn new() -> std::io::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("refinery-test-")
            .tempdir()?;
        for dir in ["home", "project", "tmp"] {
            fs_err::create_dir_all(root.path().join(dir))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }

    /// The state dir tests pass with `--state-dir` (inside the project, like the default).
    pub fn state_dir(&self) -> PathBuf {
        self.project().join(".refinery")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Write a file relative to the temp root, creating parent folders.
    pub fn write(&self, relative: &str, contents: &str) -> std::io::Result<PathBuf> {
        let path = self.root.path().join(relative);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&path, contents)?;
        Ok(path)
    }

    /// A minimal child environment: throwaway HOME and TMPDIR, no inherited variables, empty PATH.
    pub fn bare_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("HOME".to_string(), self.home().display().to_string());
        env.insert("TMPDIR".to_string(), self.tmp().display().to_string());
        env.insert("PATH".to_string(), String::new());
        env.insert("NO_COLOR".to_string(), "1".to_string());
        env
    }

    /// [`Self::bare_env`] plus the given directories and the inherited `PATH` (so `node`,
    /// `git` and the agent CLIs are found).
    pub fn env_with_path(&self, extra_dirs: &[PathBuf]) -> BTreeMap<String, String> {
        let mut env = self.bare_env();
        let mut parts: Vec<String> = extra_dirs
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        if let Some(path) = std::env::var_os("PATH") {
            parts.push(path.to_string_lossy().into_owned());
        }
        env.insert("PATH".to_string(), parts.join(":"));
        env
    }
}
