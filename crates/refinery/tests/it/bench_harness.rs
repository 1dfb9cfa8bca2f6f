//! The MCP benchmark's stdio client (`benches/support/stdio_mcp.rs`) starts servers and reads
//! their replies correctly — checked here so that `cargo bench` never times calls it
//! misread. Not a benchmark: nothing is timed.
//!
//! MassGen's replies come from a recording of its real quality server (0.1.97, fastmcp
//! 2.14.7), replayed over a pipe, so this runs everywhere in a second. The live check against
//! a real MassGen is opt-in (`#[ignore]`; run it with `--ignored` and
//! `REFINERY_BENCH_MASSGEN_PYTHON` naming a Python with it): CI does not install MassGen (268
//! packages, 1.8 GB, 18 minutes to install here); the recording is what CI checks.

#[allow(
    dead_code,
    reason = "shared with the benchmark, which uses all of it; a test uses a part"
)]
#[path = "../../benches/support/stdio_mcp.rs"]
mod stdio_mcp;

use std::path::Path;
use std::process::{Command, Stdio};

use refinery_testkit::TestContext;
use serde_json::json;
use stdio_mcp::Server;

const RECORDING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/massgen-0.1.97-quality-replies.jsonl"
);

/// A "server" that plays the recorded reply lines (ids 1–7, in the order the calls below
/// make them), then reads its stdin to the end.
fn replay(recording: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "cat \"$0\" && cat >/dev/null", recording])
        .stderr(Stdio::inherit());
    command
}

#[test]
fn massgen_replies_are_read_as_massgen_means_them() {
    let (mut server, _) = Server::spawn("recorded MassGen", replay(RECORDING)).unwrap();
    // MassGen reports a tool error as an ordinary result with `"status": "error"`: the
    // harness must refuse it, or a benchmark would time calls that did nothing.
    let error = server
        .call("submit_checklist", &json!({"scores": {"E1": 5}}))
        .unwrap_err();
    assert!(error.contains("No criteria registered"), "{error}");
    let (_, session) = server
        .call("init_session", &json!({"label": "bench 0"}))
        .unwrap();
    assert_eq!(session["status"], "ok");
    let (_, criteria) = server
        .call(
            "generate_eval_criteria",
            &json!({"criteria": [{"id": "E1", "text": "requirements met"}]}),
        )
        .unwrap();
    assert_eq!(criteria["criteria_count"], 2);
    let (_, verdict) = server
        .call("submit_checklist", &json!({"scores": {"E1": 5, "E2": 8}}))
        .unwrap();
    assert_eq!(verdict["status"], "accepted");
    assert_eq!(verdict["verdict"], "iterate");
    let (_, plan) = server
        .call("draft_approach", &json!({"improvements": {"E1": ["x"]}}))
        .unwrap();
    assert_eq!(plan["valid"], true);
    // An unknown tool: fastmcp's `isError`.
    let error = server.call("no_such_tool", &json!({})).unwrap_err();
    assert!(error.contains("Unknown tool"), "{error}");
    server.shutdown();
}

#[test]
fn a_server_that_closes_its_output_is_an_error_not_a_hang() {
    let mut command = Command::new("sh");
    command.args(["-c", "exit 0"]);
    let Err(error) = Server::spawn("silent", command) else {
        panic!("a server that never answered was accepted");
    };
    // Whether the exit is seen on the write or on the read depends on timing; either is an
    // error that says the server closed its end.
    assert!(
        error.contains("closed its stdin") || error.contains("closed stdout"),
        "{error}"
    );
}

#[test]
fn the_harness_drives_our_server_through_a_round() {
    let context = TestContext::new().unwrap();
    let workspace = context.project();
    fs_err::create_dir_all(&workspace).unwrap();
    fs_err::write(workspace.join("answer.md"), "the deliverable\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_refinery"));
    command
        .args(["mcp", "all"])
        .current_dir(&workspace)
        .env_clear()
        .envs(context.bare_env())
        .stderr(Stdio::inherit());
    let (mut server, _) = Server::spawn("refinery", command).unwrap();
    round(&mut server, "propose_improvements");
    assert!(server.peak_rss_kib().is_some());
    server.shutdown();
}

/// One round in the benchmark's order and argument shapes (string-only criteria, the shape
/// both servers accept).
fn round(server: &mut Server, plan_tool: &str) {
    server
        .call("init_session", &json!({"label": "smoke"}))
        .unwrap();
    server
        .call(
            "generate_eval_criteria",
            &json!({"criteria": [
                {"id": "E1", "text": "requirements met", "category": "primary"},
                {"id": "E2", "text": "works when run"}]}),
        )
        .unwrap();
    server
        .call(
            "new_answer",
            &json!({"answer": "round", "file_paths": ["answer.md"]}),
        )
        .unwrap();
    server
        .call(
            "submit_checklist",
            &json!({"scores": {"E1": 3, "E2": {"score": 8, "reasoning": "ran the tests; all pass"}}}),
        )
        .unwrap();
    server
        .call(
            plan_tool,
            &json!({"improvements": {"E1": [{"plan": "rebuild the flow", "impact": "structural"}]}}),
        )
        .unwrap();
}

#[test]
#[ignore = "opt-in: needs REFINERY_BENCH_MASSGEN_PYTHON, a Python with massgen==0.1.97 (run with --ignored)"]
fn the_harness_drives_a_real_massgen_when_one_is_given() {
    let python = std::env::var_os("REFINERY_BENCH_MASSGEN_PYTHON")
        .filter(|p| !p.is_empty())
        .expect(
            "REFINERY_BENCH_MASSGEN_PYTHON must name a Python with massgen==0.1.97 \
             (pip install massgen==0.1.97 fastmcp==2.14.7 \"mcp<2\")",
        );
    let context = TestContext::new().unwrap();
    let workspace = context.project();
    fs_err::create_dir_all(&workspace).unwrap();
    fs_err::write(workspace.join("answer.md"), "the deliverable\n").unwrap();
    let spawn = |module: &str, workspace: &Path| {
        let mut command = Command::new(&python);
        command
            .args(["-m", module])
            .current_dir(workspace)
            .stderr(Stdio::null());
        Server::spawn(module, command).unwrap().0
    };
    let mut quality = spawn("massgen.mcp_tools.standalone.quality_server", &workspace);
    let mut workflow = spawn("massgen.mcp_tools.standalone.workflow_server", &workspace);
    let (_, answer) = workflow
        .call(
            "new_answer",
            &json!({"answer": "round", "file_paths": ["answer.md"]}),
        )
        .unwrap();
    assert_eq!(answer["status"], "ok");
    quality
        .call("init_session", &json!({"label": "smoke"}))
        .unwrap();
    quality
        .call(
            "generate_eval_criteria",
            &json!({"criteria": [{"id": "E1", "text": "requirements met"}]}),
        )
        .unwrap();
    let (_, verdict) = quality
        .call("submit_checklist", &json!({"scores": {"E1": 3}}))
        .unwrap();
    assert_eq!(verdict["verdict"], "iterate");
    quality.shutdown();
    workflow.shutdown();
}
