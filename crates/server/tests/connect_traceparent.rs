//! The request's `traceparent` is attached to the `/connect` span, so session logs carry it.
//! (Own test binary: it installs a global log subscriber.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commucat_server::{Config, Server};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn traceparent_is_on_the_connect_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let pem = std::fs::read(server.cert_path()).unwrap();
    let _handle = server.spawn();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // An empty body: the handshake fails at once and the session logs why.
    let response = client
        .post(format!("https://localhost:{}/connect", addr.port()))
        .header("traceparent", traceparent)
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    for _ in 0..50 {
        let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        if logs
            .lines()
            .any(|l| l.contains("connect{") && l.contains(traceparent))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    panic!("no session log line carries the traceparent:\n{logs}");
}
