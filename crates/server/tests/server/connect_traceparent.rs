//! The request's `traceparent` is attached to the `/connect` span, so session logs carry it.
//!
//! The log subscriber is the test thread's default (not the process-wide one): the test runs on
//! a current-thread runtime, so the server's tasks log through it while the other tests of the
//! binary are unaffected.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::common::{TestServer, WAIT};

/// Log output, with a wake-up for whoever waits for a line.
#[derive(Clone, Default)]
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    written: Arc<Notify>,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        self.written.notify_one();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn traceparent_is_on_the_connect_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start(|_| {}).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // An empty body: the handshake fails at once and the session logs why.
    let response = server
        .http()
        .post(format!("https://localhost:{}/connect", server.addr.port()))
        .header("traceparent", traceparent)
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let carries_it = |logs: &str| {
        logs.lines()
            .any(|l| l.contains("connect{") && l.contains(traceparent))
    };
    let waited = tokio::time::timeout(WAIT, async {
        while !carries_it(&captured.text()) {
            captured.written.notified().await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no session log line carries the traceparent:\n{}",
        captured.text()
    );
}
