//! The GitHub Action (`action.yml` and `action/*.sh`), run the way GitHub Actions runs a
//! composite action: each `run:` step is a bash script (`bash --noprofile --norc -eo pipefail`)
//! whose `env:` is resolved from the inputs and the earlier steps' outputs, with the variables
//! a runner sets (`GITHUB_OUTPUT` fresh for each step, `GITHUB_STEP_SUMMARY`,
//! `GITHUB_ACTION_PATH`, `GITHUB_WORKSPACE`, `RUNNER_TEMP`, `CI=true`); `uses:` steps (cache,
//! upload-artifact) are recorded with their `with:` resolved instead of run. The scripts run
//! the real binary against the fake model server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use refinery_testkit::FakeModelServer;
use serde_json::Value;

use crate::llm_support::text;
use crate::refine::{CRITERIA, MODEL, Run, Script, content_by_round, score_by_content};
use crate::runs::{git, repository};

/// The repository root: where `action.yml` and `action/` are.
fn action_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(text) | Yaml::String(text) => Value::String(text.clone()),
        Yaml::Integer(number) => Value::String(number.to_string()),
        Yaml::Boolean(flag) => Value::String(flag.to_string()),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.as_str().unwrap().to_owned(), yaml_to_json(value)))
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

pub(crate) fn load_yaml(path: &Path) -> Value {
    let text = fs_err::read_to_string(path).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    yaml_to_json(&docs[0])
}

fn action() -> Value {
    load_yaml(&action_path().join("action.yml"))
}

/// What expressions see: the inputs, the steps' outputs so far, and the runner's facts.
struct Context {
    inputs: BTreeMap<String, String>,
    steps: BTreeMap<String, BTreeMap<String, String>>,
    action_path: String,
}

impl Context {
    /// The value of one operand: a reference or a quoted literal.
    fn operand(&self, raw: &str) -> String {
        let raw = raw.trim();
        if let Some(literal) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            return literal.to_owned();
        }
        let parts: Vec<&str> = raw.split('.').collect();
        match parts.as_slice() {
            ["inputs", name] => self
                .inputs
                .get(*name)
                .unwrap_or_else(|| panic!("undeclared input {name}"))
                .clone(),
            ["steps", id, "outputs", name] => self
                .steps
                .get(*id)
                .unwrap_or_else(|| panic!("no earlier step `{id}`"))
                .get(*name)
                .cloned()
                .unwrap_or_default(),
            ["github", "action_path"] => self.action_path.clone(),
            _ => panic!("expression `{raw}` is not supported by this runner"),
        }
    }

    /// `always()`, `a == 'b'`, `a != 'b'` and `&&` of those: all action.yml uses.
    fn condition(&self, expression: &str, failed: bool) -> bool {
        let expression = expression
            .trim()
            .trim_start_matches("${{")
            .trim_end_matches("}}");
        let mut always = false;
        let mut result = true;
        for part in expression.split("&&") {
            let part = part.trim();
            if part == "always()" {
                always = true;
            } else if let Some((left, right)) = part.split_once("!=") {
                result &= self.operand(left) != self.operand(right);
            } else if let Some((left, right)) = part.split_once("==") {
                result &= self.operand(left) == self.operand(right);
            } else {
                panic!("condition `{part}` is not supported by this runner");
            }
        }
        result && (always || !failed)
    }

    /// A string with every `${{ … }}` replaced by its value.
    fn resolve(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").unwrap() + start;
            out.push_str(&self.operand(&rest[start + 3..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// Parses a `GITHUB_OUTPUT` file: `name=value` lines and `name<<DELIMITER` blocks.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            outputs.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            outputs.insert(name.to_owned(), value.to_owned());
        }
    }
    outputs
}

/// One run of the action.
pub(crate) struct ActionRun {
    pub(crate) failed: bool,
    pub(crate) outputs: BTreeMap<String, String>,
    pub(crate) summary: String,
    /// Every step's stdout and stderr, as the job's log shows them.
    pub(crate) log: String,
    /// Each `uses:` step that ran: the action and its resolved `with:`.
    pub(crate) uses: Vec<(String, BTreeMap<String, String>)>,
    /// Every `GITHUB_OUTPUT` file's text.
    pub(crate) output_files: String,
}

/// What a runner sets for every step (`GITHUB_OUTPUT` is per step: see [`run_step`]).
fn runner_env(
    workspace: &Path,
    runner_temp: &Path,
    summary_file: &Path,
) -> BTreeMap<String, String> {
    let path = |path: &Path| path.display().to_string();
    [
        ("CI", "true".to_owned()),
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_ACTION_PATH", path(&action_path())),
        ("GITHUB_WORKSPACE", path(workspace)),
        ("GITHUB_STEP_SUMMARY", path(summary_file)),
        ("GITHUB_JOB", "refine".to_owned()),
        ("RUNNER_TEMP", path(runner_temp)),
        ("RUNNER_OS", "Linux".to_owned()),
        ("RUNNER_ARCH", "X64".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// One `run:` step as a runner runs it: its script written to a file and run with
/// `bash --noprofile --norc -eo pipefail`, with a fresh `GITHUB_OUTPUT`; its result and what
/// it wrote there.
fn run_step(
    step: &Value,
    index: usize,
    env: &BTreeMap<String, String>,
    workspace: &Path,
    runner_temp: &Path,
) -> (std::process::Output, String) {
    let script = runner_temp.join(format!("step-{index}.sh"));
    fs_err::write(&script, step["run"].as_str().unwrap()).unwrap();
    let output_file = runner_temp.join(format!("output-{index}"));
    fs_err::write(&output_file, "").unwrap();
    let result = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .env_clear()
        .envs(env)
        .env("GITHUB_OUTPUT", &output_file)
        .current_dir(workspace)
        .output()
        .unwrap();
    (result, fs_err::read_to_string(&output_file).unwrap())
}

/// Every declared input: the given value, else its default. An undeclared input fails.
fn inputs_with_defaults(action: &Value, given: &[(&str, &str)]) -> BTreeMap<String, String> {
    let declared = action["inputs"].as_object().unwrap();
    for (name, _) in given {
        assert!(declared.contains_key(*name), "input {name} is not declared");
    }
    declared
        .iter()
        .map(|(name, spec)| {
            let value = given.iter().find(|(given, _)| given == name).map_or_else(
                || spec["default"].as_str().unwrap_or_default().to_owned(),
                |(_, value)| (*value).to_owned(),
            );
            (name.clone(), value)
        })
        .collect()
}

/// Runs the composite action with `given` inputs in `workspace`, with `env` (the job's
/// environment: keys and the fake's URL) plus what a runner sets.
pub(crate) fn run_action(
    given: &[(&str, &str)],
    env: &BTreeMap<String, String>,
    workspace: &Path,
    runner_temp: &Path,
) -> ActionRun {
    let action = action();
    let mut context = Context {
        inputs: inputs_with_defaults(&action, given),
        steps: BTreeMap::new(),
        action_path: action_path().display().to_string(),
    };
    fs_err::create_dir_all(runner_temp).unwrap();
    let summary_file = runner_temp.join("step_summary.md");
    fs_err::write(&summary_file, "").unwrap();
    let mut run = ActionRun {
        failed: false,
        outputs: BTreeMap::new(),
        summary: String::new(),
        log: String::new(),
        uses: Vec::new(),
        output_files: String::new(),
    };
    for (index, step) in action["runs"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let condition = step["if"].as_str().unwrap_or("success()");
        let runs = if condition == "success()" {
            !run.failed
        } else {
            context.condition(condition, run.failed)
        };
        if !runs {
            continue;
        }
        let resolved = |map: &Value| -> BTreeMap<String, String> {
            map.as_object()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.clone(), context.resolve(v.as_str().unwrap())))
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(uses) = step["uses"].as_str() {
            run.uses.push((uses.to_owned(), resolved(&step["with"])));
            continue;
        }
        let env = env
            .clone()
            .into_iter()
            .chain(resolved(&step["env"]))
            .chain(runner_env(workspace, runner_temp, &summary_file))
            .collect();
        let (result, outputs_text) = run_step(step, index, &env, workspace, runner_temp);
        run.log.push_str(&text(&result.stdout));
        run.log.push_str(&text(&result.stderr));
        run.output_files.push_str(&outputs_text);
        if let Some(id) = step["id"].as_str() {
            context
                .steps
                .insert(id.to_owned(), parse_outputs(&outputs_text));
        }
        if !result.status.success() {
            run.failed = true;
        }
    }
    run.outputs = action["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, spec)| {
            (
                name.clone(),
                context.resolve(spec["value"].as_str().unwrap()),
            )
        })
        .collect();
    run.summary = fs_err::read_to_string(&summary_file).unwrap();
    run
}

/// A key the fake accepts, assembled at run time so the repository's secret scan stays clean.
fn test_key() -> String {
    format!("sk-ant-{}-{}", "action", "5f0c9e2b7a1d4c8e9f3b6a2d0e7c1b4a")
}

/// Every file's text under `dir`.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    if !dir.exists() {
        return out;
    }
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&all_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&fs_err::read(&path).unwrap()));
        }
    }
    out
}

fn assert_no_key(run: &ActionRun, key: &str, runner_temp: &Path) {
    assert!(!run.log.contains(key), "the key is in the log");
    assert!(!run.summary.contains(key), "the key is in the summary");
    assert!(!run.output_files.contains(key), "the key is in an output");
    assert!(
        !all_text(runner_temp).contains(key),
        "the key is in a file under RUNNER_TEMP (artifacts included)"
    );
}

/// A fake that scores by content, a key, and a repository with one commit.
async fn fixture() -> (FakeModelServer, Run, String) {
    let server = FakeModelServer::start().await.unwrap();
    Script::simple(content_by_round, score_by_content).install(&server);
    let mut run = Run::new(&server);
    let key = test_key();
    run.env.insert("ANTHROPIC_API_KEY".to_owned(), key.clone());
    repository(&run);
    (server, run, key)
}

/// The action with `inputs` (and the test binary as `refinery-binary`) in the run's project,
/// with its own `RUNNER_TEMP` (returned too).
async fn action_in(run: &Run, temp: &str, inputs: &[(&str, &str)]) -> (ActionRun, PathBuf) {
    let mut inputs: Vec<(String, String)> = inputs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    inputs.push(("refinery-binary".to_owned(), crate::support::BIN.to_owned()));
    let runner_temp = run.context.root().join(temp);
    let (env, project, temp) = (run.env.clone(), run.project(), runner_temp.clone());
    let action = tokio::task::spawn_blocking(move || {
        let inputs: Vec<(&str, &str)> = inputs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        run_action(&inputs, &env, &project, &temp)
    })
    .await
    .unwrap();
    (action, runner_temp)
}

/// The uploads of a run: artifact name → path.
fn uploads(run: &ActionRun) -> BTreeMap<String, PathBuf> {
    run.uses
        .iter()
        .filter(|(uses, _)| uses.starts_with("actions/upload-artifact@"))
        .map(|(_, with)| (with["name"].clone(), PathBuf::from(&with["path"])))
        .collect()
}

/// Two uploads, both present: the session folder and its report.
fn assert_uploaded(action: &ActionRun, session: &str) {
    let uploaded = uploads(action);
    assert_eq!(uploaded.len(), 2, "{uploaded:?}");
    let name = format!("refinery-{session}");
    assert!(uploaded[&name].join(session).join("run.json").is_file());
    assert!(
        uploaded[&format!("{name}-report")]
            .join(format!("{session}.html"))
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_refines_in_a_worktree_and_reports_to_github() {
    let (_server, run, key) = fixture().await;
    let (action, runner_temp) = action_in(
        &run,
        "runner-temp",
        &[
            ("command", "refine"),
            ("task", "Build a page"),
            ("criteria", CRITERIA),
            ("builder", MODEL),
            ("evaluators", MODEL),
            (
                "verify",
                "test -s index.html\ntest -n \"$ANTHROPIC_API_KEY\"",
            ),
            ("max-rounds", "3"),
            ("cost-budget", "5"),
            ("worktree", "true"),
        ],
    )
    .await;
    assert!(!action.failed, "{}", action.log);
    let outputs = &action.outputs;
    assert_eq!(outputs["exit-code"], "0", "{}", action.log);
    assert_eq!(outputs["verdict"], "converged");
    let session = &outputs["session"];
    assert!(!session.is_empty());
    assert_eq!(outputs["branch"], format!("refinery/{session}"));
    // The branch holds the delivered round; the user's checkout is clean.
    assert_eq!(
        git(
            &run,
            &run.project(),
            &["show", &format!("{}:index.html", outputs["branch"])]
        ),
        "<h1>VERSION-2</h1>"
    );
    assert_eq!(git(&run, &run.project(), &["status", "--porcelain"]), "");
    assert!(Path::new(&outputs["report"]).is_file());
    assert!(
        Path::new(&outputs["session-dir"])
            .join("run.json")
            .is_file()
    );
    // The job summary: the verdict and the score table, criteria named.
    let summary = &action.summary;
    assert!(
        summary.contains("### Refinery refine: converged after 2 round(s)"),
        "{summary}"
    );
    assert!(summary.contains("| criterion | r1 | r2 |"), "{summary}");
    assert!(
        summary
            .contains("| E1 The page states the product's outcome in its first heading | 4 | 9 |"),
        "{summary}"
    );
    assert!(summary.contains(&format!("on branch `refinery/{session}`")));
    // Two uploads: the session folder and the report, both present.
    let name = format!("refinery-{session}");
    assert_eq!(outputs["artifact-name"], name);
    assert_uploaded(&action, session);
    // The verify command saw the key (it gets the environment), yet no key value appears in
    // the log, the summary, the outputs or any artifact.
    assert_no_key(&action, &key, &runner_temp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_splits_into_matrix_entries_with_a_share_of_the_budget_each() {
    let (server, run, key) = fixture().await;
    let lines = [
        serde_json::json!({"defaults": {"builder": MODEL, "evaluator": [MODEL], "criteria": CRITERIA, "max_rounds": 3}}),
        serde_json::json!({"id": "pricing", "task": "Build the pricing page"}),
        serde_json::json!({"id": "landing", "task": "Build the landing page", "cost_budget": 0.5}),
        serde_json::json!({"id": "about", "task": "Build the about page"}),
    ];
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    fs_err::write(run.project().join("tasks.jsonl"), text.join("\n")).unwrap();
    git(&run, &run.project(), &["add", "tasks.jsonl"]);
    git(&run, &run.project(), &["commit", "--quiet", "-m", "tasks"]);

    // The list job: the tasks as matrix entries, each with its share of a $6 total (its own
    // smaller cap wins).
    let (listed, _) = action_in(
        &run,
        "list-temp",
        &[
            ("command", "list-tasks"),
            ("file", "tasks.jsonl"),
            ("cost-budget", "6"),
        ],
    )
    .await;
    assert!(!listed.failed, "{}", listed.log);
    let tasks: Value = serde_json::from_str(&listed.outputs["tasks"]).unwrap();
    assert_eq!(
        tasks,
        serde_json::json!([
            {"id": "pricing", "task": "Build the pricing page", "cost_budget": 2.0},
            {"id": "landing", "task": "Build the landing page", "cost_budget": 0.5},
            {"id": "about", "task": "Build the about page", "cost_budget": 2.0},
        ])
    );
    assert!(server.model_requests().is_empty(), "listing calls no model");

    // One matrix job: `batch --only <id>` with the entry's budget.
    let entry = &tasks[0];
    let id = entry["id"].as_str().unwrap();
    let budget = entry["cost_budget"].to_string();
    let (action, runner_temp) = action_in(
        &run,
        "matrix-temp",
        &[
            ("command", "batch"),
            ("file", "tasks.jsonl"),
            ("only", id),
            ("cost-budget", &budget),
        ],
    )
    .await;
    assert!(!action.failed, "{}", action.log);
    let outputs = &action.outputs;
    assert_eq!(outputs["exit-code"], "0");
    assert_eq!(outputs["verdict"], "converged");
    let session = &outputs["session"];
    assert!(!session.contains(' '), "one task, one session: {session}");
    assert_eq!(outputs["branch"], format!("refinery/{session}"));
    // Only this entry's task ran: one branch, this task's.
    assert_eq!(
        git(
            &run,
            &run.project(),
            &[
                "branch",
                "--list",
                "refinery/*",
                "--format=%(refname:short)"
            ]
        ),
        outputs["branch"]
    );
    let summary = &action.summary;
    assert!(
        summary.contains("### Refinery batch: converged: 1 task(s), 1 converged"),
        "{summary}"
    );
    assert!(
        summary.contains("| pricing | converged | 2 | $"),
        "{summary}"
    );
    assert!(summary.contains("#### pricing"), "{summary}");
    assert!(summary.contains("| E1 | 4 | 9 |"), "{summary}");
    assert!(summary.contains("of $2.0000."), "{summary}");
    assert_uploaded(&action, session);
    assert_no_key(&action, &key, &runner_temp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_fails_the_step_unless_its_exit_code_is_passing_and_still_uploads() {
    let (_server, run, key) = fixture().await;
    let mut results = Vec::new();
    for passing in ["0", "0 2"] {
        let (action, runner_temp) = action_in(
            &run,
            &format!("temp-{}", passing.len()),
            &[
                ("task", "Build a page"),
                ("criteria", CRITERIA),
                ("builder", MODEL),
                ("evaluators", MODEL),
                ("max-rounds", "1"),
                ("passing-exit-codes", passing),
            ],
        )
        .await;
        assert_no_key(&action, &key, &runner_temp);
        results.push(action);
    }
    for action in &results {
        assert_eq!(action.outputs["exit-code"], "2", "{}", action.log);
        assert_eq!(action.outputs["verdict"], "stopped");
        assert!(
            action
                .summary
                .contains("### Refinery refine: stopped (max_rounds) after 1 round(s)"),
            "{}",
            action.summary
        );
        assert_eq!(
            uploads(action).len(),
            2,
            "uploaded even when the step fails"
        );
    }
    assert!(results[0].failed, "exit 2 fails the step by default");
    assert!(results[0].log.contains("refinery exited 2"));
    assert!(!results[1].failed, "{}", results[1].log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_the_step_before_any_model_call() {
    let (server, run, _) = fixture().await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("command", "deploy")], "input 'command' must be"),
        (&[("command", "refine")], "needs 'task'"),
        (
            &[("task", "Build a page"), ("file", "tasks.toml")],
            "input 'file' does not apply to command 'refine'",
        ),
        (
            &[("task", "Build a page"), ("cost-budget", "$5")],
            "input 'cost-budget' must be a number",
        ),
        (
            &[("task", "Build a page"), ("passing-exit-codes", "zero")],
            "passing-exit-codes must list exit codes",
        ),
    ];
    for (index, (inputs, message)) in cases.iter().enumerate() {
        let (action, _) = action_in(&run, &format!("bad-{index}"), inputs).await;
        assert!(action.failed, "{message}");
        assert!(action.log.contains(message), "{message}: {}", action.log);
        assert!(uploads(&action).is_empty());
    }
    assert!(server.model_requests().is_empty());
}

/// Every `inputs.X` and `steps.ID.outputs.X` reference in `text` (plain or inside `${{ }}`).
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["inputs.", "steps."] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
                .unwrap_or(tail.len());
            found.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    found
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| strings(item, out)),
        _ => {}
    }
}

/// The `INPUT_*` variables a script reads.
fn script_inputs(script: &Path) -> std::collections::BTreeSet<String> {
    let text = fs_err::read_to_string(script).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("INPUT_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(tail.len());
        if end > "INPUT_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// actionlint does not read a composite action's own steps, so this checks them: inputs,
/// outputs and steps refer to each other, scripts get exactly the inputs they read, no
/// expression is pasted into a script, and every action used is pinned to a version.
#[test]
fn action_yml_inputs_outputs_and_steps_refer_to_each_other() {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    let declared: std::collections::BTreeSet<String> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for (name, spec) in action["inputs"].as_object().unwrap() {
        assert!(spec["description"].is_string(), "input {name}");
        assert!(spec["default"].is_string(), "input {name} needs a default");
    }
    let mut used = std::collections::BTreeSet::new();
    let mut step_outputs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let check = |reference: &str,
                 ids: &BTreeMap<String, Vec<String>>,
                 used: &mut std::collections::BTreeSet<String>| {
        let parts: Vec<&str> = reference.split('.').collect();
        match parts.as_slice() {
            ["inputs", name] => {
                assert!(declared.contains(*name), "undeclared input {name}");
                used.insert((*name).to_owned());
            }
            ["steps", id, "outputs", _] => {
                assert!(ids.contains_key(*id), "`{reference}` before step {id}");
            }
            _ => panic!("unexpected reference {reference}"),
        }
    };
    for step in action["runs"]["steps"].as_array().unwrap() {
        let mut texts = Vec::new();
        strings(step, &mut texts);
        for text in &texts {
            for reference in references(text) {
                check(&reference, &step_outputs, &mut used);
            }
        }
        if let Some(body) = step["run"].as_str() {
            assert_eq!(step["shell"], "bash");
            assert!(!body.contains("${{"), "an expression in a script: {body}");
            let script = body
                .split('"')
                .find_map(|part| part.strip_prefix("$GITHUB_ACTION_PATH/"))
                .expect("a step runs one of action/*.sh");
            let script = action_path().join(script);
            let given: std::collections::BTreeSet<String> = step["env"]
                .as_object()
                .map(|env| {
                    env.keys()
                        .filter(|k| k.starts_with("INPUT_"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(given, script_inputs(&script), "{}", script.display());
        }
        if let Some(uses) = step["uses"].as_str() {
            let version = uses.split_once('@').map(|(_, v)| v).unwrap_or_default();
            let parts: Vec<&str> = version.trim_start_matches('v').split('.').collect();
            assert!(
                parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
                "{uses} is not pinned to a version"
            );
        }
        if let Some(id) = step["id"].as_str() {
            step_outputs.insert(id.to_owned(), Vec::new());
        }
    }
    for (name, spec) in action["outputs"].as_object().unwrap() {
        for reference in references(spec["value"].as_str().unwrap()) {
            check(&reference, &step_outputs, &mut used);
        }
        assert!(spec["description"].is_string(), "output {name}");
    }
    assert_eq!(used, declared, "every input is used");
}

/// The install steps with a stand-in `cargo`: the first run builds into the cached root, the
/// next one (a cache hit) finds it and builds nothing; a changed source is a new key.
#[test]
fn the_install_step_builds_once_per_source_and_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("action-src");
    for (path, text) in [
        ("Cargo.lock", "lock"),
        ("Cargo.toml", "[workspace]"),
        ("rust-toolchain.toml", "[toolchain]"),
        ("crates/refinery/src/main.rs", "fn main() {}"),
        ("plugin/agents/builder.md", "prompt"),
    ] {
        let path = source.join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }
    fs_err::create_dir_all(source.join("action")).unwrap();
    fs_err::copy(
        action_path().join("action/install.sh"),
        source.join("action/install.sh"),
    )
    .unwrap();
    // A `cargo` that records its arguments and installs a stand-in binary into --root.
    let tools = dir.path().join("tools");
    fs_err::create_dir_all(&tools).unwrap();
    let calls = dir.path().join("cargo-calls");
    let cargo = tools.join("cargo");
    fs_err::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"$PWD $*\" >> '{}'\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\nprintf '#!/bin/sh\\necho refinery 9.9.9\\n' > \"$2/bin/refinery\"\nchmod +x \"$2/bin/refinery\"\n",
            calls.display()
        ),
    )
    .unwrap();
    fs_err::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    let step = |mode: &str| -> BTreeMap<String, String> {
        let out = dir.path().join(format!("out-{mode}"));
        fs_err::write(&out, "").unwrap();
        let result = std::process::Command::new("bash")
            .arg(source.join("action/install.sh"))
            .arg(mode)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
            .env("HOME", &home)
            .env("GITHUB_ACTION_PATH", &source)
            .env("GITHUB_OUTPUT", &out)
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .output()
            .unwrap();
        assert!(result.status.success(), "{}", text(&result.stderr));
        parse_outputs(&fs_err::read_to_string(&out).unwrap())
    };
    let first = step("key");
    assert_eq!(first["cache"], "true");
    assert!(first["key"].starts_with("refinery-Linux-X64-"));
    let installed = step("install");
    assert_eq!(
        PathBuf::from(&installed["bin"]),
        PathBuf::from(&first["root"]).join("bin/refinery")
    );
    let again = step("install");
    assert_eq!(again["bin"], installed["bin"]);
    let log = fs_err::read_to_string(&calls).unwrap();
    assert_eq!(log.lines().count(), 1, "built once: {log}");
    assert!(
        log.starts_with(&format!(
            "{} install --locked --path crates/refinery --root ",
            source.display()
        )),
        "{log}"
    );
    fs_err::write(source.join("plugin/agents/builder.md"), "a new prompt").unwrap();
    assert_ne!(
        step("key")["key"],
        first["key"],
        "a changed source is a new key"
    );
}

/// The example batch file parses, and the docs' workflow excerpts are the example workflow's
/// own lines (which `.ci/run` lints with actionlint).
#[test]
fn the_examples_parse_and_the_docs_quote_the_linted_workflow() {
    let root = action_path();
    let listed = std::process::Command::new(crate::support::BIN)
        .args([
            "batch",
            "docs/examples/tasks.toml",
            "--list-json",
            "--cost-budget",
            "10",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let tasks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        tasks,
        serde_json::json!([
            {"id": "quick-start", "task": "Make the README's quick start shorter and every command in it runnable", "cost_budget": 5.0},
            {"id": "exit-codes", "task": "Add an example of each exit code to docs/USAGE.md", "cost_budget": 2.0},
        ])
    );
    let docs = fs_err::read_to_string(root.join("docs/PARALLEL.md")).unwrap();
    assert!(
        docs.contains(text(&listed.stdout).trim()),
        "docs/PARALLEL.md shows what --list-json prints"
    );
    let workflow = load_yaml(&root.join(".github/workflows/refinery-example.yml"));
    assert!(workflow["jobs"]["task"]["strategy"]["matrix"]["include"].is_string());
    let mut blocks = 0;
    for block in docs.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for line in block.lines().filter(|line| !line.trim().is_empty()) {
            assert!(
                workflow_text_has(&root, line),
                "docs/PARALLEL.md quotes a line the example workflow lacks: {line}"
            );
        }
        blocks += 1;
    }
    assert!(blocks >= 1, "docs/PARALLEL.md shows the workflow");
}

fn workflow_text_has(root: &Path, line: &str) -> bool {
    let text = fs_err::read_to_string(root.join(".github/workflows/refinery-example.yml")).unwrap();
    text.lines().any(|own| own == line)
}
