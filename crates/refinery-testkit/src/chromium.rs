//! Headless Chromium (Debian's `chromium`, never a downloaded browser) driven over the
//! DevTools protocol, for tests that look at a page the way a person would: rendered, with
//! scripts on or off, on a desktop or a phone.
//!
//! Isolation: a fresh `--user-data-dir` and HOME per browser, an empty environment apart from
//! `PATH`, background networking, component updates, sync and first-run work switched off;
//! the DevTools endpoint listens on 127.0.0.1 only (an ephemeral port Chromium picks and
//! prints). Every wait has a deadline: reads on the socket time out, and the browser's start
//! is read from its stderr through a channel with a timeout. The browser is closed on drop.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// How long the browser may take to start, and one command to answer.
const DEADLINE: Duration = Duration::from_mins(1);

/// Any failure while driving the browser, in words.
pub type BrowserResult<T> = Result<T, String>;

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// The flags every test browser gets.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
];

impl Browser {
    /// Starts Chromium with a blank page attached, or `None` after the test was marked as
    /// skipped because `chromium` is not installed (a failure under `CI=true`).
    pub fn launch() -> Option<BrowserResult<Self>> {
        let program = crate::skip::require_program(
            "chromium",
            &["/usr/bin/chromium"],
            "apt-get install chromium; .ci/run installs the pinned build",
        )?;
        Some(Self::start(&program))
    }

    fn start(program: &Path) -> BrowserResult<Self> {
        let profile = tempfile::Builder::new()
            .prefix("refinery-chromium-")
            .tempdir()
            .map_err(|err| err.to_string())?;
        let mut child = Command::new(program)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-port=0")
            .arg("about:blank")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", profile.path())
            .env("TMPDIR", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("starting {}: {err}", program.display()))?;
        let url = match devtools_url(&mut child) {
            Ok(url) => url,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        };
        let socket = connect(&url)?;
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser.call_browser("Target.createTarget", &json!({"url": "about:blank"}))?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            &json!({"targetId": target_id, "flatten": true}),
        )?;
        attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .clone_into(&mut browser.session);
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            browser.call(domain, &json!({}))?;
        }
        Ok(browser)
    }

    fn send(
        &mut self,
        method: &str,
        params: &Value,
        session: Option<&str>,
    ) -> BrowserResult<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .map_err(|err| format!("{method}: {err}"))?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if Instant::now() > deadline {
                return Err(format!("{method}: no answer within {DEADLINE:?}"));
            }
            let value = self.receive(method)?;
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    return Err(format!("{method}: {error}"));
                }
                return Ok(value["result"].clone());
            }
            self.events.push(value);
        }
    }

    fn receive(&mut self, context: &str) -> BrowserResult<Value> {
        loop {
            match self
                .socket
                .read()
                .map_err(|err| format!("{context}: {err}"))?
            {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|err| format!("{context}: {err}"));
                }
                Message::Close(_) => {
                    return Err(format!("{context}: the browser closed the connection"));
                }
                _ => {}
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: &Value) -> BrowserResult<Value> {
        self.send(method, params, None)
    }

    /// Sends a DevTools command to the page and returns its result.
    pub fn call(&mut self, method: &str, params: &Value) -> BrowserResult<Value> {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    /// Waits for the page event `method`, keeping every other event.
    pub fn wait_for_event(&mut self, method: &str) -> BrowserResult<Value> {
        if let Some(index) = self
            .events
            .iter()
            .position(|event| event["method"] == method)
        {
            return Ok(self.events.remove(index));
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            let value = self.receive(method)?;
            if value["method"] == method {
                return Ok(value);
            }
            self.events.push(value);
        }
        Err(format!("no {method} within {DEADLINE:?}"))
    }

    /// Loads `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) -> BrowserResult<()> {
        self.events
            .retain(|event| event["method"] != "Page.loadEventFired");
        let result = self.call("Page.navigate", &json!({"url": url}))?;
        if let Some(error) = result.get("errorText") {
            return Err(format!("loading {url}: {error}"));
        }
        self.wait_for_event("Page.loadEventFired").map(|_| ())
    }

    /// The value of a JavaScript expression in the page.
    pub fn evaluate(&mut self, expression: &str) -> BrowserResult<Value> {
        let result = self.call(
            "Runtime.evaluate",
            &json!({"expression": expression, "returnByValue": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("evaluating {expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Sets the viewport: `width` CSS pixels wide, `mobile` for a phone.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) -> BrowserResult<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            &json!({"width": width, "height": height, "deviceScaleFactor": if mobile { 2 } else { 1 }, "mobile": mobile}),
        )
        .map(|_| ())
    }

    /// Saves a PNG of the page to `path`: all of it with `full_page`, else the viewport.
    pub fn screenshot(&mut self, path: &Path, full_page: bool) -> BrowserResult<()> {
        let result = self.call(
            "Page.captureScreenshot",
            &json!({"format": "png", "captureBeyondViewport": full_page}),
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap_or_default())
            .map_err(|err| format!("screenshot: {err}"))?;
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(|err| err.to_string())?;
        }
        fs_err::write(path, png).map_err(|err| err.to_string())
    }

    /// Every event received so far (and forgets them).
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask politely, then make sure.
        let _ = self.call_browser("Browser.close", &json!({}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser's DevTools WebSocket URL, from the line Chromium prints when it listens.
fn devtools_url(child: &mut Child) -> BrowserResult<String> {
    let stderr = child.stderr.take().ok_or("chromium has no stderr")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = sender.send(Ok(url.trim().to_owned()));
            }
        }
        let _ = sender.send(Err("chromium exited before listening".to_owned()));
    });
    receiver
        .recv_timeout(DEADLINE)
        .map_err(|_| format!("chromium did not start listening within {DEADLINE:?}"))?
}

fn connect(url: &str) -> BrowserResult<WebSocket<TcpStream>> {
    let address = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected DevTools URL {url}"))?;
    let stream =
        TcpStream::connect(address).map_err(|err| format!("connecting to {address}: {err}"))?;
    stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|err| err.to_string())?;
    let (socket, _) =
        tungstenite::client(url, stream).map_err(|err| format!("DevTools handshake: {err}"))?;
    Ok(socket)
}
