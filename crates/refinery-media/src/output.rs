//! Where generated files go, and how they are written.
//!
//! The rules (each has a test): a file lands inside the workspace (default `media/`), never
//! outside it, not even through a symlinked folder; it never replaces an existing file (a
//! taken name gets `_2`, `_3`…); and it appears whole or not at all — bytes go to a hidden
//! temporary file in the target folder, are synced, then linked into place without
//! clobbering, so a failure or a cancel leaves nothing behind.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::Format;
use crate::kinds::MediaMode;

/// The default folder for generated files, relative to the workspace.
pub const DEFAULT_DIR: &str = "media";

/// Where one generated file will go.
#[derive(Debug, Clone)]
pub(crate) struct OutputPlan {
    workspace: PathBuf,
    dir: PathBuf,
    stem: String,
    /// The extension the caller asked for, if `storage_path` named a file.
    requested: Option<Format>,
}

/// A file that was written.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) path: PathBuf,
    pub(crate) relative: String,
    pub(crate) size: u64,
    pub(crate) format: Format,
}

/// `path` made absolute against `workspace` and cleaned of `.` and `..` without touching
/// the disk; `None` if `..` climbs above the root.
fn lexical(workspace: &Path, path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace.join(path)
    };
    let mut clean = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                if !clean.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => clean.push(other.as_os_str()),
        }
    }
    Some(clean)
}

/// Resolves `path` (relative to the workspace, or absolute) and refuses anything that is,
/// or through a symlink leads, outside the workspace. The path need not exist.
pub(crate) fn confine(workspace: &Path, path: &Path) -> Result<PathBuf> {
    let root = fs_err::canonicalize(workspace)?;
    let outside = || Error::OutsideWorkspace {
        path: path.to_path_buf(),
        workspace: root.clone(),
    };
    let clean = lexical(&root, path).ok_or_else(outside)?;
    if !clean.starts_with(&root) {
        return Err(outside());
    }
    // The deepest part that exists decides where symlinks really lead.
    let mut existing = clean.as_path();
    while !existing.exists() {
        existing = existing.parent().ok_or_else(outside)?;
    }
    let real = fs_err::canonicalize(existing)?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    // `join("")` would add a trailing slash, which turns a file path into a folder path.
    match clean.strip_prefix(existing) {
        Ok(rest) if !rest.as_os_str().is_empty() => Ok(real.join(rest)),
        _ => Ok(real),
    }
}

/// A short, filesystem-safe slug of the prompt.
fn slug(prompt: &str) -> String {
    let mut slug = String::new();
    for character in prompt.chars() {
        if slug.len() >= 40 {
            break;
        }
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
        } else if !slug.ends_with('_') && !slug.is_empty() {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_').to_string();
    if slug.is_empty() {
        "media".to_string()
    } else {
        slug
    }
}

impl OutputPlan {
    /// Plans the output of one call. `storage_path` is a folder, or a file name whose
    /// extension names a format (`assets/hero.png`).
    pub(crate) fn new(
        workspace: &Path,
        storage_path: Option<&str>,
        mode: MediaMode,
        prompt: &str,
        now: OffsetDateTime,
    ) -> Result<Self> {
        let raw = storage_path
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .unwrap_or(DEFAULT_DIR);
        let target = confine(workspace, Path::new(raw))?;
        let named = target
            .extension()
            .and_then(|extension| extension.to_str())
            .and_then(Format::from_extension);
        let stamp = format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let (dir, stem, requested) = match named {
            Some(format) => {
                let stem = target
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .map_or_else(|| slug(prompt), ToString::to_string);
                let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
                (dir, stem, Some(format))
            }
            None => (
                target,
                format!("{stamp}_{}_{}", mode.as_str(), slug(prompt)),
                None,
            ),
        };
        Ok(Self {
            workspace: fs_err::canonicalize(workspace)?,
            dir,
            stem,
            requested,
        })
    }

    /// The format a caller asked for by extension, if any.
    pub(crate) fn requested_format(&self) -> Option<Format> {
        self.requested
    }

    /// Writes `bytes` as a new file in the planned folder with `format`'s extension.
    pub(crate) fn write_new(&self, bytes: &[u8], format: Format) -> Result<Written> {
        fs_err::create_dir_all(&self.dir)?;
        // Created folders must still be inside (a racing symlink swap would show here).
        let dir = confine(&self.workspace, &self.dir)?;
        let mut temporary = tempfile::Builder::new()
            .prefix(".refinery-media-")
            .suffix(".part")
            .tempfile_in(&dir)?;
        temporary.write_all(bytes)?;
        temporary.as_file().sync_all()?;
        let extension = format.extension();
        for attempt in 1..=1000_u32 {
            let name = if attempt == 1 {
                format!("{}.{extension}", self.stem)
            } else {
                format!("{}_{attempt}.{extension}", self.stem)
            };
            let path = dir.join(&name);
            match temporary.persist_noclobber(&path) {
                Ok(_) => {
                    let relative = path
                        .strip_prefix(&self.workspace)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    return Ok(Written {
                        path,
                        relative,
                        size: bytes.len() as u64,
                        format,
                    });
                }
                Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    temporary = error.file;
                }
                Err(error) => return Err(Error::Io(error.error)),
            }
        }
        Err(Error::invalid(
            "storage_path",
            "a thousand files with this name exist already; pick another folder",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-01 10:20:30 UTC)
    }

    #[test]
    fn default_folder_and_collision_safe_names() {
        let dir = tempfile::tempdir().unwrap();
        let plan = OutputPlan::new(
            dir.path(),
            None,
            MediaMode::Image,
            "A red fox, at dusk!",
            now(),
        )
        .unwrap();
        let first = plan.write_new(b"one", Format::Png).unwrap();
        let second = plan.write_new(b"two", Format::Png).unwrap();
        assert_eq!(
            first.relative,
            "media/20261201_102030_image_a_red_fox_at_dusk.png"
        );
        assert_eq!(
            second.relative,
            "media/20261201_102030_image_a_red_fox_at_dusk_2.png"
        );
        assert_eq!(fs_err::read(&first.path).unwrap(), b"one");
        assert_eq!(fs_err::read(&second.path).unwrap(), b"two");
        let leftovers: Vec<_> = fs_err::read_dir(dir.path().join("media"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary file stays: {leftovers:?}");
    }

    #[test]
    fn a_named_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("assets")).unwrap();
        fs_err::write(dir.path().join("assets/hero.png"), b"user's file").unwrap();
        let plan = OutputPlan::new(
            dir.path(),
            Some("assets/hero.png"),
            MediaMode::Image,
            "x",
            now(),
        )
        .unwrap();
        assert_eq!(plan.requested_format(), Some(Format::Png));
        let written = plan.write_new(b"new", Format::Png).unwrap();
        assert_eq!(written.relative, "assets/hero_2.png");
        assert_eq!(
            fs_err::read(dir.path().join("assets/hero.png")).unwrap(),
            b"user's file"
        );
    }

    #[test]
    fn paths_outside_the_workspace_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let workspace = root.path().join("ws");
        let elsewhere = root.path().join("elsewhere");
        fs_err::create_dir_all(&workspace).unwrap();
        fs_err::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, workspace.join("link")).unwrap();
        let refused = [
            "../out",
            "media/../../out",
            "/tmp",
            "link",
            "link/deeper/file.png",
        ];
        for path in refused {
            let error =
                OutputPlan::new(&workspace, Some(path), MediaMode::Audio, "x", now()).unwrap_err();
            assert_eq!(error.code(), "outside_workspace", "{path}: {error}");
        }
        assert!(fs_err::read_dir(&elsewhere).unwrap().next().is_none());
        let inside = confine(&workspace, Path::new("a/./b/../c")).unwrap();
        assert!(inside.ends_with("ws/a/c"), "{}", inside.display());
    }
}
