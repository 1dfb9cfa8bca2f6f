//! [`AgentRunner`]: the headless agent CLIs as subprocesses.

use serde::Serialize;

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
