//! Headless Chromium for the browser tests: the test starts `chromedriver` (the binary named by
//! `COMMUCAT_TEST_CHROMEDRIVER`) on a free port and opens a WebDriver session through
//! `fantoccini`. Set but unusable fails the test; the driver process is killed when the test
//! ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::common::WAIT;

/// The Chromium binary: `COMMUCAT_TEST_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("COMMUCAT_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// A running chromedriver and one browser session on it.
pub(super) struct Browser {
    _driver: DriverProcess,
    pub(super) client: Client,
    /// Where screenshots go (`COMMUCAT_CONSOLE_SCREENSHOTS`), if anywhere.
    shots: Option<PathBuf>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium that accepts the test server's certificate.
    pub(super) async fn start() -> Self {
        let path = std::env::var("COMMUCAT_TEST_CHROMEDRIVER")
            .expect("COMMUCAT_TEST_CHROMEDRIVER names the chromedriver binary");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = DriverProcess(
            Command::new(&path)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("COMMUCAT_TEST_CHROMEDRIVER={path} does not start: {e}")
                }),
        );
        let browser = Self {
            _driver: driver,
            client: connect(port).await,
            shots: std::env::var_os("COMMUCAT_CONSOLE_SCREENSHOTS").map(PathBuf::from),
        };
        browser.client.set_window_size(1280, 860).await.unwrap();
        browser
    }

    /// Takes a PNG screenshot of the page; saved as `<name>.png` when screenshots are kept.
    pub(super) async fn screenshot(&mut self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Ends the browser session.
    pub(super) async fn close(self) {
        let Self { client, .. } = self;
        client.close().await.unwrap();
    }
}

/// A WebDriver session on the chromedriver at `port`, retried until the driver listens.
async fn connect(port: u16) -> Client {
    let mut options = Capabilities::new();
    options.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors",
                "--window-size=1280,860",
            ],
        }),
    );
    options.insert("acceptInsecureCerts".to_owned(), json!(true));
    let url = format!("http://127.0.0.1:{port}");
    let last_error = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let outcome = crate::common::poll::within(WAIT, || {
        let (options, url, last_error) = (options.clone(), url.clone(), last_error.clone());
        async move {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(options)
                .connect(&url)
                .await
            {
                Ok(client) => Some(client),
                Err(e) => {
                    *last_error.lock().unwrap() = e.to_string();
                    None
                }
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|| {
        panic!(
            "no Chromium session from chromedriver on {url} within {WAIT:?}: {}",
            last_error.lock().unwrap()
        )
    })
}

/// The chromedriver process, killed when dropped (also when starting the session fails).
struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
