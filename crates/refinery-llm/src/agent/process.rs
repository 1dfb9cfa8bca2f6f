//! Spawning an agent CLI in its own process group, reading its events, and ending it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

use super::parse::EventParser;
use super::{AgentCli, AgentEvent, AgentOutcome, AgentRequest};
use crate::error::{Error, Result};
use crate::price::{Cost, Usage};

/// How long to keep reading stdout after the CLI exited (a grandchild may still hold the
/// pipe open; its output after this is dropped with the process group).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The last bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// The longest single command-line argument passed to a CLI. Linux refuses any over 128 KiB
/// (`MAX_ARG_STRLEN`); briefs never go on argv, so this only bounds system prompts and extra
/// arguments.
pub const MAX_ARGUMENT: usize = 100 * 1024;

/// Runs agent CLIs headless.
///
/// Contract:
/// - The child gets the part of `request.env` its CLI needs (nothing inherited; see
///   [`super::env`]), runs in `request.workdir`, and leads a new process group.
/// - The brief (prompt, and the system prompt for CLIs without a flag for it) goes through
///   stdin, never argv; no argument may exceed [`MAX_ARGUMENT`] bytes
///   ([`Error::ArgumentTooLong`], nothing started). The brief and system prompt pass through
///   the process scrubber first, and everything the CLI prints is scrubbed before it becomes
///   an event, an outcome or an error.
/// - On timeout or cancellation the whole process group gets SIGKILL, so tools the agent
///   started die with it; after a normal exit the group is killed too, so nothing the
///   agent left running outlives the run.
/// - A run fails ([`Error::AgentFailed`], carrying the CLI's own message) when the CLI
///   reports an error (claude `is_error`, codex `turn.failed`, gemini/copilot error
///   results) or exits non-zero.
/// - Usage and cost come from the CLI's own reports; a CLI without token counts gives
///   `usage: None` and a CLI without a cost figure gives [`Cost::Unknown`].
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentRunner;

impl AgentRunner {
    /// The command line for a request (program excluded), and what to write to stdin (the
    /// brief, for every CLI).
    pub fn arguments(request: &AgentRequest) -> (Vec<String>, Option<String>) {
        let mut args: Vec<String> = Vec::new();
        let prompt_with_system = match &request.system_prompt {
            Some(system) => format!("{system}\n\n{}", request.prompt),
            None => request.prompt.clone(),
        };
        let stdin = match request.cli {
            AgentCli::Claude => {
                args.extend(
                    ["-p", "--output-format", "stream-json", "--verbose"].map(String::from),
                );
                if let Some(system) = &request.system_prompt {
                    args.extend(["--append-system-prompt".to_string(), system.clone()]);
                }
                if let Some(model) = &request.model {
                    args.extend(["--model".to_string(), model.clone()]);
                }
                if !request.allowed_tools.is_empty() {
                    args.extend([
                        "--allowedTools".to_string(),
                        request.allowed_tools.join(" "),
                    ]);
                }
                if let Some(turns) = request.max_turns {
                    args.extend(["--max-turns".to_string(), turns.to_string()]);
                }
                if let Some(budget) = request.max_budget_usd {
                    args.extend(["--max-budget-usd".to_string(), budget.to_string()]);
                }
                // The prompt goes through stdin: no argv length limit, no prompt parsed as a flag.
                Some(request.prompt.clone())
            }
            AgentCli::Codex => {
                args.extend(
                    [
                        "exec",
                        "--json",
                        "--skip-git-repo-check",
                        "-s",
                        "workspace-write",
                    ]
                    .map(String::from),
                );
                if let Some(model) = &request.model {
                    args.extend(["-m".to_string(), model.clone()]);
                }
                args.extend(["-C".to_string(), request.workdir.display().to_string()]);
                // Codex reads the prompt from stdin when it is `-`; left open, stdin would hang it.
                Some(prompt_with_system)
            }
            AgentCli::Gemini => {
                // Without `--prompt`, gemini reads the whole prompt from stdin and still runs
                // headless (stdin is not a terminal).
                args.extend(
                    [
                        "-o",
                        "stream-json",
                        "--approval-mode",
                        "yolo",
                        "--skip-trust",
                    ]
                    .map(String::from),
                );
                if let Some(model) = &request.model {
                    args.extend(["-m".to_string(), model.clone()]);
                }
                Some(prompt_with_system)
            }
            AgentCli::Copilot => {
                // Piped stdin is copilot's non-interactive prompt, as `-p` is.
                args.extend(
                    [
                        "--output-format",
                        "json",
                        "--stream",
                        "off",
                        "--no-auto-update",
                    ]
                    .map(String::from),
                );
                if request.allowed_tools.is_empty() {
                    args.push("--allow-all-tools".to_string());
                } else {
                    for tool in &request.allowed_tools {
                        args.extend(["--allow-tool".to_string(), tool.clone()]);
                    }
                }
                if let Some(model) = &request.model {
                    args.extend(["--model".to_string(), model.clone()]);
                }
                Some(prompt_with_system)
            }
        };
        args.extend(request.extra_args.iter().cloned());
        if request.cli == AgentCli::Codex {
            args.push("-".to_string());
        }
        (args, stdin)
    }

    /// Run one request to completion, reporting events as they arrive.
    pub async fn run(
        &self,
        request: &AgentRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<AgentOutcome> {
        let started = Instant::now();
        let program = match &request.program {
            Some(program) => program.clone(),
            None => find_program(request.cli.program(), &request.env)
                .ok_or(Error::AgentNotFound { cli: request.cli })?,
        };
        let child_env = super::env::child_env(request.cli, &request.env);
        // Everything the CLI prints is masked with what Refinery knows plus the credentials
        // the child was given.
        let scrubber = refinery_secrets::process_scrubber().with_values(
            request
                .env
                .iter()
                .filter(|(name, _)| refinery_secrets::is_secret_name(name))
                .map(|(_, value)| value),
        );
        let request = &AgentRequest {
            prompt: scrubber.scrub(&request.prompt),
            system_prompt: request
                .system_prompt
                .as_deref()
                .map(|system| scrubber.scrub(system)),
            ..request.clone()
        };
        let (mut args, stdin_text) = Self::arguments(request);
        if let Some(bytes) = args
            .iter()
            .map(String::len)
            .filter(|&length| length > MAX_ARGUMENT)
            .max()
        {
            return Err(Error::ArgumentTooLong {
                cli: request.cli,
                bytes,
                limit: MAX_ARGUMENT,
            });
        }
        // Copilot's JSONL has no token counts; its usage file does.
        let usage_dir = if request.cli == AgentCli::Copilot {
            Some(
                tempfile::Builder::new()
                    .prefix("refinery-copilot-")
                    .tempdir()?,
            )
        } else {
            None
        };
        let usage_file = usage_dir.as_ref().map(|dir| dir.path().join("usage.json"));
        if let Some(path) = &usage_file {
            args.extend([
                "--usage-output-file".to_string(),
                path.display().to_string(),
            ]);
        }
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&args)
            .current_dir(&request.workdir)
            .env_clear()
            .envs(&child_env)
            .stdin(if stdin_text.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| Error::AgentSpawn {
            cli: request.cli,
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let group = ProcessGroup { pid };
        let mut events = Vec::new();
        let mut emit = |event: AgentEvent, events: &mut Vec<AgentEvent>| {
            on_event(&event);
            events.push(event);
        };
        emit(AgentEvent::Spawned { pid }, &mut events);

        if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
            // Written beside the reading below: a brief larger than the pipe must not wait on
            // a CLI that prints before it reads. A CLI that exits early closes the pipe; its
            // exit status tells the story.
            tokio::spawn(async move {
                let _ = stdin.write_all(text.as_bytes()).await;
                drop(stdin);
            });
        }
        let stderr_task = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_tail(stderr)));
        let Some(stdout) = child.stdout.take() else {
            group.kill();
            return Err(Error::AgentSpawn {
                cli: request.cli,
                source: std::io::Error::other("no stdout pipe"),
            });
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut parser = EventParser::new(request.cli);
        let deadline = tokio::time::Instant::now() + request.timeout;
        let mut exit_status = None;
        let mut drain_until: Option<tokio::time::Instant> = None;

        loop {
            let stop_reading_at = drain_until.map_or(deadline, |drain| drain.min(deadline));
            tokio::select! {
                () = cancel.cancelled() => {
                    group.kill();
                    let _ = child.wait().await;
                    return Err(Error::Cancelled);
                }
                () = tokio::time::sleep_until(stop_reading_at) => {
                    if drain_until.is_some() && tokio::time::Instant::now() < deadline {
                        break;
                    }
                    group.kill();
                    let _ = child.wait().await;
                    return Err(Error::AgentTimeout { cli: request.cli, timeout: request.timeout });
                }
                status = child.wait(), if exit_status.is_none() => {
                    exit_status = Some(status.map_err(|source| Error::AgentSpawn { cli: request.cli, source })?);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                line = lines.next_line() => if let Ok(Some(line)) = line {
                    let line = scrubber.scrub_json_text(&line, refinery_secrets::JsonStyle::Compact);
                    for event in parser.parse_line(&line) {
                        emit(event, &mut events);
                    }
                } else {
                    if exit_status.is_none() {
                        let waited = tokio::select! {
                            () = cancel.cancelled() => None,
                            () = tokio::time::sleep_until(deadline) => None,
                            status = child.wait() => Some(status),
                        };
                        if let Some(status) = waited {
                            exit_status = Some(status.map_err(|source| Error::AgentSpawn { cli: request.cli, source })?);
                        } else {
                            group.kill();
                            let _ = child.wait().await;
                            if cancel.is_cancelled() {
                                return Err(Error::Cancelled);
                            }
                            return Err(Error::AgentTimeout { cli: request.cli, timeout: request.timeout });
                        }
                    }
                    break;
                },
            }
        }
        // Whatever the agent left running in its group ends with the run.
        group.kill();
        let stderr_tail = match stderr_task {
            Some(task) => scrubber.scrub(&task.await.unwrap_or_default()),
            None => String::new(),
        };
        let exit_code = exit_status.and_then(|status| status.code());
        if let Some(usage) = usage_file.as_deref().and_then(copilot_usage) {
            let event = AgentEvent::Usage { usage };
            parser.parse_event(&event);
            emit(event, &mut events);
        }
        finish(
            request.cli,
            &parser,
            events,
            exit_code,
            &stderr_tail,
            started.elapsed(),
        )
    }
}

fn finish(
    cli: AgentCli,
    parser: &EventParser,
    events: Vec<AgentEvent>,
    exit_code: Option<i32>,
    stderr_tail: &str,
    duration: Duration,
) -> Result<AgentOutcome> {
    let failed = !parser.fatal_errors.is_empty() || exit_code != Some(0);
    if failed {
        let message = parser
            .fatal_errors
            .iter()
            .rev()
            .find(|message| !message.trim().is_empty())
            .cloned()
            .or_else(|| last_lines(stderr_tail, 5))
            .unwrap_or_else(|| "the CLI exited without an error message".to_string());
        return Err(Error::AgentFailed {
            cli,
            exit_code,
            message,
        });
    }
    let (text, usage, cost) = match &parser.result {
        Some((text, usage, cost, _)) => {
            let text = if text.is_empty() {
                parser.trailing_text.clone()
            } else {
                text.clone()
            };
            (text, usage.or(parser.step_usage), *cost)
        }
        None => (
            parser.trailing_text.clone(),
            parser.step_usage,
            Cost::Unknown,
        ),
    };
    Ok(AgentOutcome {
        cli,
        session_id: parser.session_id.clone(),
        text,
        usage,
        cost,
        tool_calls: parser.tool_calls,
        exit_code,
        duration,
        events,
    })
}

/// Token totals from copilot's `--usage-output-file` (`modelMetrics.*.usage`), where
/// `inputTokens` already includes the cache reads it also reports as `cacheReadTokens`
/// (checked against the fake: 1800 uncached + 400 cached came back as 2200 / 400).
fn copilot_usage(path: &Path) -> Option<Usage> {
    let value: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(path).ok()?).ok()?;
    let mut total = Usage::default();
    for metrics in value.get("modelMetrics")?.as_object()?.values() {
        let usage = metrics.get("usage")?;
        let count = |key: &str| {
            usage
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        total.add(Usage {
            input_tokens: count("inputTokens"),
            output_tokens: count("outputTokens"),
            cached_input_tokens: count("cacheReadTokens"),
        });
    }
    Some(total)
}

fn last_lines(text: &str, count: usize) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(count);
    let tail = lines[start..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

async fn read_tail(mut stderr: tokio::process::ChildStderr) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = [0_u8; 8192];
    loop {
        match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// A child that leads its own process group (`process_group(0)`: pgid = pid).
struct ProcessGroup {
    pid: u32,
}

impl ProcessGroup {
    /// SIGKILL the group, and every descendant that moved to a group or session of its own
    /// (CLIs may start tool shells detached); descendants are listed first, while the
    /// parent links still exist.
    fn kill(&self) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        if pid <= 1 {
            return;
        }
        let descendants = descendants(pid);
        // ESRCH (group already gone) is the normal case after a clean exit.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        for descendant in descendants {
            let _ = nix::sys::signal::kill(Pid::from_raw(descendant), Signal::SIGKILL);
        }
    }
}

/// Every process below `root`, from `/proc` (Linux); empty where `/proc` is missing.
fn descendants(root: i32) -> Vec<i32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may contain spaces and parentheses, so split
        // after the last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<i32>().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// Look a program up on the `PATH` of the child's environment (not ours).
pub(crate) fn find_program(name: &str, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cli: AgentCli) -> AgentRequest {
        let mut request = AgentRequest::new(cli, "/work/project", "-fix the bug");
        request.system_prompt = Some("Be terse.".to_string());
        request.model = Some("m1".to_string());
        request
    }

    #[test]
    fn command_lines() {
        let mut claude = request(AgentCli::Claude);
        claude.allowed_tools = vec!["Write".to_string(), "Bash(git *)".to_string()];
        claude.max_turns = Some(3);
        claude.max_budget_usd = Some(0.5);
        let mut copilot = request(AgentCli::Copilot);
        copilot.allowed_tools = vec!["shell(git:*)".to_string()];
        let cases: Vec<(AgentRequest, &[&str], Option<&str>)> = vec![
            (
                claude,
                &[
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--append-system-prompt",
                    "Be terse.",
                    "--model",
                    "m1",
                    "--allowedTools",
                    "Write Bash(git *)",
                    "--max-turns",
                    "3",
                    "--max-budget-usd",
                    "0.5",
                ],
                Some("-fix the bug"),
            ),
            (
                request(AgentCli::Codex),
                &[
                    "exec",
                    "--json",
                    "--skip-git-repo-check",
                    "-s",
                    "workspace-write",
                    "-m",
                    "m1",
                    "-C",
                    "/work/project",
                    "-",
                ],
                Some("Be terse.\n\n-fix the bug"),
            ),
            (
                request(AgentCli::Gemini),
                &[
                    "-o",
                    "stream-json",
                    "--approval-mode",
                    "yolo",
                    "--skip-trust",
                    "-m",
                    "m1",
                ],
                Some("Be terse.\n\n-fix the bug"),
            ),
            (
                request(AgentCli::Copilot),
                &[
                    "--output-format",
                    "json",
                    "--stream",
                    "off",
                    "--no-auto-update",
                    "--allow-all-tools",
                    "--model",
                    "m1",
                ],
                Some("Be terse.\n\n-fix the bug"),
            ),
            (
                copilot,
                &[
                    "--output-format",
                    "json",
                    "--stream",
                    "off",
                    "--no-auto-update",
                    "--allow-tool",
                    "shell(git:*)",
                    "--model",
                    "m1",
                ],
                Some("Be terse.\n\n-fix the bug"),
            ),
        ];
        for (request, expected_args, expected_stdin) in cases {
            let (args, stdin) = AgentRunner::arguments(&request);
            assert_eq!(args, expected_args, "{:?}", request.cli);
            assert_eq!(stdin.as_deref(), expected_stdin, "{:?}", request.cli);
        }
    }

    #[test]
    fn briefs_go_through_stdin_and_no_argument_may_be_huge() {
        let brief = "x".repeat(300 * 1024);
        for cli in AgentCli::ALL {
            let mut request = AgentRequest::new(cli, "/work/project", brief.clone());
            request.system_prompt = Some("Be terse.".to_string());
            let (args, stdin) = AgentRunner::arguments(&request);
            assert!(stdin.is_some_and(|text| text.ends_with(&brief)), "{cli:?}");
            assert!(args.iter().all(|arg| arg.len() < 1024), "{cli:?}: {args:?}");
        }
    }

    #[tokio::test]
    async fn an_oversized_argument_is_refused_before_anything_starts() {
        let mut request = AgentRequest::new(AgentCli::Claude, "/nonexistent", "hi");
        request.program = Some(PathBuf::from("/nonexistent/claude"));
        request.system_prompt = Some("s".repeat(MAX_ARGUMENT + 1));
        let error = AgentRunner
            .run(&request, &CancellationToken::new(), &mut |_event| {})
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::ArgumentTooLong { bytes, .. } if bytes == MAX_ARGUMENT + 1),
            "{error}"
        );
        assert!(
            error.to_string().contains("over the 102400-byte limit"),
            "{error}"
        );
    }

    #[test]
    fn programs_are_found_on_the_child_path_only() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("claude");
        fs_err::write(&program, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("codex");
        fs_err::write(&plain, "not executable").unwrap();
        fs_err::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env: BTreeMap<String, String> = [(
            "PATH".to_string(),
            format!("/nonexistent::{}", dir.path().display()),
        )]
        .into();
        assert_eq!(find_program("claude", &env), Some(program));
        assert_eq!(find_program("codex", &env), None);
        assert_eq!(find_program("claude", &BTreeMap::new()), None);
    }
}
