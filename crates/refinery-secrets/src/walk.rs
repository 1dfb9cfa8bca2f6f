//! Which files a path scan reads, and how: gitignore-aware walking (hidden files included:
//! `.env` files are where secrets live), binary and oversized files skipped and counted.

use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

use crate::error::{Error, Result};

/// git's own heuristic: a NUL byte in the first 8000 bytes means binary.
const BINARY_SNIFF: usize = 8000;

/// What reading a candidate file gave.
pub(crate) enum FileContent {
    Text(Vec<u8>),
    Binary,
    TooLarge,
}

/// Refuses `path` (a config or ignore file) if it exists and is not a regular file, so a fifo
/// never blocks the scan.
pub(crate) fn require_regular(path: &Path) -> Result<()> {
    match fs_err::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Err(Error::NotRegular {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Whether a walk honours `.gitignore` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreRules {
    /// Skip what git ignores (the default: build output, vendored trees).
    Respect,
    /// Scan everything except `.git` directories.
    Disregard,
}

/// Lists the files under `paths` (files given directly are always included). Walk errors do
/// not stop the walk; they are returned so the caller can report them and fail the scan.
pub(crate) fn list_files(
    paths: &[PathBuf],
    ignore_rules: IgnoreRules,
) -> (Vec<PathBuf>, Vec<Error>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if !path.exists() {
            errors.push(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("`{}` does not exist", path.display()),
            )));
            continue;
        }
        if let Ok(metadata) = fs_err::metadata(path)
            && !metadata.is_file()
            && !metadata.is_dir()
        {
            errors.push(Error::NotRegular { path: path.clone() });
            continue;
        }
        let respect = ignore_rules == IgnoreRules::Respect;
        let walker = WalkBuilder::new(path)
            .hidden(false)
            .parents(respect)
            .ignore(respect)
            .git_ignore(respect)
            .git_global(respect)
            .git_exclude(respect)
            .filter_entry(|entry| entry.file_name() != ".git")
            .build();
        for entry in walker {
            match entry {
                Ok(entry) => {
                    if entry.file_type().is_some_and(|kind| kind.is_file()) {
                        files.push(entry.into_path());
                    }
                }
                Err(error) => errors.push(Error::Walk {
                    path: path.clone(),
                    source: Box::new(error),
                }),
            }
        }
    }
    files.sort();
    files.dedup();
    (files, errors)
}

/// Reads a file unless it is larger than `max_size` or binary; anything but a regular file is
/// refused unread.
pub(crate) fn read_file(path: &Path, max_size: u64) -> Result<FileContent> {
    let metadata = fs_err::metadata(path)?;
    if !metadata.is_file() {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if metadata.len() > max_size {
        return Ok(FileContent::TooLarge);
    }
    let bytes = fs_err::read(path)?;
    if is_binary(&bytes) {
        return Ok(FileContent::Binary);
    }
    Ok(FileContent::Text(bytes))
}

pub(crate) fn is_binary(bytes: &[u8]) -> bool {
    memchr::memchr(0, &bytes[..bytes.len().min(BINARY_SNIFF)]).is_some()
}

/// How a path is shown in findings: as given, without a leading `./`, `/` separators.
pub(crate) fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    text.strip_prefix("./").map(str::to_owned).unwrap_or(text)
}
