//! Which files changed between two rounds' snapshots, with unified diffs of the text ones.
//!
//! Both versions are scrubbed *before* diffing, so a diff can never show a secret that one
//! side held, and bounded: a report stays a file a browser opens quickly whatever the run
//! produced. What a bound leaves out is said in the report, never dropped silently.

use std::collections::BTreeMap;
use std::time::Duration;

use refinery_core::{ManifestEntry, ObjectStore};
use similar::TextDiff;

use crate::scrub::{Scrub, Text};

/// Larger files are listed with their sizes but not diffed.
const MAX_DIFF_INPUT: u64 = 512 * 1024;
/// A file's diff is cut after this many bytes.
const MAX_DIFF_OUTPUT: usize = 64 * 1024;
/// How long one file's diff may take before the diff algorithm settles for a coarser result.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// What happened to one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Removed,
    Modified,
}

impl ChangeKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
        }
    }
}

/// The body of a change as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DiffBody {
    /// A unified diff; `truncated` when it was cut at the size bound.
    Unified { text: Text, truncated: bool },
    /// Not diffed, and why (binary, too large, unreadable).
    Omitted(&'static str),
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileChange {
    pub(crate) path: Text,
    pub(crate) kind: ChangeKind,
    pub(crate) old_size: Option<u64>,
    pub(crate) new_size: Option<u64>,
    pub(crate) body: DiffBody,
}

/// The changes from `before` to `after`, sorted by path. `budget` is the diff text the
/// whole report may still hold; each diff uses some of it, and once it is spent diffs are
/// omitted with that reason.
pub(crate) fn changes(
    objects: &ObjectStore,
    before: &[ManifestEntry],
    after: &[ManifestEntry],
    scrub: &Scrub,
    budget: &mut usize,
) -> Vec<FileChange> {
    let old: BTreeMap<&str, &ManifestEntry> = before
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let new: BTreeMap<&str, &ManifestEntry> = after
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let mut paths: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (old, new) = (old.get(path).copied(), new.get(path).copied());
            let kind = match (old, new) {
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (Some(old), Some(new)) if old.hash != new.hash => ChangeKind::Modified,
                _ => return None,
            };
            Some(FileChange {
                path: scrub.text(path),
                kind,
                old_size: old.map(|entry| entry.size),
                new_size: new.map(|entry| entry.size),
                body: body(objects, path, old, new, scrub, budget),
            })
        })
        .collect()
}

fn body(
    objects: &ObjectStore,
    path: &str,
    old: Option<&ManifestEntry>,
    new: Option<&ManifestEntry>,
    scrub: &Scrub,
    budget: &mut usize,
) -> DiffBody {
    if [old, new]
        .into_iter()
        .flatten()
        .any(|entry| entry.size > MAX_DIFF_INPUT)
    {
        return DiffBody::Omitted("too large to diff here");
    }
    if *budget == 0 {
        return DiffBody::Omitted("the report's space for diffs is used up");
    }
    let read = |entry: Option<&ManifestEntry>| -> Result<String, &'static str> {
        let Some(entry) = entry else {
            return Ok(String::new());
        };
        let bytes = objects
            .read_object(&entry.hash)
            .map_err(|_| "its stored copy could not be read")?;
        if bytes.contains(&0) {
            return Err("binary");
        }
        String::from_utf8(bytes).map_err(|_| "binary")
    };
    let (old_text, new_text) = match (read(old), read(new)) {
        (Ok(old), Ok(new)) => (scrub.text(&old), scrub.text(&new)),
        (Err(reason), _) | (_, Err(reason)) => return DiffBody::Omitted(reason),
    };
    let diff = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old_text.as_str(), new_text.as_str());
    let old_name = if old.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".to_owned()
    };
    let new_name = if new.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".to_owned()
    };
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string();
    let limit = MAX_DIFF_OUTPUT.min(*budget);
    let truncated = text.len() > limit;
    if truncated {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // End on a whole line.
        cut = text[..cut].rfind('\n').map_or(cut, |newline| newline + 1);
        text.truncate(cut);
    }
    // A diff cut by the report's budget spends all of it: the next one would be cut to nothing.
    *budget = if truncated && limit == *budget {
        0
    } else {
        budget.saturating_sub(text.len())
    };
    // The texts were scrubbed before diffing; scrubbing the diff again only re-checks.
    DiffBody::Unified {
        text: scrub.text(&text),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refinery_core::snapshot::{EntryKind, take_snapshot};

    fn snapshot(
        store: &ObjectStore,
        dir: &std::path::Path,
        files: &[(&str, &[u8])],
    ) -> Vec<ManifestEntry> {
        if dir.exists() {
            fs_err::remove_dir_all(dir).unwrap();
        }
        fs_err::create_dir_all(dir).unwrap();
        for (path, bytes) in files {
            fs_err::write(dir.join(path), bytes).unwrap();
        }
        take_snapshot(store, dir, &[], &[".".to_owned()])
            .unwrap()
            .entries
    }

    #[test]
    fn adds_removes_and_edits_with_secrets_masked_and_binaries_omitted() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("objects"));
        let work = temp.path().join("work");
        let key = format!("ghp_{}{}", "R4nd0mT0k3nV4lu3xYz12", "q9W8e7R6t5Y4u3I");
        let before = snapshot(
            &store,
            &work,
            &[
                ("a.txt", b"one\ntwo\nthree\n"),
                ("gone.txt", b"bye\n"),
                ("img.bin", b"\0\x01"),
            ],
        );
        let after = snapshot(
            &store,
            &work,
            &[
                ("a.txt", format!("one\n2 {key}\nthree\n").as_bytes()),
                ("new.txt", b"hello\n"),
                ("img.bin", b"\0\x02"),
            ],
        );
        assert!(after.iter().all(|entry| entry.kind == EntryKind::File));
        let mut budget = usize::MAX;
        let changes = changes(&store, &before, &after, &Scrub::default(), &mut budget);
        let summary: Vec<(&str, ChangeKind)> = changes
            .iter()
            .map(|change| (change.path.as_str(), change.kind))
            .collect();
        assert_eq!(
            summary,
            [
                ("a.txt", ChangeKind::Modified),
                ("gone.txt", ChangeKind::Removed),
                ("img.bin", ChangeKind::Modified),
                ("new.txt", ChangeKind::Added)
            ]
        );
        let DiffBody::Unified { text, truncated } = &changes[0].body else {
            panic!("a.txt should be diffed");
        };
        assert!(!truncated);
        assert!(
            text.as_str()
                .contains("--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+2 [REDACTED:"),
            "{}",
            text.as_str()
        );
        assert!(!text.as_str().contains(&key));
        assert_eq!(changes[2].body, DiffBody::Omitted("binary"));
        let DiffBody::Unified { text, .. } = &changes[3].body else {
            panic!("new.txt should be diffed");
        };
        assert!(text.as_str().starts_with("--- /dev/null\n+++ b/new.txt\n"));
    }

    #[test]
    fn the_budget_cuts_diffs_on_line_boundaries_then_omits_them() {
        let temp = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(temp.path().join("objects"));
        let work = temp.path().join("work");
        let long = (0..2000).fold(String::new(), |mut text, line| {
            text.push_str("line ");
            text.push_str(&line.to_string());
            text.push('\n');
            text
        });
        let before = snapshot(&store, &work, &[("a.txt", b""), ("b.txt", b"")]);
        let after = snapshot(
            &store,
            &work,
            &[("a.txt", long.as_bytes()), ("b.txt", long.as_bytes())],
        );
        let mut budget = 1000;
        let changes = changes(&store, &before, &after, &Scrub::default(), &mut budget);
        let DiffBody::Unified { text, truncated } = &changes[0].body else {
            panic!("a.txt should be diffed");
        };
        assert!(*truncated && text.as_str().len() <= 1000 && text.as_str().ends_with('\n'));
        assert_eq!(
            changes[1].body,
            DiffBody::Omitted("the report's space for diffs is used up")
        );
    }
}
