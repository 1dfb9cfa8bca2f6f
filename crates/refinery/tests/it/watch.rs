//! `refinery watch` following sessions while they are written: a plugin-style session written
//! step by step through the core (as the MCP tools write it), under a pseudo-terminal
//! (`script`); a real `refinery refine` run, with plain lines on a pipe; and a run killed
//! mid-round, which watch must notice instead of waiting forever.
//!
//! Every wait reads the child's output through a channel with a deadline; each step of the
//! session is written only once watch has shown the previous one.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use refinery_core::{CriteriaSet, SessionSettings, StateDir};
use refinery_testkit::{FakeModelServer, Reply};
use serde_json::json;
use time::OffsetDateTime;

use crate::fake_roles::role;
use crate::refine::{Run, content_by_round, evaluation, guard_tie, lessons};
use crate::support::{BIN, Project};

const WAIT: Duration = Duration::from_mins(1);

/// Everything a child wrote to a pipe so far, as it arrives.
struct Stream {
    receiver: mpsc::Receiver<String>,
    seen: String,
}

impl Stream {
    fn of(mut pipe: impl std::io::Read + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = pipe.read(&mut buffer) {
                if count == 0
                    || sender
                        .send(String::from_utf8_lossy(&buffer[..count]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        Self {
            receiver,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has appeared (after what earlier waits consumed is kept too).
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&chunk),
                Err(error) => panic!(
                    "no {needle:?} within {WAIT:?} ({error}); seen so far:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Reads until the pipe closes.
    fn drain(&mut self) -> &str {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => return &self.seen,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the pipe stayed open; seen:\n{}", self.seen)
                }
            }
        }
    }
}

/// Waits for `child` to exit, within the deadline.
fn exit_code(mut child: Child) -> Option<i32> {
    let (sender, receiver) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait().map(|status| status.code()));
    });
    receiver
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("process {pid} did not exit within {WAIT:?}"))
        .unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn a_terminal_follows_a_plugin_session_round_by_round_until_it_converges() {
    let Some(script) =
        refinery_testkit::skip::require_program("script", &["/usr/bin/script"], "util-linux")
    else {
        return;
    };
    let project = Project::new();
    let store = StateDir::new(&project.state, &project.workspace);
    let session = store
        .init_session(
            "landing",
            SessionSettings {
                max_rounds: Some(3),
                ..SessionSettings::default()
            },
            now(),
        )
        .unwrap();
    let watch = Command::new(script)
        .args([
            "-q",
            "-e",
            "-c",
            &format!("{BIN} watch {}", session.id()),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .current_dir(&project.workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut watch = watch;
    let mut screen = Stream::of(watch.stdout.take().unwrap());
    screen.wait_for(&format!("watching session {}", session.id()));
    screen.wait_for("round 1/3 · writing criteria · cost not measured");
    let criteria = CriteriaSet::from_json(&json!([
        {"id": "E1", "text": "The first heading states the outcome"},
        {"id": "E2", "text": "Claims carry numbers"},
        {"id": "E3", "text": "Loads without errors"}
    ]))
    .unwrap();
    session.register_criteria(&criteria, now()).unwrap();
    screen.wait_for("round 1/3 · building");
    project.write("index.html", b"<h1>Welcome</h1>");
    session
        .new_answer("v1", &["index.html".to_owned()], now())
        .unwrap();
    screen.wait_for("round 1/3 · evaluating");
    session
        .submit_checklist(&json!({"E1": 4, "E2": 6, "E3": 8}), None, now())
        .unwrap();
    screen.wait_for("round 1: E1 4 · E2 6 · E3 8 → iterate");
    screen.wait_for("round 2/3 · planning and building");
    project.write("index.html", b"<h1>Invoices paid in 3 minutes</h1>");
    session
        .new_answer("v2", &["index.html".to_owned()], now())
        .unwrap();
    screen.wait_for("round 2/3 · evaluating");
    session
        .submit_checklist(&json!({"E1": 9, "E2": 8, "E3": 9}), None, now())
        .unwrap();
    screen.wait_for("round 2: E1 9 · E2 8 · E3 9 → converge");
    screen.wait_for("ended: Converged in round 2");
    assert_eq!(exit_code(watch), Some(0), "{}", screen.seen);
    // A live line: indicatif redraws in place on a terminal.
    assert!(
        screen.seen.contains("\u{1b}[2K") || screen.seen.contains('\r'),
        "{:?}",
        screen.seen
    );
    // Watching wrote nothing into the session.
    assert!(!session.dir().join("report.html").exists());
}

/// A fake whose builder and evaluator take a moment, so every phase is on screen.
fn slow_run(server: &FakeModelServer, builder_delay: Duration) {
    server.route(move |request| {
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => usage(Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": content_by_round(request)}),
            ))
            .delayed(builder_delay),
            "builder" => usage(Reply::text("Wrote index.html")),
            "evaluator" => {
                let version_two = request.body_text().contains("VERSION-2");
                usage(Reply::text(if version_two {
                    evaluation([9, 8, 9], "Strong.")
                } else {
                    evaluation([4, 6, 8], "Weak hero.")
                }))
                .delayed(Duration::from_millis(400))
            }
            "guard" => Reply::text(guard_tie()),
            "trace" => Reply::text(lessons()),
            _ => Reply::status(400),
        })
    });
}

/// Starts `refinery refine "Build a page"` and returns it with its progress lines and its
/// session id (from the line that announces the session).
fn start_refine(run: &Run) -> (Child, Stream, String) {
    let mut child = run.spawn_refine();
    let mut progress = Stream::of(child.stderr.take().unwrap());
    progress.wait_for(" (builder ");
    let id = progress
        .seen
        .split("new session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session line in {}", progress.seen))
        .to_owned();
    (child, progress, id)
}

fn start_watch(run: &Run, id: &str) -> (Child, Stream) {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(&run.env)
        .current_dir(run.project())
        .args(["watch", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stream = Stream::of(child.stdout.take().unwrap());
    (child, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_gets_plain_lines_of_a_refine_run_and_watch_ends_with_it() {
    let server = FakeModelServer::start().await.unwrap();
    slow_run(&server, Duration::from_millis(400));
    let run = Run::new(&server);
    let (refine, mut progress, id) = start_refine(&run);
    let (watch, mut lines) = start_watch(&run, &id);
    lines.wait_for("round 1: E1 4 · E2 6 · E3 8 → iterate");
    lines.wait_for("ended: Converged after 2 rounds");
    assert_eq!(exit_code(watch), Some(0));
    let output = lines.drain().to_owned();
    progress.drain();
    assert_eq!(exit_code(refine), Some(0));
    for needle in [
        "round 2/5 · building",
        "round 2/5 · evaluating",
        "round 2: E1 9 · E2 8 · E3 9 → converge",
    ] {
        assert!(output.contains(needle), "missing {needle:?} in\n{output}");
    }
    // Cost and tokens from the run's own accounting, no terminal control sequences.
    assert!(output.contains(" tokens · "), "{output}");
    assert!(output.contains('$'), "{output}");
    assert!(
        !output.contains('\u{1b}') && !output.contains('\r'),
        "{output:?}"
    );
    // `REFINERY_WATCH_TRANSCRIPT=FILE` keeps this output: the example in docs/USAGE.md.
    if let Some(path) = std::env::var_os("REFINERY_WATCH_TRANSCRIPT") {
        fs_err::write(path, format!("$ refinery watch {id}\n{output}")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_round_ends_the_watch_with_how_to_resume() {
    let server = FakeModelServer::start().await.unwrap();
    slow_run(&server, Duration::from_mins(2));
    let run = Run::new(&server);
    let (mut refine, _progress, id) = start_refine(&run);
    let (watch, mut lines) = start_watch(&run, &id);
    lines.wait_for("round 1/5 · building");
    refine.kill().unwrap();
    refine.wait().unwrap();
    lines.wait_for("is gone without recording an end");
    assert_eq!(exit_code(watch), Some(1), "{}", lines.seen);
    assert!(
        lines
            .seen
            .contains(&format!("refinery refine --resume {id}")),
        "{}",
        lines.seen
    );
}
