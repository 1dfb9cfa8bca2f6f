//! `refinery run` end to end: the built binary, a real git workspace, and three (or more) API
//! models played by the fake model server, each scripted by its model name.
//!
//! The fake answers from what it is sent, like a model that follows only the schema: an
//! answering model writes `answer.md` through the workspace tools; a judging model finds the
//! answers in its brief by their content (`PLAN-…` markers), never by anything our code says
//! about authorship, and replies with scores and a decision by the letters it was shown. The
//! unkind ones return garbage, vote for a letter that was never shown, or never answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refinery_testkit::{FakeModelServer, RecordedRequest, Reply};
use serde_json::{Value, json};

use crate::llm_support::text;
use crate::refine::{CRITERIA, Run, json_lines, summary};

/// The three models, with the content each one's first answer carries.
pub(crate) const MODELS: [(&str, &str); 3] = [
    ("anthropic/claude-sonnet-4-5", "PLAN-ALPHA"),
    ("anthropic/claude-opus-4-5", "PLAN-BRAVO"),
    ("anthropic/claude-haiku-4-5", "PLAN-CHARLIE"),
];

/// Which of `MODELS` (or the unkind extras) sent a request: its index in the run's order.
fn model_index(request: &RecordedRequest, models: &[&str]) -> usize {
    let name = request.model();
    models
        .iter()
        .position(|model| model.rsplit('/').next() == Some(name.as_str()))
        .unwrap_or(usize::MAX)
}

/// The role, from the system prompt (never from the brief, which holds model-written text).
pub(crate) fn role(request: &RecordedRequest) -> &'static str {
    let system = system_text(request);
    for (marker, role) in [
        ("# Role: criteria writer", "criteria"),
        ("# Role: builder", "builder"),
        ("# Role: answer judge", "judge"),
    ] {
        if system.starts_with(marker) {
            return role;
        }
    }
    "unknown"
}

pub(crate) fn system_text(request: &RecordedRequest) -> String {
    match &request.body["system"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// Everything a model reads in a request: the system prompt and the messages (not the
/// request's own `model` field, which only the provider sees).
fn model_visible(request: &RecordedRequest) -> String {
    format!("{}\n{}", system_text(request), request.body["messages"])
}

/// The first user message.
fn brief(request: &RecordedRequest) -> String {
    let first = &request.body["messages"][0]["content"];
    match first {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// The letters a judge was shown, by the `PLAN-…` marker each answer carries.
fn letters(brief: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for section in brief.split("<<<<< Answer ").skip(1) {
        let Some((letter, rest)) = section.split_once(" >>>>>") else {
            continue;
        };
        let body = rest.split("<<<<< end of Answer").next().unwrap_or_default();
        if let Some(start) = body.find("PLAN-") {
            let marker: String = body[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            found.insert(marker, letter.to_owned());
        }
    }
    found
}

/// What a scripted judge decides.
#[derive(Clone)]
pub(crate) enum Choice {
    Vote(&'static str),
    Improve(&'static str),
}

/// A judgment in the reply schema: every shown answer scored (by `score(marker)`) on E1–E3.
fn judgment(brief: &str, score: &dyn Fn(&str) -> u8, choice: &Choice) -> String {
    let shown = letters(brief);
    let mut assessments = serde_json::Map::new();
    for (marker, letter) in &shown {
        let value = score(marker);
        let scores: serde_json::Map<String, Value> = ["E1", "E2", "E3"]
            .iter()
            .map(|id| {
                (
                    (*id).to_owned(),
                    json!({"score": value, "evidence": [format!("answer.md: reads {marker}")]}),
                )
            })
            .collect();
        assessments.insert(letter.clone(), Value::Object(scores));
    }
    let letter = |marker: &str| {
        shown
            .get(marker)
            .cloned()
            .unwrap_or_else(|| panic!("{marker} not shown in\n{brief}"))
    };
    let decision = match choice {
        Choice::Vote(marker) => {
            json!({"action": "vote", "answer": letter(marker), "reason": format!("{marker} meets every criterion")})
        }
        Choice::Improve(marker) => json!({
            "action": "improve", "base": letter(marker),
            "plan": "replace the plan with a measured one", "reason": "no answer states a number"
        }),
    };
    json!({"assessments": assessments, "decision": decision}).to_string()
}

/// A judge's decision, by its model index and the brief it was sent.
type Decide = dyn Fn(usize, &str) -> Choice + Send + Sync;
/// The score a judge gives an answer, by its model index and the answer's marker.
type ScoreOf = dyn Fn(usize, &str) -> u8 + Send + Sync;

/// A script: per model index, its first answer's marker, its improvement's marker, and its
/// decision given what the brief shows.
pub(crate) struct Script {
    models: Vec<&'static str>,
    first: Vec<&'static str>,
    improved: Vec<&'static str>,
    decide: Box<Decide>,
    score: Box<ScoreOf>,
    /// Output tokens each judgment reports (a long-winded judge costs more).
    judge_tokens: u64,
}

impl Script {
    pub(crate) fn three(
        decide: impl Fn(usize, &str) -> Choice + Send + Sync + 'static,
        score: impl Fn(usize, &str) -> u8 + Send + Sync + 'static,
    ) -> Self {
        Self {
            models: MODELS.iter().map(|(model, _)| *model).collect(),
            first: MODELS.iter().map(|(_, marker)| *marker).collect(),
            improved: vec!["PLAN-XRAY", "PLAN-YANKEE", "PLAN-DELTA"],
            decide: Box::new(decide),
            score: Box::new(score),
            judge_tokens: 500,
        }
    }

    pub(crate) fn reply(&self, request: &RecordedRequest) -> Reply {
        let index = model_index(request, &self.models);
        let usage = |reply: Reply| reply.with_usage(2_000, 0, 500);
        match role(request) {
            "builder" if request.tool_results().is_empty() => {
                let text = brief(request);
                let content = if text.starts_with("# Improve an answer") {
                    self.improved[index]
                } else {
                    self.first[index]
                };
                usage(Reply::tool_call(
                    "write_file",
                    json!({"path": "answer.md", "content": format!("# Plan\n\n{content}\n")}),
                ))
            }
            "builder" => usage(Reply::text("Wrote answer.md with the plan.")),
            "judge" => {
                let text = brief(request);
                let choice = (self.decide)(index, &text);
                let score = |marker: &str| (self.score)(index, marker);
                Reply::text(judgment(&text, &score, &choice)).with_usage(
                    2_000,
                    0,
                    self.judge_tokens,
                )
            }
            "criteria" => usage(Reply::text(crate::refine::criteria_writer_reply())),
            _ => Reply::status(400),
        }
    }

    fn install(self, server: &FakeModelServer) {
        server.route(move |request| Some(self.reply(request)));
    }
}

fn run_args<'a>(models: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "Write a one-page plan", "--models"];
    args.extend_from_slice(models);
    args.extend_from_slice(&["--criteria", CRITERIA, "--yes", "--json"]);
    args.extend_from_slice(extra);
    args
}

async fn run_three(run: &Run, extra: &[&str]) -> (Output, Vec<Value>) {
    let models: Vec<&str> = MODELS.iter().map(|(model, _)| *model).collect();
    let output = run.refinery(&run_args(&models, extra)).await;
    let events = json_lines(&output.stdout);
    (output, events)
}

fn requests_of(server: &FakeModelServer, wanted: &str) -> Vec<RecordedRequest> {
    server
        .model_requests()
        .into_iter()
        .filter(|request| role(request) == wanted)
        .collect()
}

fn answer_md(run: &Run) -> String {
    fs_err::read_to_string(run.project().join("answer.md")).unwrap_or_default()
}

fn session_dir(summary: &Value) -> &Path {
    Path::new(summary["session_dir"].as_str().unwrap())
}

fn judgments(summary: &Value, round: u32) -> Vec<Value> {
    let path = session_dir(summary).join(format!("round_{round:03}/judgments.json"));
    serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap()
}

fn answer(agent: usize, revision: u32) -> Value {
    json!({"agent": agent, "revision": revision})
}

/// Round 1: models 1 and 2 vote for model 2's answer (model 2's own vote is not counted),
/// model 3 improves on it. Round 2: everyone votes for model 3's improved answer.
pub(crate) fn improve_then_agree(index: usize, brief: &str) -> Choice {
    if brief.contains("PLAN-DELTA") {
        Choice::Vote("PLAN-DELTA")
    } else if index == 2 {
        Choice::Improve("PLAN-BRAVO")
    } else {
        Choice::Vote("PLAN-BRAVO")
    }
}

pub(crate) fn flat_scores(_: usize, marker: &str) -> u8 {
    if marker == "PLAN-DELTA" { 9 } else { 6 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_in_round_two_after_an_improvement_with_stale_votes_asked_again() {
    let server = FakeModelServer::start().await.unwrap();
    Script::three(improve_then_agree, flat_scores).install(&server);
    let run = Run::new(&server);
    run.context
        .write("project/answer.md", "# Old plan\n")
        .unwrap();
    let (output, events) = run_three(&run, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "consensus");
    assert_eq!(summary["winner"]["winner"]["answer"], answer(2, 2));
    assert_eq!(summary["winner"]["winner"]["by"], "consensus");
    assert_eq!(summary["winner"]["winner"]["votes"], 2);
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-DELTA\n");
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    // After round 1 the two votes are stale (they saw model 3's first answer) and model 3,
    // whose latest action is an answer, has no vote.
    assert_eq!(rounds[0]["tally"]["stale"], json!([0, 1]));
    assert_eq!(rounds[0]["tally"]["waiting"], json!([2]));
    assert_eq!(rounds[0]["tally"]["self_votes"], json!([1]));
    assert_eq!(rounds[1]["asked"], json!([0, 1, 2]));
    assert_eq!(rounds[1]["next"]["next"], "decided");
    // What each vote saw was taken when it was asked: round 1's votes saw revision 1 of model
    // 3's answer even though revision 2 existed before the round was recorded.
    for judgment in judgments(summary, 1) {
        assert_eq!(
            judgment["seen"],
            json!({"0": 1, "1": 1, "2": 1}),
            "{judgment}"
        );
    }
    let round_one = judgments(summary, 1);
    assert_eq!(round_one[2]["outcome"], "improved");
    assert_eq!(round_one[2]["base"], answer(1, 1));
    assert_eq!(round_one[2]["new_answer"], answer(2, 2));
    assert_eq!(round_one[1]["self_vote"], true);
    assert!(
        round_one[0]["reason"]
            .as_str()
            .unwrap()
            .contains("meets every criterion")
    );
    for judgment in judgments(summary, 2) {
        assert_eq!(
            judgment["seen"],
            json!({"0": 1, "1": 1, "2": 2}),
            "{judgment}"
        );
        assert_eq!(judgment["choice"], answer(2, 2));
    }
    // Each stale voter was asked again, and its new brief showed the improved answer.
    let judges = requests_of(&server, "judge");
    assert_eq!(judges.len(), 6);
    for model in ["claude-sonnet-4-5", "claude-opus-4-5"] {
        let asked: Vec<&RecordedRequest> = judges
            .iter()
            .filter(|request| request.model() == model)
            .collect();
        assert_eq!(asked.len(), 2, "{model}");
        assert!(!brief(asked[0]).contains("PLAN-DELTA"));
        assert!(brief(asked[1]).contains("PLAN-DELTA"));
    }
    // The improvement started from the chosen answer's files, in model 3's own copy.
    let improve = requests_of(&server, "builder")
        .into_iter()
        .find(|request| brief(request).starts_with("# Improve an answer"))
        .unwrap();
    assert!(brief(&improve).contains("replace the plan with a measured one"));
    // What the winner replaced is kept in the session.
    let backup = session_dir(summary).join(summary["winner"]["backup"].as_str().unwrap());
    let kept = fs_err::read_to_string(backup).unwrap();
    assert!(kept.contains("answer.md"), "{kept}");
    // Every answer is in the session with its files.
    assert_eq!(summary["answers"].as_array().unwrap().len(), 4);
    assert!(session_dir(summary).join("answers/2-2.json").is_file());
    // Events: the tally per round, then the winner.
    let tallies: Vec<&Value> = events.iter().filter(|e| e["event"] == "tally").collect();
    assert_eq!(tallies.len(), 2);
    assert!(events.iter().any(|e| e["event"] == "winner"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_reveals_whose_answer_is_whose() {
    let server = FakeModelServer::start().await.unwrap();
    Script::three(improve_then_agree, flat_scores).install(&server);
    let run = Run::new(&server);
    let (output, _) = run_three(&run, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let names = [
        "sonnet",
        "opus",
        "haiku",
        "anthropic",
        "model 1",
        "model 2",
        "model 3",
    ];
    for request in server.model_requests() {
        let visible = model_visible(&request).to_lowercase();
        for name in names {
            assert!(
                !visible.contains(name),
                "{name} reached a model:\n{visible}"
            );
        }
        // No copy's path either (an agent's folder would tell judges whose answer is whose).
        assert!(!visible.contains("refinery-answer-"), "{visible}");
    }
    // In each round, the judges' own answers sit at different letters: no position means
    // "yours". Round 1 has three judges over three answers; so has round 2.
    let own = ["PLAN-ALPHA", "PLAN-BRAVO", "PLAN-CHARLIE"];
    let judges = requests_of(&server, "judge");
    let models: Vec<&str> = MODELS.iter().map(|(model, _)| *model).collect();
    for round in [&judges[..3], &judges[3..]] {
        let mut positions: Vec<String> = round
            .iter()
            .map(|request| {
                let index = model_index(request, &models);
                let marker = if index == 2 && brief(request).contains("PLAN-DELTA") {
                    "PLAN-DELTA"
                } else {
                    own[index]
                };
                letters(&brief(request))[marker].clone()
            })
            .collect();
        positions.sort();
        positions.dedup();
        assert_eq!(positions.len(), 3, "own answers shared a letter");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_plurality_wins_and_a_tie_goes_to_the_criteria_score() {
    let server = FakeModelServer::start().await.unwrap();
    // Round 1: 1 → BRAVO, 2 → CHARLIE, 3 improves. Round 2: a three-way split, one vote each.
    let decide = |index: usize, brief: &str| -> Choice {
        match (index, brief.contains("PLAN-DELTA")) {
            (0, _) => Choice::Vote("PLAN-BRAVO"),
            (1, false) => Choice::Vote("PLAN-CHARLIE"),
            (1, true) => Choice::Vote("PLAN-DELTA"),
            (2, false) => Choice::Improve("PLAN-CHARLIE"),
            _ => Choice::Vote("PLAN-ALPHA"),
        }
    };
    // The other judges score model 2's answer highest.
    let score = |_: usize, marker: &str| if marker == "PLAN-BRAVO" { 8 } else { 6 };
    Script::three(decide, score).install(&server);
    let run = Run::new(&server);
    let (output, events) = run_three(&run, &["--max-rounds", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(
        summary["status"],
        json!({"status": "no_consensus", "reason": "max_rounds"})
    );
    let winner = &summary["winner"]["winner"];
    assert_eq!(winner["answer"], answer(1, 1));
    assert_eq!(winner["by"], "plurality");
    assert_eq!(winner["tie_break"], "criteria_score");
    assert_eq!(winner["votes"], 1);
    assert_eq!(summary["winner"]["without_consensus"], "max_rounds");
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-BRAVO\n");
    let last = &summary["rounds"][1]["tally"]["answers"];
    let votes: Vec<u64> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|count| count["votes"].as_u64().unwrap())
        .collect();
    assert_eq!(votes, vec![1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_votes_are_not_counted() {
    let server = FakeModelServer::start().await.unwrap();
    // Model 1 votes for its own answer, model 2 for model 1's, model 3 for model 2's.
    // Counting the self-vote would give model 1 two votes of three: a majority.
    let decide = |index: usize, _: &str| -> Choice {
        match index {
            0 | 1 => Choice::Vote("PLAN-ALPHA"),
            _ => Choice::Vote("PLAN-BRAVO"),
        }
    };
    let score = |_: usize, marker: &str| if marker == "PLAN-BRAVO" { 9 } else { 7 };
    Script::three(decide, score).install(&server);
    let run = Run::new(&server);
    let (output, events) = run_three(&run, &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    // Every vote is fresh and split one to one: another round would ask no one.
    assert_eq!(
        summary["status"],
        json!({"status": "no_consensus", "reason": "split"})
    );
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(summary["rounds"][0]["tally"]["self_votes"], json!([0]));
    let winner = &summary["winner"]["winner"];
    assert_eq!(winner["answer"], answer(1, 1));
    assert_eq!(winner["tie_break"], "criteria_score");
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-BRAVO\n");
}

/// Five models: two kind, one that returns garbage, one that votes for a letter it was never
/// shown, one that never answers its judge call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkind_models_drop_out_and_the_rest_decide() {
    let server = FakeModelServer::start().await.unwrap();
    let models = vec![
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-opus-4-5",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-opus-4-1",
        "anthropic/claude-sonnet-4-0",
    ];
    let script = Script {
        models: models.clone(),
        first: vec![
            "PLAN-ALPHA",
            "PLAN-BRAVO",
            "PLAN-CHARLIE",
            "PLAN-ECHO",
            "PLAN-FOXTROT",
        ],
        improved: vec!["PLAN-XRAY"; 5],
        decide: Box::new(|_, _| Choice::Vote("PLAN-BRAVO")),
        score: Box::new(|_, _| 7),
        judge_tokens: 500,
    };
    let hung = models.clone();
    server.route(move |request| {
        let index = model_index(request, &hung);
        if role(request) != "judge" || index < 2 {
            return Some(script.reply(request));
        }
        Some(match index {
            2 => Reply::text("Answer B is clearly the best. I vote B!"),
            3 => {
                let text = brief(request);
                let letter = letters(&text)["PLAN-BRAVO"].clone();
                let reply = judgment(&text, &|_| 7, &Choice::Vote("PLAN-BRAVO"));
                Reply::text(reply.replace(&format!("\"answer\":\"{letter}\""), "\"answer\":\"Z\""))
            }
            _ => Reply::text("too late").delayed(Duration::from_mins(2)),
        })
    });
    let run = Run::new(&server);
    let started = std::time::Instant::now();
    let output = run
        .refinery(&run_args(&models, &["--call-timeout", "3"]))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "consensus");
    assert_eq!(summary["winner"]["winner"]["answer"], answer(1, 1));
    let dropped = &summary["dropped"];
    assert!(
        dropped["2"].as_str().unwrap().contains("unusable"),
        "{dropped}"
    );
    assert!(
        dropped["3"]
            .as_str()
            .unwrap()
            .contains("`Z`, which was not shown"),
        "{dropped}"
    );
    assert!(
        // A judge that times out is unusable like bad output (fail-closed judgment).
        dropped["4"].as_str().unwrap().contains("timed out"),
        "{dropped}"
    );
    // The two unusable ones were asked again with the complaint. Plain text is not JSON, so
    // the API client also retries it once against the schema: four calls for the garbage
    // model; the unknown letter is valid JSON and only our parser refuses it: two calls.
    let judges = requests_of(&server, "judge");
    let asked = |model: &str| {
        judges
            .iter()
            .filter(|request| request.model() == model)
            .collect::<Vec<_>>()
    };
    for (model, calls) in [("claude-haiku-4-5", 4), ("claude-opus-4-1", 2)] {
        let requests = asked(model);
        assert_eq!(requests.len(), calls, "{model}");
        assert!(!model_visible(requests[0]).contains("could not be used"));
        assert!(model_visible(requests[calls - 1]).contains("could not be used"));
    }
    // The dropped agents' answers stayed candidates; the winner is in the workspace.
    assert_eq!(
        summary["rounds"][0]["tally"]["answers"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-BRAVO\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_budget_stops_the_run_and_the_finished_rounds_decide() {
    let server = FakeModelServer::start().await.unwrap();
    // Each call reserves its token cap before it starts. Round 1's three parallel builder
    // turns reserve the most (~$0.8 together); its judges are long-winded (8,000 output tokens
    // each, really spent), so by round 2 the spend plus three judges' caps no longer fits in
    // $0.95 and the run stops before those calls, with round 1 decided.
    let mut script = Script::three(improve_then_agree, flat_scores);
    script.judge_tokens = 8_000;
    script.install(&server);
    let run = Run::new(&server);
    let budget = 0.95;
    let (output, events) = run_three(&run, &["--cost-budget", "0.95"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "stopped", "{summary}");
    assert_eq!(summary["status"]["reason"], "cost_budget");
    assert_eq!(summary["status"]["interrupted_round"], 2);
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 1);
    let spent = summary["spend"]["usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= budget, "spent {spent} of {budget}");
    assert_eq!(
        summary["spend"]["calls"].as_u64().unwrap(),
        server.model_requests().len() as u64
    );
    // Round 1's votes decide: model 2's answer holds the only counted vote.
    assert_eq!(summary["winner"]["winner"]["answer"], answer(1, 1));
    assert_eq!(summary["winner"]["without_consensus"], "budget");
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-BRAVO\n");
}

/// Holds model 1's round-2 judge call (the one that sees the improved answer) until released.
struct Gate {
    hang: Arc<Mutex<bool>>,
    reached: Arc<Mutex<bool>>,
}

impl Gate {
    fn install(server: &FakeModelServer) -> Self {
        let gate = Self {
            hang: Arc::new(Mutex::new(true)),
            reached: Arc::new(Mutex::new(false)),
        };
        let (hang, reached) = (gate.hang.clone(), gate.reached.clone());
        let script = Script::three(improve_then_agree, flat_scores);
        server.route(move |request| {
            let models: Vec<&str> = MODELS.iter().map(|(model, _)| *model).collect();
            if role(request) == "judge"
                && model_index(request, &models) == 0
                && brief(request).contains("PLAN-DELTA")
                && *hang.lock().unwrap()
            {
                *reached.lock().unwrap() = true;
                return Some(Reply::text("never").delayed(Duration::from_mins(2)));
            }
            Some(script.reply(request))
        });
        gate
    }

    async fn reached(&self) {
        let deadline = std::time::Instant::now() + Duration::from_mins(1);
        while !*self.reached.lock().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "round 2 never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn release(&self) {
        *self.hang.lock().unwrap() = false;
    }
}

/// `refinery run --json` with the three models, in the background, its output piped.
fn spawn_three(run: &Run) -> std::process::Child {
    let models: Vec<&str> = MODELS.iter().map(|(model, _)| *model).collect();
    std::process::Command::new(crate::support::BIN)
        .env_clear()
        .envs(&run.env)
        .current_dir(run.project())
        .args(run_args(&models, &[]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_round_then_resume_without_redoing_finished_rounds() {
    let server = FakeModelServer::start().await.unwrap();
    let gate = Gate::install(&server);
    let run = Run::new(&server);
    let mut child = spawn_three(&run);
    gate.reached().await;
    child.kill().unwrap();
    child.wait().unwrap();
    gate.release();
    let sessions: Vec<String> = fs_err::read_dir(run.project().join(".refinery/sessions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sessions.len(), 1);
    let record_path = run
        .project()
        .join(".refinery/sessions")
        .join(&sessions[0])
        .join("consensus.json");
    let record: Value =
        serde_json::from_str(&fs_err::read_to_string(&record_path).unwrap()).unwrap();
    assert_eq!(record["in_progress"], 2);
    assert_eq!(record["status"]["status"], "running");
    assert_eq!(record["rounds"].as_array().unwrap().len(), 1);
    // Nothing was written into the workspace yet.
    assert_eq!(answer_md(&run), "");

    let output = run
        .refinery(&["run", "--resume", &sessions[0], "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(summary["status"]["status"], "consensus");
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-DELTA\n");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "run_session" && e["resumed"] == true)
    );
    // Round 1 (three answers, three judgments, one improvement) ran once across both
    // processes; round 2 ran again in full after the kill.
    let builders: Vec<RecordedRequest> = requests_of(&server, "builder")
        .into_iter()
        .filter(|request| request.tool_results().is_empty())
        .collect();
    let first = builders
        .iter()
        .filter(|request| brief(request).starts_with("# Answer a task"))
        .count();
    assert_eq!(first, 3);
    let improvements = builders.len() - first;
    assert_eq!(improvements, 1);
    let round_one_judges = requests_of(&server, "judge")
        .iter()
        .filter(|request| !brief(request).contains("PLAN-DELTA"))
        .count();
    assert_eq!(round_one_judges, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_round_saves_the_finished_rounds_and_resume_finishes() {
    let server = FakeModelServer::start().await.unwrap();
    let gate = Gate::install(&server);
    let run = Run::new(&server);
    let child = spawn_three(&run);
    gate.reached().await;
    let started = std::time::Instant::now();
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // The held call (two minutes) was cut, not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "Ctrl-C took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let summary = summary(&events);
    assert_eq!(
        summary["status"],
        json!({"status": "interrupted", "round": 2})
    );
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 1);
    // An interruption chooses nothing: the workspace is as it was.
    assert_eq!(answer_md(&run), "");
    let session = summary["session"].as_str().unwrap().to_owned();
    gate.release();
    let output = run.refinery(&["run", "--resume", &session, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events = json_lines(&output.stdout);
    let resumed = crate::refine::summary(&events);
    assert_eq!(resumed["status"]["status"], "consensus");
    assert_eq!(resumed["rounds"].as_array().unwrap().len(), 2);
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-DELTA\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_budget_stops_a_held_round_and_the_finished_rounds_decide() {
    let server = FakeModelServer::start().await.unwrap();
    let _gate = Gate::install(&server);
    let run = Run::new(&server);
    let started = std::time::Instant::now();
    let (output, events) = run_three(&run, &["--time-budget", "3s"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let summary = summary(&events);
    assert_eq!(
        summary["status"],
        json!({"status": "stopped", "reason": "time_budget", "interrupted_round": 2})
    );
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(summary["winner"]["winner"]["answer"], answer(1, 1));
    assert_eq!(summary["winner"]["without_consensus"], "budget");
    assert_eq!(answer_md(&run), "# Plan\n\nPLAN-BRAVO\n");
}

/// The plain-text output of a whole run. With `REFINERY_USAGE_TRANSCRIPT_RUN=FILE` set, the
/// output is also written there: that is how the example in docs/USAGE.md is produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_output_tells_the_story_of_a_run() {
    let server = FakeModelServer::start().await.unwrap();
    Script::three(improve_then_agree, flat_scores).install(&server);
    let run = Run::new(&server);
    let models: Vec<&str> = MODELS.iter().map(|(model, _)| *model).collect();
    let mut args = vec!["run", "Write a one-page plan for the launch", "--models"];
    args.extend_from_slice(&models);
    args.push("--yes");
    let output = run.refinery(&args).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let (stderr, stdout) = (text(&output.stderr), text(&output.stdout));
    for needle in [
        "new session ",
        "model 1: anthropic/claude-sonnet-4-5, model 2: anthropic/claude-opus-4-5, model 3: anthropic/claude-haiku-4-5",
        "criteria (written by the criteria writer):",
        "round 1/5",
        "  answering",
        "  judging the answers",
        "  model 2 votes for model 2's answer 1 (its own: not counted)",
        "  model 3 will improve on model 2's answer 1",
        "  model 3's answer 2 (anthropic/claude-haiku-4-5), improving on model 2's answer 1: 1 file",
        "stale: model 1, model 2",
        "round 2/5",
        "  consensus on model 3's answer 2 (anthropic/claude-haiku-4-5)",
        "winner: model 3's answer 2",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    for needle in [
        "Consensus after 2 rounds: model 3's answer 2 (anthropic/claude-haiku-4-5) won with 2 of 2 possible votes.",
        "Votes after each round (counted votes / votes possible):",
        "  round 2: model 1's answer 1 (anthropic/claude-sonnet-4-5) 0/2",
        "Winner's files: in ",
        "Session: ",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    if let Some(path) = std::env::var_os("REFINERY_USAGE_TRANSCRIPT_RUN") {
        let root = run.context.root().display().to_string();
        let tidy = |text: &str| text.replace(&root, "/tmp/demo");
        fs_err::write(
            path,
            format!(
                "$ refinery run \"Write a one-page plan for the launch\" --models {} --yes\n{}{}",
                models.join(" "),
                tidy(&stderr),
                tidy(&stdout)
            ),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_setups_are_clear_errors() {
    let server = FakeModelServer::start().await.unwrap();
    let run = Run::new(&server);
    for (args, needle) in [
        (
            vec!["run", "x", "--yes", "--models", MODELS[0].0],
            "takes 2 to 8",
        ),
        (
            vec![
                "run",
                "x",
                "--yes",
                "--models",
                MODELS[0].0,
                MODELS[1].0,
                "--max-rounds",
                "1",
            ],
            "at least 2",
        ),
        (
            vec!["run", "x", "--yes", "--models", "gpt", MODELS[1].0],
            "not a backend",
        ),
        (vec!["run", "--resume", "nope"], "nope"),
    ] {
        let output = run.refinery(&args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            text(&output.stderr).contains(needle),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    // A refine session is not a run session.
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_run_commits_the_winner_on_its_own_branch_and_runs_lists_it() {
    let server = FakeModelServer::start().await.unwrap();
    Script::three(improve_then_agree, flat_scores).install(&server);
    let run = Run::new(&server);
    crate::runs::repository(&run);
    let git = |args: &[&str]| crate::runs::git(&run, &run.project(), args);
    let head = git(&["rev-parse", "HEAD"]);
    let (output, events) = run_three(&run, &["--worktree"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let worktree = events
        .iter()
        .find(|event| event["event"] == "worktree")
        .expect("a worktree event");
    let session = summary(&events)["session"].as_str().unwrap().to_owned();
    let branch = format!("refinery/{session}");
    assert_eq!(worktree["branch"], branch.as_str());
    // The winner is committed on the run's branch; the user's checkout has none of it.
    assert_eq!(
        git(&["show", &format!("{branch}:answer.md")]),
        "# Plan\n\nPLAN-DELTA"
    );
    let message = git(&["log", "-1", "--format=%B", &branch]);
    assert!(
        message.starts_with("refinery run: Consensus after 2 rounds"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Session: {session}")),
        "{message}"
    );
    assert!(!run.project().join("answer.md").exists());
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert_eq!(git(&["rev-parse", "HEAD"]), head);
    // `runs` knows it: finished, with its rounds and cost.
    let listed = run.refinery(&["runs", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["session"], session.as_str());
    assert_eq!(listed[0]["status"], "consensus");
    assert_eq!(listed[0]["rounds"], 2);
    assert!(listed[0]["cost_usd"].as_f64().unwrap() > 0.0);
}
