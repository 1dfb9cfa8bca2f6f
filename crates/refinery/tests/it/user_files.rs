//! User files are sacred, through the real binary: a state folder that would swallow the
//! workspace is refused before anything is written, the state folder's `.gitignore` is
//! written by every writer but only into a folder Refinery made, and a fifo or an unreadable
//! file never stops or blocks `new_answer "."`. And issue 10's scenario: a builder that
//! un-ignores the user's secrets and notes, a guard revert, a SIGKILL and a resume, with
//! every user file intact and none of them shown to a model or stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use refinery_testkit::{FakeModelServer, Reply, TestContext};
use serde_json::json;

use crate::llm_support::text;
use crate::refine::{
    CRITERIA, MODEL, Run, builder_round, evaluation, json_lines, lessons, role, summary,
};
use crate::support::{BIN, Project, call};

#[tokio::test]
async fn a_state_folder_that_holds_the_workspace_is_refused_before_anything_is_written() {
    let server = FakeModelServer::start().await.unwrap();
    server.route(|_| Some(Reply::status(400)));
    let context = TestContext::new().unwrap();
    let project = context.project();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&project)
        .status()
        .unwrap();
    assert!(git.success());
    fs_err::write(project.join(".gitignore"), "node_modules/\n.env\n").unwrap();
    fs_err::write(project.join("index.html"), "<h1>mine</h1>").unwrap();
    let mut env = context.env_with_path(&[]);
    env.insert("ANTHROPIC_BASE_URL".to_owned(), server.url());
    env.insert(
        "ANTHROPIC_API_KEY".to_owned(),
        "sk-ant-trust-test-0001".to_owned(),
    );
    let parent = project.parent().unwrap().display().to_string();
    for state_dir in [".", "..", parent.as_str()] {
        let output = std::process::Command::new(BIN)
            .env_clear()
            .envs(&env)
            .current_dir(&project)
            .args([
                "refine",
                "Build a page",
                "--criteria",
                "E1: it works",
                "--builder",
                MODEL,
                "--evaluator",
                MODEL,
                "--yes",
                "--state-dir",
                state_dir,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{state_dir}: {stderr}");
        assert!(
            stderr.contains("one of its parents"),
            "{state_dir}: {stderr}"
        );
    }
    // The user's `.gitignore` was not replaced by `*`, and no state was created.
    assert_eq!(
        fs_err::read_to_string(project.join(".gitignore")).unwrap(),
        "node_modules/\n.env\n"
    );
    assert!(!project.join("sessions").exists());
    assert!(server.model_requests().is_empty());
    // The MCP servers and the session commands refuse it the same way.
    for args in [vec!["mcp", "all"], vec!["session", "list"]] {
        let output = std::process::Command::new(BIN)
            .env_clear()
            .envs(&env)
            .env("REFINERY_STATE_DIR", ".")
            .current_dir(&project)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("one of its parents"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn the_mcp_servers_write_the_state_gitignore_only_into_a_folder_they_made() {
    let project = Project::new();
    project.write("index.html", b"<h1>x</h1>");
    let client = project.mcp("all").await;
    let (error, body) = call(&client, "init_session", json!({"label": "plugin"})).await;
    assert!(!error, "{body}");
    client.cancel().await.unwrap();
    assert_eq!(
        fs_err::read_to_string(project.state.join(".gitignore")).unwrap(),
        "*\n",
        "plugin mode must hide its snapshots from `git add -A` too"
    );

    // An existing folder of the user's, named as the state folder, keeps its own files.
    project.write("notes/.gitignore", b"!important\n");
    project.write("notes/todo.md", b"mine\n");
    project.write("drafts/idea.md", b"mine\n");
    for folder in ["notes", "drafts"] {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["--state-dir", folder, "mcp", "all"])
            .current_dir(&project.workspace)
            .env_remove("REFINERY_STATE_DIR")
            .env_remove("CLAUDE_CODE_SESSION_ID");
        let (transport, _) = rmcp::transport::TokioChildProcess::builder(command)
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let client = rmcp::ServiceExt::serve((), transport).await.unwrap();
        let (error, body) = call(&client, "init_session", json!({"label": "x"})).await;
        assert!(!error, "{body}");
        client.cancel().await.unwrap();
    }
    assert_eq!(
        fs_err::read_to_string(project.workspace.join("notes/.gitignore")).unwrap(),
        "!important\n"
    );
    assert!(!project.workspace.join("drafts/.gitignore").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn new_answer_of_everything_skips_fifos_and_unreadable_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let project = Project::new();
    project.write("index.html", b"<h1>x</h1>");
    for fifo in [".gitignore", "logs/live.fifo"] {
        let path = project.workspace.join(fifo);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
    }
    let locked = project.workspace.join("locked.txt");
    fs_err::write(&locked, "no permission").unwrap();
    fs_err::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = fs_err::read(&locked).is_ok();
    if root {
        eprintln!("running as root: chmod 000 does not stop reads; checking fifos only");
    }
    let client = project.mcp("all").await;
    let (error, body) = tokio::time::timeout(
        Duration::from_mins(1),
        call(
            &client,
            "new_answer",
            json!({"answer": "everything", "file_paths": ["."]}),
        ),
    )
    .await
    .expect("new_answer blocked on a fifo");
    assert!(!error, "{body}");
    let skipped: Vec<String> = body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|skip| skip["path"].as_str().unwrap().to_owned())
        .collect();
    for path in [".gitignore", "logs/live.fifo"] {
        assert!(skipped.iter().any(|skip| skip == path), "{path}: {body}");
    }
    if !root {
        assert!(skipped.iter().any(|skip| skip == "locked.txt"), "{body}");
    }
    assert!(
        body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|path| path == "index.html"),
        "{body}"
    );
    client.cancel().await.unwrap();
}

/// The user's own files the scenario below must never lose, show a model or store: an
/// ignored `.env.local`, an ignored `private/` folder, and a `.env` git does not ignore
/// (`.env*` never enters a snapshot, whatever git says).
const USER_FILES: [(&str, &str); 4] = [
    (".env.local", "LOCAL_SETTING=user-env-local-marker-4f1c\n"),
    ("private/notes.txt", "user-private-notes-marker-9b2e\n"),
    ("private/deep/plan.md", "user-private-plan-marker-17d0\n"),
    (".env", "PLAIN_SETTING=user-dotenv-marker-c3a8\n"),
];
const START_IGNORE: &str = ".env.local\nprivate/\n";
const WIDE_OPEN_IGNORE: &str = "# nothing is ignored any more\n";

fn git(project: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(project)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// The scripted run of the scenario: each builder turn writes one file through the workspace
/// tools; round 2 and round 3 first rewrite `.gitignore` to un-ignore the user's files.
/// Round 2 breaks the page, so the guard (which prefers whichever answer is not BROKEN)
/// asks for a repair, which stays broken, and reverts. Round 3's builder is held after its
/// `.gitignore` edit while `hold` is set, so the test can SIGKILL the run there.
struct Scenario {
    hold: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
}

impl Scenario {
    fn install(server: &FakeModelServer) -> Self {
        let scenario = Self {
            hold: Arc::new(AtomicBool::new(true)),
            held: Arc::new(AtomicBool::new(false)),
        };
        let (hold, held) = (scenario.hold.clone(), scenario.held.clone());
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        let write = move |path: &str, content: &str| {
            usage(Reply::tool_call(
                "write_file",
                json!({"path": path, "content": content}),
            ))
        };
        server.route(move |request| {
            Some(match role(request) {
                "builder" => match (builder_round(request), request.tool_results().len()) {
                    (1, 0) => write("index.html", "<h1>GOOD-1</h1>"),
                    (2 | 3, 0) => write(".gitignore", WIDE_OPEN_IGNORE),
                    (2, 1) => write("index.html", "<h1>BROKEN</h1>"),
                    // The repair turn.
                    (0, 0) => write("index.html", "<h1>BROKEN-AFTER-REPAIR</h1>"),
                    (3, 1) if hold.load(Ordering::SeqCst) => {
                        held.store(true, Ordering::SeqCst);
                        Reply::text("never").delayed(Duration::from_mins(2))
                    }
                    (3, 1) => write("index.html", "<h1>GOOD-3</h1>"),
                    _ => usage(Reply::text("Done")),
                },
                "evaluator" => usage(Reply::text(evaluation([8, 5, 8], "E2 needs numbers."))),
                "guard" => {
                    let body = request.body_text();
                    let (a, b) = body.split_once("## Answer B").unwrap();
                    let preference = match (a.contains("BROKEN"), b.contains("BROKEN")) {
                        (true, false) => "B",
                        (false, true) => "A",
                        _ => "tie",
                    };
                    usage(Reply::text(
                        json!({"preferences": {"E1": preference, "E2": "tie", "E3": "tie"}, "reasoning": "compared the headings"})
                            .to_string(),
                    ))
                }
                "trace" => usage(Reply::text(lessons())),
                _ => Reply::status(400),
            })
        });
        scenario
    }

    /// Waits until round 3's builder is held.
    async fn held(&self) {
        let deadline = std::time::Instant::now() + Duration::from_mins(2);
        while !self.held.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "round 3 never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every file under `dir`, read whole.
fn all_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_type().unwrap().is_file() {
                found.push((entry.path(), fs_err::read(entry.path()).unwrap()));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Issue 10's scenario end to end: a builder rewrites `.gitignore` to un-ignore `.env.local`
/// and `private/`, the regression guard reverts the round, a later round is SIGKILLed after
/// the same edit and the run is resumed. The user's files stay byte for byte, and none of
/// them reaches a model or the state folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unignoring_files_then_revert_kill_and_resume_leaves_every_user_file_alone() {
    let server = FakeModelServer::start().await.unwrap();
    let scenario = Scenario::install(&server);
    let run = Run::new(&server);
    let project = run.project();
    fs_err::create_dir_all(&project).unwrap();
    git(&project, &["init", "-q"]);
    fs_err::write(project.join(".gitignore"), START_IGNORE).unwrap();
    fs_err::write(project.join("index.html"), "<h1>start</h1>").unwrap();
    git(&project, &["add", "."]);
    git(&project, &["commit", "-qm", "start"]);
    for (path, content) in USER_FILES {
        let path = project.join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }

    let mut args = vec!["refine", "Build a page", "--criteria", CRITERIA];
    args.extend(["--builder", MODEL, "--evaluator", MODEL, "--yes"]);
    args.extend(["--max-rounds", "3", "--json"]);
    let mut child = std::process::Command::new(BIN)
        .env_clear()
        .envs(&run.env)
        .current_dir(&project)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    scenario.held().await;
    // Round 2 was reverted to round 1's page and round 3 has un-ignored the files again.
    assert_eq!(
        fs_err::read_to_string(project.join("index.html")).unwrap(),
        "<h1>GOOD-1</h1>"
    );
    assert_eq!(
        fs_err::read_to_string(project.join(".gitignore")).unwrap(),
        WIDE_OPEN_IGNORE
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    scenario.hold.store(false, Ordering::SeqCst);

    let sessions: Vec<String> = fs_err::read_dir(project.join(".refinery/sessions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sessions.len(), 1);
    let output = run
        .refinery(&["refine", "--resume", &sessions[0], "--json"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(summary["rounds"][1]["regression"]["action"], "reverted");
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 3);
    assert_eq!(
        fs_err::read_to_string(project.join("index.html")).unwrap(),
        "<h1>GOOD-3</h1>"
    );

    // Every user file is intact, byte for byte.
    for (path, content) in USER_FILES {
        assert_eq!(
            fs_err::read_to_string(project.join(path)).unwrap(),
            content,
            "{path} was changed or deleted"
        );
    }
    // What the revert and the resume replaced was kept in the session first.
    let session_dir = project.join(".refinery/sessions").join(&sessions[0]);
    assert!(session_dir.join("round_002/discarded.json").exists());
    assert!(session_dir.join("round_003/discarded.json").exists());
    // Nothing of them reached a model (judges and builders alike) ...
    let requests = server.model_requests();
    assert!(requests.iter().any(|request| role(request) == "evaluator"));
    assert!(requests.iter().any(|request| role(request) == "guard"));
    for request in &requests {
        let body = request.body_text();
        for (path, content) in USER_FILES {
            assert!(
                !body.contains(content.trim_end()),
                "{path} reached a {} request",
                role(request)
            );
        }
    }
    // ... nor the object store, nor any other file of the state folder.
    for (file, bytes) in all_files(&project.join(".refinery")) {
        for (path, content) in USER_FILES {
            assert!(
                !contains(&bytes, content.trim_end()),
                "{path} reached {}",
                file.display()
            );
        }
    }
}

/// An API builder's file tools cannot reach what was out of scope when the run started:
/// reading a git-ignored note or `.env.local` is a tool error that says why, overwriting one
/// is refused, and neither file's content reaches any model request.
// Multi-threaded: the run is a blocking child process while the fake serves it.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_builder_cannot_read_or_replace_files_that_were_out_of_scope() {
    use crate::fake_roles::{api_env, evaluation, refine_once, role};
    let context = TestContext::new().unwrap();
    let project = context.project();
    git(&project, &["init", "-q"]);
    fs_err::write(project.join(".gitignore"), "private/\n").unwrap();
    fs_err::create_dir_all(project.join("private")).unwrap();
    let note = "PRIVATE-NOTE-never-for-a-model";
    let local = "LOCAL-ENV-never-for-a-model";
    fs_err::write(project.join("private/notes.txt"), note).unwrap();
    fs_err::write(project.join(".env.local"), format!("MODE={local}\n")).unwrap();
    let server = FakeModelServer::start().await.unwrap();
    server.route(|request| {
        Some(match role(request) {
            "builder" => match request.tool_results().len() {
                0 => Reply::tool_call("read_file", json!({"path": "private/notes.txt"})),
                1 => Reply::tool_call("read_file", json!({"path": ".env.local"})),
                2 => Reply::tool_call(
                    "write_file",
                    json!({"path": "private/notes.txt", "content": "overwritten"}),
                ),
                3 => Reply::tool_call(
                    "write_file",
                    json!({"path": "index.html", "content": "<h1>Acme</h1>\n"}),
                ),
                _ => Reply::text("Wrote index.html."),
            },
            "evaluator" => Reply::text(evaluation(&["E1"], "fine")),
            "trace" => Reply::text(lessons()),
            _ => Reply::text("ok"),
        })
    });
    let env = api_env(&context, &server);
    let refined = refine_once(&context, &env, "Build a page", "E1: It has a heading");
    assert_eq!(refined.status.code(), Some(0), "{}", text(&refined.stderr));
    assert_eq!(
        fs_err::read_to_string(project.join("private/notes.txt")).unwrap(),
        note
    );
    assert_eq!(
        fs_err::read_to_string(project.join(".env.local")).unwrap(),
        format!("MODE={local}\n")
    );
    let requests = server.model_requests();
    let builder_results: Vec<String> = requests
        .iter()
        .filter(|request| role(request) == "builder")
        .flat_map(refinery_testkit::RecordedRequest::tool_results)
        .map(|(_, result)| result)
        .collect();
    let refusals = builder_results
        .iter()
        .filter(|result| result.contains("off limits"))
        .count();
    assert!(refusals >= 3, "{builder_results:#?}");
    for request in &requests {
        let body = request.body_text();
        assert!(!body.contains(note), "the note reached a model: {body}");
        assert!(!body.contains(local), ".env.local reached a model: {body}");
    }
}
