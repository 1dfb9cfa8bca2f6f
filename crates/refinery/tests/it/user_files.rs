//! User files are sacred, through the real binary: a state folder that would swallow the
//! workspace is refused before anything is written, the state folder's `.gitignore` is
//! written by every writer but only into a folder Refinery made, and a fifo or an unreadable
//! file never stops or blocks `new_answer "."`.

use std::time::Duration;

use refinery_testkit::{FakeModelServer, Reply, TestContext};
use serde_json::json;

use crate::support::{BIN, Project, call};

const MODEL: &str = "anthropic/claude-sonnet-4-5";

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
