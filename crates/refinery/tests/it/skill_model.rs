//! A scripted model for the real Claude Code that does only what it is told.
//!
//! Every action it takes is gated on the instruction that calls for it: before answering, it
//! checks that the request it answers (system prompt, the injected skill body, the subagent's
//! role prompt and brief, earlier tool results) contains the phrases that ask for that action.
//! A missing phrase is recorded as a violation and the conversation ends, so editing a step out
//! of `plugin/skills/refine/SKILL.md` or a subagent prompt breaks the test that uses this model.
//!
//! Who is asking is told by the role prompt a conversation carries (each subagent's
//! `plugin/agents/*.md` body becomes its system prompt; the main conversation carries the skill
//! body). The main conversation is a state machine: each tool call id names the step that made
//! it, so the next step follows from the last one and from what the tools answered (session
//! id, round folder, the criteria the criteria-writer returned, the evaluator's scores, the
//! handoff's plan), never from a fixed turn count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use refinery_testkit::{FakeModelServer, RecordedRequest, Reply, ToolCallSpec};
use serde_json::{Value, json};

const QUALITY: &str = "mcp__plugin_refinery_quality__";
const WORKFLOW: &str = "mcp__plugin_refinery_workflow__";

/// The task the test gives `/refinery:refine`.
pub(crate) const TASK: &str = "Write a haiku about Rust in poem.md";
/// Round 1's draft (flat statements) and the image the evaluator's plan asks for.
pub(crate) const DRAFT: &str = "Rust is very safe\nThe borrow checker is strict\nI like it a lot\n";
pub(crate) const REVISION: &str =
    "Midnight, the compiler\nrefuses my borrowed promise\nthe lifetime outlives\n";
/// The first words of the plan that crosses the context boundary (the skill's own wording).
const CONTINUE: &str = "Continue the Refinery loop. Run the Skill `refinery:refine` with arguments";
/// How Claude Code answers an `Agent` call it runs in the background.
const LAUNCHED_IN_BACKGROUND: &str = "Async agent launched successfully";
/// The final report's first words.
pub(crate) const FINAL_REPORT: &str = "Converged in round";

/// One tool call: the step that makes it (named in its id), the tool and its input.
struct Call(&'static str, String, Value);

/// What the model answers one request with.
enum Action {
    Calls(Vec<Call>),
    Text(String),
}

fn call(step: &'static str, tool: &str, input: Value) -> Action {
    Action::Calls(vec![Call(step, tool.to_owned(), input)])
}

/// The violations the model recorded: each names the step and the phrases it did not find.
#[derive(Clone, Default)]
pub(crate) struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    pub(crate) fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One request as the model sees it.
struct Request<'a> {
    body: &'a Value,
    /// Every string in the request, whitespace collapsed: what "the request says".
    text: String,
    violations: &'a Violations,
}

impl Request<'_> {
    /// `Ok` when the request says every phrase; otherwise records a violation.
    fn requires(&self, step: &str, phrases: &[&str]) -> Result<(), Action> {
        let missing: Vec<&str> = phrases
            .iter()
            .copied()
            .filter(|phrase| !self.text.contains(phrase))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let message = format!("step `{step}`: the request never says {missing:?}");
        self.violations.0.lock().unwrap().push(message.clone());
        Err(Action::Text(format!("Stopping: {message}")))
    }

    /// The steps of this conversation so far, in order, read from the tool call ids.
    fn steps(&self) -> Vec<String> {
        self.assistant_blocks()
            .filter(|block| block["type"] == "tool_use")
            .filter_map(|block| block["id"].as_str())
            .filter_map(|id| id.strip_prefix("toolu_"))
            .filter_map(|rest| rest.rsplit_once('_'))
            .map(|(step, _)| step.to_owned())
            .collect()
    }

    fn assistant_blocks(&self) -> impl Iterator<Item = &Value> {
        self.messages("assistant")
    }

    fn messages(&self, role: &'static str) -> impl Iterator<Item = &Value> {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |message| message["role"] == role)
            .filter_map(|message| message["content"].as_array())
            .flatten()
    }

    /// The text of the (last) result of the call `step` made. A subagent that Claude Code
    /// ran in the background reports in a later task notification, not in the tool result.
    fn result(&self, step: &str) -> Option<String> {
        let prefix = format!("toolu_{step}_");
        let id = self
            .assistant_blocks()
            .filter_map(|block| block["id"].as_str())
            .filter(|id| id.starts_with(&prefix))
            .last()?
            .to_owned();
        let result = self.tool_result(&id)?;
        if result.contains(LAUNCHED_IN_BACKGROUND) {
            return self.background_result(&id);
        }
        Some(result)
    }

    fn tool_result(&self, id: &str) -> Option<String> {
        self.messages("user")
            .find(|block| block["type"] == "tool_result" && block["tool_use_id"] == id)
            .map(|block| strings(&block["content"]).join("\n"))
    }

    /// What the background subagent of tool call `id` reported (interactive sessions run
    /// subagents in the background): the `<result>` of the task notification that names the
    /// call, or the report it handed back, which arrives as a message from its agent id.
    fn background_result(&self, id: &str) -> Option<String> {
        let tag = format!("<tool-use-id>{id}</tool-use-id>");
        let notified = strings(self.body).into_iter().find_map(|text| {
            let (_, after) = text.split_once(&tag)?;
            let (_, result) = after.split_once("<result>")?;
            Some(
                result
                    .split_once("</result>")
                    .map_or(result, |(r, _)| r)
                    .to_owned(),
            )
        });
        let from = agent_message_tag(&self.tool_result(id)?)?;
        notified.or_else(|| {
            strings(self.body).into_iter().find_map(|text| {
                let (_, after) = text.split_once(&from)?;
                let report = after
                    .split_once("</agent-message>")
                    .map_or(after, |(r, _)| r);
                let report = report
                    .split_once("The report follows:")
                    .map_or(report, |(_, r)| r);
                Some(report.to_owned())
            })
        })
    }

    /// Whether a subagent the latest tool calls launched in the background has not reported
    /// yet: Claude Code says it will notify, and that nothing is known until then.
    fn awaits_background_agents(&self) -> bool {
        let latest: Vec<String> = self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .filter(|message| message["role"] == "assistant")
            .map(|message| {
                message["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|block| block["type"] == "tool_use")
                    .filter_map(|block| block["id"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .find(|ids| !ids.is_empty())
            .unwrap_or_default();
        latest.iter().any(|id| {
            let Some(launch) = self
                .tool_result(id)
                .filter(|result| result.contains(LAUNCHED_IN_BACKGROUND))
            else {
                return false;
            };
            let handed_back =
                agent_message_tag(&launch).is_some_and(|from| self.text.contains(&from));
            !handed_back
                && !self
                    .text
                    .contains(&format!("<tool-use-id>{id}</tool-use-id>"))
        })
    }

    /// Whether the call `step` was answered with an error.
    fn is_error(&self, step: &str) -> bool {
        let prefix = format!("toolu_{step}_");
        self.messages("user").any(|block| {
            block["type"] == "tool_result"
                && block["is_error"] == true
                && block["tool_use_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(&prefix))
        })
    }

    /// The JSON object the call `step` was answered with (MCP results and `cat` output).
    fn json_result(&self, step: &str) -> Value {
        let text = self.result(step).unwrap_or_default();
        let start = text.find('{').unwrap_or(0);
        let end = text.rfind('}').map_or(text.len(), |end| end + 1);
        serde_json::from_str(&text[start..end]).unwrap_or(Value::Null)
    }
}

/// The opening tag of the message a background agent's handed-back report arrives in,
/// from the agent id its launch notice names (`agentId: …`).
fn agent_message_tag(launch: &str) -> Option<String> {
    let (_, rest) = launch.split_once("agentId: ")?;
    let agent = rest.split_whitespace().next()?;
    Some(format!("<agent-message from=\"{agent}\">"))
}

/// Every string value inside `value`, in document order.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The Read tool numbers lines (`   1→text` or `1\ttext`); this takes the numbers off.
fn unnumbered(read: &str) -> String {
    read.lines()
        .filter_map(|line| {
            let (number, rest) = line.split_once(['→', '\t'])?;
            number.trim().parse::<u32>().ok().map(|_| rest)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value after `label: ` on its own line of `text`.
fn field(text: &str, label: &str) -> Option<String> {
    let prefix = format!("{label}: ");
    text.lines()
        .find_map(|line| line.trim().strip_prefix(&prefix).map(str::to_owned))
}

/// Installs the model on `server`. `project` is the working folder Claude Code reports in its
/// system prompt; the model uses it to build absolute paths, as a real one does.
pub(crate) fn install(server: &FakeModelServer, project: &Path) -> Violations {
    let violations = Violations::default();
    let recorded = violations.clone();
    let project = project.to_path_buf();
    let ids = AtomicUsize::new(0);
    server.route(move |request: &RecordedRequest| {
        let request = Request {
            body: &request.body,
            text: strings(&request.body)
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            violations: &recorded,
        };
        let action = answer(&request, &project);
        Some(match action {
            Action::Text(text) => Reply::text(text),
            Action::Calls(calls) => Reply::tool_calls(
                calls
                    .into_iter()
                    .map(|Call(step, name, arguments)| ToolCallSpec {
                        id: format!("toolu_{step}_{:04}", ids.fetch_add(1, Ordering::Relaxed)),
                        name,
                        arguments,
                    })
                    .collect(),
            ),
        })
    });
    violations
}

/// A subagent's behaviour.
type Role = fn(&Request) -> Action;

/// Routes a request to the role whose prompt it carries.
fn answer(request: &Request, project: &Path) -> Action {
    let system = strings(&request.body["system"]).join(" ");
    let roles: [(&str, Role); 5] = [
        ("# Role: criteria writer", criteria_writer),
        ("# Role: builder", builder),
        ("# Role: regression guard", regression_guard),
        ("# Role: round evaluator", round_evaluator),
        ("# Role: execution trace analyzer", trace_analyzer),
    ];
    if let Some((_, role)) = roles.iter().find(|(marker, _)| system.contains(marker)) {
        return hand_back(request, role(request));
    }
    // The main conversation offers tools; Claude Code's side requests (titles) do not.
    let has_tools = request.body["tools"]
        .as_array()
        .is_some_and(|tools| !tools.is_empty());
    if has_tools && (request.text.contains("# Refinery: refine") || request.text.contains(CONTINUE))
    {
        let main = Main { request, project };
        return main.next().unwrap_or_else(|stop| stop);
    }
    // Claude Code's side requests (titles, summaries): a plain answer.
    Action::Text("Refinery loop".to_owned())
}

/// A subagent's final report. Claude Code 2.1.330 tells a background subagent that only a
/// `SubagentHandback` call reaches its caller; when the request says so, the report goes there.
fn hand_back(request: &Request, action: Action) -> Action {
    match action {
        Action::Text(report) if request.text.contains("call SubagentHandback({message:") => {
            call("handback", "SubagentHandback", json!({"message": report}))
        }
        other => other,
    }
}

/// The criteria-writer: three tiered criteria with anti-patterns and `verify_by`, as a
/// numbered list (its prompt's default reply form).
fn criteria_writer(request: &Request) -> Action {
    let needs = [
        "numbered list",
        "anti-patterns",
        "verify_by",
        "primary",
        "stretch",
    ];
    if let Err(stop) = request.requires("criteria-writer", &needs) {
        return stop;
    }
    Action::Text(
        "1. It is a real haiku: three lines of 5, 7 and 5 syllables | primary | anti-patterns: a fourth line; 6-syllable lines | verify_by: count syllables per line\n\
         2. It says something specific about Rust, not about programming in general | standard | anti-patterns: generic praise | verify_by: read it and name the Rust idea\n\
         3. It carries one fresh image instead of statements | stretch | anti-patterns: cliché; adjectives doing the work | verify_by: read it aloud\n"
            .to_owned(),
    )
}

/// The builder: writes the content its brief specifies to the path it names, then reports.
fn builder(request: &Request) -> Action {
    if request.steps().is_empty() {
        if let Err(stop) = request.requires("builder", &["exactly as specified", "FORBIDDEN"]) {
            return stop;
        }
        let (Some(path), Some(content)) = (
            field(&request.text_lines(), "Output path"),
            field(&request.text_lines(), "Content"),
        ) else {
            return Action::Text("The brief names no output path or content.".to_owned());
        };
        return call(
            "build",
            "Write",
            json!({"file_path": path, "content": content.replace(" / ", "\n") + "\n"}),
        );
    }
    Action::Text("Wrote the poem as specified; 3 lines, checked by reading it back.".to_owned())
}

impl Request<'_> {
    /// The user-side text with line breaks kept, for briefs laid out one field per line.
    fn text_lines(&self) -> String {
        self.messages("user")
            .flat_map(strings)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The regression guard: compares Answer A and Answer B, writes its `verdict.json`, reports.
fn regression_guard(request: &Request) -> Action {
    if request.steps().is_empty() {
        let needs = ["Answer A", "Answer B", "verdict.json"];
        if let Err(stop) = request.requires("regression-guard", &needs) {
            return stop;
        }
        let Some(scratch) = field(&request.text_lines(), "Scratch folder") else {
            return Action::Text("The brief names no scratch folder.".to_owned());
        };
        let verdict = json!({"summary": "B keeps the form and adds an image", "dimensions": [],
            "answer_a_wins": [], "answer_b_wins": ["E2", "E3"], "equivalent": ["E1"]});
        return call(
            "guard_verdict",
            "Write",
            json!({"file_path": format!("{scratch}/verdict.json"), "content": verdict.to_string()}),
        );
    }
    Action::Text("B is stronger on E2 and E3; A wins: none; equivalent: E1.".to_owned())
}

/// The round evaluator: reads the deliverable, scores it, writes its three files.
fn round_evaluator(request: &Request) -> Action {
    let steps = request.steps();
    let brief = request.text_lines();
    match steps.len() {
        0 => {
            let needs = ["critique_packet.md", "verdict.json", "next_tasks.json"];
            if let Err(stop) = request.requires("round-evaluator", &needs) {
                return stop;
            }
            let Some(deliverable) = field(&brief, "Deliverable") else {
                return Action::Text("The brief names no deliverable.".to_owned());
            };
            call("eval_read", "Read", json!({"file_path": deliverable}))
        }
        // One file per turn, as a careful model would write them.
        done => {
            let poem = request.result("eval_read").unwrap_or_default();
            let Some(folder) = field(&brief, "Output folder") else {
                return Action::Text("The brief names no output folder.".to_owned());
            };
            let mut files = evaluation_files(&folder, poem.contains("Midnight"));
            if done > files.len() {
                return Action::Text("Scores written; see verdict.json.".to_owned());
            }
            Action::Calls(vec![files.swap_remove(done - 1)])
        }
    }
}

/// The evaluator's files: a flat draft iterates with a plan; the revised poem converges.
fn evaluation_files(folder: &str, revised: bool) -> Vec<Call> {
    let write = |step, name: &str, content: String| {
        Call(
            step,
            "Write".to_owned(),
            json!({"file_path": format!("{folder}/{name}"), "content": content}),
        )
    };
    let (scores, verdict) = if revised {
        (json!({"E1": 9, "E2": 9, "E3": 9}), "converged")
    } else {
        (json!({"E1": 8, "E2": 5, "E3": 4}), "iterate")
    };
    let verdict_json = json!({"schema_version": "1", "verdict": verdict, "scores": scores,
        "preserve": [{"criterion_id": "E1", "what": "the 5-7-5 form", "source": "poem.md"}]});
    let mut files = vec![
        write(
            "eval_packet",
            "critique_packet.md",
            format!(
                "# Critique\n\n## Evaluation summary\n\n{}\n",
                verdict.to_uppercase()
            ),
        ),
        write("eval_verdict", "verdict.json", verdict_json.to_string()),
    ];
    if !revised {
        let guidance = format!(
            "Replace the statements with one image. New poem: {}",
            REVISION.trim_end().replace('\n', " / ")
        );
        let tasks = json!({"objective": "one concrete Rust moment", "primary_strategy": "image",
            "why_this_strategy": "statements are flat", "strategy_mode": "thesis_shift",
            "approach_assessment": {"ceiling_status": "ceiling_reached", "ceiling_explanation": "statements cannot carry an image"},
            "tasks": [{"id": "T1", "criterion_ids": ["E2", "E3"], "description": "one image of a lifetime error at midnight",
                "implementation_guidance": guidance, "impact": "transformative",
                "verification": "read aloud", "success_criteria": "an image", "failure_signals": "a statement"}]});
        files.push(write("eval_tasks", "next_tasks.json", tasks.to_string()));
    }
    files
}

/// The trace analyzer: gets the statistics with `refinery trace`, writes its lessons.
fn trace_analyzer(request: &Request) -> Action {
    let brief = request.text_lines();
    match request.steps().len() {
        0 => {
            let needs = [
                "refinery trace",
                "--json",
                "### DO",
                "### DON'T",
                "### CRITICAL ERRORS",
            ];
            if let Err(stop) = request.requires("execution-trace-analyzer", &needs) {
                return stop;
            }
            let Some(transcript) = field(&brief, "Transcript") else {
                return Action::Text("The brief names no transcript.".to_owned());
            };
            call(
                "trace_stats",
                "Bash",
                json!({"command": format!("refinery trace '{transcript}' --json"), "description": "trace statistics"}),
            )
        }
        1 => {
            let (Some(path), Some(round)) = (field(&brief, "Output path"), field(&brief, "Round"))
            else {
                return Action::Text("The brief names no output path or round.".to_owned());
            };
            let stats = request.json_result("trace_stats");
            let content = format!(
                "---\nname: execution_trace_round_{round}\ndescription: Process lessons from round {round} of this session\ntier: short_term\n---\n\n\
                 ### DO\n- Read the output before submitting it. [{} tool calls in the trace]\n\n\
                 ### DON'T\n- Don't write statements where an image is asked for. [round {round} draft]\n\n### CRITICAL ERRORS\nNone.\n",
                stats["tool_calls"]
                    .as_u64()
                    .map_or_else(|| "several".to_owned(), |n| n.to_string())
            );
            call(
                "trace_write",
                "Write",
                json!({"file_path": path, "content": content}),
            )
        }
        _ => Action::Text("Wrote the trace analysis: DO 1, DON'T 1, CRITICAL ERRORS 0.".to_owned()),
    }
}

/// The main conversation: the loop the skill lays out.
struct Main<'a> {
    request: &'a Request<'a>,
    project: &'a Path,
}

/// What round 2 knows: only what the handoff says.
struct Handoff {
    session_id: String,
    session_dir: String,
    plan: String,
}

impl Main<'_> {
    fn path(&self, relative: &str) -> String {
        self.project.join(relative).display().to_string()
    }

    fn requires(&self, step: &str, phrases: &[&str]) -> Result<(), Action> {
        self.request.requires(step, phrases)
    }

    /// The next step after the last one this conversation took.
    fn next(&self) -> Result<Action, Action> {
        if self.request.awaits_background_agents() {
            return Ok(Action::Text(
                "Waiting for the subagents to report.".to_owned(),
            ));
        }
        let steps = self.request.steps();
        let last = steps.last().map_or("start", String::as_str);
        let round = 1 + steps.iter().filter(|step| *step == "read_handoff").count();
        match last {
            "start" if !self.request.text.contains("# Refinery: refine") => self.continue_skill(),
            "start" => self.setup(),
            "continue_skill" => self.resume(),
            "resume" => self.read_handoff(
                &self.planned_handoff(),
                &["read the handoff file the plan named"],
            ),
            "git_check" => self.init_session(),
            "init" => self.criteria_writer(),
            "criteria" => self.register_criteria(),
            "register" => self.build_round_1(),
            "build" | "rewrite" => self.verify(),
            "verify" if round == 1 => self.new_answer(round),
            "verify" => self.restore(),
            "restore" => self.regression_guard(),
            "guard" => self.new_answer(round),
            "answer" => self.verification_note(round),
            "note" => self.find_transcript(),
            "transcript" => self.evaluate(round),
            "evaluate" => self.read_verdict(),
            "read_verdict" => self.submit_checklist(),
            "checklist" => self.after_checklist(round),
            "read_tasks" => self.propose_improvements(),
            "propose" => self.learnings(),
            "learnings" => self.handoff(round),
            "handoff" => self.enter_plan_mode(),
            "plan_mode" => self.write_plan(),
            "write_plan" => self.exit_plan_mode(),
            "exit_plan" => self.continue_here(),
            "read_handoff" => self.read_poem(),
            "read_poem" => self.rewrite(),
            other => Ok(Action::Text(format!("Lost after step {other}."))),
        }
    }

    fn setup(&self) -> Result<Action, Action> {
        self.requires("git check", &["git rev-parse --is-inside-work-tree"])?;
        Ok(call(
            "git_check",
            "Bash",
            json!({"command": "git rev-parse --is-inside-work-tree", "description": "Is this a git repository?"}),
        ))
    }

    fn init_session(&self) -> Result<Action, Action> {
        let tool = format!("{QUALITY}init_session");
        self.requires(
            "init_session",
            &[&tool, "label", "max_rounds", "--max-rounds"],
        )?;
        // The user's `--max-rounds N` (the skill's own text names the option without a number).
        let max_rounds: u32 = self
            .request
            .text
            .split("--max-rounds ")
            .skip(1)
            .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(5);
        Ok(call(
            "init",
            &tool,
            json!({"label": "rust haiku", "max_rounds": max_rounds}),
        ))
    }

    fn criteria_writer(&self) -> Result<Action, Action> {
        self.requires("criteria", &["refinery:criteria-writer", "task verbatim"])?;
        Ok(call(
            "criteria",
            "Agent",
            json!({"subagent_type": "refinery:criteria-writer",
            "description": "Write the criteria", "run_in_background": false, "prompt": format!("Task: {TASK}")}),
        ))
    }

    /// Registers the criteria the criteria-writer returned, ids in its order.
    fn register_criteria(&self) -> Result<Action, Action> {
        let tool = format!("{QUALITY}generate_eval_criteria");
        self.requires(
            "register criteria",
            &[
                &tool,
                "`E1`, `E2`",
                "anti_patterns",
                "verify_by",
                "category",
            ],
        )?;
        let reply = self.request.result("criteria").unwrap_or_default();
        let criteria: Vec<Value> = reply
            .lines()
            .filter_map(|line| line.trim().split_once(". "))
            .filter(|(number, _)| number.parse::<u32>().is_ok())
            .enumerate()
            .map(|(index, (_, rest))| {
                let parts: Vec<&str> = rest.split(" | ").collect();
                let part = |label: &str| {
                    parts
                        .iter()
                        .find_map(|p| p.strip_prefix(label))
                        .unwrap_or_default()
                        .to_owned()
                };
                json!({"id": format!("E{}", index + 1), "text": parts[0], "category": parts.get(1).copied().unwrap_or("standard"),
                    "anti_patterns": part("anti-patterns: ").split("; ").collect::<Vec<_>>(),
                    "verify_by": part("verify_by: ")})
            })
            .collect();
        Ok(call("register", &tool, json!({"criteria": criteria})))
    }

    fn build_round_1(&self) -> Result<Action, Action> {
        self.requires(
            "builder",
            &["refinery:builder", "FORBIDDEN", "exact output paths"],
        )?;
        let brief = format!(
            "Task: {TASK}\nSpecification: a first draft in three lines.\nFORBIDDEN: a title, a fourth line.\n\
             Criteria: E1 form, E2 Rust, E3 image.\nOutput path: {}\nContent: {}\n",
            self.path("poem.md"),
            DRAFT.trim_end().replace('\n', " / ")
        );
        Ok(call(
            "build",
            "Agent",
            json!({"subagent_type": "refinery:builder", "description": "Draft the poem", "run_in_background": false, "prompt": brief}),
        ))
    }

    fn verify(&self) -> Result<Action, Action> {
        self.requires(
            "verify",
            &["Verify the output first", "read the document end to end"],
        )?;
        Ok(call(
            "verify",
            "Bash",
            json!({"command": "cat poem.md", "description": "Read the poem as a reader would"}),
        ))
    }

    fn handoff_facts(&self) -> Option<Handoff> {
        let text = unnumbered(&self.request.result("read_handoff")?);
        Some(Handoff {
            session_id: field(&text, "Session id")?,
            session_dir: field(&text, "Session folder")?,
            plan: field(&text, "Plan")?,
        })
    }

    /// Round 1 takes the session from `init_session`; round 2 only from the handoff.
    fn session(&self, round: usize) -> (String, String) {
        if round > 1 {
            let facts = self.handoff_facts();
            return facts
                .map(|f| (f.session_id, f.session_dir))
                .unwrap_or_default();
        }
        let init = self.request.json_result("init");
        (
            init["session_id"].as_str().unwrap_or_default().to_owned(),
            init["session_dir"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn restore(&self) -> Result<Action, Action> {
        self.requires(
            "restore",
            &["refinery session restore", "--round", "guard/previous"],
        )?;
        let (session_id, session_dir) = self.session(2);
        Ok(call(
            "restore",
            "Bash",
            json!({"command": format!("refinery session restore {session_id} --round 1 --to {session_dir}/guard/previous"), "description": "Restore round 1"}),
        ))
    }

    fn regression_guard(&self) -> Result<Action, Action> {
        self.requires(
            "regression guard",
            &["refinery:regression-guard", "labelled A and B"],
        )?;
        let (_, session_dir) = self.session(2);
        // The order is the model's choice and is not told: here the new version is B.
        let brief = format!(
            "Criteria: E1 form, E2 Rust, E3 image.\nAnswer A: {session_dir}/guard/previous/poem.md\nAnswer B: {}\n\
             Kind of output: a poem, read aloud.\nScratch folder: {session_dir}/guard/scratch\n",
            self.path("poem.md")
        );
        Ok(call(
            "guard",
            "Agent",
            json!({"subagent_type": "refinery:regression-guard", "description": "Blind A/B", "run_in_background": false, "prompt": brief}),
        ))
    }

    fn new_answer(&self, round: usize) -> Result<Action, Action> {
        let tool = format!("{WORKFLOW}new_answer");
        self.requires("new_answer", &[&tool, "file_paths"])?;
        Ok(call(
            "answer",
            &tool,
            json!({"answer": format!("round {round} poem"), "file_paths": ["poem.md"]}),
        ))
    }

    fn round_dir(&self) -> String {
        self.request.json_result("answer")["round_dir"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn verification_note(&self, round: usize) -> Result<Action, Action> {
        self.requires("verification note", &[".scratch/verification/"])?;
        let path = format!("{}/.scratch/verification/notes.md", self.round_dir());
        Ok(call(
            "note",
            "Write",
            json!({"file_path": path, "content": format!("Round {round}: read poem.md end to end with cat; three lines.\n")}),
        ))
    }

    /// The transcript's path is in this Claude Code session's binding file, as the skill says.
    fn find_transcript(&self) -> Result<Action, Action> {
        let needs = [
            "Your Claude Code session id is `",
            "claude_sessions/",
            "transcript_path",
        ];
        self.requires("transcript", &needs)?;
        let claude_session = after(&self.request.text, needs[0], '`');
        let command = format!(
            "cat \"${{REFINERY_STATE_DIR:-.refinery}}/claude_sessions/{claude_session}.json\""
        );
        Ok(call(
            "transcript",
            "Bash",
            json!({"command": command, "description": "Find this session's transcript"}),
        ))
    }

    /// Both reviewers in one message.
    fn evaluate(&self, round: usize) -> Result<Action, Action> {
        let needs = [
            "launch both subagents",
            "refinery:round-evaluator",
            "refinery:execution-trace-analyzer",
            "evaluation/trace_analysis.md",
            "`run_in_background: false`",
        ];
        self.requires("evaluate in parallel", &needs)?;
        let round_dir = self.round_dir();
        let transcript = self.request.json_result("transcript")["transcript_path"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let evaluator = format!(
            "Task: {TASK}\nCriteria: E1 form (primary), E2 Rust, E3 image (stretch).\nDeliverable: {}\nRound: {round}\nOutput folder: {round_dir}/evaluation\n",
            self.path("poem.md")
        );
        let analyzer = format!(
            "Task: {TASK}\nRound: {round}\nTranscript: {transcript}\nOutput path: {round_dir}/evaluation/trace_analysis.md\n"
        );
        Ok(Action::Calls(vec![
            Call(
                "evaluate",
                "Agent".to_owned(),
                json!({"subagent_type": "refinery:round-evaluator", "description": "Judge the round", "run_in_background": false, "prompt": evaluator}),
            ),
            Call(
                "evaluate",
                "Agent".to_owned(),
                json!({"subagent_type": "refinery:execution-trace-analyzer", "description": "Analyse the trace", "run_in_background": false, "prompt": analyzer}),
            ),
        ]))
    }

    fn read_verdict(&self) -> Result<Action, Action> {
        self.requires("read verdict", &["verdict.json"])?;
        let path = format!("{}/evaluation/verdict.json", self.round_dir());
        Ok(call(
            "read_verdict",
            "Bash",
            json!({"command": format!("cat '{path}'"), "description": "The evaluator's scores"}),
        ))
    }

    fn submit_checklist(&self) -> Result<Action, Action> {
        let tool = format!("{QUALITY}submit_checklist");
        self.requires("submit_checklist", &[&tool, "report_path", "reasoning"])?;
        let verdict = self.request.json_result("read_verdict");
        let mut scores = serde_json::Map::new();
        for (id, score) in verdict["scores"].as_object().into_iter().flatten() {
            scores.insert(
                id.clone(),
                json!({"score": score, "reasoning": "from the round-evaluator's verdict.json"}),
            );
        }
        let report = format!("{}/evaluation/critique_packet.md", self.round_dir());
        Ok(call(
            "checklist",
            &tool,
            json!({"scores": scores, "report_path": report}),
        ))
    }

    /// The tools' verdict decides: converge finishes, iterate plans.
    fn after_checklist(&self, round: usize) -> Result<Action, Action> {
        let reply = self.request.json_result("checklist");
        if reply["verdict"] == "converge" {
            self.requires("finish", &["refinery session show"])?;
            let (session_id, _) = self.session(round);
            return Ok(Action::Text(format!(
                "{FINAL_REPORT} {round} (verdict converge, computed by submit_checklist). Scores: {}. \
                 The poem is in poem.md. History: refinery session show {session_id}",
                reply["items"]
            )));
        }
        self.requires("read next tasks", &["next_tasks.json"])?;
        let path = format!("{}/evaluation/next_tasks.json", self.round_dir());
        Ok(call(
            "read_tasks",
            "Bash",
            json!({"command": format!("cat '{path}'"), "description": "The evaluator's plan"}),
        ))
    }

    fn propose_improvements(&self) -> Result<Action, Action> {
        let tool = format!("{QUALITY}propose_improvements");
        self.requires(
            "propose_improvements",
            &[
                &tool,
                "one entry per failing criterion",
                "structural or transformative",
                "preserve",
            ],
        )?;
        let tasks = self.request.json_result("read_tasks");
        let failing = self.request.json_result("checklist")["failed_criteria"].clone();
        let mut improvements = serde_json::Map::new();
        for id in failing
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let task = tasks["tasks"].as_array().into_iter().flatten().find(|t| {
                t["criterion_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i == id))
            });
            let task = task.cloned().unwrap_or(Value::Null);
            improvements.insert(
                id.to_owned(),
                json!([{"plan": task["implementation_guidance"], "impact": task["impact"]}]),
            );
        }
        Ok(call(
            "propose",
            &tool,
            json!({"improvements": improvements, "preserve": {"E1": "keep the 5-7-5 form"}}),
        ))
    }

    fn learnings(&self) -> Result<Action, Action> {
        self.requires("learnings", &["learnings.md", "DO / DON'T"])?;
        let (_, session_dir) = self.session(1);
        Ok(call(
            "learnings",
            "Write",
            json!({"file_path": format!("{session_dir}/learnings.md"),
            "content": "- DO read the output before submitting it.\n- DON'T write statements where an image is asked for.\n"}),
        ))
    }

    /// A self-contained handoff: everything round 2 needs, one field per line.
    fn handoff(&self, round: usize) -> Result<Action, Action> {
        self.requires(
            "handoff",
            &[
                "handoff.md",
                "self-contained",
                "the session id",
                "what to preserve",
            ],
        )?;
        let (session_id, session_dir) = self.session(1);
        let plan =
            self.request.json_result("read_tasks")["tasks"][0]["implementation_guidance"].clone();
        let content = format!(
            "# Handoff after round {round}\n\nTask: {TASK}\nSession id: {session_id}\nSession folder: {session_dir}\n\
             Round: {round} (verdict iterate)\nPlan: {}\nPreserve: the 5-7-5 form\nAssumptions: none\nOptions: --max-rounds 3\n",
            plan.as_str().unwrap_or_default()
        );
        Ok(call(
            "handoff",
            "Write",
            json!({"file_path": format!("{}/handoff.md", self.round_dir()), "content": content}),
        ))
    }

    fn enter_plan_mode(&self) -> Result<Action, Action> {
        self.requires(
            "plan mode",
            &["Cross the context boundary", "EnterPlanMode"],
        )?;
        Ok(call("plan_mode", "EnterPlanMode", json!({})))
    }

    /// The plan whose first lines hand the loop to a fresh context, as the skill words it.
    fn plan_text(&self) -> String {
        let (session_id, _) = self.session(1);
        format!(
            "{CONTINUE} `--continue {session_id}`, then read `{}/handoff.md`.\n\nNext round: one image instead of statements.\n",
            self.round_dir()
        )
    }

    /// Plan mode writes the plan to the file Claude Code names; refused (a non-interactive
    /// run), the skill says to continue in this context.
    fn write_plan(&self) -> Result<Action, Action> {
        if self.request.is_error("plan_mode") {
            return self.continue_here();
        }
        let needs = [
            "Continue the Refinery loop.",
            "Run the Skill `refinery:refine` with arguments",
            "--continue <session_id>",
        ];
        self.requires("write the plan", &needs)?;
        let Some(path) = plan_file(&self.request.text) else {
            return self.continue_here();
        };
        Ok(call(
            "write_plan",
            "Write",
            json!({"file_path": path, "content": self.plan_text()}),
        ))
    }

    fn exit_plan_mode(&self) -> Result<Action, Action> {
        self.requires("exit plan mode", &["ExitPlanMode"])?;
        Ok(call(
            "exit_plan",
            "ExitPlanMode",
            json!({"plan": self.plan_text()}),
        ))
    }

    /// No fresh context: round 2 goes on here, from the handoff.
    fn continue_here(&self) -> Result<Action, Action> {
        let path = format!("{}/handoff.md", self.round_dir());
        let needs = [
            "If plan mode is not available",
            "continue with Phase 3 in this context",
            "reading the handoff",
        ];
        self.read_handoff(&path, &needs)
    }

    fn read_handoff(&self, path: &str, needs: &[&str]) -> Result<Action, Action> {
        self.requires("read the handoff", needs)?;
        Ok(call("read_handoff", "Read", json!({"file_path": path})))
    }

    /// A fresh context that holds only the plan: run the skill as it says.
    fn continue_skill(&self) -> Result<Action, Action> {
        self.requires("continue", &[CONTINUE, "--continue "])?;
        let session_id = self.planned_session();
        Ok(call(
            "continue_skill",
            "Skill",
            json!({"skill": "refinery:refine", "args": format!("--continue {session_id}")}),
        ))
    }

    fn planned_session(&self) -> String {
        after(&self.request.text, &format!("{CONTINUE} `--continue "), '`')
    }

    fn planned_handoff(&self) -> String {
        after(&self.request.text, "then read `", '`')
    }

    /// Phase 0: resume the session the plan names.
    fn resume(&self) -> Result<Action, Action> {
        let tool = format!("{QUALITY}init_session");
        self.requires("resume", &["`--continue <session-id>`", "`resume`", &tool])?;
        Ok(call(
            "resume",
            &tool,
            json!({"resume": self.planned_session()}),
        ))
    }

    fn read_poem(&self) -> Result<Action, Action> {
        self.requires(
            "read the current state",
            &["carry out the accepted plan", "read the handoff"],
        )?;
        Ok(call(
            "read_poem",
            "Read",
            json!({"file_path": self.path("poem.md")}),
        ))
    }

    /// Round 2 carries out the handoff's plan (small work: done directly).
    fn rewrite(&self) -> Result<Action, Action> {
        self.requires("small work", &["Small work", "do it yourself"])?;
        let Some(facts) = self.handoff_facts() else {
            let handoff = self.request.result("read_handoff").unwrap_or_default()
                + &self.request.result("read_tasks").unwrap_or_default();
            return Ok(Action::Text(format!("The handoff has no plan: {handoff}")));
        };
        let Some((_, poem)) = facts.plan.split_once("New poem: ") else {
            return Ok(Action::Text("The plan names no poem.".to_owned()));
        };
        Ok(call(
            "rewrite",
            "Write",
            json!({"file_path": self.path("poem.md"), "content": poem.replace(" / ", "\n") + "\n"}),
        ))
    }
}

/// The text in `text` between `start` and the next `end`.
fn after(text: &str, start: &str, end: char) -> String {
    text.split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(value, _)| value.to_owned())
        .unwrap_or_default()
}

/// The plan file Claude Code's plan mode names (under `.claude/plans/`).
fn plan_file(text: &str) -> Option<String> {
    let start = text.find("/.claude/plans/")?;
    let begin = text[..start]
        .rfind(|ch: char| ch == '"' || ch == '`' || ch.is_whitespace())
        .map_or(0, |i| i + 1);
    let end = start + text[start..].find(".md")? + 3;
    Some(text[begin..end].to_owned())
}

/// Where the model's files land, for the test's assertions.
pub(crate) fn poem(project: &Path) -> PathBuf {
    project.join("poem.md")
}
