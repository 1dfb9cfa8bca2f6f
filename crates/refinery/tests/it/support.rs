//! Helpers for driving the real binary. Isolation: each `Project` is a fresh temporary folder
//! holding the workspace and its state folder; child processes get `REFINERY_*` variables and
//! Claude Code's (`CLAUDE_CODE_SESSION_ID`, `CLAUDE_PROJECT_DIR`, `CLAUDE_PID`) removed so the
//! developer's environment cannot leak in.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_refinery");

pub(crate) struct Project {
    pub(crate) workspace: PathBuf,
    pub(crate) state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workspace = fs_err::canonicalize(dir.path()).unwrap().join("project");
        fs_err::create_dir_all(&workspace).unwrap();
        let state = workspace.join(".refinery");
        Self {
            workspace,
            state,
            _dir: dir,
        }
    }

    pub(crate) fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.workspace.join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, bytes).unwrap();
    }

    /// A `refinery` command run inside the workspace.
    pub(crate) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(BIN);
        command
            .current_dir(&self.workspace)
            .env_remove("REFINERY_STATE_DIR")
            .env_remove("REFINERY_WORKSPACE")
            .env_remove("REFINERY_SESSION")
            .env_remove("CLAUDE_CODE_SESSION_ID")
            .env_remove("CLAUDE_PROJECT_DIR")
            .env_remove("CLAUDE_PID");
        command
    }

    /// `refinery mcp <server>` spawned in the workspace, with a connected rmcp client.
    pub(crate) async fn mcp(&self, server: &str) -> RunningService<RoleClient, ()> {
        self.mcp_for_claude(server, None).await
    }

    /// `refinery mcp <server>` as Claude Code starts it: with `CLAUDE_CODE_SESSION_ID` set
    /// when `claude_session` is given.
    pub(crate) async fn mcp_for_claude(
        &self,
        server: &str,
        claude_session: Option<&str>,
    ) -> RunningService<RoleClient, ()> {
        let mut command = tokio::process::Command::new(BIN);
        command
            .arg("mcp")
            .arg(server)
            .current_dir(&self.workspace)
            .env_remove("REFINERY_STATE_DIR")
            .env_remove("REFINERY_WORKSPACE")
            .env_remove("REFINERY_SESSION")
            .env_remove("CLAUDE_CODE_SESSION_ID");
        if let Some(id) = claude_session {
            command.env("CLAUDE_CODE_SESSION_ID", id);
        }
        let (transport, _stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        ().serve(transport).await.unwrap()
    }
}

/// Calls a tool; returns (is_error, JSON body).
pub(crate) async fn call<H: rmcp::ClientHandler>(
    client: &RunningService<RoleClient, H>,
    name: &'static str,
    args: Value,
) -> (bool, Value) {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object");
    };
    let result = client
        .call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
        .await
        .unwrap();
    let text = &result.content[0].as_text().unwrap().text;
    (
        result.is_error == Some(true),
        serde_json::from_str(text).unwrap(),
    )
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// Bytes used by every file under `dir`.
pub(crate) fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                total += entry.metadata().unwrap().len();
            }
        }
    }
    total
}
