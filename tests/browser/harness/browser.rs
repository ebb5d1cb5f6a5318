//! chromedriver and the headless Chromium it drives (fresh profile, the
//! project's flags), and tabs whose methods await page conditions.

use super::{BrowserEnv, BROWSER_TZ, WAIT};
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// chromedriver and the headless Chromium it drives, with a fresh profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_port: u16,
    session_id: Option<String>,
    current: Mutex<Option<WindowHandle>>,
    first_tab_taken: Mutex<bool>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(env: &BrowserEnv) -> Browser {
        let (driver, driver_port) = spawn_chromedriver(&env.chromedriver);
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": env.chromium,
                "args": args,
                // Desktop notifications allowed, as if the user had said yes.
                "prefs": {"profile.default_content_setting_values.notifications": 1},
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("chromedriver starts a Chromium session");
        let session_id = client.session_id().await.ok().flatten();
        Browser {
            client,
            driver,
            driver_port,
            session_id,
            current: Mutex::new(None),
            first_tab_taken: Mutex::new(false),
            _profile: profile,
        }
    }

    /// The first call returns the window Chromium opened with; later calls
    /// open new windows (not background tabs, which Chromium throttles).
    pub async fn tab(&self) -> Tab<'_> {
        let first = {
            let mut taken = self.first_tab_taken.lock().expect("lock");
            !std::mem::replace(&mut *taken, true)
        };
        let handle = if first {
            self.client.window().await.expect("current window")
        } else {
            self.client
                .new_window(false)
                .await
                .expect("new window")
                .handle
        };
        let tab = Tab {
            browser: self,
            handle,
        };
        tab.focus().await;
        tab
    }

    /// Every window handle Chromium has open.
    pub async fn windows(&self) -> Vec<WindowHandle> {
        self.client.windows().await.expect("windows")
    }

    /// Adopts a window the page opened itself (window.open).
    pub fn adopt(&self, handle: WindowHandle) -> Tab<'_> {
        Tab {
            browser: self,
            handle,
        }
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session_id = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // On a panic the async close never ran: end the session with a plain
        // blocking request so chromedriver takes Chromium down with it.
        if let Some(id) = self.session_id.take() {
            delete_session(self.driver_port, &id);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn delete_session(port: u16, session_id: &str) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

fn spawn_chromedriver(path: &str) -> (Child, u16) {
    let mut child = Command::new(path)
        .arg("--port=0")
        // Chromium inherits it: the pages' "local time" is not UTC.
        .env("TZ", BROWSER_TZ)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {path}: {e} (apt-get install chromium-driver)"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().unwrap_or(0));
            }
        }
    });
    match rx.recv_timeout(WAIT) {
        Ok(port) if port > 0 => (child, port),
        _ => {
            let _ = child.kill();
            panic!("chromedriver did not report its port");
        }
    }
}

// ---- tabs -----------------------------------------------------------------------------

/// One browser window. Every method first makes it the current window.
pub struct Tab<'b> {
    browser: &'b Browser,
    pub handle: WindowHandle,
}

impl Tab<'_> {
    async fn focus(&self) {
        let mut current = self.browser.current.lock().expect("lock").clone();
        if current.as_ref() != Some(&self.handle) {
            self.browser
                .client
                .switch_to_window(self.handle.clone())
                .await
                .expect("switch window");
            current = Some(self.handle.clone());
            *self.browser.current.lock().expect("lock") = current;
        }
    }

    fn client(&self) -> &Client {
        &self.browser.client
    }

    pub async fn goto(&self, url: &str) {
        self.focus().await;
        self.client().goto(url).await.expect("navigate");
    }

    pub async fn reload(&self) {
        self.focus().await;
        self.client().refresh().await.expect("reload");
    }

    /// Runs a script body (`return ...` gives the result; a returned
    /// promise is awaited).
    pub async fn js(&self, body: &str) -> Value {
        self.try_js(body)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    pub async fn try_js(&self, body: &str) -> Result<Value, String> {
        self.focus().await;
        self.client()
            .execute(body, vec![])
            .await
            .map_err(|e| e.to_string())
    }

    /// Polls a JavaScript expression until it is truthy; returns its value.
    pub async fn wait_for(&self, what: &str, expr: &str) -> Value {
        let script = format!("return ({expr});");
        let deadline = Instant::now() + WAIT;
        let mut last;
        loop {
            match self.try_js(&script).await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => last = v.to_string(),
                Err(e) => last = e,
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: `{expr}` was {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.focus().await;
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// A real click (the element must be visible and enabled).
    pub async fn click(&self, css: &str) {
        self.focus().await;
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types into an input, replacing what it held.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.focus().await;
        let el = self
            .client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Sets an input's value as a script would and fires `input`/`change`
    /// (for inputs whose typing is locale-dependent, like datetime-local).
    pub async fn set_value(&self, css: &str, value: &str) {
        let css = serde_json::to_string(css).expect("json");
        let value = serde_json::to_string(value).expect("json");
        self.js(&format!(
            "const el = document.querySelector({css}); el.value = {value};
             el.dispatchEvent(new Event('input', {{bubbles: true}}));
             el.dispatchEvent(new Event('change', {{bubbles: true}}));
             return el.value;"
        ))
        .await;
    }

    /// Resizes the window so the whole page fits, scrolled to the top, and
    /// saves a PNG of it to `test-artifacts/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .js("window.scrollTo(0, 0); document.querySelectorAll('.table-wrap').forEach((w) => { w.scrollLeft = 0; });
                 return document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight);")
            .await
            .as_u64()
            .unwrap_or(900);
        self.client()
            .set_window_size(1280, height.clamp(600, 2400) as u32)
            .await
            .expect("resize");
        let png = self.client().screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A JavaScript string literal.
pub fn js_str(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}
