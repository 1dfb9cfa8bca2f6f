//! Several server processes writing one session at once.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{Project, call, read_json};

const PROCESSES: usize = 8;
const ROUNDS_EACH: usize = 6;

/// 8 `refinery mcp all` processes each submit answers and checklists to the default session
/// concurrently; afterwards every round exists exactly once and every file parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_processes_leave_a_consistent_history() {
    let project = Project::new();
    for index in 0..PROCESSES {
        project.write(
            &format!("work/agent{index}.txt"),
            format!("agent {index}").as_bytes(),
        );
    }
    let setup = project.mcp("quality").await;
    let (error, body) = call(
        &setup,
        "generate_eval_criteria",
        json!({"criteria": [{"id": "E1", "text": "a"}, {"id": "E2", "text": "b"}]}),
    )
    .await;
    assert!(!error, "{body}");
    setup.cancel().await.unwrap();

    let mut clients = Vec::new();
    for _ in 0..PROCESSES {
        clients.push(project.mcp("all").await);
    }
    let mut tasks = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut rounds = Vec::new();
            let mut answers = 0;
            for step in 0..ROUNDS_EACH {
                let file = format!("work/agent{index}.txt");
                // Another process may score the round this answer was for before this one
                // does; the tools then refuse a checklist with no answer (`no_answer`), so
                // submit again for the next round.
                loop {
                    let (error, answer) = call(
                        &client,
                        "new_answer",
                        json!({"answer": format!("agent {index} step {step}"), "file_paths": [file]}),
                    )
                    .await;
                    assert!(!error, "{answer}");
                    answers += 1;
                    let score = u8::try_from((index + step) % 11).unwrap();
                    let (error, verdict) = call(
                        &client,
                        "submit_checklist",
                        json!({"scores": {"E1": score, "E2": 9}}),
                    )
                    .await;
                    if error {
                        assert_eq!(verdict["code"], "no_answer", "{verdict}");
                        continue;
                    }
                    rounds.push(verdict["round"].as_u64().unwrap());
                    break;
                }
            }
            client.cancel().await.unwrap();
            (rounds, answers)
        }));
    }
    let mut seen_rounds = Vec::new();
    let mut answers = 0;
    for task in tasks {
        let (rounds, count) = task.await.unwrap();
        seen_rounds.extend(rounds);
        answers += count;
    }
    let total = (PROCESSES * ROUNDS_EACH) as u64;
    seen_rounds.sort_unstable();
    assert_eq!(
        seen_rounds,
        (1..=total).collect::<Vec<_>>(),
        "every caller got a distinct round"
    );

    let session = project.state.join("sessions/default");
    let state = read_json(&session.join("state.json"));
    assert_eq!(state["round"], total);

    let events: Vec<Value> = fs_err::read_to_string(session.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every journal line is whole JSON"))
        .collect();
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        *ops.entry(event["op"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        ops.get("submit_checklist"),
        Some(&(PROCESSES * ROUNDS_EACH))
    );
    assert_eq!(ops.get("new_answer"), Some(&answers));
    let mut journal_rounds: Vec<u64> = events
        .iter()
        .filter(|event| event["op"] == "submit_checklist")
        .map(|event| event["round"].as_u64().unwrap())
        .collect();
    journal_rounds.sort_unstable();
    assert_eq!(
        journal_rounds,
        (1..=total).collect::<Vec<_>>(),
        "no lost or doubled round"
    );

    // Every submission manifest (current and superseded) parses, and together they account
    // for every new_answer call.
    let mut manifests = 0;
    for entry in fs_err::read_dir(&session).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("round_") {
            for file in fs_err::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                let file_name = file.file_name().to_string_lossy().into_owned();
                if file_name.starts_with("submission") {
                    let manifest = read_json(&file.path());
                    assert!(manifest["round"].as_u64().is_some());
                    manifests += 1;
                }
            }
        }
        assert!(
            !name.starts_with(".tmp-"),
            "temporary file left behind: {name}"
        );
    }
    assert_eq!(manifests, answers);
}
