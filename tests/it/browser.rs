//! A real browser for end-to-end tests: Debian's Chromium, headless, driven over WebDriver by
//! `fantoccini` through its own `chromedriver` process and a fresh profile directory.
//!
//! Elements are found the way a person finds them, by role and accessible name (a button's text,
//! a field's label), never by CSS paths. Each browser keeps a screenshot of its final state under
//! `target/browser-screenshots/` as a test artifact.
//!
//! Without Chromium the browser tests skip with a printed reason, unless
//! `PARLEY_REQUIRE_SERVICES=1` (CI, whose `.ci/run` installs Chromium), where they fail.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::common;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long to wait for something to appear on a page (live updates included).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A headless Chromium session with its own driver process and profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    name: String,
}

/// Where screenshots go: `target/browser-screenshots/` of this crate.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-screenshots")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether Chromium and ChromeDriver are installed; prints why not (or panics under
/// `PARLEY_REQUIRE_SERVICES=1`).
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if common::services_required() {
        panic!(
            "PARLEY_REQUIRE_SERVICES=1 but {} is missing: install chromium and chromium-driver",
            missing.join(" and ")
        );
    }
    eprintln!(
        "skipping: {} is missing (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    false
}

impl Browser {
    /// Starts a fresh headless browser named `name` (used for its screenshot's file name), or
    /// `None` when Chromium is not installed and services are not required.
    pub async fn start(name: &str) -> Option<Self> {
        if !available() {
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            // Plain HTTP to the local driver: no TLS stack needed.
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("chromium did not start through chromedriver: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
            name: name.to_owned(),
        })
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("page opens");
    }

    /// Waits for the first element matching the XPath `xpath` and returns it.
    pub async fn wait_xpath(&self, xpath: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no element {xpath} within {PATIENCE:?}: {e}"))
    }

    /// A button (a `<button>`, a submit input, or anything with `role="button"`) whose accessible
    /// name is `name` (its text, `aria-label` or value).
    pub async fn button(&self, name: &str) -> Element {
        let n = xpath_literal(name);
        self.wait_xpath(&format!(
            "//button[normalize-space(.)={n} or @aria-label={n}] | //input[(@type='submit' or @type='button') and @value={n}] | //*[@role='button' and (normalize-space(.)={n} or @aria-label={n})]"
        ))
        .await
    }

    /// A link whose text or `aria-label` is `name`.
    pub async fn link(&self, name: &str) -> Element {
        let n = xpath_literal(name);
        self.wait_xpath(&format!("//a[normalize-space(.)={n} or @aria-label={n}]"))
            .await
    }

    /// A form control labelled `label`: by a `<label for>`, a wrapping `<label>`, or `aria-label`.
    pub async fn field(&self, label: &str) -> Element {
        let n = xpath_literal(label);
        self.wait_xpath(&format!(
            "//*[(self::input or self::textarea or self::select) and (@aria-label={n} or @id=//label[normalize-space(.)={n}]/@for)] | //label[normalize-space(text())={n}]//*[self::input or self::textarea or self::select]"
        ))
        .await
    }

    /// An element with ARIA role `role` (explicit, or implied by its tag for the common ones)
    /// whose accessible name contains `name`.
    pub async fn by_role(&self, role: &str, name: &str) -> Element {
        let n = xpath_literal(name);
        let implied = match role {
            "heading" => "self::h1 or self::h2 or self::h3 or self::h4",
            "list" => "self::ul or self::ol",
            "listitem" => "self::li",
            "table" => "self::table",
            "row" => "self::tr",
            "article" => "self::article",
            "navigation" => "self::nav",
            // Other roles are matched by an explicit `role` attribute only.
            _ => "false()",
        };
        self.wait_xpath(&format!(
            "//*[(@role={r} or ({implied})) and (contains(normalize-space(.), {n}) or contains(@aria-label, {n}))]",
            r = xpath_literal(role)
        ))
        .await
    }

    /// Waits until the page's visible text contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let body = self.page_text().await;
            if body.contains(text) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!("the page never showed {text:?}; it shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the page.
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `text` into the field labelled `label`, replacing what it holds.
    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.field(label).await;
        field.clear().await.ok();
        field.send_keys(text).await.expect("typing works");
    }

    /// Clicks the button named `name`.
    pub async fn click(&self, name: &str) {
        self.button(name)
            .await
            .click()
            .await
            .expect("button clicks");
    }

    /// Saves a screenshot as `target/browser-screenshots/<name>-<suffix>.png` and returns its path.
    pub async fn screenshot(&self, suffix: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join(format!("{}-{suffix}.png", self.name));
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(&path, png).ok();
        }
        path
    }

    /// Keeps a screenshot of the final state and ends the session.
    pub async fn finish(mut self) {
        self.screenshot("final").await;
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// `s` as an XPath 1.0 string literal (XPath has no escapes, so quotes are spliced with concat).
pub fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
