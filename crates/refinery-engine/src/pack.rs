//! A deliverable as text for a judge: every file listed, text files shown in full up to a
//! bound, known secret values masked.
//!
//! Judges that are agent CLIs also get the files on disk; API models only see this. Both read
//! the same snapshot, so what is judged is exactly what was submitted.

use std::fmt::Write as _;

use refinery_core::snapshot::EntryKind;
use refinery_core::{ManifestEntry, ObjectStore};

/// Largest single file shown in full.
const FILE_LIMIT: usize = 48 * 1024;
/// Most text shown for a whole deliverable.
const TOTAL_LIMIT: usize = 240 * 1024;

/// Masks secrets in text that goes to a model or is saved: the one scrubber of
/// `refinery-secrets` (known credential values and key-shaped text).
pub use refinery_secrets::Scrubber;

/// How a model gets to see a deliverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The file list only: the model has the files on disk (an agent CLI) and opens them
    /// itself. Also keeps briefs small enough for CLIs that take the prompt as one argument
    /// (Linux caps a single argument at 128 KiB).
    Listing,
    /// The file list and the text of the files, up to a total size.
    Contents,
}

/// Renders `entries` for `view`.
pub fn render_view(
    view: View,
    store: &ObjectStore,
    entries: &[ManifestEntry],
    scrubber: &Scrubber,
) -> String {
    match view {
        View::Listing => listing(entries),
        View::Contents => render(store, entries, scrubber),
    }
}

fn listing(entries: &[ManifestEntry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("(the deliverable has no files)\n");
        return out;
    }
    out.push_str("Files:\n");
    for entry in entries {
        let _ = writeln!(out, "- {} ({} bytes)", entry.path, entry.size);
    }
    out
}

/// [`render_view`] for judges asked to cite `path:line`: with [`View::Contents`] every line
/// of a text file is shown with its number, so the judge need not count.
pub fn render_view_numbered(
    view: View,
    store: &ObjectStore,
    entries: &[ManifestEntry],
    scrubber: &Scrubber,
) -> String {
    match view {
        View::Listing => listing(entries),
        View::Contents => render_files(store, entries, scrubber, TOTAL_LIMIT, Lines::Numbered),
    }
}

/// Whether file contents are shown with line numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lines {
    /// As they are (builders copy text back from what they are shown).
    Plain,
    /// `   7| text`, for judges who cite lines.
    Numbered,
}

/// Renders `entries` as a listing followed by the contents of the text files.
pub fn render(store: &ObjectStore, entries: &[ManifestEntry], scrubber: &Scrubber) -> String {
    render_limited(store, entries, scrubber, TOTAL_LIMIT)
}

/// [`render`] with a smaller total for the file contents.
pub fn render_limited(
    store: &ObjectStore,
    entries: &[ManifestEntry],
    scrubber: &Scrubber,
    total_limit: usize,
) -> String {
    render_files(store, entries, scrubber, total_limit, Lines::Plain)
}

fn render_files(
    store: &ObjectStore,
    entries: &[ManifestEntry],
    scrubber: &Scrubber,
    total_limit: usize,
    lines: Lines,
) -> String {
    let mut out = listing(entries);
    if entries.is_empty() {
        return out;
    }
    let mut shown = 0usize;
    for entry in entries {
        if entry.kind == EntryKind::Symlink {
            continue;
        }
        let _ = write!(out, "\n===== {} =====\n", entry.path);
        if usize::try_from(entry.size).unwrap_or(usize::MAX) > FILE_LIMIT {
            let _ = writeln!(
                out,
                "[not shown: {} bytes is over the {FILE_LIMIT}-byte limit for one file]",
                entry.size
            );
            continue;
        }
        if shown >= total_limit {
            out.push_str("[not shown: the deliverable is over the size shown to judges]\n");
            continue;
        }
        match store.read_object(&entry.hash) {
            Ok(bytes) if !bytes.contains(&0) => match String::from_utf8(bytes) {
                Ok(text) => {
                    shown += text.len();
                    // Scrubbed before numbering, so a secret spanning lines is still found.
                    let text = scrubber.scrub(&text);
                    match lines {
                        Lines::Plain => {
                            out.push_str(&text);
                            if !text.ends_with('\n') {
                                out.push('\n');
                            }
                        }
                        Lines::Numbered => {
                            for (number, line) in text.lines().enumerate() {
                                let _ = writeln!(out, "{:>4}| {line}", number + 1);
                            }
                        }
                    }
                }
                Err(_) => out.push_str("[binary file: not shown]\n"),
            },
            Ok(_) => out.push_str("[binary file: not shown]\n"),
            Err(err) => {
                let _ = writeln!(out, "[could not be read: {err}]");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_shown_binaries_listed_and_secrets_masked() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        fs_err::create_dir_all(&workspace).unwrap();
        fs_err::write(workspace.join("a.txt"), "key=sk-test-0123456789\n").unwrap();
        fs_err::write(workspace.join("b.bin"), [0u8, 1, 2]).unwrap();
        let store = ObjectStore::new(dir.path().join("objects"));
        let snapshot =
            refinery_core::snapshot::take_snapshot(&store, &workspace, &[], &[".".to_owned()])
                .unwrap();
        let text = render(
            &store,
            &snapshot.entries,
            &Scrubber::new(["sk-test-0123456789".to_owned(), "short".to_owned()]),
        );
        assert!(text.contains("- a.txt (23 bytes)"), "{text}");
        assert!(text.contains("key=[REDACTED]"), "{text}");
        // Found by the scanner's rules, though nobody registered it.
        // Assembled at run time so this file does not trip the repository's own scan.
        let key = format!("AKIA{}", "IOSFODNN7EXAMPLF");
        let scanned = Scrubber::default().scrub(&format!("aws = {key}\n"));
        assert!(!scanned.contains(&key), "{scanned}");
        assert!(!text.contains("sk-test"), "{text}");
        assert!(
            text.contains("===== b.bin =====\n[binary file: not shown]"),
            "{text}"
        );
    }
}
