//! The clear-context watcher under real tmux, against a scripted program that draws Claude
//! Code's plan dialog and waits for Enter: exactly one press per dialog with "Yes, clear
//! context" focused, none when another option is focused, and an exit when the pane dies.
//! Each test uses its own tmux server (`-L`) and kills it at the end; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

use crate::support::{BIN, Project};

/// Generous: the real Claude Code starts slowly on a loaded 2-core machine; only a failure waits this long.
pub(crate) const WAIT: Duration = Duration::from_mins(1);

fn dialog_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan_dialog.sh")
}

pub(crate) fn has_tmux() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        refinery_testkit::skip::skip("tmux is not installed (apt-get install tmux)");
    }
    found
}

/// A private tmux server whose socket lives in the test's temporary folder (`tmux -S`), so
/// nothing is left behind; killed on drop.
pub(crate) struct Server(pub(crate) String);

impl Server {
    fn new(project: &Project) -> Self {
        Self(
            project
                .workspace
                .parent()
                .unwrap()
                .join("tmux.sock")
                .display()
                .to_string(),
        )
    }

    pub(crate) fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-S", &self.0])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.0, "kill-server"])
            .output();
    }
}

pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_for`], but a timeout shows the pane, so a failure says what Claude Code displayed.
pub(crate) fn wait_for_on_screen(
    server: &Server,
    pane: &str,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() >= deadline {
            let screen = server.tmux(&["capture-pane", "-p", "-J", "-t", pane]);
            panic!("timed out after {WAIT:?} waiting for {what}; the pane shows:\n{screen}");
        }
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
    let server = Server::new(&project);
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
    let server = Server::new(&project);
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
            .args(["-S", &server.0, "has-session", "-t", "=refine-test"])
            .output()
            .unwrap()
            .status
            .success()
    });
    assert_eq!(log_lines(&log), ["answered 1 clear"], "exactly one press");
}

/// Skip Claude Code's first-run screens: onboarding done, folder trusted, the fake key
/// approved. Claude Code reads `.claude.json` from its config dir, which the kit points at
/// HOME/.claude.
pub(crate) fn skip_first_run_screens(harness: &crate::claude_code::ClaudeHarness) {
    let (project, home) = (harness.project(), harness.home());
    let key = refinery_testkit::agent_cli::FAKE_KEY;
    let mut projects = serde_json::Map::new();
    projects.insert(
        project.display().to_string(),
        serde_json::json!({"hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true}),
    );
    let settings =
        serde_json::json!({"hasCompletedOnboarding": true, "theme": "dark", "projects": projects,
        "customApiKeyResponses": {"approved": [&key[key.len() - 20..]], "rejected": []}})
        .to_string();
    fs_err::create_dir_all(home.join(".claude")).unwrap();
    fs_err::write(home.join(".claude.json"), &settings).unwrap();
    fs_err::write(home.join(".claude/.claude.json"), &settings).unwrap();
}

/// The whole context boundary with the real Claude Code: `refinery tmux launch` starts it in
/// plan mode with the plugin, the scripted model starts a Refinery session and exits plan
/// mode, the watcher chooses "Yes, clear context", and the new Claude Code session (a new id,
/// same process) is bound to the same Refinery session by the SessionStart hook.
#[tokio::test(flavor = "multi_thread")]
async fn real_claude_code_clears_context_and_keeps_its_loop() {
    use crate::claude_code::{ClaudeHarness, plugin_dir, run, text, tool};
    use serde_json::{Value, json};

    if !has_tmux() {
        return;
    }
    let Some(harness) = ClaudeHarness::start().await else {
        return;
    };
    let project = harness.project();
    skip_first_run_screens(&harness);
    harness.script(|turn, body: &Value| {
        if body["messages"]
            .to_string()
            .contains("Implement the following plan")
        {
            return text("Round 2 starts here.");
        }
        match turn {
            0 => tool(
                "mcp__plugin_refinery_quality__init_session",
                json!({"label": "tmux round"}),
            ),
            1 => {
                // Claude Code shows the full dialog only when the plan file exists.
                let whole = body.to_string();
                if let Some(start) = whole.find("/.claude/plans/") {
                    let begin = whole[..start]
                        .rfind(|ch: char| ch == '"' || ch.is_whitespace())
                        .map_or(0, |i| i + 1);
                    let end = start + whole[start..].find(".md").unwrap() + 3;
                    let path = PathBuf::from(&whole[begin..end]);
                    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                    fs_err::write(&path, "## Round 2\n\nContinue the Refinery loop.\n").unwrap();
                }
                tool("ExitPlanMode", json!({}))
            }
            _ => text("waiting"),
        }
    });
    let server = Server(
        project
            .parent()
            .unwrap()
            .join("tmux.sock")
            .display()
            .to_string(),
    );
    let plugin = plugin_dir().display().to_string();
    let mut launch = harness.command(
        Path::new(BIN),
        &[
            "tmux",
            "launch",
            "--no-attach",
            "--socket",
            &server.0,
            "--session",
            "real",
            "--",
            "--permission-mode",
            "plan",
            "--plugin-dir",
            &plugin,
        ],
    );
    launch.env("REFINERY_CLAUDE_BIN", &harness.claude);
    let output = run(launch, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{output:?}");

    let pane = server
        .tmux(&["list-panes", "-t", "=real:0", "-F", "#{pane_id}"])
        .trim()
        .to_owned();
    let screen = || server.tmux(&["capture-pane", "-p", "-J", "-t", &pane]);
    wait_for_on_screen(&server, &pane, "Claude Code's prompt", || {
        screen().contains("plan mode on")
    });
    server.tmux(&["send-keys", "-t", &pane, "-l", "plan round 2"]);
    std::thread::sleep(Duration::from_millis(500));
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);
    // Plan mode asks before the MCP call; a person would answer "1. Yes". The watcher must
    // ignore this prompt (it is not the plan dialog), so the test answers it.
    wait_for_on_screen(
        &server,
        &pane,
        "the permission prompt for init_session",
        || screen().contains("Do you want to proceed?"),
    );
    std::thread::sleep(Duration::from_millis(500));
    server.tmux(&["send-keys", "-t", &pane, "Enter"]);

    let bindings = harness.context.state_dir().join("claude_sessions");
    let read_bindings = || -> Vec<Value> {
        fs_err::read_dir(&bindings)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                    .map(|entry| crate::support::read_json(&entry.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for_on_screen(&server, &pane, "a SessionStart with source `clear`", || {
        read_bindings().iter().any(|b| b["source"] == "clear")
    });
    let all = read_bindings();
    let first = all.iter().find(|b| b["source"] == "startup").unwrap();
    let cleared = all.iter().find(|b| b["source"] == "clear").unwrap();
    assert!(
        first["refinery_session"]
            .as_str()
            .unwrap()
            .ends_with("_tmux-round"),
        "{first}"
    );
    assert_eq!(
        cleared["refinery_session"], first["refinery_session"],
        "{all:#?}"
    );
    assert_eq!(cleared["inherited_from"], first["claude_session_id"]);
    assert_eq!(cleared["claude_pid"], first["claude_pid"]);
    // The watcher reports once the dialog is confirmed gone, which may be after the hook ran.
    wait_for("the watcher's report", || {
        server
            .tmux(&["capture-pane", "-p", "-J", "-t", "=real:refinery-watch"])
            .contains("dialog 1: chose \"Yes, clear context\" (press 1)")
    });
    wait_for_on_screen(&server, &pane, "the next round to start", || {
        screen().contains("Round 2 starts here.")
    });
}
