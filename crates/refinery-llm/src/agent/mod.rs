//! [`AgentRunner`]: the headless agent CLIs as subprocesses, one event type for all four.

mod env;
mod parse;
pub(crate) mod process;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::price::{Cost, Usage};

pub use env::PASS_ENV_VARIABLE;
pub use parse::EventParser;
pub use process::{AgentRunner, MAX_ARGUMENT};

/// The agent CLIs we can run headless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentCli {
    Claude,
    Codex,
    Gemini,
    Copilot,
}

impl AgentCli {
    pub const ALL: [AgentCli; 4] = [
        AgentCli::Claude,
        AgentCli::Codex,
        AgentCli::Gemini,
        AgentCli::Copilot,
    ];

    pub fn program(self) -> &'static str {
        match self {
            AgentCli::Claude => "claude",
            AgentCli::Codex => "codex",
            AgentCli::Gemini => "gemini",
            AgentCli::Copilot => "copilot",
        }
    }

    /// The npm package and the version Refinery is tested with.
    pub fn npm_package(self) -> &'static str {
        match self {
            AgentCli::Claude => "@anthropic-ai/claude-code@2.1.330",
            AgentCli::Codex => "@openai/codex@0.169.0",
            AgentCli::Gemini => "@google/gemini-cli@0.61.0",
            AgentCli::Copilot => "@github/copilot@1.0.102",
        }
    }
}

/// One headless run: where, what, with which limits.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub cli: AgentCli,
    /// The executable; `None` looks up [`AgentCli::program`] on `env["PATH"]`.
    pub program: Option<PathBuf>,
    /// The working directory the agent works in.
    pub workdir: PathBuf,
    pub prompt: String,
    /// Appended to the CLI's own system prompt (claude); prepended to the prompt for CLIs
    /// without such a flag (codex, gemini, copilot).
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    /// Tools approved without prompting (claude `--allowedTools`, copilot `--allow-tool`).
    /// Empty means the CLI's headless default (claude: none approved; codex: workspace-write
    /// sandbox; gemini: `--approval-mode yolo`; copilot: `--allow-all-tools`).
    pub allowed_tools: Vec<String>,
    /// claude `--max-turns` (the other CLIs have no such limit).
    pub max_turns: Option<u32>,
    /// claude `--max-budget-usd`.
    pub max_budget_usd: Option<f64>,
    /// Wall-clock limit; on expiry the whole process group is killed.
    pub timeout: Duration,
    /// The complete environment of the child (nothing is inherited).
    pub env: BTreeMap<String, String>,
    /// Passed after Refinery's own flags.
    pub extra_args: Vec<String>,
}

impl AgentRequest {
    pub fn new(cli: AgentCli, workdir: impl Into<PathBuf>, prompt: impl Into<String>) -> Self {
        Self {
            cli,
            program: None,
            workdir: workdir.into(),
            prompt: prompt.into(),
            system_prompt: None,
            model: None,
            allowed_tools: Vec::new(),
            max_turns: None,
            max_budget_usd: None,
            timeout: Duration::from_mins(10),
            env: BTreeMap::new(),
            extra_args: Vec::new(),
        }
    }
}

/// What an agent run reports, the same for every CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The process started; `pid` is also its process-group id.
    Spawned { pid: u32 },
    /// The CLI's session began.
    Started {
        session_id: Option<String>,
        model: Option<String>,
    },
    /// Assistant text.
    Text { text: String },
    /// The agent called a tool.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool finished.
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    /// Tokens reported for one step or turn (summed into the outcome unless a final
    /// result carries totals).
    Usage { usage: Usage },
    /// The CLI's final result.
    Result {
        text: String,
        usage: Option<Usage>,
        cost: Cost,
        num_turns: Option<u32>,
        is_error: bool,
    },
    /// An error the CLI reported. `fatal` errors fail the run; others are warnings
    /// (codex reports retries and missing model metadata this way).
    Error { message: String, fatal: bool },
}

/// A finished, successful run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentOutcome {
    pub cli: AgentCli,
    pub session_id: Option<String>,
    /// The final answer text.
    pub text: String,
    /// Totals: the final result's figures when the CLI gives them, else the sum of steps
    /// (codex `turn.completed`; copilot's `--usage-output-file`). `None` when the CLI
    /// reported none.
    pub usage: Option<Usage>,
    /// The CLI's own cost figure (claude), else [`Cost::Unknown`].
    pub cost: Cost,
    pub tool_calls: u32,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub events: Vec<AgentEvent>,
}
