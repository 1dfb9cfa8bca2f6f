//! The clear-context watcher under real tmux, against a scripted program that draws Claude
//! Code's plan dialog and waits for Enter: exactly one press per dialog with "Yes, clear
//! context" focused, none when another option is focused, and an exit when the pane dies.
//! Each test uses its own tmux server (`-L`) and kills it at the end; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

use crate::support::{BIN, Project};

const WAIT: Duration = Duration::from_secs(20);

fn dialog_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan_dialog.sh")
}

fn has_tmux() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tmux is missing under CI=true; .ci/run installs it"
        );
        eprintln!("skipped: tmux is not installed");
    }
    found
}

/// A private tmux server, killed on drop.
struct Server(String);

impl Server {
    fn new(tag: &str) -> Self {
        Self(format!("refinery-test-{tag}-{}", std::process::id()))
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_lines(log: &Path) -> Vec<String> {
    fs_err::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_child(mut child: Child) -> (bool, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (
                status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the watcher did not exit within {WAIT:?} after its pane died");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn presses_once_per_clear_context_dialog_and_never_on_another_option() {
    if !has_tmux() {
        return;
    }
    let project = Project::new();
    let log = project.workspace.join("answers.log");
    let server = Server::new("watch");
    let program = dialog_program().display().to_string();
    let log_text = log.display().to_string();
    let pane = server
        .tmux(&[
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-x",
            "200",
            "-y",
            "50",
            "--",
            "bash",
            &program,
            &log_text,
            "clear",
            "other",
            "clear",
        ])
        .trim()
        .to_owned();
    assert!(pane.starts_with('%'), "{pane:?}");
    let watcher = Command::new(BIN)
        .args([
            "tmux",
            "watch",
            "--pane",
            &pane,
            "--socket",
            &server.0,
            "--poll-ms",
            "100",
            "--settle-ms",
            "300",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    wait_for("the first dialog to be accepted", || {
        log_lines(&log).len() == 1
    });
    assert_eq!(log_lines(&log), ["answered 1 clear"]);

    // Scene 2 focuses another option: the watcher must leave it alone.
    wait_for("the second dialog", || {
        server
            .tmux(&["capture-pane", "-p", "-J", "-t", &pane])
            .contains("❯ 2. Yes, and use auto mode")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        log_lines(&log),
        ["answered 1 clear"],
        "the watcher pressed on another option"
    );
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);

    wait_for("the third dialog to be accepted", || {
        log_lines(&log).len() >= 3
    });
    let (success, printed) = wait_child(watcher);
    assert!(success, "{printed}");
    assert_eq!(
        log_lines(&log),
        ["answered 1 clear", "answered 2 other", "answered 3 clear"],
        "no extra presses"
    );
    let presses: Vec<&str> = printed.lines().collect();
    assert_eq!(
        presses,
        [
            "dialog 1: chose \"Yes, clear context\" (press 1)",
            "dialog 2: chose \"Yes, clear context\" (press 1)"
        ]
    );
}

#[test]
fn launch_enables_clear_context_and_starts_the_watcher() {
    if !has_tmux() {
        return;
    }
    let project = Project::new();
    let log = project.workspace.join("answers.log");
    let args_file = project.workspace.join("claude-args.txt");
    let fake_claude = project.workspace.join("fake-claude");
    fs_err::write(
        &fake_claude,
        format!(
            "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > '{}'\nexec bash '{}' '{}' clear\n",
            args_file.display(),
            dialog_program().display(),
            log.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&fake_claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let server = Server::new("launch");
    let output = project
        .command()
        .args([
            "tmux",
            "launch",
            "--no-attach",
            "--socket",
            &server.0,
            "--session",
            "refine-test",
            "--claude-bin",
        ])
        .arg(
            format!("bash {}", fake_claude.display())
                .split(' ')
                .nth(1)
                .unwrap(),
        )
        .args(["--", "--plugin-dir", "/opt/refinery/plugin"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("tmux session `refine-test`") && stdout.contains("attach"),
        "{stdout}"
    );
    wait_for("the fake Claude Code to start", || {
        args_file.is_file() && !log_lines(&args_file).is_empty()
    });
    assert_eq!(
        log_lines(&args_file),
        [
            "--settings",
            r#"{"showClearContextOnPlanAccept":true}"#,
            "--plugin-dir",
            "/opt/refinery/plugin"
        ]
    );
    let windows = server.tmux(&["list-windows", "-t", "=refine-test", "-F", "#{window_name}"]);
    assert!(
        windows.lines().any(|name| name == "refinery-watch"),
        "{windows}"
    );
    wait_for("the launched watcher to accept the dialog", || {
        log_lines(&log) == ["answered 1 clear"]
    });
    // When Claude Code exits, its pane dies, the watcher exits, and the session ends.
    wait_for("the tmux session to end", || {
        !Command::new("tmux")
            .args(["-L", &server.0, "has-session", "-t", "=refine-test"])
            .output()
            .unwrap()
            .status
            .success()
    });
    assert_eq!(log_lines(&log), ["answered 1 clear"], "exactly one press");
}
