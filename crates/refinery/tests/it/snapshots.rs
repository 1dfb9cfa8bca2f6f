//! Snapshots of a large tree through the real binary: unchanged rounds cost (almost) nothing,
//! and a round restores byte-identical.

use serde_json::json;

use crate::support::{Project, call, tree_bytes};

const FILES: usize = 50;
const FILE_BYTES: usize = 1024 * 1024;

fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // xorshift: incompressible enough that nothing could be deduplicated by accident.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state & 0xff) as u8
        })
        .collect()
}

#[tokio::test]
async fn a_second_snapshot_of_an_unchanged_50_mb_tree_adds_under_1_mb() {
    let project = Project::new();
    for index in 0..FILES {
        let folder = if index % 2 == 0 {
            "assets/a"
        } else {
            "assets/b"
        };
        // Same names in two folders, to be sure they stay apart.
        project.write(
            &format!("{folder}/file{}.bin", index / 2),
            &pseudo_random_bytes(index as u64, FILE_BYTES),
        );
    }
    let client = project.mcp("workflow").await;
    let (error, first) = call(
        &client,
        "new_answer",
        json!({"answer": "r1", "file_paths": ["."]}),
    )
    .await;
    assert!(!error, "{first}");
    assert_eq!(first["snapshots"].as_array().unwrap().len(), FILES);
    assert_eq!(first["total_bytes"], (FILES * FILE_BYTES) as u64);
    let state_after_first = tree_bytes(&project.state);

    let (error, second) = call(
        &client,
        "new_answer",
        json!({"answer": "r1 again", "file_paths": ["."]}),
    )
    .await;
    assert!(!error, "{second}");
    assert_eq!(second["new_bytes"], 0);
    let added = tree_bytes(&project.state) - state_after_first;
    assert!(added < 1024 * 1024, "second snapshot added {added} bytes");
    client.cancel().await.unwrap();

    let restored = project.workspace.parent().unwrap().join("restored");
    let output = project
        .command()
        .args(["session", "restore", "default", "--round", "1", "--to"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for index in 0..FILES {
        let folder = if index % 2 == 0 {
            "assets/a"
        } else {
            "assets/b"
        };
        let relative = format!("{folder}/file{}.bin", index / 2);
        let original = fs_err::read(project.workspace.join(&relative)).unwrap();
        let copy = fs_err::read(restored.join(&relative)).unwrap();
        assert!(original == copy, "{relative} differs after restore");
    }
}
