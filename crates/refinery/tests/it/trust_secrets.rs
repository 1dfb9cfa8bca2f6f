//! Secrets (issue 10, "one scrubber at the boundary"): credentials never leave the process
//! or get stored, whoever handles them.
//!
//! The acceptance scenario plants fake credentials of every shape the scanner knows — in the
//! task, a workspace file, `.env`, the environment, `--criteria` and `--verify` — runs a
//! real `refinery refine` against the fake model server (an agent-CLI builder with an API
//! judge, and an all-API variant), and then looks for them everywhere: every request the
//! fake recorded, every file under the state folder, the workspace and the throwaway HOME,
//! the session id, stdout and stderr, and the command line of every process sampled while the
//! run went on. The smaller tests pin single promises: judges' raw replies and lessons are
//! stored masked, an API builder cannot write a mask over a real key, a key at the start of a
//! task never names the session.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use refinery_testkit::agent_cli::{self, AgentCliName};
use refinery_testkit::{FakeModelServer, Reply, TestContext};
use serde_json::{Value, json};

use crate::fake_roles::{MODEL as JUDGE, api_env, evaluation, lessons, refine_once, role};
use crate::llm_support::text;
use crate::planted::{self, CommandLineSampler, Planted, Rng, Sampled, assert_clean, files_under};

/// How the builder is played.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Builder {
    /// An API model with Refinery's file tools.
    Api,
    /// The real `claude` CLI.
    Claude,
}

/// What was planted where, and the environment to run with.
struct Planting {
    task: String,
    criteria: String,
    verify: String,
    env: BTreeMap<String, String>,
    needles: Vec<String>,
    user_file: PathBuf,
}

/// Every shape, plus a private key block, each checked to be one the redaction really masks.
fn site_shapes(seed: u64) -> Vec<Planted> {
    let mut rng = Rng::new(seed);
    let mut shapes = planted::every_shape(&mut rng);
    shapes.push(planted::private_key(&mut rng));
    for shape in &shapes {
        let (clean, _) = refinery_secrets::redact(&shape.line);
        assert!(
            !clean.contains(&shape.needle),
            "generator: {} is not recognised",
            shape.rule
        );
    }
    shapes
}

/// Plants everything; `seed` keeps the values of tests running side by side apart (each
/// samples the whole process table).
fn plant(context: &TestContext, mut env: BTreeMap<String, String>, seed: u64) -> Planting {
    let project = context.project();
    let mut needles = Vec::new();
    let mut site = |site: u64| {
        let shapes = site_shapes(seed + site);
        needles.extend(shapes.iter().map(|shape| shape.needle.clone()));
        shapes
    };
    let lines = |shapes: &[Planted], prefix: &str| {
        shapes
            .iter()
            .flat_map(|shape| {
                shape
                    .line
                    .lines()
                    .map(|line| format!("{prefix}{line}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The task: a key first (it must not name the session), then every shape.
    let in_task = site(11);
    let task = format!(
        "{} Build a landing page for Acme.\n{}",
        in_task[0].line,
        lines(&in_task, "")
    );
    // A tracked workspace file the deliverable includes.
    let in_file = site(12);
    let user_file = project.join("notes/credentials.md");
    fs_err::create_dir_all(user_file.parent().unwrap()).unwrap();
    fs_err::write(
        &user_file,
        format!("# Deploy notes\n{}\n", lines(&in_file, "")),
    )
    .unwrap();
    // `.env` (git-ignored, as it normally is) and the environment: secret-named variables.
    let mut dotenv = String::new();
    for (index, shape) in site(13)
        .iter()
        .filter(|shape| !shape.line.contains('\n'))
        .enumerate()
    {
        let _ = writeln!(dotenv, "PLANTED_{index}_TOKEN={}", shape.needle);
    }
    let mut rng = Rng::new(seed + 14);
    let dotenv_plain = planted::plain_value(&mut rng, "dotenv");
    let _ = writeln!(dotenv, "DEPLOY_PASSWORD={dotenv_plain}");
    fs_err::write(project.join(".env"), dotenv).unwrap();
    fs_err::write(project.join(".gitignore"), ".env\n").unwrap();
    for (index, shape) in site(15)
        .iter()
        .filter(|shape| !shape.line.contains('\n'))
        .enumerate()
    {
        env.insert(format!("PLANTED_ENV_{index}_SECRET"), shape.needle.clone());
    }
    let env_plain = planted::plain_value(&mut rng, "environment");
    env.insert("SERVICE_TOKEN".to_owned(), env_plain.clone());
    // `--criteria` and `--verify` (the command also prints the environment's token).
    let in_criteria = site(16);
    let criteria = format!(
        "E1: The page has a heading that names the outcome.\n{}\nE2: The page loads without errors.",
        lines(&in_criteria, "")
    );
    // One-line shapes as comments, the key block as a heredoc (as a script would carry one).
    let in_verify = site(17);
    let (blocks, one_liners): (Vec<Planted>, Vec<Planted>) = in_verify
        .into_iter()
        .partition(|shape| shape.line.contains('\n'));
    let verify = format!(
        "test -f index.html && echo \"token: $SERVICE_TOKEN\"\n{}\ncat > /dev/null <<'BLOCK'\n{}\nBLOCK",
        lines(&one_liners, "# "),
        lines(&blocks, "")
    );
    needles.extend([dotenv_plain, env_plain]);
    Planting {
        task,
        criteria,
        verify,
        env,
        needles,
        user_file,
    }
}

/// The fake plays every role; `claude` builds through its own `Write` tool, an API builder
/// through `write_file`.
fn script(server: &FakeModelServer, project: &Path) {
    let index = project.join("index.html").display().to_string();
    server.route(move |request| {
        let tools = request.tool_names();
        Some(match role(request) {
            "builder"
                if request.tool_results().is_empty()
                    && tools.iter().any(|tool| tool == "Write") =>
            {
                Reply::tool_call(
                    "Write",
                    json!({"file_path": index, "content": "<h1>Acme ships in a day</h1>\n"}),
                )
            }
            "builder"
                if request.tool_results().is_empty()
                    && tools.iter().any(|tool| tool == "write_file") =>
            {
                Reply::tool_call(
                    "write_file",
                    json!({"path": "index.html", "content": "<h1>Acme ships in a day</h1>\n"}),
                )
            }
            "builder" => Reply::text("Wrote index.html."),
            "evaluator" => Reply::text(evaluation(&["E1", "E2"], "Clear heading.")),
            "trace" => Reply::text(lessons("wrote the page in one pass")),
            _ => Reply::text("ok"),
        })
    });
}

/// Runs `refinery` with `args` and `env` in `project`, sampling the command line of every
/// other process while it runs. Returns the output and the command-line leaks seen.
fn run_sampled(
    project: &Path,
    env: &BTreeMap<String, String>,
    args: &[String],
    needles: &[String],
) -> (std::process::Output, Sampled) {
    let mut child = std::process::Command::new(crate::support::BIN)
        .env_clear()
        .envs(env)
        .current_dir(project)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run's own arguments hold the planted task, criteria and commands: that is the user's
    // command line, not a child's, so only that process is skipped.
    let skip = Arc::new(AtomicU32::new(child.id()));
    let sampler = CommandLineSampler::start(needles.to_vec(), skip);
    let deadline = std::time::Instant::now() + Duration::from_mins(4);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (output, sampler.finish())
}

async fn planted_credentials_leak_nowhere(builder: Builder) {
    let context = TestContext::new().unwrap();
    let server = FakeModelServer::start().await.unwrap();
    let mut env = match builder {
        Builder::Claude => {
            let Some(program) = agent_cli::require_agent_cli(AgentCliName::Claude) else {
                return;
            };
            agent_cli::claude_env(&context, &server, &program)
        }
        Builder::Api => api_env(&context, &server),
    };
    env.insert("RUST_LOG".to_owned(), "debug".to_owned());
    let seed = match builder {
        Builder::Claude => 1000,
        Builder::Api => 2000,
    };
    let planting = plant(&context, env, seed);
    script(&server, &context.project());
    let builder_name = match builder {
        Builder::Claude => "claude",
        Builder::Api => JUDGE,
    };
    let args: Vec<String> = [
        "refine",
        &planting.task,
        "--criteria",
        &planting.criteria,
        "--verify",
        &planting.verify,
        "--builder",
        builder_name,
        "--evaluator",
        JUDGE,
        "--max-rounds",
        "1",
        "--call-timeout",
        "120",
        "--json",
        "--yes",
    ]
    .map(str::to_owned)
    .to_vec();
    let project = context.project();
    let needles = planting.needles.clone();
    let env = planting.env.clone();
    let (output, sampled) =
        tokio::task::spawn_blocking(move || run_sampled(&project, &env, &args, &needles))
            .await
            .unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the run did not converge:\n{stderr}"
    );
    let needles = &planting.needles;

    // Output, and the session's id and folder.
    assert_clean("stdout (--json events)", &stdout, needles);
    assert_clean("stderr (progress and debug logs)", &stderr, needles);
    let summary: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|event| event["event"] == "summary")
        .expect("a summary event");
    let state = context.project().join(".refinery");
    for session in fs_err::read_dir(state.join("sessions")).unwrap().flatten() {
        assert_clean(
            "a session folder name",
            &session.file_name().to_string_lossy(),
            needles,
        );
    }
    assert_clean("the session id", &summary.to_string(), needles);

    // Every request the fake received, from the CLI and from the API judge alike.
    let requests = server.requests();
    assert!(requests.iter().any(|request| role(request) == "evaluator"));
    assert!(requests.iter().any(|request| role(request) == "builder"));
    for request in &requests {
        assert_clean(
            &format!("a request to {} ({})", request.path, role(request)),
            &request.body_text(),
            needles,
        );
        assert_clean(
            "request headers",
            &format!("{:?}", request.headers),
            needles,
        );
    }

    // Files: the state folder (the object store may hold the user's file byte for byte: it is
    // the backup a restore needs), the workspace outside the files the user wrote, HOME.
    let user_bytes = fs_err::read(&planting.user_file).unwrap();
    for file in files_under(&state) {
        let mut bytes = fs_err::read(&file).unwrap();
        if file.starts_with(state.join("objects")) {
            // A pack holds the user's file among other objects: everything else in it must
            // be clean.
            bytes = without(&bytes, &user_bytes);
        }
        assert_clean(
            &format!("state file {}", file.display()),
            &String::from_utf8_lossy(&bytes),
            needles,
        );
    }
    for file in files_under(&context.project()) {
        if file.starts_with(&state)
            || file.starts_with(context.project().join(".git"))
            || file == planting.user_file
            || file == context.project().join(".env")
        {
            continue;
        }
        let content = String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned();
        assert_clean(
            &format!("workspace file {}", file.display()),
            &content,
            needles,
        );
    }
    for file in files_under(&context.home()) {
        let content = String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned();
        assert_clean(&format!("HOME file {}", file.display()), &content, needles);
    }
    // The command lines of every process while the run went on: the builder CLI, git, the
    // verify shell.
    assert!(
        sampled.rounds > 5 && sampled.skipped_hits > 0,
        "the process table was sampled {} times, and the run's own arguments seen {} times",
        sampled.rounds,
        sampled.skipped_hits
    );
    assert!(
        sampled.leaks.is_empty(),
        "planted credentials on command lines: {:?}",
        sampled.leaks
    );
}

/// Acceptance item 3 with an agent-CLI builder (the real `claude`) and an API judge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_credentials_leak_nowhere_with_a_cli_builder_and_an_api_judge() {
    planted_credentials_leak_nowhere(Builder::Claude).await;
}

/// The same scenario with API models only (no CLI needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_credentials_leak_nowhere_with_api_models() {
    planted_credentials_leak_nowhere(Builder::Api).await;
}

/// Judges' raw replies, their lessons (`learnings.md`) and `evaluation.json` are stored with
/// the keys a judge echoed masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_replies_lessons_and_evaluations_are_stored_masked() {
    let context = TestContext::new().unwrap();
    let server = FakeModelServer::start().await.unwrap();
    let mut rng = Rng::new(21);
    let shapes = planted::every_shape(&mut rng);
    let echoed = shapes
        .iter()
        .map(|shape| shape.line.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let needles: Vec<String> = shapes.iter().map(|shape| shape.needle.clone()).collect();
    let critique = format!("Found these in the repository: {echoed}");
    let lesson_lines: Vec<String> = shapes
        .chunks(4)
        .map(|chunk| {
            let lines: Vec<&str> = chunk.iter().map(|shape| shape.line.as_str()).collect();
            format!("the builder saw {}", lines.join("\n"))
        })
        .collect();
    server.route(move |request| {
        Some(match role(request) {
            "builder" if request.tool_results().is_empty() => Reply::tool_call(
                "write_file",
                json!({"path": "index.html", "content": "<h1>Acme</h1>\n"}),
            ),
            "builder" => Reply::text("Wrote index.html."),
            "evaluator" => Reply::text(evaluation(&["E1"], &critique)),
            // One lesson per few shapes: the trace schema bounds each lesson's length.
            "trace" => Reply::text(
                json!({"do": lesson_lines, "dont": [], "critical_errors": []}).to_string(),
            ),
            _ => Reply::text("ok"),
        })
    });
    let env = api_env(&context, &server);
    let refined = refine_once(&context, &env, "Build a page", "E1: It has a heading");
    assert_eq!(refined.status.code(), Some(0), "{}", text(&refined.stderr));
    let evaluated = crate::llm_support::refinery(
        &context,
        &env,
        &[
            "evaluate",
            "index.html",
            "--criteria",
            "E1: It has a heading",
            "--evaluator",
            JUDGE,
            "--yes",
            "--json",
        ],
    );
    assert_eq!(
        evaluated.status.code(),
        Some(0),
        "{}",
        text(&evaluated.stderr)
    );
    let state = context.project().join(".refinery");
    let files = files_under(&state);
    let names: Vec<String> = files
        .iter()
        .filter_map(|file| file.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for expected in ["learnings.md", "evaluation.json", "round.json"] {
        assert!(
            names.iter().any(|name| name == expected),
            "no {expected} in {names:?}"
        );
    }
    for file in files {
        let content = String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned();
        assert_clean(
            &format!("state file {}", file.display()),
            &content,
            &needles,
        );
    }
    assert_clean(
        "refine output",
        &(text(&refined.stdout) + &text(&refined.stderr)),
        &needles,
    );
    assert_clean(
        "evaluate output",
        &(text(&evaluated.stdout) + &text(&evaluated.stderr)),
        &needles,
    );
}

/// An API builder reads a file holding a key (it sees `[REDACTED:…]`) and writes the file
/// back with the mask: the write is refused with a tool error that says why, and the user's
/// file keeps its real key, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_builder_never_writes_a_mask_over_a_real_key() {
    let context = TestContext::new().unwrap();
    let server = FakeModelServer::start().await.unwrap();
    let mut rng = Rng::new(31);
    let token = planted::every_shape(&mut rng)
        .into_iter()
        .find(|shape| shape.rule == "github-pat")
        .unwrap()
        .needle;
    let original = format!("APP_NAME = \"acme\"\nGITHUB_TOKEN = \"{token}\"\n");
    fs_err::write(context.project().join("config.py"), &original).unwrap();
    server.route(move |request| {
        let results = request.tool_results();
        Some(match role(request) {
            "builder" if results.is_empty() => {
                Reply::tool_call("read_file", json!({"path": "config.py"}))
            }
            // Write back what was read, with one change: the mask goes along.
            "builder" if results.len() == 1 => {
                let seen = results[0].1.clone();
                Reply::tool_call(
                    "write_file",
                    json!({"path": "config.py", "content": seen.replace("acme", "acme-2")}),
                )
            }
            "builder" => Reply::text("Done."),
            "evaluator" => Reply::text(evaluation(&["E1"], "Fine.")),
            "trace" => Reply::text(lessons("kept the config")),
            _ => Reply::text("ok"),
        })
    });
    let env = api_env(&context, &server);
    let output = refine_once(
        &context,
        &env,
        "Rename the app in config.py",
        "E1: The app is renamed",
    );
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        fs_err::read_to_string(context.project().join("config.py")).unwrap(),
        original
    );
    let last_builder = server
        .model_requests()
        .into_iter()
        .filter(|request| role(request) == "builder")
        .max_by_key(|request| request.tool_results().len())
        .unwrap();
    let results = last_builder.tool_results();
    assert!(
        results[0].1.contains("[REDACTED:github-pat]"),
        "{results:?}"
    );
    assert!(!results[0].1.contains(&token));
    let refusal = &results[1].1;
    assert!(
        refusal.contains("refused") && refusal.contains("replace the real value with the mask"),
        "{refusal}"
    );
}

/// `bytes` with every occurrence of `part` cut out.
fn without(bytes: &[u8], part: &[u8]) -> Vec<u8> {
    if part.is_empty() {
        return bytes.to_vec();
    }
    let mut kept = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(part) {
            at += part.len();
        } else {
            kept.push(bytes[at]);
            at += 1;
        }
    }
    kept
}
