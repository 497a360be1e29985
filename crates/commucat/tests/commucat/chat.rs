//! `commucat chat` against a real server with standard input piped in.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::{BIN, Running, ok};

fn spawn_chat(dir: &Path, server: &str, ca: &Path, identity: &str, extra: &[&str]) -> Child {
    let ca = ca.to_str().unwrap();
    spawn_chat_trusting(dir, server, &["--ca", ca], identity, extra)
}

fn spawn_chat_trusting(
    dir: &Path,
    server: &str,
    trust: &[&str],
    identity: &str,
    extra: &[&str],
) -> Child {
    Command::new(BIN)
        .current_dir(dir)
        .args(["chat", "--server", server])
        .args(trust)
        .args(["--identity", identity, "--channel", "5"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `chat` with standard input closed at once; returns whether it succeeded and its
/// standard error.
fn chat_once(mut child: Child) -> (bool, String) {
    drop(child.stdin.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().success(), err)
}

/// The real server in-process on 127.0.0.1:0 with its data in `data`.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    handle: Option<commucat_server::ServerHandle>,
    url: String,
    ca: std::path::PathBuf,
    fingerprint: String,
}

impl InProcess {
    fn start(data: &Path, tweak: impl FnOnce(&mut commucat_server::Config)) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut config = commucat_server::Config::default();
        config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.data_dir = data.to_owned();
        tweak(&mut config);
        let server = runtime
            .block_on(commucat_server::Server::bind(config))
            .unwrap();
        let url = format!("https://localhost:{}", server.local_addr().port());
        let ca = server.cert_path().to_owned();
        let fingerprint = server.cert_fingerprint().to_owned();
        let handle = runtime.block_on(async { server.spawn() });
        Self {
            runtime,
            handle: Some(handle),
            url,
            ca,
            fingerprint,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.runtime.block_on(handle.shutdown());
        }
    }
}

#[test]
fn chat_sends_piped_lines_and_prints_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(&dir.path().join("data"), |_| {});
    let (url, ca, fingerprint) = (&server.url, &server.ca, &server.fingerprint);

    // bob listens, with standard input left open.
    let bob = spawn_chat(
        dir.path(),
        url,
        ca,
        "bob.json",
        &[
            "--device-id",
            "bob-1",
            "--handle",
            "bob",
            "--peer",
            "alice-1",
        ],
    );
    let mut bob = Running(bob);
    let mut bob_err = BufReader::new(bob.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("connected as bob-1") {
        line.clear();
        assert!(
            bob_err.read_line(&mut line).unwrap() > 0,
            "bob's chat ended"
        );
    }

    // alice pipes two lines and exits once the server acknowledged them.
    let mut alice = spawn_chat(
        dir.path(),
        url,
        ca,
        "alice.json",
        &[
            "--device-id",
            "alice-1",
            "--handle",
            "alice",
            "--peer",
            "bob-1",
        ],
    );
    let mut stdin = alice.stdin.take().unwrap();
    stdin.write_all(b"hello bob\n\nsecond line\n").unwrap();
    drop(stdin);
    let out = alice.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "alice: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connected as alice-1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The identity was created and now carries the account and certificate.
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("alice.json")).unwrap()).unwrap();
    assert_eq!(identity["device_id"], "alice-1");
    assert!(identity["certificate"].is_object(), "{identity}");

    let mut bob_out = BufReader::new(bob.0.stdout.take().unwrap());
    let mut received = Vec::new();
    while received.len() < 2 {
        let mut line = String::new();
        assert!(
            bob_out.read_line(&mut line).unwrap() > 0,
            "bob's output ended"
        );
        received.push(line.trim_end().to_owned());
    }
    assert_eq!(received, ["[5] hello bob", "[5] second line"]);
    drop(bob);

    // A second run loads the saved identity (same device, no new account), this time
    // trusting the server by its certificate fingerprint.
    let again = spawn_chat_trusting(
        dir.path(),
        url,
        &["--pin", fingerprint.as_str()],
        "alice.json",
        &[],
    );
    let (success, err) = chat_once(again);
    assert!(success, "{err}");
    assert!(err.contains("connected as alice-1"), "{err}");
}

/// `--mode h3`: alice chats over HTTP/3 (the server has `server.http3` on) to bob on HTTP/2.
#[test]
fn chat_over_http3_reaches_a_peer_on_http2() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(&dir.path().join("data"), |c| c.server.http3 = true);
    let (url, ca) = (&server.url, &server.ca);
    let bob = spawn_chat(
        dir.path(),
        url,
        ca,
        "bob.json",
        &[
            "--device-id",
            "bob-3",
            "--handle",
            "bob",
            "--peer",
            "alice-3",
        ],
    );
    let mut bob = Running(bob);
    let mut bob_err = BufReader::new(bob.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("connected as bob-3") {
        line.clear();
        assert!(
            bob_err.read_line(&mut line).unwrap() > 0,
            "bob's chat ended"
        );
    }
    let mut alice = spawn_chat(
        dir.path(),
        url,
        ca,
        "alice.json",
        &[
            "--device-id",
            "alice-3",
            "--handle",
            "alice",
            "--peer",
            "bob-3",
            "--mode",
            "h3",
        ],
    );
    let mut stdin = alice.stdin.take().unwrap();
    stdin.write_all(b"over quic\n").unwrap();
    drop(stdin);
    let out = alice.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "alice: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bob_out = BufReader::new(bob.0.stdout.take().unwrap());
    let mut received = String::new();
    assert!(bob_out.read_line(&mut received).unwrap() > 0);
    assert_eq!(received.trim_end(), "[5] over quic");
}

#[test]
fn a_user_added_offline_connects_where_unknown_devices_need_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(&dir.path().join("data"), |c| {
        c.devices.auto_approve = false;
    });
    let (url, ca) = (&server.url, &server.ca);

    // The operator adds carol beside the running server; carol's identity connects.
    ok(
        dir.path(),
        &[
            "user",
            "add",
            "carol",
            "--data-dir",
            "data",
            "--identity",
            "carol.json",
        ],
    );
    let (success, err) = chat_once(spawn_chat(dir.path(), url, ca, "carol.json", &[]));
    assert!(success, "{err}");
    assert!(err.contains("connected as carol-1"), "{err}");

    // An operator-issued pairing code adds a second device to carol's account.
    let out = ok(
        dir.path(),
        &["pair", "--user", "carol", "--data-dir", "data"],
    );
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("pairing code "))
        .unwrap()
        .to_owned();
    let pem = std::fs::read(ca).unwrap();
    let claimed: serde_json::Value = server.runtime.block_on(async {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        let response = http
            .post(format!("{url}/api/pair/claim"))
            .json(&serde_json::json!({"pair_code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    });
    assert_eq!(claimed["user"]["handle"], "carol");
    assert_eq!(claimed["issuer_device_id"], "carol-1");
    let out = ok(
        dir.path(),
        &["device", "list", "--user", "carol", "--data-dir", "data"],
    );
    assert!(out.contains("2 devices"), "{out}");

    // A device nobody registered is refused.
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        url,
        ca,
        "stranger.json",
        &["--handle", "stranger"],
    ));
    assert!(!success);
    assert!(err.contains("PairingRequired"), "{err}");
}

#[test]
fn chat_pq_runs_a_hybrid_session_and_keeps_the_device_pq_keys() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(&dir.path().join("data"), |_| {});
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        &server.url,
        &server.ca,
        "pq.json",
        &["--device-id", "pq-1", "--pq"],
    ));
    assert!(success, "{err}");
    assert!(err.contains("connected as pq-1"), "{err}");
    assert!(err.contains("pq-hybrid session"), "{err}");
    let path = dir.path().join("pq.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let kem_secret = identity["pq"]["kem_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        kem_secret.len(),
        2 * 2400,
        "ML-KEM-768 decapsulation key, hex"
    );

    // The next run reuses the stored keys.
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        &server.url,
        &server.ca,
        "pq.json",
        &["--pq"],
    ));
    assert!(success, "{err}");
    assert!(err.contains("pq-hybrid session"), "{err}");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(identity["pq"]["kem_secret"], kem_secret.as_str());

    // A server without pq-hybrid: `--pq` refuses the classical session.
    let classical_dir = tempfile::tempdir().unwrap();
    let classical = InProcess::start(&classical_dir.path().join("data"), |c| {
        c.crypto.pq_hybrid = false;
    });
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        &classical.url,
        &classical.ca,
        "pq-2.json",
        &["--device-id", "pq-2", "--pq"],
    ));
    assert!(!success);
    assert!(err.contains("did not accept pq-hybrid"), "{err}");
}

#[test]
fn chat_obf_runs_a_wrapped_session_and_refuses_a_server_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(&dir.path().join("data"), |_| {});
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        &server.url,
        &server.ca,
        "obf.json",
        &["--device-id", "obf-1", "--obf"],
    ));
    assert!(success, "{err}");
    assert!(err.contains("connected as obf-1"), "{err}");
    assert!(err.contains("; adaptive-obf"), "{err}");

    let off_dir = tempfile::tempdir().unwrap();
    let off = InProcess::start(&off_dir.path().join("data"), |c| {
        c.crypto.adaptive_obf = false;
    });
    let (success, err) = chat_once(spawn_chat(
        dir.path(),
        &off.url,
        &off.ca,
        "obf-2.json",
        &["--device-id", "obf-2", "--obf"],
    ));
    assert!(!success);
    assert!(err.contains("did not accept adaptive-obf"), "{err}");
}
