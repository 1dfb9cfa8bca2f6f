//! A minimal MCP client over real stdio, shared by the MCP benchmark and its smoke test: it
//! spawns a server, speaks newline-delimited JSON-RPC by hand (`initialize` with protocol
//! 2025-11-25, then `tools/call`), and reads each tool's reply the way a client would. Written
//! by hand rather than with rmcp so that the time measured is the server's and the pipe's, not
//! a client library's, and so that the same bytes go to our server and to MassGen's Python one.
//!
//! Replies are checked: a JSON-RPC error, `isError`, or a tool payload whose `status` is
//! `"error"` (MassGen reports tool errors that way) fails the caller, so a benchmark can never
//! time a call that did nothing.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One server process and its pipes.
pub(crate) struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    label: String,
}

impl Server {
    /// Spawns `command` with piped stdin and stdout, completes the MCP handshake, and returns
    /// the server with its cold start (spawn → `initialize` reply).
    pub(crate) fn spawn(label: &str, mut command: Command) -> Result<(Self, Duration), String> {
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("{label}: cannot start: {error}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{label}: no pipes"));
        };
        let mut server = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            next_id: 0,
            label: label.to_owned(),
        };
        let reply = server.request(
            "initialize",
            &json!({"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "refinery-bench", "version": "1"}}),
        )?;
        if reply["result"]["serverInfo"].is_null() {
            return Err(format!(
                "{label}: `initialize` reply without serverInfo: {reply}"
            ));
        }
        let cold = started.elapsed();
        server.notify("notifications/initialized")?;
        Ok((server, cold))
    }

    fn notify(&mut self, method: &str) -> Result<(), String> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        writeln!(self.stdin, "{message}")
            .and_then(|()| self.stdin.flush())
            .map_err(|error| self.write_error(method, &error))
    }

    /// A server that exited may be noticed on the write (its stdin closed) or on the read
    /// (its stdout closed), whichever comes first: both say "closed".
    fn write_error(&self, method: &str, error: &std::io::Error) -> String {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            format!("{}: closed its stdin before `{method}`", self.label)
        } else {
            format!("{}: write: {error}", self.label)
        }
    }

    /// Sends one request and waits for the reply with its id (notifications and any line that
    /// is not JSON are skipped: a Python server may log to stdout).
    pub(crate) fn request(&mut self, method: &str, params: &Value) -> Result<Value, String> {
        self.next_id += 1;
        let message =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        writeln!(self.stdin, "{message}")
            .and_then(|()| self.stdin.flush())
            .map_err(|error| self.write_error(method, &error))?;
        loop {
            let mut line = String::new();
            let read = self
                .stdout
                .read_line(&mut line)
                .map_err(|error| format!("{}: read: {error}", self.label))?;
            if read == 0 {
                return Err(format!("{}: closed stdout during `{method}`", self.label));
            }
            let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if reply["id"] != json!(self.next_id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{}: `{method}` failed: {error}", self.label));
            }
            return Ok(reply);
        }
    }

    /// Calls a tool; returns how long the round trip took and the tool's payload (its text
    /// content parsed as JSON where it is JSON, else the text as a string).
    pub(crate) fn call(
        &mut self,
        tool: &str,
        arguments: &Value,
    ) -> Result<(Duration, Value), String> {
        let started = Instant::now();
        let reply = self.request("tools/call", &json!({"name": tool, "arguments": arguments}))?;
        let elapsed = started.elapsed();
        let payload = tool_payload(&reply);
        if reply["result"]["isError"] == json!(true) || payload["status"] == json!("error") {
            return Err(format!(
                "{}: `{tool}` returned an error: {reply}",
                self.label
            ));
        }
        Ok((elapsed, payload))
    }

    /// Peak resident memory (VmHWM) of the server process, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs_err::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Closes stdin and times the exit.
    pub(crate) fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        drop(self.stdin);
        let _ = self.child.wait();
        started.elapsed()
    }
}

/// The first text content of a `tools/call` reply, parsed as JSON where it is JSON.
pub(crate) fn tool_payload(reply: &Value) -> Value {
    let text = reply["result"]["content"]
        .as_array()
        .and_then(|content| content.iter().find_map(|item| item["text"].as_str()))
        .unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}
