//! `refinery ask <provider/model> "<prompt>"`: one call through a ChatModel, to check that a
//! backend works. The answer goes to stdout; usage, cost and retries go to stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use refinery_llm::{
    CallOptions, ChatModel as _, ChatRequest, ChatResponse, Cost, StreamEvent, chat_structured,
};
use serde_json::json;

use crate::ExitStatus;
use crate::backends::ModelOpener;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::{load_credentials, process_env, resolve_workspace};

#[derive(Debug, Args)]
pub(crate) struct AskArgs {
    /// The model, as `provider/model`: anthropic/…, openai/… (Responses API), openai-chat/…,
    /// gemini/…, xai/…, openrouter/<vendor>/<model>, ollama/…, local/<name> (or just `local`:
    /// the server's only model; the server is --base-url, REFINERY_LOCAL_BASE_URL, or the first
    /// local server that answers).
    model: String,
    /// The prompt.
    prompt: String,
    /// A JSON Schema file: the answer must be JSON matching it (validated, retried with feedback).
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Print the answer as it arrives.
    #[arg(long)]
    stream: bool,
    /// A system prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Print one JSON object (answer, usage, cost) instead of text.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds, retries included (it bounds each request too).
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = crate::files::positive_u64)]
    timeout: u64,
    /// Most tokens the answer may have (cut to fit a local server's context).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_tokens: u32,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &AskArgs) -> anyhow::Result<ExitStatus> {
    let workspace = resolve_workspace(global)?;
    let env = process_env();
    let credentials = load_credentials(&env, &workspace)?;
    // `--base-url` (global) names the server of the model asked, whatever its provider.
    let opened =
        ModelOpener::new(&env, &credentials, global.base_url.clone(), true).open(&args.model)?;
    let model = opened.model;
    let mut request = ChatRequest::new(args.prompt.clone());
    request.system.clone_from(&args.system);
    request.max_tokens = Some(refinery_llm::local::fit_max_tokens(
        args.max_tokens,
        opened.context_window,
        args.prompt.len() + args.system.as_ref().map_or(0, String::len),
    ));
    if let Some(path) = &args.schema {
        let text = crate::files::read_argument_file(path, "--schema")?;
        let schema = serde_json::from_str(&text).with_context(|| {
            format!("`{}` is not JSON; pass a JSON Schema file", path.display())
        })?;
        request = request.with_schema("answer", schema);
    }
    let options = CallOptions {
        request_timeout: Duration::from_secs(args.timeout),
        deadline: Some(Duration::from_secs(args.timeout)),
        ..CallOptions::default()
    };
    let stream_to_stdout = args.stream && !args.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut write_error = None;
        let mut sink = |event: StreamEvent| match event {
            StreamEvent::TextDelta(text) => {
                if stream_to_stdout && write_error.is_none() {
                    write_error = output::chunk(&text).err();
                }
            }
            StreamEvent::Retrying {
                attempt,
                delay,
                reason,
            } => {
                output::note(&format!(
                    "\n[retrying after attempt {attempt} in {delay:?}: {reason}]"
                ));
            }
        };
        let sink_ref: Option<refinery_llm::StreamSink<'_>> =
            if args.stream { Some(&mut sink) } else { None };
        let (text_or_value, response, usage, cost, attempts) = if request.response_schema.is_some()
        {
            let structured = chat_structured(&model, request, &options, sink_ref).await?;
            let pretty = serde_json::to_string_pretty(&structured.value)?;
            (
                Answer::Json(structured.value, pretty),
                structured.response,
                structured.usage,
                structured.cost,
                structured.schema_attempts,
            )
        } else {
            let response: ChatResponse = match sink_ref {
                Some(sink) => model.chat_stream(&request, &options, sink).await?,
                None => model.chat(&request, &options).await?,
            };
            (
                Answer::Text(response.text.clone()),
                response.clone(),
                response.usage,
                response.cost,
                1,
            )
        };
        if let Some(error) = write_error {
            return Err(error);
        }
        if args.json {
            let answer = match &text_or_value {
                Answer::Json(value, _) => json!({"value": value}),
                Answer::Text(text) => json!({"text": text}),
            };
            let mut value = json!({
                "model": args.model,
                "usage": usage,
                "cost_usd": cost,
                "attempts": response.attempts,
                "schema_attempts": attempts,
                "tool_calls": response.tool_calls,
            });
            if let (Some(target), Some(source)) = (value.as_object_mut(), answer.as_object()) {
                target.extend(source.clone());
            }
            output::json(&value)?;
        } else {
            match &text_or_value {
                Answer::Json(_, pretty) => {
                    if stream_to_stdout {
                        output::line("")?;
                    }
                    output::line(pretty)?;
                }
                Answer::Text(text) => {
                    if stream_to_stdout {
                        output::line("")?;
                    } else {
                        output::line(text)?;
                    }
                }
            }
            let cost = match cost {
                Cost::Usd(value) => format!("${value:.6}"),
                Cost::Unknown => "unknown (model not in the price table)".to_string(),
            };
            output::note(&format!(
                "[{}: {} input tokens ({} cached), {} output tokens, cost {cost}, {} attempt(s)]",
                args.model,
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens,
                response.attempts
            ));
        }
        Ok(ExitStatus::Success)
    })
}

enum Answer {
    Text(String),
    Json(serde_json::Value, String),
}
