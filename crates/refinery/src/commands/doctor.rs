//! `refinery doctor [--json]`: which agent CLIs, keys (by name) and local model servers this
//! machine has, and what to install or set next. Also records the usable backends in
//! `<state dir>/environment.json` (names only, never key values).

use anyhow::Context as _;
use clap::Args;
use refinery_llm::doctor::{self, DoctorOptions, DoctorReport};
use refinery_media::{MediaConfig, MediaReport};

use crate::ExitStatus;
use crate::cli::GlobalArgs;
use crate::output;
use crate::settings::{process_env, resolve_store};

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The llama.cpp server to probe [default: http://127.0.0.1:8080; env:
    /// REFINERY_LLAMA_CPP_URL].
    #[arg(long, value_name = "URL")]
    llama_cpp_url: Option<String>,
    /// The Ollama server to probe [default: http://127.0.0.1:11434; env: REFINERY_OLLAMA_URL].
    #[arg(long, value_name = "URL")]
    ollama_url: Option<String>,
}

pub(crate) fn run_main(global: &GlobalArgs, args: &DoctorArgs) -> anyhow::Result<ExitStatus> {
    let store = resolve_store(global)?;
    let env = process_env();
    let home = env
        .get("HOME")
        .filter(|home| !home.is_empty())
        .map(std::path::PathBuf::from);
    // Loading registers every secret-named value with the process scrubber; the keys
    // themselves are read again by the report below.
    let credentials =
        refinery_llm::Credentials::load(&env, Some(store.workspace()), home.as_deref()).ok();
    // Which media modes the keys allow (a bad `.env` is reported by the main check below).
    let media = credentials
        .as_ref()
        .and_then(|credentials| MediaConfig::new(store.workspace(), credentials, &env).ok())
        .map(|config| MediaReport::new(&config));
    let mut env = env;
    for (variable, value) in [
        ("REFINERY_LLAMA_CPP_URL", &args.llama_cpp_url),
        ("REFINERY_OLLAMA_URL", &args.ollama_url),
    ] {
        if let Some(value) = value {
            env.insert(variable.to_owned(), value.clone());
        }
    }
    let recorded = crate::backends::recorded_server(&env);
    let options = DoctorOptions::new(env, store.workspace().to_path_buf(), recorded.as_deref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime
        .block_on(doctor::run_doctor(&options))
        .context("checking this machine")?;
    // Like every writer: the state folder and its `.gitignore` (only where Refinery made it).
    store.prepare().context("preparing the state folder")?;
    let written = doctor::write_environment_file(store.root(), &report)
        .context("writing environment.json")?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["environment_file"] = serde_json::Value::String(written.display().to_string());
        if let Some(media) = &media {
            value["media"] = serde_json::to_value(media)?;
            value["media"]["usable_tasks"] = serde_json::to_value(media.usable_tasks())?;
        }
        output::json(&value)?;
    } else {
        render(&report)?;
        if let Some(media) = &media {
            render_media(media)?;
        }
        output::line(&format!("\nwrote {}", written.display()))?;
    }
    Ok(ExitStatus::Success)
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "--  " }
}

fn render(report: &DoctorReport) -> anyhow::Result<()> {
    output::line("Agent CLIs")?;
    for status in &report.agent_clis {
        let detail = match (&status.path, &status.version, &status.problem) {
            (None, _, _) => format!("not found (install: {})", status.install),
            (Some(path), _, Some(problem)) => format!("{} ({problem})", path.display()),
            (Some(path), version, None) => {
                format!(
                    "{} {}",
                    version.as_deref().unwrap_or("(no version)"),
                    path.display()
                )
            }
        };
        output::line(&format!(
            "  {}{:<8} {detail}",
            mark(status.found && status.problem.is_none()),
            status.cli.program()
        ))?;
    }
    output::line("API keys (names only)")?;
    for key in &report.keys {
        let source = match &key.source {
            Some(refinery_llm::KeySource::Environment) => "environment".to_string(),
            Some(refinery_llm::KeySource::DotEnv { path }) => path.display().to_string(),
            None => "not set".to_string(),
        };
        output::line(&format!("  {}{:<20} {source}", mark(key.present), key.name))?;
    }
    output::line("Local model servers")?;
    for server in &report.local_servers {
        let detail = if server.reachable {
            format!(
                "{} — models: {}{}",
                server.url,
                if server.models.is_empty() {
                    "?".to_string()
                } else {
                    server.models.join(", ")
                },
                server
                    .context_window
                    .map_or_else(String::new, |tokens| format!(
                        " ({tokens} tokens of context)"
                    ))
            )
        } else {
            match &server.problem {
                Some(problem) => format!("{} — not answering: {problem}", server.url),
                None => format!("{} — not answering", server.url),
            }
        };
        output::line(&format!(
            "  {}{:<14} {detail}",
            mark(server.reachable),
            server.name
        ))?;
    }
    let usable: Vec<&str> = report
        .usable_backends()
        .map(|backend| backend.name.as_str())
        .collect();
    output::line(&format!(
        "Usable backends: {}",
        if usable.is_empty() {
            "none".to_string()
        } else {
            usable.join(", ")
        }
    ))?;
    // The same rule `refinery refine` and `evaluate` apply when no backend is named.
    output::line(&format!(
        "Default backend (refine and evaluate without --builder/--evaluator): {}",
        report.default_backend.as_ref().map_or_else(
            || "none".to_string(),
            |backend| match &backend.base_url {
                Some(url) => format!("{} at {url}", backend.name),
                None => backend.name.clone(),
            }
        )
    ))?;
    if !report.next_steps.is_empty() {
        output::line("Next steps")?;
        for step in &report.next_steps {
            output::line(&format!("  - {step}"))?;
        }
    }
    Ok(())
}

fn render_media(media: &MediaReport) -> anyhow::Result<()> {
    output::line("Media (generate_media, read_media)")?;
    for task in refinery_media::Task::ALL {
        let rows: Vec<_> = media
            .capabilities
            .iter()
            .filter(|capability| capability.task == task)
            .collect();
        let usable: Vec<String> = rows
            .iter()
            .filter(|capability| capability.usable)
            .map(|capability| {
                format!(
                    "{} ({}, `{}`)",
                    capability.backend, capability.model, capability.key
                )
            })
            .collect();
        let detail = if usable.is_empty() {
            let keys: Vec<&str> = rows.iter().map(|capability| capability.key).collect();
            format!("set {}", keys.join(" or "))
        } else {
            usable.join(", ")
        };
        output::line(&format!(
            "  {}{:<8} {detail}",
            mark(!usable.is_empty()),
            task.as_str()
        ))?;
    }
    let frames = match &media.ffmpeg {
        Some(path) => format!("ffmpeg at {}", path.display()),
        None => "no ffmpeg: only gemini reads video (install ffmpeg for the others)".to_string(),
    };
    output::line(&format!(
        "  {}video frames: {frames}",
        mark(media.ffmpeg.is_some())
    ))
}
