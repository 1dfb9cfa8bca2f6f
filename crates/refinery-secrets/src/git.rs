//! Git access through the `git` CLI: the repository root, the lines added in the staged diff
//! or by a range of commits, and git's pre-push hook input.
//!
//! Only added lines are scanned: a secret that is being removed is not a new leak, and scanning
//! the diff rather than whole files keeps a hook imperceptible on large repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// A run of consecutive added lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddedBlock {
    /// 1-based line number of the first line in the new file.
    pub(crate) first_line: usize,
    /// The lines, joined with `\n`.
    pub(crate) text: Vec<u8>,
}

/// The lines one diff adds to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileAdditions {
    pub(crate) path: String,
    pub(crate) commit: Option<String>,
    pub(crate) blocks: Vec<AddedBlock>,
    pub(crate) binary: bool,
}

/// One line of git's pre-push input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushUpdate {
    /// The local ref being pushed (`refs/heads/main`), or `(delete)`.
    pub local_ref: String,
    /// Its object name; all zeros when the remote ref is being deleted.
    pub local_sha: String,
    /// The remote ref.
    pub remote_ref: String,
    /// The remote's current object name; all zeros when the ref is new there.
    pub remote_sha: String,
}

impl PushUpdate {
    fn is_deletion(&self) -> bool {
        is_zero_sha(&self.local_sha)
    }
}

fn is_zero_sha(sha: &str) -> bool {
    sha.bytes().all(|byte| byte == b'0')
}

/// Parses git's pre-push stdin: `<local ref> <local sha> <remote ref> <remote sha>` per line.
pub(crate) fn parse_pre_push(input: &str) -> Result<Vec<PushUpdate>> {
    let mut updates = Vec::new();
    for (index, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_sha = |text: &str| {
            (text.len() == 40 || text.len() == 64)
                && text.bytes().all(|byte| byte.is_ascii_hexdigit())
        };
        match fields.as_slice() {
            [local_ref, local_sha, remote_ref, remote_sha]
                if is_sha(local_sha) && is_sha(remote_sha) =>
            {
                updates.push(PushUpdate {
                    local_ref: (*local_ref).to_owned(),
                    local_sha: (*local_sha).to_owned(),
                    remote_ref: (*remote_ref).to_owned(),
                    remote_sha: (*remote_sha).to_owned(),
                });
            }
            _ => return Err(Error::PrePushInput { line: index + 1 }),
        }
    }
    Ok(updates)
}

/// A repository, driven through the `git` CLI.
pub(crate) struct Git {
    root: PathBuf,
}

/// Options every diff gets (no `--diff-filter`: in `git log` it would also hide commits that
/// only delete, which then go uncounted; deletions simply add no lines): no colour, no external diff or textconv drivers (they could print
/// anything), no context lines, stable prefixes whatever the user's config says, raw paths.
const DIFF_OPTIONS: &[&str] = &[
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--unified=0",
    "--find-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

const COMMIT_MARKER: &[u8] = b"\x00refinery-commit ";

impl Git {
    /// Finds the repository containing `directory`.
    pub(crate) fn discover(directory: &Path) -> Result<Self> {
        let output = run_git(directory, &["rev-parse", "--show-toplevel"])?;
        let root = String::from_utf8_lossy(&output).trim().to_owned();
        Ok(Self {
            root: PathBuf::from(root),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Lines added in the index relative to `HEAD` (or to the empty tree before the first
    /// commit, which `git diff --cached` handles itself).
    pub(crate) fn staged_additions(&self) -> Result<Additions> {
        let mut args = vec!["-c", "core.quotePath=false", "diff", "--cached"];
        args.extend_from_slice(DIFF_OPTIONS);
        let output = run_git(&self.root, &args)?;
        parse_patch(&output)
    }

    /// Lines added by the commits `revisions` selects (`git log` syntax), per commit.
    pub(crate) fn log_additions(&self, revisions: &[String]) -> Result<Additions> {
        let mut args: Vec<&str> = vec!["-c", "core.quotePath=false", "log", "-p"];
        args.extend_from_slice(DIFF_OPTIONS);
        args.push("--format=format:%x00refinery-commit %H");
        args.extend(revisions.iter().map(String::as_str));
        args.push("--");
        let output = run_git(&self.root, &args)?;
        parse_patch(&output)
    }

    /// The `git log` revisions for one pushed ref: what the remote does not have yet.
    /// `None` when the update deletes the remote ref.
    pub(crate) fn push_revisions(
        &self,
        update: &PushUpdate,
        remote: Option<&str>,
    ) -> Option<Vec<String>> {
        if update.is_deletion() {
            return None;
        }
        if !is_zero_sha(&update.remote_sha) && self.has_commit(&update.remote_sha) {
            return Some(vec![
                update.local_sha.clone(),
                format!("^{}", update.remote_sha),
            ]);
        }
        // A new branch, or a remote tip we have not fetched: everything no remote-tracking
        // ref of this remote already has.
        let exclude = remote.map_or_else(
            || "--remotes".to_owned(),
            |remote| format!("--remotes={remote}"),
        );
        Some(vec![update.local_sha.clone(), "--not".to_owned(), exclude])
    }

    fn has_commit(&self, sha: &str) -> bool {
        run_git(
            &self.root,
            &["cat-file", "-e", &format!("{sha}^{{commit}}")],
        )
        .is_ok()
    }

    /// `git rev-parse --git-path hooks`, absolute.
    pub(crate) fn hooks_dir(&self) -> Result<PathBuf> {
        let output = run_git(&self.root, &["rev-parse", "--git-path", "hooks"])?;
        let hooks = PathBuf::from(String::from_utf8_lossy(&output).trim());
        Ok(if hooks.is_absolute() {
            hooks
        } else {
            self.root.join(hooks)
        })
    }
}

fn run_git(directory: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let printable = args.join(" ");
    let output = Command::new("git")
        .args(args)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::GitSpawn {
            args: printable.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Git {
            args: printable,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// What a patch adds, and how many commits it covered (commits that only delete count too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Additions {
    pub(crate) files: Vec<FileAdditions>,
    pub(crate) commits: usize,
}

/// Parses `git diff -U0` / `git log -p -U0` output into the added lines per file.
pub(crate) fn parse_patch(output: &[u8]) -> Result<Additions> {
    let mut files: Vec<FileAdditions> = Vec::new();
    let mut commits = 0;
    let mut commit: Option<String> = None;
    let mut current: Option<FileAdditions> = None;
    let mut remaining_old = 0_usize;
    let mut remaining_new = 0_usize;
    let mut new_line = 0_usize;

    let mut lines = output.split(|&byte| byte == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() && line.is_empty() {
            break;
        }
        if remaining_old > 0 || remaining_new > 0 {
            match line.first() {
                Some(b'+') => {
                    let file = current
                        .as_mut()
                        .ok_or_else(|| parse_error("an added line outside a file"))?;
                    let content = &line[1..];
                    match file.blocks.last_mut() {
                        Some(block) if block.first_line + count_lines(&block.text) == new_line => {
                            block.text.push(b'\n');
                            block.text.extend_from_slice(content);
                        }
                        _ => file.blocks.push(AddedBlock {
                            first_line: new_line,
                            text: content.to_vec(),
                        }),
                    }
                    new_line += 1;
                    remaining_new = remaining_new.saturating_sub(1);
                }
                Some(b'-') => remaining_old = remaining_old.saturating_sub(1),
                Some(b' ') => {
                    new_line += 1;
                    remaining_old = remaining_old.saturating_sub(1);
                    remaining_new = remaining_new.saturating_sub(1);
                }
                Some(b'\\') => {}
                _ => return Err(parse_error("a hunk ended early")),
            }
            continue;
        }
        if let Some(sha) = line.strip_prefix(COMMIT_MARKER) {
            files.extend(current.take());
            commits += 1;
            commit = Some(String::from_utf8_lossy(sha).trim().to_owned());
        } else if let Some(rest) = line.strip_prefix(b"diff --git ") {
            files.extend(current.take());
            current = Some(FileAdditions {
                path: path_from_diff_header(rest),
                commit: commit.clone(),
                blocks: Vec::new(),
                binary: false,
            });
        } else if let Some(rest) = line.strip_prefix(b"+++ ") {
            if let (Some(file), Some(path)) = (current.as_mut(), parse_diff_path(rest)) {
                file.path = path;
            }
        } else if line.starts_with(b"Binary files ") {
            if let Some(file) = current.as_mut() {
                file.binary = true;
            }
        } else if let Some(rest) = line.strip_prefix(b"@@ ") {
            let (old_count, new_start, new_count) = parse_hunk_header(rest)?;
            remaining_old = old_count;
            remaining_new = new_count;
            new_line = new_start;
        }
        // Other header lines (index, mode, rename, similarity, ---) carry nothing we need.
    }
    files.extend(current.take());
    Ok(Additions { files, commits })
}

fn count_lines(text: &[u8]) -> usize {
    1 + memchr::memchr_iter(b'\n', text).count()
}

fn parse_error(what: &str) -> Error {
    Error::GitParse {
        what: what.to_owned(),
    }
}

/// `-a[,b] +c[,d] @@ ...` → (b, c, d); counts default to 1.
fn parse_hunk_header(rest: &[u8]) -> Result<(usize, usize, usize)> {
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split_whitespace();
    let old = fields.next().and_then(|field| field.strip_prefix('-'));
    let new = fields.next().and_then(|field| field.strip_prefix('+'));
    let (Some(old), Some(new)) = (old, new) else {
        return Err(parse_error("a hunk header"));
    };
    let range = |field: &str| -> Option<(usize, usize)> {
        let mut parts = field.splitn(2, ',');
        let start = parts.next()?.parse().ok()?;
        let count = parts.next().map_or(Some(1), |count| count.parse().ok())?;
        Some((start, count))
    };
    let ((_, old_count), (new_start, new_count)) = range(old)
        .zip(range(new))
        .ok_or_else(|| parse_error("a hunk header"))?;
    Ok((old_count, new_start, new_count))
}

/// `a/x b/x` → `x` (best effort; `+++` overrides it when present).
fn path_from_diff_header(rest: &[u8]) -> String {
    let text = String::from_utf8_lossy(rest);
    if text.starts_with('"')
        && let Some(index) = text.rfind(" \"b/")
    {
        return unquote(&text[index + 1..])
            .trim_start_matches("b/")
            .to_owned();
    }
    text.rfind(" b/")
        .map_or_else(|| text.to_string(), |index| text[index + 3..].to_owned())
}

/// `b/path` or `"b/quoted\tpath"` → path; `/dev/null` → None.
fn parse_diff_path(rest: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(rest);
    let text = text.trim_end_matches('\t');
    if text == "/dev/null" {
        return None;
    }
    let unquoted = if text.starts_with('"') {
        unquote(text)
    } else {
        text.to_owned()
    };
    Some(unquoted.strip_prefix("b/").unwrap_or(&unquoted).to_owned())
}

/// Undoes git's C-style path quoting (`\"`, `\\`, `\t`, `\n`, octal bytes).
fn unquote(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
        .unwrap_or(text)
        .as_bytes();
    let mut bytes = Vec::with_capacity(inner.len());
    let mut index = 0;
    while index < inner.len() {
        let byte = inner[index];
        if byte != b'\\' || index + 1 >= inner.len() {
            bytes.push(byte);
            index += 1;
            continue;
        }
        let escaped = inner[index + 1];
        index += 2;
        match escaped {
            b'n' => bytes.push(b'\n'),
            b't' => bytes.push(b'\t'),
            b'r' => bytes.push(b'\r'),
            b'a' => bytes.push(0x07),
            b'b' => bytes.push(0x08),
            b'f' => bytes.push(0x0c),
            b'v' => bytes.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                let mut digits = 1;
                while digits < 3 && index < inner.len() && (b'0'..=b'7').contains(&inner[index]) {
                    value = value * 8 + u32::from(inner[index] - b'0');
                    index += 1;
                    digits += 1;
                }
                bytes.push((value & 0xff) as u8);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_added_lines_with_line_numbers() {
        let patch = b"diff --git a/src/a.txt b/src/a.txt\n\
index 1..2 100644\n\
--- a/src/a.txt\n\
+++ b/src/a.txt\n\
@@ -1,0 +2,2 @@\n\
+two\n\
+three\n\
@@ -9 +11 @@\n\
-old\n\
+eleven\n\
diff --git a/img.png b/img.png\n\
new file mode 100644\n\
Binary files /dev/null and b/img.png differ\n";
        let files = parse_patch(patch).unwrap().files;
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "src/a.txt");
        assert_eq!(
            files[0].blocks,
            vec![
                AddedBlock {
                    first_line: 2,
                    text: b"two\nthree".to_vec()
                },
                AddedBlock {
                    first_line: 11,
                    text: b"eleven".to_vec()
                },
            ]
        );
        assert!(files[1].binary);
        assert_eq!(files[1].path, "img.png");
    }

    #[test]
    fn content_that_looks_like_headers_stays_content() {
        let patch = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,2 @@\n++++ b/evil\n+diff --git a/y b/y\n";
        let files = parse_patch(patch).unwrap().files;
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].blocks[0].text,
            b"+++ b/evil\ndiff --git a/y b/y".to_vec()
        );
    }

    #[test]
    fn commit_markers_attach_to_files() {
        let patch = b"\x00refinery-commit abc123\n\ndiff --git a/x b/x\n+++ b/x\n@@ -0,0 +1 @@\n+hello\n\x00refinery-commit def456\ndiff --git a/y b/y\n+++ b/y\n@@ -0,0 +1 @@\n+bye\n";
        let files = parse_patch(patch).unwrap().files;
        assert_eq!(files[0].commit.as_deref(), Some("abc123"));
        assert_eq!(files[1].commit.as_deref(), Some("def456"));
        assert_eq!(parse_patch(patch).unwrap().commits, 2);
    }

    #[test]
    fn unquote_table() {
        let cases = [
            ("\"b/with\\ttab\"", "b/with\ttab"),
            ("\"b/q\\\"uote\"", "b/q\"uote"),
            ("\"b/caf\\303\\251\"", "b/caf\u{e9}"),
            ("plain", "plain"),
        ];
        for (input, expected) in cases {
            assert_eq!(unquote(input), expected);
        }
    }

    #[test]
    fn pre_push_input_table() {
        let zero = "0".repeat(40);
        let sha = "a".repeat(40);
        let input = format!("refs/heads/main {sha} refs/heads/main {zero}\n");
        let updates = parse_pre_push(&input).unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].remote_sha, zero);
        assert!(parse_pre_push("").unwrap().is_empty());
        assert!(matches!(
            parse_pre_push("garbage line\n"),
            Err(Error::PrePushInput { line: 1 })
        ));
        let deletion = format!("(delete) {zero} refs/heads/old {sha}\n");
        assert!(parse_pre_push(&deletion).unwrap()[0].is_deletion());
    }
}
