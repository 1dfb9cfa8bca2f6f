//! `--verify` commands: run the deliverable, keep what it printed.
//!
//! Output-first verification: the evaluator sees what the commands actually printed, and a
//! failing command earns the builder one bounded fix attempt. Commands run with `sh` in the
//! workspace, in their own process group so a timeout or Ctrl-C ends every child.
//!
//! A command is handed to `sh` as a script file (private to this user, deleted afterwards),
//! not as `sh -c <command>`: a command line is visible to every user of the machine in `ps`,
//! and a `--verify` command may well carry a token.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio_util::sync::CancellationToken;

use crate::error::Halt;

/// Most output kept per command (the end, where errors usually are).
const OUTPUT_LIMIT: usize = 12 * 1024;

/// What one command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// The command as given.
    pub command: String,
    /// Its exit code; `None` when it was killed.
    pub exit_code: Option<i32>,
    /// Exit code 0 within the time limit.
    pub passed: bool,
    /// Whether the time limit killed it.
    pub timed_out: bool,
    /// Standard output and error, the last part when long.
    pub output: String,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

/// The command as a script file for `sh`.
fn script_file(command: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix("refinery-verify-")
        .suffix(".sh")
        .tempfile()?;
    file.write_all(command.as_bytes())?;
    file.write_all(b"\n")?;
    file.flush()?;
    Ok(file)
}

/// Runs every command in order (all of them, even after a failure: each is evidence).
pub async fn run_all(
    commands: &[String],
    workdir: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<VerifyResult>, Halt> {
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        results.push(run_one(command, workdir, env, timeout, cancel).await?);
    }
    Ok(results)
}

async fn run_one(
    command: &str,
    workdir: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<VerifyResult, Halt> {
    let started = Instant::now();
    let failed = |output: String, timed_out: bool| VerifyResult {
        command: command.to_owned(),
        exit_code: None,
        passed: false,
        timed_out,
        output,
        duration_ms: millis_since(started),
    };
    // Created 0600 in the temporary folder; removed when this function returns.
    let script = match script_file(command) {
        Ok(script) => script,
        Err(err) => {
            return Ok(failed(
                format!("could not write the command to a script file: {err}"),
                false,
            ));
        }
    };
    let spawned = tokio::process::Command::new("sh")
        .arg(script.path())
        .current_dir(workdir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return Ok(failed(format!("could not start `sh`: {err}"), false)),
    };
    let pid = child.id();
    let kill_group = || {
        if let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) {
            // Our own child's group; an error means it is already gone.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    let outcome = tokio::select! {
        () = cancel.cancelled() => {
            kill_group();
            return Err(Halt::Cancelled);
        }
        () = tokio::time::sleep(timeout) => None,
        done = wait_with_output(&mut child) => Some(done),
    };
    let Some((exit_code, output)) = outcome else {
        kill_group();
        return Ok(failed(
            format!("killed after {} s", timeout.as_secs()),
            true,
        ));
    };
    Ok(VerifyResult {
        command: command.to_owned(),
        exit_code,
        passed: exit_code == Some(0),
        timed_out: false,
        output: tail(&output, OUTPUT_LIMIT),
        duration_ms: millis_since(started),
    })
}

/// Waits for `child` while reading both pipes (so a full pipe cannot stall it); its exit code
/// and its output, stderr after stdout under a `[stderr]` line.
async fn wait_with_output(child: &mut tokio::process::Child) -> (Option<i32>, String) {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (status, out, err) = tokio::join!(child.wait(), read_all(stdout), read_all(stderr));
    let exit_code = status.ok().and_then(|status| status.code());
    let mut output = String::from_utf8_lossy(&out).into_owned();
    let err = String::from_utf8_lossy(&err);
    if !err.trim().is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str("[stderr]\n");
        output.push_str(&err);
    }
    (exit_code, output)
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buffer = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buffer).await;
    }
    buffer
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The last `limit` bytes of `text`, on a character boundary, marked when cut.
pub(crate) fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} earlier bytes cut]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into()
    }

    #[tokio::test]
    async fn commands_report_exit_codes_output_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("x.txt"), "present").unwrap();
        let cancel = CancellationToken::new();
        let results = run_all(
            &[
                "cat x.txt".to_owned(),
                "echo oops >&2; exit 3".to_owned(),
                "sleep 5".to_owned(),
            ],
            dir.path(),
            &env(),
            Duration::from_millis(300),
            &cancel,
        )
        .await
        .unwrap();
        assert!(results[0].passed);
        assert_eq!(results[0].output, "present");
        assert_eq!(results[1].exit_code, Some(3));
        assert!(!results[1].passed);
        assert_eq!(results[1].output, "[stderr]\noops\n");
        assert!(results[2].timed_out && !results[2].passed);
    }

    /// The command text is never on a command line (`ps` shows `sh <script>`), yet it runs.
    #[tokio::test]
    async fn commands_are_not_on_any_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let marker = ["verify-", "marker-", "7f3a9c"].concat();
        let command = format!("sleep 0.6; echo ran # {marker}");
        let sampling = tokio::task::spawn_blocking({
            let marker = marker.clone();
            move || {
                let mut seen = Vec::new();
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    for entry in fs_err::read_dir("/proc").into_iter().flatten().flatten() {
                        let cmdline =
                            fs_err::read(entry.path().join("cmdline")).unwrap_or_default();
                        if String::from_utf8_lossy(&cmdline).contains(&marker) {
                            seen.push(entry.path());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            }
        });
        let results = run_all(
            &[command],
            dir.path(),
            &env(),
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(results[0].output, "ran\n");
        assert!(
            sampling.await.unwrap().is_empty(),
            "the command was visible on a command line"
        );
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 10), "abcdef");
        assert_eq!(tail("abcdef", 2), "[… 4 earlier bytes cut]\nef");
    }
}
