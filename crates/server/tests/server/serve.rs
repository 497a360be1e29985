//! The real server on 127.0.0.1:0 with a temporary data directory, over real TLS.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use commucat_keys::{DeviceKeyPair, decode_hex32, x25519_public};
use commucat_server::{Config, Server, ServerHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Running {
    handle: ServerHandle,
    addr: SocketAddr,
    fingerprint: String,
    cert_path: PathBuf,
}

fn config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = data_dir.to_owned();
    config.server.shutdown_grace = Duration::from_secs(5);
    config
}

async fn start_with(config: Config) -> Running {
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let fingerprint = server.cert_fingerprint().to_owned();
    let cert_path = server.cert_path().to_owned();
    Running {
        handle: server.spawn(),
        addr,
        fingerprint,
        cert_path,
    }
}

async fn start(data_dir: &Path) -> Running {
    start_with(config(data_dir)).await
}

fn http_client(cert_path: &Path, addr: SocketAddr) -> reqwest::Client {
    let pem = std::fs::read(cert_path).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", addr)
        .https_only(true)
        .build()
        .unwrap()
}

fn rustls_client(
    cert_path: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert_path).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn server_info(client: &reqwest::Client, addr: SocketAddr) -> serde_json::Value {
    let url = format!("https://localhost:{}/api/server-info", addr.port());
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    response.json().await.unwrap()
}

fn key_file(data: &Path, name: &str) -> [u8; 32] {
    let text = std::fs::read_to_string(data.join("keys").join(name)).unwrap();
    decode_hex32(text.trim()).unwrap()
}

#[tokio::test]
async fn http2_over_alpn_serves_health_and_server_info_with_the_stored_keys() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let client = http_client(&server.cert_path, server.addr);
    let port = server.addr.port();

    let response = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let info = server_info(&client, server.addr).await;
    let noise_public = hex::encode(x25519_public(&key_file(data.path(), "noise_static.key")));
    let ca_public =
        DeviceKeyPair::from_seed(&key_file(data.path(), "device_ca.key")).public_key_hex();
    assert_eq!(info["domain"], "localhost");
    assert_eq!(info["noise_public"], noise_public);
    assert_eq!(
        info["noise_keys"],
        serde_json::json!([{"version": 1, "public": noise_public}])
    );
    assert_eq!(info["device_ca_public"], ca_public);
    assert_eq!(info["supported_patterns"], serde_json::json!(["XK", "IK"]));
    assert_eq!(info["supported_versions"], serde_json::json!([1]));
    assert_eq!(
        info["session"],
        serde_json::json!({"ttl_seconds": 3600, "keepalive_interval": 30})
    );
    assert_eq!(info["presence"], serde_json::json!({"ttl_seconds": 60}));
    assert_eq!(
        info["pairing"],
        serde_json::json!({"auto_approve": true, "pairing_ttl": 300, "max_auto_devices": 5})
    );
    assert_eq!(
        info["limits"],
        serde_json::json!({"max_frame_len": 16 * 1024 * 1024})
    );

    // The alias, the IP SAN, and a problem+json 404 over the same real listener.
    let alias: serde_json::Value = client
        .get(format!("https://localhost:{port}/api/server/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alias, info);
    let by_ip = client
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_ip.status(), 200);
    let missing = client
        .get(format!("https://localhost:{port}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["title"], "Not Found");
    assert_eq!(problem["type"], "about:blank");

    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn http1_with_alpn_and_without_alpn_are_served() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;

    // ALPN http/1.1 through reqwest.
    let pem = std::fs::read(&server.cert_path).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", server.addr)
        .http1_only()
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/healthz", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);

    // No ALPN at all: a raw HTTP/1.1 request after a TLS 1.3 handshake.
    let connector = rustls_client(&server.cert_path, &[&rustls::version::TLS13], &[]);
    let mut tls = tls_connect(&connector, server.addr).await.unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), None);
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status_line = text.lines().next().unwrap();
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");

    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let tls12 = rustls_client(
        &server.cert_path,
        &[&rustls::version::TLS12],
        &[b"h2", b"http/1.1"],
    );
    let error = tls_connect(&tls12, server.addr).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("ProtocolVersion") || message.contains("protocol version"),
        "expected a protocol version alert, got: {message}"
    );
    // The same client allowed TLS 1.3 gets through, so the refusal is about the version.
    let tls13 = rustls_client(
        &server.cert_path,
        &[&rustls::version::TLS12, &rustls::version::TLS13],
        &[b"h2", b"http/1.1"],
    );
    let stream = tls_connect(&tls13, server.addr).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_keys_and_certificate() {
    let data = tempfile::tempdir().unwrap();
    let first = start(data.path()).await;
    let client = http_client(&first.cert_path, first.addr);
    let before = server_info(&client, first.addr).await;
    let cert_before = std::fs::read(&first.cert_path).unwrap();
    first.handle.shutdown().await.unwrap();

    let second = start(data.path()).await;
    assert_eq!(second.fingerprint, first.fingerprint);
    assert_eq!(std::fs::read(&second.cert_path).unwrap(), cert_before);
    // A client that trusts only the first run's certificate still connects.
    let client = http_client(&first.cert_path, second.addr);
    let after = server_info(&client, second.addr).await;
    assert_eq!(after["noise_public"], before["noise_public"]);
    assert_eq!(after["device_ca_public"], before["device_ca_public"]);
    second.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn secret_files_are_owner_only() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("fresh/commucat-data");
    let server = start(&data_dir).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for file in [
        "keys/noise_static.key",
        "keys/device_ca.key",
        "tls/dev_key.pem",
        "tls/dev_cert.pem",
    ] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    for dir in ["", "keys", "tls"] {
        assert_eq!(mode(&data_dir.join(dir)), 0o700, "{dir:?}");
    }
    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn corrupt_key_file_stops_startup_and_is_not_replaced() {
    let data = tempfile::tempdir().unwrap();
    start(data.path()).await.handle.shutdown().await.unwrap();
    let noise = data.path().join("keys/noise_static.key");
    std::fs::write(&noise, "xyz\n").unwrap();
    let error = Server::bind(config(data.path())).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: corrupt key file", noise.display())),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&noise).unwrap(), "xyz\n");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.limits.max_connections = 1;
    let server = start_with(config).await;
    let connector = rustls_client(
        &server.cert_path,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    );

    let mut first = tls_connect(&connector, server.addr).await.unwrap();
    let second = tokio::spawn({
        let connector = connector.clone();
        let addr = server.addr;
        async move { tls_connect(&connector, addr).await }
    });
    // The server keeps serving the connection that holds the slot: after these round trips it
    // has had every chance to take the second one, and must not have.
    for _ in 0..5 {
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(br#"{"status":"ok"}"#) {
            let mut chunk = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut chunk))
                .await
                .expect("the connection holding the slot is served")
                .unwrap();
            assert!(n > 0, "the server closed the connection holding the slot");
            answer.extend_from_slice(&chunk[..n]);
        }
    }
    assert!(
        !second.is_finished(),
        "second handshake completed while the only slot was taken"
    );
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("second connection served once the slot was freed")
        .unwrap()
        .unwrap();
    drop(second);
    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.limits.tls_handshake_timeout = Duration::from_secs(1);
    let server = start_with(config).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("server closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_and_stops_accepting() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let client = http_client(&server.cert_path, server.addr);
    // An open HTTP/2 connection (pooled by the client) must not hold shutdown past the grace.
    server_info(&client, server.addr).await;
    let addr = server.addr;
    tokio::time::timeout(Duration::from_secs(4), server.handle.shutdown())
        .await
        .expect("idle connections drain before the 5 s grace")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
