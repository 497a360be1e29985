//! The built `commucat` binary in temporary directories: `init` writes a file `serve --config`
//! runs on unchanged; the offline commands work on the store and keys that file points at;
//! `chat` talks to a real server with standard input piped in.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_commucat");

fn commucat(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = commucat(dir, args);
    assert!(
        out.status.success(),
        "commucat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failing(dir: &Path, args: &[&str]) -> String {
    let out = commucat(dir, args);
    assert!(!out.status.success(), "commucat {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Kills the child on drop (a failed assertion must not leave a server running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `commucat serve --config commucat.toml` in `dir`, logging at `info` to the returned pipe.
fn serve(dir: &Path) -> (Running, std::process::ChildStderr) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--config", "commucat.toml"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    (Running(child), stderr)
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn init_writes_a_config_that_serve_runs_on_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "init",
            "--output",
            "commucat.toml",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "chat.test",
        ],
    );
    let text = std::fs::read_to_string(dir.path().join("commucat.toml")).unwrap();
    assert!(text.contains("# Public domain of this server."), "{text}");
    assert!(text.contains("domain = \"chat.test\""), "{text}");
    // Refuses to overwrite without --force.
    let error = failing(dir.path(), &["init", "--output", "commucat.toml"]);
    assert!(error.contains("--force"), "{error}");
    ok(
        dir.path(),
        &[
            "init",
            "--output",
            "commucat.toml",
            "--force",
            "--listen",
            "127.0.0.1:0",
        ],
    );

    let (server, stderr) = serve(dir.path());
    let mut listening = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("commucat listening") {
            listening = Some(line);
            break;
        }
    }
    let line = strip_ansi(&listening.expect("serve never reported listening"));
    assert!(line.contains("domain=localhost"), "{line}");
    drop(server);
    // The data directory is the one the file names, next to it.
    assert!(
        dir.path()
            .join("commucat-data/keys/noise_static.key")
            .exists()
    );
    assert!(dir.path().join("commucat-data/commucat.db").exists());
}

#[test]
fn offline_commands_work_on_the_configured_store_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init", "--output", "c.toml"]);
    let config = ["--config", "c.toml"];
    let with =
        |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(config).collect() };

    let out = ok(d, &with(&["migrate"]));
    assert!(
        out.contains("schema up to date, 4 migrations applied"),
        "{out}"
    );
    assert!(out.contains("identity"), "{out}");
    assert!(out.contains("4  queue usage"), "{out}");

    let out = ok(
        d,
        &with(&["user", "add", "alice", "--identity", "alice.json"]),
    );
    assert!(out.contains("created user alice"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("alice.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let error = failing(
        d,
        &with(&["user", "add", "alice", "--identity", "again.json"]),
    );
    assert!(error.contains("taken"), "{error}");
    let error = failing(d, &with(&["user", "add", "no spaces"]));
    assert!(error.contains("handle"), "{error}");
    let long_name: &'static str = "N".repeat(257).leak();
    let error = failing(
        d,
        &with(&["user", "add", "bob", "--display-name", long_name]),
    );
    assert!(error.contains("bounds.display_name_bytes"), "{error}");

    let out = ok(d, &with(&["device", "list", "--user", "alice"]));
    assert!(out.contains("alice-1  active"), "{out}");

    let out = ok(d, &with(&["pair", "--user", "alice", "--ttl", "120"]));
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("pairing code "))
        .unwrap();
    assert_eq!(code.len(), 9, "{out}");
    assert!(out.contains("(in 120 s)"), "{out}");

    let out = ok(d, &with(&["keys", "list"]));
    assert!(out.contains("   1  ") && out.contains("current"), "{out}");
    let out = ok(d, &with(&["keys", "rotate"]));
    assert!(out.contains("version 2 is current"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("   1") && l.contains("accepted")),
        "{out}"
    );
    let error = failing(d, &with(&["keys", "retire", "2"]));
    assert!(error.contains("current"), "{error}");
    let out = ok(d, &with(&["keys", "retire", "1"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("   1") && l.contains("retired")),
        "{out}"
    );

    let out = ok(d, &with(&["device", "revoke", "alice-1"]));
    assert!(out.contains("revoked"), "{out}");
    let out = ok(d, &with(&["device", "list", "--user", "alice"]));
    assert!(out.contains("alice-1  revoked"), "{out}");
    let error = failing(d, &with(&["pair", "--user", "alice"]));
    assert!(error.contains("no active device"), "{error}");
    let error = failing(d, &with(&["device", "list", "--user", "nobody"]));
    assert!(error.contains("no user"), "{error}");

    // Every operator action is on the ledger.
    let ledger = std::fs::read_to_string(d.join("commucat-data/ledger.jsonl")).unwrap();
    let events: Vec<(String, String)> = ledger
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["via"], "cli");
            (
                v["scope"].as_str().unwrap().to_owned(),
                v["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("device", "register"),
        ("pairing", "issue"),
        ("keys", "rotate"),
        ("keys", "retire"),
        ("device", "revoke"),
    ];
    assert_eq!(events, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    assert!(!ledger.contains(code));
}

#[test]
fn the_ledger_can_go_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["keys", "rotate", "--data-dir", "data"])
        .env("COMMUCAT_LEDGER", "stdout")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let record: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("no ledger line on stdout");
    assert_eq!(record["scope"], "keys");
    assert_eq!(record["event"], "rotate");
    assert_eq!(record["version"], 2);
    assert!(!dir.path().join("data/ledger.jsonl").exists());
    let error = Command::new(BIN)
        .current_dir(dir.path())
        .args(["keys", "list", "--data-dir", "data"])
        .env("COMMUCAT_LEDGER", "syslog")
        .output()
        .unwrap();
    assert!(!error.status.success());
    assert!(String::from_utf8_lossy(&error.stderr).contains("COMMUCAT_LEDGER"));
}

#[test]
fn every_subcommand_explains_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    // Each subcommand's help describes its flags in words, not just their names.
    for (command, phrase) in [
        (&["init", "--help"][..], "Replace an existing file"),
        (&["migrate", "--help"], "TOML configuration file"),
        (&["user", "add", "--help"], "Display name shown to others"),
        (&["device", "revoke", "--help"], "The device id"),
        (&["device", "list", "--help"], "The account's handle"),
        (&["keys", "retire", "--help"], "Version to retire"),
        (&["pair", "--help"], "Lifetime of the code in seconds"),
        (&["chat", "--help"], "SHA-256 fingerprint"),
    ] {
        let out = ok(dir.path(), command);
        assert!(out.contains("Usage: commucat"), "{command:?}: {out}");
        assert!(out.contains(phrase), "{command:?} lacks {phrase:?}: {out}");
    }
    let out = ok(dir.path(), &["keys", "rotate", "--help"]);
    assert!(out.contains("noise_key_grace"), "{out}");
    let out = ok(dir.path(), &["chat", "--help"]);
    for flag in [
        "--server",
        "--ca",
        "--pin",
        "--noise-key",
        "--identity",
        "--channel",
        "--peer",
    ] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
}

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

/// The value of `key=` in a log line of `serve`.
fn log_field<'l>(line: &'l str, key: &str) -> &'l str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// The public key `keys rotate|list` prints as `current`.
fn current_key(listing: &str) -> String {
    listing
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.get(2) == Some(&"current")).then(|| words[1].to_owned())
        })
        .unwrap_or_else(|| panic!("no current key in {listing}"))
}

#[test]
fn sighup_makes_serve_use_the_rotated_key() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "init",
            "--output",
            "commucat.toml",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let (server, stderr) = serve(dir.path());
    // Every log line, read on a thread so the server never blocks on a full pipe.
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| -> String {
        loop {
            let line = logged
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("serve never logged {what:?}: {e}"));
            if line.contains(what) {
                return line;
            }
        }
    };
    let listening = wait_for("commucat listening");
    let addr: std::net::SocketAddr = log_field(&listening, "listen").parse().unwrap();
    let pem = std::fs::read(dir.path().join(log_field(&listening, "cert"))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let server_info = || -> serde_json::Value {
        runtime.block_on(async {
            http.get(format!("https://localhost:{}/api/server-info", addr.port()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let first = server_info();
    assert_eq!(first["noise_keys"].as_array().unwrap().len(), 1, "{first}");
    let old = first["noise_public"].as_str().unwrap().to_owned();

    let rotated = ok(dir.path(), &["keys", "rotate", "--config", "commucat.toml"]);
    assert!(rotated.contains("kill -HUP"), "{rotated}");
    let new = current_key(&rotated);
    assert_ne!(new, old);
    // On disk only, until the signal.
    assert_eq!(server_info()["noise_public"], old.as_str());

    let pid = server.0.id().to_string();
    let kill = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(kill.success());
    let reloaded = wait_for("Noise keys reloaded");
    assert!(reloaded.contains("current_version=2"), "{reloaded}");
    let info = server_info();
    assert_eq!(info["noise_public"], new.as_str());
    assert_eq!(
        info["noise_keys"],
        serde_json::json!([{"version": 2, "public": new}, {"version": 1, "public": old}])
    );

    // Retired and signalled again: server-info drops the old key; the server keeps running.
    ok(
        dir.path(),
        &["keys", "retire", "1", "--config", "commucat.toml"],
    );
    let kill = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(kill.success());
    let reloaded = wait_for("Noise keys reloaded");
    assert!(reloaded.contains("accepted_versions=[2]"), "{reloaded}");
    assert_eq!(
        server_info()["noise_keys"],
        serde_json::json!([{"version": 2, "public": new}])
    );
    drop(server);
}
