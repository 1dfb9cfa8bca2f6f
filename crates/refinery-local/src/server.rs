//! `refinery local serve | stop | status`: llama.cpp's server on this machine.
//!
//! `serve` starts `llama-server` on the loopback address in its own process group (so a
//! Ctrl-C in the terminal that started it does not stop it), with settings that suit the
//! machine ([`tune`]), waits until `/health` answers, and writes `server.json`, which
//! `doctor`, `refine` and `ask` read to find it. `stop` ends it by the recorded pid, after
//! checking that pid is still a `llama-server`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gguf::ModelInfo;
use crate::setup::{self, Installed, read_record, write_record};
use crate::{Paths, Progress};

/// llama.cpp's default port, where `doctor` looks first.
pub const DEFAULT_PORT: u16 = 8080;

/// The running server, as `server.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Its process id.
    pub pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The name it serves the model under (`local/<model>`).
    pub model: String,
    /// The model file.
    pub model_path: PathBuf,
    /// Threads it computes with.
    pub threads: u32,
    /// Tokens of context per request.
    pub context: u32,
    /// Seconds since 1970 when it answered first.
    pub started_at: u64,
}

impl ServerRecord {
    /// What `serve` recorded last, if anything.
    pub fn load(paths: &Paths) -> Result<Option<Self>> {
        read_record(&paths.server_record())
    }
}

/// The recorded server's URL, for `doctor` and `refine` to probe (whether it answers is theirs
/// to find out). `None` when nothing is recorded or the record cannot be read.
pub fn recorded_url(paths: &Paths) -> Option<String> {
    ServerRecord::load(paths)
        .ok()
        .flatten()
        .map(|record| record.url)
}

/// Settings of one `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The environment of the server process.
    pub env: BTreeMap<String, String>,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// A model file instead of the one `setup` installed.
    pub model: Option<PathBuf>,
    /// Threads, instead of [`tune`]'s choice.
    pub threads: Option<u32>,
    /// Context tokens, instead of [`tune`]'s choice.
    pub context: Option<u32>,
    /// How long loading may take before `serve` gives up.
    pub wait: Duration,
}

/// Threads and context for this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Compute threads.
    pub threads: u32,
    /// Tokens of context per request.
    pub context: u32,
}

/// Most context `serve` picks by itself: Refinery's briefs fit, and prompt processing of more
/// on a CPU takes minutes.
pub const CONTEXT_CAP: u32 = 32_768;

/// Settings that suit the machine:
/// - threads: 1 on 2 cores or fewer — measured, llama.cpp's spinning thread pool collapses
///   when anything else runs (SmolLM2 fell from 79 to 23 tokens/s, Gemma-270M to 0.5 tokens/s
///   with 2 threads on a busy 2-core machine); else half the cores, at most 8;
/// - context: the model's trained length, at most [`CONTEXT_CAP`], and at most what a quarter
///   of the available memory holds as KV cache; a multiple of 1024, at least 2048.
pub fn tune(cores: usize, available_memory: Option<u64>, model: &ModelInfo) -> Tuning {
    let threads = if cores <= 2 {
        1
    } else {
        u32::try_from((cores / 2).min(8)).unwrap_or(1)
    };
    let trained = model.context_length.unwrap_or(4096).max(512);
    let by_memory = match (available_memory, model.kv_bytes_per_token()) {
        (Some(memory), Some(per_token)) if per_token > 0 => {
            u32::try_from(memory / 4 / per_token).unwrap_or(u32::MAX)
        }
        _ => u32::MAX,
    };
    let mut context = trained.min(CONTEXT_CAP).min(by_memory);
    context = (context / 1024 * 1024).max(2048.min(trained));
    Tuning { threads, context }
}

/// What `status` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing recorded.
    NotRunning,
    /// Recorded, and the process is there: whether it answers.
    Running {
        /// The record.
        record: ServerRecord,
        /// `/health` said OK.
        answering: bool,
    },
    /// Recorded, but the process is gone (the record is stale).
    Gone {
        /// The stale record.
        record: ServerRecord,
    },
}

/// Starts the server and waits until it answers. Refuses when the recorded one still runs.
pub fn serve(
    paths: &Paths,
    options: &ServeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ServerRecord> {
    if let Status::Running { record, .. } = status(paths)? {
        return Err(Error::NotSetUp(format!(
            "a server already runs at {} (pid {}); stop it first with `refinery local stop`",
            record.url, record.pid
        )));
    }
    let installed = Installed::load(paths)?.ok_or_else(|| {
        Error::NotSetUp(
            "nothing is installed yet: run `refinery local setup` first (it installs llama.cpp's server and a small model)".to_owned(),
        )
    })?;
    let (model_path, model_name) = match &options.model {
        Some(path) => (
            path.clone(),
            path.file_stem().map_or_else(
                || "model".to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            ),
        ),
        None => (installed.model.clone(), installed.model_name.clone()),
    };
    let info = setup::check_metadata(&model_path)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let tuned = tune(cores, available_memory(), &info);
    let tuning = Tuning {
        threads: options.threads.unwrap_or(tuned.threads),
        context: options.context.unwrap_or(tuned.context),
    };
    progress(Progress::Step {
        label: format!(
            "starting llama-server with {model_name} ({} thread(s), {} tokens of context)",
            tuning.threads, tuning.context
        ),
    });
    let log_path = paths.server_log();
    let log = fs_err::File::create(&log_path)?;
    let mut command = Command::new(&installed.server);
    command
        .arg("-m")
        .arg(&model_path)
        .args(["--host", "127.0.0.1", "--port"])
        .arg(options.port.to_string())
        .args(["--alias", &model_name, "--jinja", "-np", "1"])
        .arg("-t")
        .arg(tuning.threads.to_string())
        .arg("-c")
        .arg(tuning.context.to_string())
        .env_clear()
        .envs(&options.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_file())
        .stderr(log.into_file());
    if let Some(dir) = installed.server.parent() {
        command.env("LD_LIBRARY_PATH", dir);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|error| Error::ServerStart {
        reason: format!("cannot run {}: {error}", installed.server.display()),
        log: log_path.clone(),
    })?;
    let url = format!("http://127.0.0.1:{}", options.port);
    let started = Instant::now();
    loop {
        if let Some(exit) = child.try_wait()? {
            return Err(Error::ServerStart {
                reason: format!("it exited ({exit}); {}", log_tail(&log_path)),
                log: log_path,
            });
        }
        if health(options.port, Duration::from_secs(2)) {
            break;
        }
        if started.elapsed() > options.wait {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::ServerStart {
                reason: format!(
                    "it did not answer within {} s; {}",
                    options.wait.as_secs(),
                    log_tail(&log_path)
                ),
                log: log_path,
            });
        }
        progress(Progress::Fraction(
            (started.elapsed().as_secs_f64() / options.wait.as_secs_f64()).min(1.0),
        ));
        std::thread::sleep(Duration::from_millis(250));
    }
    let record = ServerRecord {
        pid: child.id(),
        url,
        model: model_name,
        model_path,
        threads: tuning.threads,
        context: tuning.context,
        started_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
    };
    write_record(&paths.server_record(), &record)?;
    progress(Progress::Done {
        message: format!(
            "llama-server answers at {} (pid {}) in {:.1} s",
            record.url,
            record.pid,
            started.elapsed().as_secs_f64()
        ),
    });
    Ok(record)
}

/// Ends the recorded server: SIGTERM, then SIGKILL after `grace`. Returns the record of what
/// was stopped (`None` when nothing was recorded). A stale record is removed.
pub fn stop(paths: &Paths, grace: Duration) -> Result<Option<ServerRecord>> {
    let Some(record) = ServerRecord::load(paths)? else {
        return Ok(None);
    };
    if is_llama_server(record.pid) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(record.pid).map_err(|_| {
            Error::Stop(format!(
                "pid {} in the record is not a process id",
                record.pid
            ))
        })?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while is_llama_server(record.pid) && started.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_llama_server(record.pid) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    match fs_err::remove_file(paths.server_record()) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Some(record))
}

/// Whether the recorded server runs and answers.
pub fn status(paths: &Paths) -> Result<Status> {
    let Some(record) = ServerRecord::load(paths)? else {
        return Ok(Status::NotRunning);
    };
    if !is_llama_server(record.pid) {
        return Ok(Status::Gone { record });
    }
    let answering = port_of(&record.url).is_some_and(|port| health(port, Duration::from_secs(2)));
    Ok(Status::Running { record, answering })
}

fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// Whether `pid` is a live `llama-server` (a reused pid of another program is not ours to
/// signal). A zombie no longer counts.
fn is_llama_server(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(command_line) = fs_err::read(proc.join("cmdline")) else {
        return false;
    };
    let state = fs_err::read_to_string(proc.join("stat")).unwrap_or_default();
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    !zombie
        && command_line
            .split(|&byte| byte == 0)
            .next()
            .is_some_and(|program| String::from_utf8_lossy(program).ends_with("llama-server"))
}

/// `GET /health` on 127.0.0.1:`port` answered 200.
pub fn health(port: u16, timeout: Duration) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(count) => read += count,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.starts_with("HTTP/1.") && line.get(9..12) == Some("200")
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let text = fs_err::read_to_string("/proc/meminfo").ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The last lines of the server's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs_err::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    format!("the log ends with:\n{}", lines[start..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(context: Option<u32>) -> ModelInfo {
        ModelInfo {
            architecture: "qwen2".to_owned(),
            context_length: context,
            block_count: Some(24),
            embedding_length: Some(896),
            head_count: Some(14),
            head_count_kv: Some(2),
            has_chat_template: true,
            ..ModelInfo::default()
        }
    }

    #[test]
    fn settings_suit_the_machine() {
        let gib = 1024 * 1024 * 1024;
        let cases = [
            // cores, memory, trained context, expected (threads, context)
            (2, Some(16 * gib), Some(32_768), (1, 32_768)),
            (1, None, Some(8_192), (1, 8_192)),
            (8, Some(16 * gib), Some(131_072), (4, 32_768)),
            (64, Some(16 * gib), Some(32_768), (8, 32_768)),
            // 12,288 bytes a token; a quarter of 100 MiB holds 2,133 tokens.
            (2, Some(100 * 1024 * 1024), Some(32_768), (1, 2_048)),
            (2, Some(gib), Some(1_000), (1, 1_000)),
            (2, Some(gib), None, (1, 4_096)),
        ];
        for (cores, memory, trained, (threads, context)) in cases {
            assert_eq!(
                tune(cores, memory, &model(trained)),
                Tuning { threads, context },
                "{cores} {memory:?} {trained:?}"
            );
        }
    }

    #[test]
    fn status_and_stop_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path());
        assert_eq!(status(&paths).unwrap(), Status::NotRunning);
        assert_eq!(stop(&paths, Duration::from_millis(10)).unwrap(), None);
        // A record whose pid is not a llama-server (this test process) is stale: never signalled.
        let record = ServerRecord {
            pid: std::process::id(),
            url: "http://127.0.0.1:1".to_owned(),
            model: "m".to_owned(),
            model_path: PathBuf::from("/m.gguf"),
            threads: 1,
            context: 2048,
            started_at: 0,
        };
        write_record(&paths.server_record(), &record).unwrap();
        assert_eq!(recorded_url(&paths).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(
            status(&paths).unwrap(),
            Status::Gone {
                record: record.clone()
            }
        );
        assert_eq!(
            stop(&paths, Duration::from_millis(10)).unwrap(),
            Some(record)
        );
        assert!(!paths.server_record().exists());
        assert!(!health(1, Duration::from_millis(200)));
    }
}
