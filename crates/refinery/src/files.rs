//! Files and folders named on the command line.
//!
//! Only a regular file is ever read, and only a regular file or a folder is ever used as a
//! deliverable: a fifo would block the command forever, a device would never end, a socket
//! cannot be read at all. Reading opens the path without blocking (`O_NONBLOCK`, which means
//! nothing for a regular file) and checks what was opened, so a path swapped for a fifo
//! between a check and the read cannot hang the command either.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};

/// What a non-regular file is, for messages.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_fifo() {
        "a named pipe (fifo)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file `path` given to `flag`, as text; anything else is refused with an
/// error naming the flag, without reading.
pub(crate) fn read_argument_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    #[allow(
        clippy::disallowed_methods,
        reason = "fs_err's OpenOptions has no custom_flags; the error gets the path below"
    )]
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {flag} `{}`", path.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot inspect {flag} `{}`", path.display()))?;
    if !metadata.is_file() {
        bail!(
            "{flag} `{}` is {}, not a regular file; it was not read. Give a file",
            path.display(),
            kind_of(metadata.file_type())
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {flag} `{}` as UTF-8 text", path.display()))?;
    Ok(text)
}

/// Refuses `path` (given as `what`) unless it is a regular file or a folder.
pub(crate) fn require_file_or_folder(path: &Path, what: &str) -> anyhow::Result<()> {
    let metadata =
        fs_err::metadata(path).with_context(|| format!("{what} `{}`", path.display()))?;
    if metadata.is_file() || metadata.is_dir() {
        return Ok(());
    }
    bail!(
        "{what} `{}` is {}; only regular files and folders can be used",
        path.display(),
        kind_of(metadata.file_type())
    )
}

/// Refuses `path` (given as `what`) unless it is a regular file.
pub(crate) fn require_regular_file(path: &Path, what: &str) -> anyhow::Result<()> {
    let metadata =
        fs_err::metadata(path).with_context(|| format!("{what} `{}`", path.display()))?;
    if metadata.is_file() {
        return Ok(());
    }
    bail!(
        "{what} `{}` is {}, not a regular file; give a file",
        path.display(),
        kind_of(metadata.file_type())
    )
}

/// A clap value parser for a count of seconds (or other units) that must not be zero: a zero
/// timeout or budget would stop every call at once, so it is refused with an explanation.
pub(crate) fn positive_u64(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(0) => {
            Err("must be more than zero (a zero limit would stop everything at once)".to_owned())
        }
        Ok(value) => Ok(value),
        Err(_) => Err(format!("`{raw}` is not a whole number")),
    }
}

/// [`positive_u64`] for `u32` values (round caps, presses).
pub(crate) fn positive_u32(raw: &str) -> Result<u32, String> {
    let value = positive_u64(raw)?;
    u32::try_from(value).map_err(|_| format!("`{raw}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("criteria.txt");
        fs_err::write(&file, "E1: works").unwrap();
        assert_eq!(
            read_argument_file(&file, "--criteria-file").unwrap(),
            "E1: works"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Would block forever if it were opened for a plain read.
        let error = read_argument_file(&fifo, "--criteria-file").unwrap_err();
        assert!(
            format!("{error:#}").contains("is a named pipe (fifo), not a regular file"),
            "{error:#}"
        );
        let error = read_argument_file(dir.path(), "--schema").unwrap_err();
        assert!(format!("{error:#}").contains("is a folder"), "{error:#}");
        assert!(require_file_or_folder(&fifo, "the deliverable").is_err());
        assert!(require_file_or_folder(dir.path(), "the deliverable").is_ok());
        assert!(require_regular_file(&fifo, "--prior-answer").is_err());
    }

    #[test]
    fn zero_limits_are_refused() {
        assert_eq!(positive_u64("30"), Ok(30));
        assert!(positive_u64("0").unwrap_err().contains("more than zero"));
        assert!(positive_u64("-1").is_err());
        assert!(positive_u32("0").is_err());
        assert_eq!(positive_u32("5"), Ok(5));
    }
}
