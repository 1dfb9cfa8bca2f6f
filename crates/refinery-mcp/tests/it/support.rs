//! Test harness. Isolation: every harness gets its own temporary workspace and state folder;
//! nothing reads the process environment or the developer's files.

use std::path::{Path, PathBuf};

use refinery_core::StateDir;
use refinery_mcp::{RefineryServer, ServerConfig, ToolSet};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::Value;

pub(crate) struct Harness {
    pub(crate) client: RunningService<RoleClient, ()>,
    pub(crate) workspace: PathBuf,
    pub(crate) state: PathBuf,
    _dir: tempfile::TempDir,
}

/// The outcome of one tool call: whether it was a tool error, and its JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) is_error: bool,
    pub(crate) body: Value,
}

impl Reply {
    #[track_caller]
    pub(crate) fn ok(self) -> Value {
        assert!(!self.is_error, "expected success, got {}", self.body);
        self.body
    }

    #[track_caller]
    pub(crate) fn err(self) -> Value {
        assert!(self.is_error, "expected a tool error, got {}", self.body);
        assert_eq!(self.body["status"], "error", "{}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|m| !m.is_empty()));
        self.body
    }
}

pub(crate) async fn harness(tools: ToolSet) -> Harness {
    harness_for(tools, None).await
}

/// A server as Claude Code starts it: serving the Refinery session bound to `claude_session`.
pub(crate) async fn harness_for(tools: ToolSet, claude_session: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let workspace = fs_err::canonicalize(dir.path()).unwrap().join("project");
    fs_err::create_dir_all(&workspace).unwrap();
    let state = workspace.join(".refinery");
    let config = ServerConfig {
        store: StateDir::new(&state, &workspace),
        session: None,
        claude_session: claude_session.map(|id| refinery_core::ClaudeSessionId::parse(id).unwrap()),
    };
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let service = RefineryServer::new(tools, config).serve(server_io).await?;
        service.waiting().await?;
        anyhow::Ok(())
    });
    let client = ().serve(client_io).await.unwrap();
    Harness {
        client,
        workspace,
        state,
        _dir: dir,
    }
}

impl Harness {
    pub(crate) async fn call(&self, name: &'static str, args: Value) -> Reply {
        let Value::Object(arguments) = args else {
            panic!("arguments must be an object");
        };
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
            .await
            .unwrap();
        let is_error = result.is_error == Some(true);
        let body = match result.structured_content {
            Some(value) => {
                // Structured results must repeat themselves as text for older clients.
                let text = result.content[0].as_text().unwrap().text.clone();
                assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
                value
            }
            None => serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap(),
        };
        Reply { is_error, body }
    }

    pub(crate) fn session_dir(&self, id: &str) -> PathBuf {
        self.state.join("sessions").join(id)
    }

    pub(crate) fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.workspace.join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
        path
    }

    /// Submits this round's answer as the workflow server's `new_answer` does (the quality
    /// tools refuse a checklist for a round with no answer; a Quality-only harness has no
    /// `new_answer` tool of its own, as in the plugin, where the two servers share state).
    pub(crate) fn answer(&self) {
        self.write("deliverable.txt", "the work");
        let store = StateDir::new(&self.state, &self.workspace);
        let id = store.current_session_id().unwrap();
        store
            .session(id)
            .new_answer(
                "the work",
                &["deliverable.txt".to_owned()],
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
    }

    pub(crate) fn events(&self, id: &str) -> Vec<Value> {
        let text =
            fs_err::read_to_string(self.session_dir(id).join("events.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// Criteria E1..En with texts A, B, … as MassGen's checks use.
pub(crate) fn criteria(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("E{}", i + 1), "text": ((b'A' + i as u8) as char).to_string()}))
        .collect();
    serde_json::json!({ "criteria": items })
}
