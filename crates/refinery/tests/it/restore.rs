//! `refinery session restore` cannot escape its destination: a folder that holds files is
//! refused without `--force`, links already in the destination are never followed (even with
//! `--force`), and an edited manifest is refused before anything is written.

use serde_json::json;

use crate::support::{Project, call, read_json};

/// A session whose round 1 holds `site/index.html`.
async fn one_round() -> Project {
    let project = Project::new();
    project.write("site/index.html", b"<h1>round one</h1>");
    let client = project.mcp("all").await;
    let (error, body) = call(
        &client,
        "new_answer",
        json!({"answer": "round one", "file_paths": ["site"]}),
    )
    .await;
    assert!(!error, "{body}");
    client.cancel().await.unwrap();
    project
}

fn restore(project: &Project, to: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let output = project
        .command()
        .args(["session", "restore", "default", "--round", "1", "--to"])
        .arg(to)
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_folder_that_holds_files_needs_force() {
    let project = one_round().await;
    let dest = project.workspace.parent().unwrap().join("busy");
    fs_err::create_dir_all(dest.join("site")).unwrap();
    fs_err::write(dest.join("site/index.html"), "the user's own page").unwrap();
    fs_err::write(dest.join("other.txt"), "unrelated").unwrap();
    let (ok, stderr) = restore(&project, &dest, &[]);
    assert!(!ok);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        fs_err::read_to_string(dest.join("site/index.html")).unwrap(),
        "the user's own page"
    );
    let (ok, stderr) = restore(&project, &dest, &["--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        fs_err::read_to_string(dest.join("site/index.html")).unwrap(),
        "<h1>round one</h1>"
    );
    assert_eq!(
        fs_err::read_to_string(dest.join("other.txt")).unwrap(),
        "unrelated"
    );
    // An empty or missing folder needs nothing.
    let fresh = project.workspace.parent().unwrap().join("fresh");
    let (ok, stderr) = restore(&project, &fresh, &[]);
    assert!(ok, "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_link_planted_in_the_destination_is_never_followed() {
    let project = one_round().await;
    let outside = project.workspace.parent().unwrap().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let dest = project.workspace.parent().unwrap().join("planted");
    fs_err::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("site")).unwrap();
    let (ok, stderr) = restore(&project, &dest, &["--force"]);
    assert!(!ok);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(fs_err::read_dir(&outside).unwrap().count(), 0);
}

#[tokio::test]
async fn an_edited_manifest_is_refused_before_anything_is_written() {
    let project = one_round().await;
    let manifest_path = project
        .state
        .join("sessions/default/round_001/submission.json");
    let mut manifest = read_json(&manifest_path);
    let hash = manifest["files"][0]["hash"].clone();
    // A path out of the destination, then a file under a link (the shape of `a → /etc`,
    // `a/x`): both refused by the manifest check, before any write.
    manifest["files"] = json!([
        {"path": "../escaped.html", "kind": "file", "hash": hash, "size": 18, "mode": 420},
    ]);
    fs_err::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let dest = project.workspace.parent().unwrap().join("dest");
    let (ok, stderr) = restore(&project, &dest, &[]);
    assert!(!ok);
    assert!(stderr.contains("manifest"), "{stderr}");
    assert!(
        !project
            .workspace
            .parent()
            .unwrap()
            .join("escaped.html")
            .exists()
    );
    assert!(!dest.exists() || fs_err::read_dir(&dest).unwrap().count() == 0);
    manifest["files"] = json!([
        {"path": "a", "kind": "symlink", "hash": hash, "size": 18, "mode": 511},
        {"path": "a/x", "kind": "file", "hash": hash, "size": 18, "mode": 420},
    ]);
    fs_err::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (ok, stderr) = restore(&project, &dest, &[]);
    assert!(!ok);
    assert!(stderr.contains("manifest"), "{stderr}");
    assert!(!dest.exists() || fs_err::read_dir(&dest).unwrap().count() == 0);
}
