//! A deliverable as text for a judge: every file listed, text files shown in full up to a
//! bound, known secret values masked.
//!
//! Judges that are agent CLIs also get the files on disk; API models only see this. Both read
//! the same snapshot, so what is judged is exactly what was submitted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

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
    let mut out = String::with_capacity(
        16 + entries
            .iter()
            .map(|entry| entry.path.len() + 24)
            .sum::<usize>(),
    );
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

/// Two versions of a deliverable rendered for a blind comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairView {
    /// The contents of the files both versions hold unchanged, shown once; empty when they
    /// share none, and with [`View::Listing`] (the judge opens the files itself).
    pub shared: String,
    /// The first version: all its files listed, then the contents of those the second
    /// version lacks or holds otherwise.
    pub first: String,
    /// The second version, likewise.
    pub second: String,
}

/// `entries` sorted by path, as references: a manifest is a few hundred entries of two
/// strings each, and the pair is compared, not kept.
fn sorted_by_path(entries: &[ManifestEntry]) -> Vec<&ManifestEntry> {
    let mut entries: Vec<&ManifestEntry> = entries.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// Renders two versions for a blind comparison. A round usually changes a few files of many:
/// shown twice in full, the unchanged ones would double the brief and could push the changed
/// ones past the size shown. Each version's changed files come first, within the usual
/// total; the shared ones fill what is left of it, so neither version is shown with more
/// text than [`render_view`] would show.
pub fn render_pair(
    view: View,
    store: &ObjectStore,
    first: &[ManifestEntry],
    second: &[ManifestEntry],
    scrubber: &Scrubber,
) -> PairView {
    if view == View::Listing {
        return PairView {
            shared: String::new(),
            first: listing(first),
            second: listing(second),
        };
    }
    let same = |entry: &ManifestEntry, other: &ManifestEntry| {
        entry.path == other.path && entry.kind == other.kind && entry.hash == other.hash
    };
    let in_other = |entry: &ManifestEntry, other: &[&ManifestEntry]| {
        other
            .binary_search_by(|probe| probe.path.as_str().cmp(entry.path.as_str()))
            .is_ok_and(|index| same(entry, other[index]))
    };
    let (first_sorted, second_sorted) = (sorted_by_path(first), sorted_by_path(second));
    let (shared, first_only): (Vec<&ManifestEntry>, Vec<&ManifestEntry>) = first
        .iter()
        .partition(|entry| in_other(entry, &second_sorted));
    let second_only: Vec<&ManifestEntry> = second
        .iter()
        .filter(|entry| !in_other(entry, &first_sorted))
        .collect();
    // Each version: all its files listed, then the contents of its changed ones.
    let side = |entries: &[ManifestEntry], changed: &[&ManifestEntry]| {
        let mut text = listing(entries);
        let shown = render_contents(
            &mut text,
            store,
            changed,
            scrubber,
            TOTAL_LIMIT,
            Lines::Plain,
        );
        (text, shown)
    };
    let (first_text, first_shown) = side(first, &first_only);
    let (second_text, second_shown) = side(second, &second_only);
    let mut shared_text = String::new();
    render_contents(
        &mut shared_text,
        store,
        &shared,
        scrubber,
        TOTAL_LIMIT.saturating_sub(first_shown.max(second_shown)),
        Lines::Plain,
    );
    PairView {
        shared: shared_text,
        first: first_text,
        second: second_text,
    }
}

/// A text file's contents as shown: scrubbed, with its length before scrubbing (what counts
/// against the size shown).
#[derive(Clone)]
struct ShownFile {
    raw_len: usize,
    text: Arc<str>,
    /// `text` with line numbers, made the first time a judge's brief shows it: every round's
    /// evaluation shows mostly the same files, and numbering thousands of lines again each
    /// time cost more than the rest of the rendering. Shared by the cache's clones.
    numbered: Arc<OnceLock<Box<str>>>,
}

impl ShownFile {
    fn numbered(&self) -> &str {
        self.numbered.get_or_init(|| {
            let mut out = String::with_capacity(self.text.len() + self.text.len() / 4);
            push_numbered(&mut out, &self.text);
            out.into_boxed_str()
        })
    }
}

/// Most bytes of scrubbed text [`TEXTS`] keeps before it starts over (the numbered copies
/// of the files judges were shown come on top: about as much again at most).
const TEXT_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Objects already shown, scrubbed, by scrubber and content hash (`None`: not text). A round
/// shows mostly the same files to its guard and its evaluator, and the next round shows them
/// again: each would read the object back (checking its hash) and scan it for secrets every
/// time. An object never changes under its hash and a scrubber's id names exactly what it
/// masks, so an entry cannot go stale; the cache is only bounded, emptied when full.
static TEXTS: LazyLock<Mutex<TextCache>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct TextCache {
    bytes: usize,
    files: HashMap<(u64, String), Option<ShownFile>>,
}

/// The object `hash` as shown to a model: `None` for a binary (a NUL byte, or not UTF-8).
fn shown_text(
    store: &ObjectStore,
    hash: &str,
    scrubber: &Scrubber,
) -> Result<Option<ShownFile>, refinery_core::Error> {
    let key = (scrubber.id(), hash.to_owned());
    let cache = || TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = cache().files.get(&key) {
        return Ok(found.clone());
    }
    let bytes = store.read_object(hash)?;
    let shown = if bytes.contains(&0) {
        None
    } else {
        String::from_utf8(bytes).ok().map(|text| ShownFile {
            raw_len: text.len(),
            // Scrubbed whole, before any numbering: a secret spanning lines is still found.
            text: scrubber.scrub_cow(&text).into(),
            numbered: Arc::default(),
        })
    };
    let mut cache = cache();
    let size = shown.as_ref().map_or(0, |file| file.text.len()) + hash.len();
    if cache.bytes + size > TEXT_CACHE_BYTES {
        *cache = TextCache::default();
    }
    cache.bytes += size;
    cache.files.insert(key, shown.clone());
    Ok(shown)
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
    render_contents(&mut out, store, entries, scrubber, total_limit, lines);
    out
}

/// Appends the contents of `entries` to `out`, up to `total_limit` bytes of text; returns
/// how many were shown.
fn render_contents<E: std::borrow::Borrow<ManifestEntry>>(
    out: &mut String,
    store: &ObjectStore,
    entries: &[E],
    scrubber: &Scrubber,
    total_limit: usize,
    lines: Lines,
) -> usize {
    // Grown once, not doubled (and copied) a dozen times on the way to a quarter megabyte:
    // the text shown, a line number per line, a header per file.
    let expected = entries
        .iter()
        .map(|entry| usize::try_from(entry.borrow().size).map_or(0, |size| size.min(FILE_LIMIT)))
        .sum::<usize>()
        .min(total_limit.saturating_add(FILE_LIMIT));
    out.reserve(expected + expected / 4 + entries.len() * 64);
    let mut shown = 0usize;
    for entry in entries {
        let entry = entry.borrow();
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
        match shown_text(store, &entry.hash, scrubber) {
            Ok(Some(shown_file)) => {
                shown += shown_file.raw_len;
                let text = &*shown_file.text;
                match lines {
                    Lines::Plain => {
                        out.push_str(text);
                        if !text.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    Lines::Numbered => out.push_str(shown_file.numbered()),
                }
            }
            Ok(None) => out.push_str("[binary file: not shown]\n"),
            Err(err) => {
                let _ = writeln!(out, "[could not be read: {err}]");
            }
        }
    }
    shown
}

/// Appends `text` with each line as `{:>4}| {line}`. Written out by hand: an evaluator's
/// brief holds thousands of lines, and the formatting machinery cost more than everything
/// else in rendering it.
fn push_numbered(out: &mut String, text: &str) {
    let mut digits = itoa::Buffer::new();
    for (index, line) in text.lines().enumerate() {
        let number = digits.format(index + 1);
        for _ in number.len()..4 {
            out.push(' ');
        }
        out.push_str(number);
        out.push_str("| ");
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_read_as_the_formatted_width_of_four() {
        let text: String = (0..10_050)
            .map(|index| match index % 3 {
                0 => format!("line {index}\r\n"),
                1 => "\n".to_owned(),
                _ => format!("  indented {index}\n"),
            })
            .collect::<String>()
            + "last line without an end";
        let mut expected = String::new();
        for (number, line) in text.lines().enumerate() {
            let _ = writeln!(expected, "{:>4}| {line}", number + 1);
        }
        let mut out = String::new();
        super::push_numbered(&mut out, &text);
        assert_eq!(out, expected);
    }

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

    /// Snapshots `files` (path, contents) as a version of a deliverable.
    fn version(
        store: &ObjectStore,
        root: &std::path::Path,
        files: &[(String, String)],
    ) -> Vec<ManifestEntry> {
        let _ = fs_err::remove_dir_all(root);
        for (path, text) in files {
            let path = root.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
        refinery_core::snapshot::take_snapshot(store, root, &[], &[".".to_owned()])
            .unwrap()
            .entries
    }

    #[test]
    fn a_pair_shows_shared_files_once_and_each_side_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(dir.path().join("objects"));
        // Enough unchanged text to fill the size shown, sorted before the changed file: shown
        // twice in full, it pushed the one change out of sight.
        let filler = "unchanged line\n".repeat(1024);
        let mut files: Vec<(String, String)> = (0..30)
            .map(|index| {
                (
                    format!("a/page_{index:02}.html"),
                    format!("{index}{filler}"),
                )
            })
            .collect();
        files.push(("z.html".to_owned(), "<h1>OLD HERO</h1>\n".to_owned()));
        files.push(("gone.txt".to_owned(), "only in the old one\n".to_owned()));
        let old = version(&store, &dir.path().join("old"), &files);
        files.retain(|(path, _)| path != "gone.txt");
        files
            .iter_mut()
            .find(|(path, _)| path == "z.html")
            .unwrap()
            .1 = "<h1>NEW HERO</h1>\n".to_owned();
        files.push(("new.txt".to_owned(), "only in the new one\n".to_owned()));
        let new = version(&store, &dir.path().join("new"), &files);

        let pair = render_pair(View::Contents, &store, &old, &new, &Scrubber::default());
        // Each side: all its files listed, its own changes shown in full.
        assert!(pair.first.contains("- gone.txt"), "{}", pair.first);
        assert!(pair.first.contains("<h1>OLD HERO</h1>"), "{}", pair.first);
        assert!(pair.first.contains("only in the old one"), "{}", pair.first);
        assert!(!pair.first.contains("NEW HERO") && !pair.first.contains("only in the new"));
        assert!(pair.second.contains("<h1>NEW HERO</h1>"), "{}", pair.second);
        assert!(
            pair.second.contains("only in the new one"),
            "{}",
            pair.second
        );
        assert!(pair.second.contains("- a/page_00.html"), "{}", pair.second);
        assert!(
            !pair.second.contains("unchanged line"),
            "shared text belongs to `shared`"
        );
        // The shared files once, within what is left of the size shown.
        assert!(
            pair.shared
                .contains("===== a/page_00.html =====\n0unchanged line")
        );
        assert!(!pair.shared.contains("HERO"), "{}", pair.shared);
        assert!(
            pair.shared.len() <= TOTAL_LIMIT + 30 * 200,
            "{}",
            pair.shared.len()
        );
        assert!(
            pair.shared
                .contains("[not shown: the deliverable is over the size shown")
        );
        // Before, each version was rendered whole and the change sorted after the filler was
        // cut off: the guard could not see what it was asked to compare.
        let whole = render(&store, &new, &Scrubber::default());
        assert!(!whole.contains("NEW HERO"), "the old way hid the change");

        // An agent CLI opens the files itself: listings only, nothing shared.
        let listed = render_pair(View::Listing, &store, &old, &new, &Scrubber::default());
        assert_eq!(listed.shared, "");
        assert_eq!(listed.first, listing(&old));
        assert_eq!(listed.second, listing(&new));
    }

    #[test]
    fn a_file_shown_before_is_masked_anew_by_a_scrubber_that_knows_more() {
        let dir = tempfile::tempdir().unwrap();
        let value = ["pa55-", "w0rd-", "9Zq"].concat();
        let files = [("config.txt".to_owned(), format!("db = {value}\n"))];
        let store = ObjectStore::new(dir.path().join("objects"));
        let entries = version(&store, &dir.path().join("ws"), &files);
        let plain = Scrubber::default();
        // Shown (and cached) by a scrubber that does not know the value…
        assert!(render(&store, &entries, &plain).contains(&value));
        assert!(render(&store, &entries, &plain.clone()).contains(&value));
        // …then by one that does: the cached text must not be reused.
        let knowing = plain.with_values([value.as_str()]);
        let text = render(&store, &entries, &knowing);
        assert!(!text.contains(&value), "{text}");
        assert!(text.contains("db = [REDACTED]"), "{text}");
    }
}
