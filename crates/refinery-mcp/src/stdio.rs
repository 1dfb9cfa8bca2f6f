//! The stdio transport: newline-delimited JSON-RPC between the client and the rmcp service,
//! with a guard in front that answers every line rmcp would drop without a word.
//!
//! rmcp skips a line that is not JSON (by design: it fears error storms) and cannot represent
//! JSON nested deeper than 128 levels or numbers beyond `f64` (`1e400`), so a client that
//! sent one waited forever. JSON-RPC 2.0 asks for an error response instead, and so we give
//! one:
//!
//! - not JSON at all (bad syntax, cut short, not UTF-8): `-32700` Parse error, `id: null`;
//! - JSON that cannot be represented (too deep, a number out of range) or a line over
//!   [`MAX_LINE`] bytes: `-32600` Invalid Request, with the request's `id` when it can be
//!   read, and no answer when the line is a notification (it has a `method` and no `id`);
//! - every other line goes to rmcp unchanged (it answers a wrong shape with `-32600` itself).
//!
//! Replies go out on the same stdout as rmcp's, one whole line at a time, so the two never
//! interleave. Error messages name the problem and its position, never the input.
//!
//! See: <https://www.jsonrpc.org/specification#error_object>

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::sync::mpsc;

/// The longest request line accepted (rmcp's own limit).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Buffer between the guard and rmcp, each way.
const PIPE: usize = 1 << 20;

/// JSON-RPC's code for text that is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's code for JSON that is not an acceptable request.
const INVALID_REQUEST: i64 = -32600;

/// What to do with one incoming line.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Hand it to rmcp.
    Forward,
    /// Drop it silently (a blank line, or a notification that cannot be answered).
    Skip,
    /// Answer it with this error response.
    Reply(Value),
}

/// The parts of a request an error reply needs, read without building the rest (so neither
/// depth nor numbers can fail it).
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
}

fn error_reply(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Decides what happens to one line (without its newline).
pub(crate) fn classify(line: &[u8]) -> Verdict {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Skip;
    }
    let Err(value_error) = serde_json::from_slice::<Value>(line) else {
        return Verdict::Forward;
    };
    // `IgnoredAny` checks the syntax at any depth and any number size.
    if let Err(syntax_error) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        return Verdict::Reply(error_reply(
            &Value::Null,
            PARSE_ERROR,
            &format!("Parse error: the line is not JSON ({syntax_error})"),
        ));
    }
    let probe = serde_json::from_slice::<Probe>(line).ok();
    if let Some(probe) = &probe
        && probe.id.is_none()
        && probe.method.is_some()
    {
        // A notification: JSON-RPC never answers one, not even with an error.
        return Verdict::Skip;
    }
    let id = probe.and_then(|probe| probe.id).unwrap_or(Value::Null);
    Verdict::Reply(error_reply(
        &id,
        INVALID_REQUEST,
        &format!(
            "Invalid Request: the JSON cannot be represented ({value_error}); JSON is limited to 128 levels of nesting and numbers within the range of a double"
        ),
    ))
}

/// Serves `service` on `input`/`output` (stdin/stdout in production) through the guard.
pub(crate) async fn serve_guarded<R, W>(
    service: crate::RefineryServer,
    input: R,
    output: W,
) -> Result<(), crate::Error>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_server, server_in) = tokio::io::duplex(PIPE);
    let (server_out, from_server) = tokio::io::duplex(PIPE);
    let (replies, pending_replies) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_requests(input, to_server, replies));
    let writer = tokio::spawn(write_responses(from_server, pending_replies, output));
    let running = rmcp::ServiceExt::serve(service, (server_in, server_out))
        .await
        .map_err(|err| crate::Error::Transport(err.to_string()));
    let outcome = match running {
        Ok(running) => running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|err| crate::Error::Transport(err.to_string())),
        Err(err) => Err(err),
    };
    // rmcp has let go of its end: the writer sends what is left and stops.
    let _ = writer.await;
    reader.abort();
    outcome
}

/// Reads request lines, bounded by [`MAX_LINE`], and routes each one by [`classify`].
async fn read_requests<R, W>(input: R, mut to_server: W, replies: mpsc::UnboundedSender<Value>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") && line.len() > MAX_LINE {
            // Too long: answer once and skip the rest of the line.
            let _ = replies.send(error_reply(
                &Value::Null,
                INVALID_REQUEST,
                &format!("Invalid Request: the line is longer than {MAX_LINE} bytes"),
            ));
            if !skip_rest_of_line(&mut reader).await {
                return;
            }
            continue;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        match classify(body) {
            Verdict::Forward => {
                let written = async {
                    to_server.write_all(body).await?;
                    to_server.write_all(b"\n").await?;
                    to_server.flush().await
                };
                if written.await.is_err() {
                    return;
                }
            }
            Verdict::Skip => {}
            Verdict::Reply(reply) => {
                tracing::debug!(
                    "answering an unusable request line: {}",
                    reply["error"]["message"]
                );
                if replies.send(reply).is_err() {
                    return;
                }
            }
        }
    }
}

/// Consumes input up to and including the next newline; `false` at the end of input.
async fn skip_rest_of_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> bool {
    loop {
        let (done, used) = match reader.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(available) => match available.iter().position(|byte| *byte == b'\n') {
                Some(index) => (true, index + 1),
                None => (false, available.len()),
            },
        };
        reader.consume(used);
        if done {
            return true;
        }
    }
}

/// Writes rmcp's lines and the guard's replies to `output`, whole lines only.
async fn write_responses<R, W>(
    from_server: R,
    mut replies: mpsc::UnboundedReceiver<Value>,
    mut output: W,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(from_server);
    // Kept across `select!` rounds: a read cut short by a reply resumes into the same buffer.
    let mut line = Vec::new();
    let mut replies_open = true;
    loop {
        tokio::select! {
            reply = replies.recv(), if replies_open => match reply {
                Some(reply) => {
                    if write_line(&mut output, reply.to_string().as_bytes()).await.is_err() {
                        return;
                    }
                }
                None => replies_open = false,
            },
            read = lines.read_until(b'\n', &mut line) => {
                let ended = !matches!(read, Ok(count) if count > 0);
                if !line.is_empty() && (line.ends_with(b"\n") || ended) {
                    let body = line.strip_suffix(b"\n").unwrap_or(&line);
                    if write_line(&mut output, body).await.is_err() {
                        return;
                    }
                    line.clear();
                }
                if ended {
                    break;
                }
            }
        }
    }
    while let Ok(reply) = replies.try_recv() {
        if write_line(&mut output, reply.to_string().as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(output: &mut W, body: &[u8]) -> std::io::Result<()> {
    let mut framed = Vec::with_capacity(body.len() + 1);
    framed.extend_from_slice(body);
    framed.push(b'\n');
    output.write_all(&framed).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of(line: &[u8]) -> Value {
        match classify(line) {
            Verdict::Reply(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn every_unusable_line_gets_the_right_error() {
        for line in [
            &b"{not json"[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,",
            b"\xff\xfe",
            b"]",
        ] {
            let reply = reply_of(line);
            assert_eq!(reply["error"]["code"], PARSE_ERROR, "{reply}");
            assert_eq!(reply["id"], Value::Null);
        }
        let deep = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let reply = reply_of(deep.as_bytes());
        assert_eq!(reply["error"]["code"], INVALID_REQUEST, "{reply}");
        assert_eq!(reply["id"], 7);
        let huge_number =
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"n":1e400}}"#;
        let reply = reply_of(huge_number);
        assert_eq!(reply["error"]["code"], INVALID_REQUEST, "{reply}");
        assert_eq!(reply["id"], "a");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("number out of range")
        );
        // A notification is never answered; valid lines and blank lines are not ours.
        assert_eq!(
            classify(
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"n":1e400}}"#
            ),
            Verdict::Skip
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Verdict::Forward
        );
        assert_eq!(classify(b"{\"x\":1}\r"), Verdict::Forward);
        assert_eq!(classify(b"  "), Verdict::Skip);
    }
}
