//! File tools for an API-model builder, confined to the workspace.
//!
//! An agent CLI brings its own tools and sandbox; an API model only has what we give it. These
//! four tools are all it gets: list, read, write and delete files, every path relative to the
//! workspace. A path that leaves the workspace (absolute, `..`, or through a symbolic link),
//! or that points into the state folder or `.git`, is refused with a message the model can act
//! on — the tool result says what was wrong, the files stay untouched.
//!
//! One absolute form is read as relative: a path under the workspace's own absolute path.
//! Models copy it from what they are shown (a failing check prints
//! `can't open file '/home/me/project/hello.py'`); measured on Qwen2.5-Coder-0.5B, a fix asked
//! for after that message named the file by that absolute path in 9 of 15 tries. The rest of
//! such a path goes through every rule a relative one does.
//!
//! Secrets: the model reads files through the scrubber, so a key in a file reaches it as
//! `[REDACTED…]`. Writing that text back would replace the user's real key with the mask, so a
//! write that puts a mask into a file that holds a secret (more masks than the file has
//! literally) is refused, saying why. Only regular files are read: a fifo or a device would
//! block or never end.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use refinery_core::OffLimits;
use refinery_llm::{ToolCall, ToolSpec};
use serde_json::{Value, json};

/// Largest file a model may read in one call; longer files are cut with a note.
const READ_LIMIT: usize = 64 * 1024;
/// Most entries `list_files` returns.
const LIST_LIMIT: usize = 500;

/// The workspace as a model may touch it.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// Canonical.
    root: PathBuf,
    /// The root as the run names it (what checks print), when that differs from `root`.
    named_root: Option<PathBuf>,
    forbidden: Vec<PathBuf>,
    /// What the run's scope keeps from models: `.env*`, `.git`, what git ignored at the start.
    off_limits: OffLimits,
}

/// The outcome of one tool call, as the model will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// Text for the model.
    pub content: String,
    /// Whether the call failed.
    pub is_error: bool,
}

impl ToolOutput {
    fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

impl Workspace {
    /// `root` must exist; `forbidden` folders (the state folder) are out of bounds, as is
    /// `.git`, and so is every path `off_limits` refuses (the run's scope).
    pub fn new(root: &Path, forbidden: &[PathBuf], off_limits: OffLimits) -> std::io::Result<Self> {
        let named_root = std::path::absolute(root)?;
        let root = fs_err::canonicalize(root)?;
        let named_root = (named_root != root).then_some(named_root);
        let mut forbidden: Vec<PathBuf> = forbidden
            .iter()
            .map(|path| fs_err::canonicalize(path).unwrap_or_else(|_| path.clone()))
            .collect();
        forbidden.push(root.join(".git"));
        Ok(Self {
            root,
            named_root,
            forbidden,
            off_limits,
        })
    }

    /// The tool definitions sent to the model.
    pub fn specs() -> Vec<ToolSpec> {
        let path = json!({"type": "string", "description": "Path relative to the workspace root, with / separators."});
        vec![
            ToolSpec {
                name: "list_files".to_owned(),
                description: "List files under a folder of the workspace (recursively), with sizes.".to_owned(),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string", "description": "Folder relative to the workspace root; default: the root."}}, "additionalProperties": false}),
            },
            ToolSpec {
                name: "read_file".to_owned(),
                description: "Read a UTF-8 text file of the workspace.".to_owned(),
                parameters: json!({"type": "object", "properties": {"path": path}, "required": ["path"], "additionalProperties": false}),
            },
            ToolSpec {
                name: "write_file".to_owned(),
                description: "Create or replace a file of the workspace with the given content (folders are created).".to_owned(),
                parameters: json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"], "additionalProperties": false}),
            },
            ToolSpec {
                name: "delete_file".to_owned(),
                description: "Delete a file of the workspace.".to_owned(),
                parameters: json!({"type": "object", "properties": {"path": path}, "required": ["path"], "additionalProperties": false}),
            },
        ]
    }

    /// Runs one call. Never panics and never touches anything outside the workspace.
    pub fn run(&self, call: &ToolCall) -> ToolOutput {
        let path_arg = call.arguments.get("path").and_then(Value::as_str);
        match call.name.as_str() {
            "list_files" => self.list(path_arg.unwrap_or(".")),
            "read_file" => match path_arg {
                Some(path) => self.read(path),
                None => ToolOutput::error("read_file needs a `path` string"),
            },
            "write_file" => {
                match (
                    path_arg,
                    call.arguments.get("content").and_then(Value::as_str),
                ) {
                    (Some(path), Some(content)) => self.write(path, content),
                    _ => ToolOutput::error("write_file needs `path` and `content` strings"),
                }
            }
            "delete_file" => match path_arg {
                Some(path) => self.delete(path),
                None => ToolOutput::error("delete_file needs a `path` string"),
            },
            other => ToolOutput::error(format!(
                "there is no tool `{other}`; use list_files, read_file, write_file or delete_file"
            )),
        }
    }

    /// Resolves `raw` inside the workspace, or says why not.
    fn resolve(&self, raw: &str) -> Result<PathBuf, String> {
        let mut relative = Path::new(raw.trim());
        if relative.is_absolute() {
            relative = std::iter::once(&self.root)
                .chain(&self.named_root)
                .find_map(|root| relative.strip_prefix(root).ok())
                .ok_or_else(|| {
                    format!(
                        "`{raw}` is an absolute path outside the workspace; give a path relative to the workspace root"
                    )
                })?;
        }
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(format!(
                        "`{raw}` leaves the workspace; stay inside the workspace root"
                    ));
                }
            }
        }
        let relative_text = clean.to_string_lossy().replace('\\', "/");
        if let Some(reason) = self.off_limits.refuses(&relative_text) {
            return Err(format!(
                "`{raw}` {}; it is off limits to this run (read, write and delete alike)",
                reason.reason()
            ));
        }
        let joined = self.root.join(&clean);
        // Follow links on the deepest part that exists, so a link pointing outside is caught.
        let mut existing = joined.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(parent) => existing = parent,
                None => break,
            }
        }
        let real_existing = fs_err::canonicalize(existing).map_err(|err| err.to_string())?;
        let rest = joined.strip_prefix(existing).unwrap_or(Path::new(""));
        let real = if rest.as_os_str().is_empty() {
            real_existing
        } else {
            real_existing.join(rest)
        };
        if !real.starts_with(&self.root) {
            return Err(format!(
                "`{raw}` resolves outside the workspace (through a link); stay inside it"
            ));
        }
        if self.forbidden.iter().any(|dir| real.starts_with(dir)) {
            return Err(format!(
                "`{raw}` is in Refinery's state or git folder, which you must not touch"
            ));
        }
        Ok(real)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    fn list(&self, raw: &str) -> ToolOutput {
        let dir = match self.resolve(raw) {
            Ok(dir) => dir,
            Err(message) => return ToolOutput::error(message),
        };
        if !dir.is_dir() {
            return ToolOutput::error(format!("`{raw}` is not a folder"));
        }
        let mut lines = Vec::new();
        let mut stack = vec![dir];
        while let Some(folder) = stack.pop() {
            let Ok(entries) = fs_err::read_dir(&folder) else {
                continue;
            };
            let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
            entries.sort_by_key(fs_err::DirEntry::file_name);
            for entry in entries {
                let path = entry.path();
                if self.forbidden.iter().any(|dir| path.starts_with(dir))
                    || self.off_limits.refuses(&self.relative(&path)).is_some()
                {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else {
                    let size = entry.metadata().map_or(0, |meta| meta.len());
                    lines.push(format!("{} ({size} bytes)", self.relative(&path)));
                }
            }
        }
        lines.sort();
        let total = lines.len();
        if total > LIST_LIMIT {
            lines.truncate(LIST_LIMIT);
            lines.push(format!("… {} more not shown", total - LIST_LIMIT));
        }
        if lines.is_empty() {
            ToolOutput::ok("(no files)")
        } else {
            ToolOutput::ok(lines.join("\n"))
        }
    }

    fn read(&self, raw: &str) -> ToolOutput {
        let path = match self.resolve(raw) {
            Ok(path) => path,
            Err(message) => return ToolOutput::error(message),
        };
        if let Ok(metadata) = fs_err::metadata(&path)
            && !metadata.is_file()
        {
            return ToolOutput::error(if metadata.is_dir() {
                format!("`{raw}` is a folder; use list_files")
            } else {
                format!(
                    "`{raw}` is not a regular file (a pipe, socket or device); it cannot be read"
                )
            });
        }
        match fs_err::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(mut text) => {
                    if text.len() > READ_LIMIT {
                        let mut cut = READ_LIMIT;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        let total = text.len();
                        text.truncate(cut);
                        let _ = write!(text, "\n[… cut: the file has {total} bytes]");
                    }
                    ToolOutput::ok(text)
                }
                Err(err) => ToolOutput::error(format!(
                    "`{raw}` is not UTF-8 text ({} bytes); it cannot be shown",
                    err.as_bytes().len()
                )),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                ToolOutput::error(format!("`{raw}` does not exist"))
            }
            Err(err) => ToolOutput::error(format!("cannot read `{raw}`: {err}")),
        }
    }

    fn write(&self, raw: &str, content: &str) -> ToolOutput {
        let path = match self.resolve(raw) {
            Ok(path) => path,
            Err(message) => return ToolOutput::error(message),
        };
        if path.is_dir() {
            return ToolOutput::error(format!("`{raw}` is a folder"));
        }
        if let Some(refusal) = masks_over_secrets(&path, raw, content) {
            return ToolOutput::error(refusal);
        }
        if let Some(parent) = path.parent()
            && let Err(err) = fs_err::create_dir_all(parent)
        {
            return ToolOutput::error(format!("cannot create the folder for `{raw}`: {err}"));
        }
        // The user's file gets exactly these bytes (state writes are the ones scrubbed).
        match refinery_core::fsutil::write_atomic_exact(&path, content.as_bytes()) {
            Ok(()) => ToolOutput::ok(format!("wrote {} bytes to {raw}", content.len())),
            Err(err) => ToolOutput::error(format!("cannot write `{raw}`: {err}")),
        }
    }

    fn delete(&self, raw: &str) -> ToolOutput {
        let path = match self.resolve(raw) {
            Ok(path) => path,
            Err(message) => return ToolOutput::error(message),
        };
        if path.is_dir() {
            return ToolOutput::error(format!("`{raw}` is a folder; delete its files one by one"));
        }
        match fs_err::remove_file(&path) {
            Ok(()) => ToolOutput::ok(format!("deleted {raw}")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                ToolOutput::error(format!("`{raw}` does not exist"))
            }
            Err(err) => ToolOutput::error(format!("cannot delete `{raw}`: {err}")),
        }
    }
}

/// Why writing `content` to `path` would overwrite a secret with its mask, if it would: the
/// file now holds something the scrubber masks, and `content` carries more masks than the
/// file has literally.
fn masks_over_secrets(path: &Path, raw: &str, content: &str) -> Option<String> {
    let masks = |text: &str| text.matches(refinery_secrets::PLACEHOLDER_PREFIX).count();
    let new_masks = masks(content);
    if new_masks == 0 {
        return None;
    }
    let existing = fs_err::read(path).ok()?;
    let existing = String::from_utf8_lossy(&existing);
    if new_masks <= masks(&existing)
        || !refinery_secrets::process_scrubber().finds_secret(&existing)
    {
        return None;
    }
    Some(format!(
        "refused: `{raw}` holds a secret (a key or password) that you were shown as `[REDACTED…]`, and this content contains that mask; writing it would replace the real value with the mask. Leave `{raw}` as it is (put your change in another file), or write content that keeps no `[REDACTED` text"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_is_never_written_over_a_real_secret() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs_err::create_dir_all(&root).unwrap();
        // Assembled at run time: a GitHub token in a config file the builder reads.
        let token = format!("ghp_{}", "Zq7Rk2Lw9Tn4Vb8Xc3Hy6Md1Pf5Sg0JaKu2E");
        let original = format!("name = \"app\"\ntoken = \"{token}\"\n");
        fs_err::write(root.join("config.toml"), &original).unwrap();
        let workspace = Workspace::new(&root, &[], OffLimits::default()).unwrap();
        // What the model sees once the scrubber is applied to the tool result.
        let seen = refinery_secrets::process_scrubber().scrub(&original);
        assert!(seen.contains("[REDACTED:github-pat]"), "{seen}");
        let rewritten = seen.replace("\"app\"", "\"app2\"");
        let refused = workspace.run(&call(
            "write_file",
            json!({"path": "config.toml", "content": rewritten}),
        ));
        assert!(refused.is_error, "{refused:?}");
        assert!(
            refused
                .content
                .contains("replace the real value with the mask"),
            "{refused:?}"
        );
        assert_eq!(
            fs_err::read_to_string(root.join("config.toml")).unwrap(),
            original
        );
        // A new file may quote a mask (nothing real is lost), and a file without secrets may
        // be rewritten freely.
        for path in ["notes.md", "config.toml.example"] {
            let wrote = workspace.run(&call(
                "write_file",
                json!({"path": path, "content": "token = \"[REDACTED]\"\n"}),
            ));
            assert!(!wrote.is_error, "{path}: {wrote:?}");
        }
        let again = workspace.run(&call(
            "write_file",
            json!({"path": "notes.md", "content": "token = \"[REDACTED]\" (see docs)\n"}),
        ));
        assert!(!again.is_error, "{again:?}");
        // Rewriting the secret file without any mask is allowed (the model replaces it whole).
        let plain = workspace.run(&call(
            "write_file",
            json!({"path": "config.toml", "content": "name = \"app\"\n"}),
        ));
        assert!(!plain.is_error, "{plain:?}");
    }

    #[test]
    fn pipes_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs_err::create_dir_all(&root).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        let workspace = Workspace::new(&root, &[], OffLimits::default()).unwrap();
        // Would block forever if it were opened.
        let output = workspace.run(&call("read_file", json!({"path": "pipe"})));
        assert!(
            output.is_error && output.content.contains("not a regular file"),
            "{output:?}"
        );
    }

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: "c1".to_owned(),
            name: name.to_owned(),
            arguments,
        }
    }

    #[test]
    fn tools_work_inside_and_refuse_everything_outside() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("ws");
        fs_err::create_dir_all(root.join(".refinery")).unwrap();
        fs_err::write(outer.path().join("secret.txt"), "outside").unwrap();
        let workspace =
            Workspace::new(&root, &[root.join(".refinery")], OffLimits::default()).unwrap();

        let wrote = workspace.run(&call(
            "write_file",
            json!({"path": "docs/a.md", "content": "hello"}),
        ));
        assert!(!wrote.is_error, "{wrote:?}");
        assert_eq!(
            fs_err::read_to_string(root.join("docs/a.md")).unwrap(),
            "hello"
        );
        let read = workspace.run(&call("read_file", json!({"path": "./docs/a.md"})));
        assert_eq!(read, ToolOutput::ok("hello"));
        let listed = workspace.run(&call("list_files", json!({})));
        assert_eq!(listed.content, "docs/a.md (5 bytes)");

        for bad in [
            json!({"path": "../secret.txt"}),
            json!({"path": outer.path().join("secret.txt").to_string_lossy()}),
            json!({"path": ".refinery/state.json"}),
            json!({"path": ".git/config"}),
        ] {
            let output = workspace.run(&call("read_file", bad.clone()));
            assert!(output.is_error, "{bad} was allowed: {output:?}");
            let output = workspace.run(&call(
                "write_file",
                json!({"path": bad["path"], "content": "x"}),
            ));
            assert!(output.is_error, "{bad} write was allowed");
        }
        assert!(!root.join(".refinery/state.json").exists());

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outer.path(), root.join("escape")).unwrap();
            let output = workspace.run(&call(
                "write_file",
                json!({"path": "escape/evil.txt", "content": "x"}),
            ));
            assert!(output.is_error, "{output:?}");
            assert!(!outer.path().join("evil.txt").exists());
        }

        let deleted = workspace.run(&call("delete_file", json!({"path": "docs/a.md"})));
        assert!(!deleted.is_error);
        assert!(!root.join("docs/a.md").exists());
        assert!(workspace.run(&call("rm_rf", json!({}))).is_error);
        assert!(
            workspace
                .run(&call("write_file", json!({"path": 3})))
                .is_error
        );
    }

    /// A model that names a file by the workspace's absolute path (copied from a failing
    /// check's message) writes that file; the rest of the path meets every rule a relative
    /// one does, and an absolute path anywhere else is still refused.
    #[test]
    fn an_absolute_path_inside_the_workspace_is_read_as_relative() {
        let outer = tempfile::tempdir().unwrap();
        let real = outer.path().join("real");
        fs_err::create_dir_all(real.join(".refinery")).unwrap();
        fs_err::write(outer.path().join("secret.txt"), "outside").unwrap();
        // The run names the workspace through a link, as `/tmp` is on some systems.
        let named = outer.path().join("named");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, &named).unwrap();
        #[cfg(not(unix))]
        let named = real.clone();
        let workspace =
            Workspace::new(&named, &[named.join(".refinery")], OffLimits::default()).unwrap();
        let canonical = fs_err::canonicalize(&real).unwrap();

        for (root, file) in [(&named, "a.py"), (&canonical, "pkg/b.py")] {
            let path = root.join(file);
            let wrote = workspace.run(&call(
                "write_file",
                json!({"path": path.to_string_lossy(), "content": "print(1)"}),
            ));
            assert!(!wrote.is_error, "{path:?}: {wrote:?}");
            assert_eq!(fs_err::read_to_string(real.join(file)).unwrap(), "print(1)");
        }
        let read = workspace.run(&call(
            "read_file",
            json!({"path": named.join("a.py").to_string_lossy()}),
        ));
        assert_eq!(read, ToolOutput::ok("print(1)"));

        for bad in [
            outer.path().join("secret.txt"),
            named.join("../secret.txt"),
            canonical.join("../secret.txt"),
            named.join(".refinery/state.json"),
            canonical.join(".git/config"),
            PathBuf::from("/etc/hostname"),
        ] {
            let output = workspace.run(&call(
                "write_file",
                json!({"path": bad.to_string_lossy(), "content": "x"}),
            ));
            assert!(output.is_error, "{bad:?} was written: {output:?}");
        }
        assert_eq!(
            fs_err::read_to_string(outer.path().join("secret.txt")).unwrap(),
            "outside"
        );
        assert!(!real.join(".refinery/state.json").exists());
        let outside = workspace.run(&call("read_file", json!({"path": "/etc/hostname"})));
        assert!(
            outside.content.contains("outside the workspace"),
            "{outside:?}"
        );
    }
}
