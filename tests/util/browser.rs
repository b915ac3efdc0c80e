//! A real browser for tests: Debian's headless Chromium driven over the Chrome DevTools
//! Protocol (a websocket), with a fresh profile folder per browser. A missing Chromium is a
//! loud failure: `scripts/bootstrap` installs it.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary: `FLEETCAST_CHROMIUM`, else `/usr/bin/chromium`.
pub fn chromium_binary() -> PathBuf {
    let path = std::env::var_os("FLEETCAST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "browser tests need Chromium at {} (Debian package `chromium`; run scripts/bootstrap, \
         or set FLEETCAST_CHROMIUM)",
        path.display()
    );
    path
}

/// A headless Chromium with one page, killed on drop.
pub struct Browser {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, opens a blank page of `width` × `height` and attaches to it.
    pub async fn launch(width: u32, height: u32) -> Browser {
        let binary = chromium_binary();
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Chromium's first lines, for the panic message when it never listens.
        let early = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let early_lines = early.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = sender.send(url.trim().to_string());
                    sent = true;
                } else if !sent
                    && let Ok(mut lines) = early_lines.lock()
                    && lines.len() < 20
                {
                    lines.push(line);
                }
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|error| {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "chromium did not open its devtools socket ({error}; exit status {status:?}); its stderr: {:#?}",
                    early.lock().map(|lines| lines.clone()).unwrap_or_default()
                )
            });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot connect to chromium at {url}: {error}"));
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser
            .command(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
        browser
    }

    /// Sends a DevTools command (to the page once attached) and returns its result.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|error| panic!("devtools {method}: {error}"));
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(120), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("devtools {method}: no reply within 120 s"))
                .unwrap_or_else(|| panic!("devtools {method}: the socket closed"))
                .unwrap_or_else(|error| panic!("devtools {method}: {error}"));
            let Message::Text(text) = reply else { continue };
            let reply: Value = serde_json::from_str(&text).expect("devtools speaks json");
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or another session's reply
            }
            if let Some(error) = reply.get("error") {
                panic!("devtools {method} failed: {error}");
            }
            return reply["result"].clone();
        }
    }

    /// Opens `url` in the page.
    pub async fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw in the page: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits, inside the page, until `condition` (a JavaScript expression) is truthy, checking
    /// every 50 ms, and returns its value; panics after `timeout` with what the page shows.
    pub async fn wait_for(&mut self, condition: &str, timeout: Duration) -> Value {
        let script = format!(
            "new Promise((resolve) => {{ const deadline = Date.now() + {ms}; const check = () => {{ \
             let value; try {{ value = ({condition}); }} catch (error) {{ value = undefined; }} \
             if (value) resolve(value); else if (Date.now() > deadline) resolve(null); \
             else setTimeout(check, 50); }}; check(); }})",
            ms = timeout.as_millis()
        );
        let value = self.eval(&script).await;
        if value.is_null() || value == json!(false) {
            let page = self
                .eval("JSON.stringify({ url: location.href, text: document.body ? document.body.innerText.slice(0, 1500) : '', fleetcast: window.fleetcast })")
                .await;
            panic!("the page never showed `{condition}` within {timeout:?}; it shows {page}");
        }
        value
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 png");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
