//! `refinery session list|show|restore|gc` on state written by the real MCP server.

use serde_json::{Value, json};

use crate::support::{Project, call};

async fn populated() -> (Project, String) {
    let project = Project::new();
    project.write("index.html", b"<h1>hello</h1>");
    let client = project.mcp("all").await;
    let (_, session) = call(
        &client,
        "init_session",
        json!({"label": "docs rewrite", "max_rounds": 4}),
    )
    .await;
    let id = session["session_id"].as_str().unwrap().to_owned();
    call(
        &client,
        "generate_eval_criteria",
        json!({"criteria": [
            {"id": "E1", "text": "Explains the why before the how", "category": "primary"},
            {"id": "E2", "text": "Every example runs", "category": "standard"},
            {"id": "E3", "text": "Reads like a person wrote it", "category": "stretch"},
        ]}),
    )
    .await;
    call(
        &client,
        "new_answer",
        json!({"answer": "first pass at the docs", "file_paths": ["index.html"]}),
    )
    .await;
    call(
        &client,
        "submit_checklist",
        json!({"scores": {"E1": 5, "E2": 8, "E3": 6}}),
    )
    .await;
    call(
        &client,
        "propose_improvements",
        json!({"improvements": {
        "E1": [{"plan": "open each page with the problem it solves", "impact": "structural"}],
        "E3": ["cut filler words"]}}),
    )
    .await;
    client.cancel().await.unwrap();
    (project, id)
}

fn run(project: &Project, args: &[&str]) -> (i32, String, String) {
    let output = project.command().args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn redact(text: &str, project: &Project, id: &str) -> String {
    let stamp = regex_lite_timestamp(text);
    stamp
        .replace(id, "[SESSION]")
        .replace(&project.workspace.display().to_string(), "[WORKSPACE]")
}

/// Replaces RFC 3339 timestamps, which differ on every run.
fn regex_lite_timestamp(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let looks_like_time = word.len() == 20
                        && word.ends_with('Z')
                        && word.as_bytes().get(10) == Some(&b'T');
                    if looks_like_time { "[TIME]" } else { word }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn list_shows_sessions_and_marks_the_current_one() {
    let (project, id) = populated().await;
    let (code, stdout, _) = run(&project, &["session", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("ID") && lines[0].contains("LAST VERDICT"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with('*') && lines[1].contains(&id) && lines[1].contains("iterate"),
        "{stdout}"
    );
    assert!(lines[1].contains("docs rewrite"));

    let (code, stdout, _) = run(&project, &["session", "list", "--json"]);
    assert_eq!(code, 0);
    let listing: Value = serde_json::from_str(&stdout).unwrap();
    let entry = &listing["sessions"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["criteria_count"], 3);
    assert_eq!(entry["rounds"], 1);
    assert_eq!(entry["last_verdict"], "iterate");
    assert_eq!(entry["current"], true);
}

#[tokio::test]
async fn show_renders_criteria_history_rounds_and_plan() {
    let (project, id) = populated().await;
    let (code, stdout, _) = run(&project, &["session", "show", &id]);
    assert_eq!(code, 0);
    let expected = "\
Session [SESSION]
  label        docs rewrite
  created      [TIME]
  folder       [WORKSPACE]/.refinery/sessions/[SESSION]
  cutoff       7 (every criterion must score at least this)
  max rounds   4
  scored       1 round(s), last verdict iterate

Criteria
  ID  CATEGORY  TEXT
  E1  primary   Explains the why before the how
  E2  standard  Every example runs
  E3  stretch   Reads like a person wrote it

Checklist history
  ROUND  VERDICT  E1  E2  E3
  1      iterate  5   8   6

Rounds
  ROUND  REV  FILES  SIZE  NEW   ANSWER
  1      1    1      14 B  14 B  first pass at the docs

Plan after round 1
  E1 [structural] open each page with the problem it solves
  E3 [incremental] cut filler words";
    pretty_assertions::assert_eq!(redact(stdout.trim_end(), &project, &id), expected);

    let (code, stdout, _) = run(&project, &["session", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["session"]["settings"]["max_rounds"], 4);
    assert_eq!(shown["criteria"][0]["category"], "primary");
    assert_eq!(shown["history"][0]["verdict"], "iterate");
    assert_eq!(shown["history"][0]["items"][0]["score"], 5);
    assert_eq!(shown["rounds"][0]["files"], 1);
    assert_eq!(
        shown["plan"]["improvements"]["E1"][0]["impact"],
        "structural"
    );
}

#[tokio::test]
async fn unknown_and_invalid_ids_are_clear_errors() {
    let (project, _) = populated().await;
    let (code, stdout, stderr) = run(&project, &["session", "show", "20990101_000000_nope"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("no session `20990101_000000_nope`")
            && stderr.contains("refinery session list"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&project, &["session", "show", "../../etc"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid session id"), "{stderr}");
    let (code, _, stderr) = run(
        &project,
        &["session", "restore", "default", "--round", "1", "--to", "x"],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("no session `default`"), "{stderr}");
}

#[tokio::test]
async fn a_damaged_session_does_not_hide_the_others() {
    let (project, id) = populated().await;
    let broken = project.state.join("sessions/20200101_000000_broken");
    fs_err::create_dir_all(&broken).unwrap();
    // Damage before the journal's end (not a torn last record) is an error naming the file.
    fs_err::write(
        broken.join("events.jsonl"),
        b"{oops\n{\"op\": \"vote\", \"choice\": \"a\"}\n",
    )
    .unwrap();
    let (code, stdout, _) = run(&project, &["session", "list"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(&id), "{stdout}");
    let broken_line = stdout.lines().find(|line| line.contains("broken")).unwrap();
    assert!(
        broken_line.contains("error:") && broken_line.contains("events.jsonl"),
        "{broken_line}"
    );
    let (code, _, stderr) = run(&project, &["session", "show", "20200101_000000_broken"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("corrupt"), "{stderr}");
}

#[test]
fn an_empty_state_folder_lists_nothing_helpfully() {
    let project = Project::new();
    let (code, stdout, _) = run(&project, &["session", "list"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("no sessions under"), "{stdout}");
}

#[tokio::test]
async fn gc_removes_only_what_no_session_names() {
    let (project, id) = populated().await;
    let objects = project.state.join("objects");
    // What a snapshot interrupted before its manifest leaves: an object nothing names, and
    // half of an object write.
    let orphan = objects.join("ab".repeat(32));
    fs_err::write(&orphan, b"orphan").unwrap();
    fs_err::write(objects.join(".incoming-x1"), b"half").unwrap();
    let (code, stdout, _) = run(&project, &["session", "gc"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(orphan.exists(), "younger than the default hour: kept");
    let (code, stdout, _) = run(&project, &["session", "gc", "--keep-recent", "0"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("removed 1 unreferenced object(s)"),
        "{stdout}"
    );
    assert!(!orphan.exists());
    let dest = project.workspace.with_file_name("restored");
    let (code, _, stderr) = run(
        &project,
        &[
            "session",
            "restore",
            &id,
            "--round",
            "1",
            "--to",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        fs_err::read(dest.join("index.html")).unwrap(),
        b"<h1>hello</h1>"
    );
}
