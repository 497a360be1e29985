//! The built `commucat` binary in temporary directories: `init` writes a file `serve --config`
//! runs on unchanged; the offline commands work on the store and keys that file points at.

use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::common::{BIN, failing, ok, serve, strip_ansi};

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
        out.contains("schema up to date, 6 migrations applied"),
        "{out}"
    );
    assert!(out.contains("identity"), "{out}");
    assert!(out.contains("4  queue usage"), "{out}");
    assert!(out.contains("5  federation"), "{out}");
    assert!(out.contains("16  federation peers"), "{out}");

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

#[test]
fn federation_shows_the_key_the_peers_and_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let peer_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    std::fs::write(
        dir.path().join("commucat.toml"),
        format!(
            "[server]\ndomain = \"a.test\"\ndata_dir = \"data\"\n[federation]\nenabled = true\n\
             [[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"https://b.test:8443\"\n\
             public_key = \"{peer_key}\"\n[[federation.peers]]\ndomain = \"c.test\"\n\
             endpoint = \"https://c.test\"\nstatus = \"blocked\"\n"
        ),
    )
    .unwrap();
    let config = ["--config", "commucat.toml"];
    let key = ok(dir.path(), &[&["federation", "key"][..], &config].concat());
    // Generated once (0600), then the same key.
    assert_eq!(
        ok(dir.path(), &[&["federation", "key"][..], &config].concat()),
        key
    );
    let seed = std::fs::read_to_string(dir.path().join("data/keys/federation.key")).unwrap();
    let pair =
        commucat_keys::DeviceKeyPair::from_seed(&commucat_keys::decode_hex32(seed.trim()).unwrap());
    assert_eq!(key.trim(), format!("a.test  {}", pair.public_key_hex()));
    // Rotation: a new key; the old one is named with the end of its grace period.
    let rotated = ok(
        dir.path(),
        &[
            &["federation", "key", "rotate", "--grace", "600"][..],
            &config,
        ]
        .concat(),
    );
    let new_key = ok(dir.path(), &[&["federation", "key"][..], &config].concat());
    assert_ne!(new_key, key);
    assert!(rotated.starts_with(&new_key), "{rotated}");
    assert!(
        rotated.contains(&format!(
            "the previous key {} stays valid for peers until ",
            pair.public_key_hex()
        )),
        "{rotated}"
    );
    assert!(
        dir.path()
            .join("data/keys/federation.rotation.json")
            .exists()
    );

    let peers = ok(
        dir.path(),
        &[&["federation", "peers"][..], &config].concat(),
    );
    assert!(
        peers.starts_with("federation enabled for a.test: 2 peers"),
        "{peers}"
    );
    assert!(
        peers.contains(&format!(
            "b.test  active   https://b.test:8443  {peer_key}  (config)"
        )),
        "{peers}"
    );
    assert!(
        peers.contains("c.test  blocked  https://c.test  -"),
        "{peers}"
    );

    let outbox = ok(
        dir.path(),
        &[&["federation", "outbox"][..], &config].concat(),
    );
    assert_eq!(outbox.trim(), "outbox empty");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use commucat_store::Store as _;
            let store = commucat_store::SqliteStore::open(&dir.path().join("data/commucat.db"))
                .await
                .unwrap();
            let now = commucat_server::clock::unix_now();
            for n in 0..2 {
                let event = commucat_store::NewOutboxEvent {
                    peer: "b.test".to_owned(),
                    channel_id: 1,
                    event_id: format!("e{n}"),
                    body: b"{}".to_vec(),
                    enqueued_at: now,
                    expires_at: now + 600,
                };
                store.push_outbox(event, 10).await.unwrap();
            }
            let first = store.outbox_batch("b.test", now, 1).await.unwrap();
            store
                .outbox_failed(first[0].outbox_id, "connection refused", now)
                .await
                .unwrap();
            store.close().await;
        });
    let outbox = ok(
        dir.path(),
        &[&["federation", "outbox"][..], &config].concat(),
    );
    assert!(outbox.starts_with("b.test  depth 2  oldest "), "{outbox}");
    assert!(
        outbox.contains("last error connection refused (at "),
        "{outbox}"
    );
}

/// The value of `key=` in a log line of `serve`.
fn log_field<'l>(line: &'l str, key: &str) -> &'l str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn federation_peers_are_added_from_a_served_peer_blocked_and_unblocked() {
    let a = tempfile::tempdir().unwrap();
    std::fs::write(
        a.path().join("commucat.toml"),
        "[server]\ndomain = \"a.test\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
         [federation]\nenabled = true\n",
    )
    .unwrap();
    let config = ["--config", "commucat.toml"];
    let (_server, stderr) = serve(a.path());
    let mut listening = None;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = strip_ansi(&line.unwrap());
        if line.contains("commucat listening") {
            listening = Some(line);
            break;
        }
    }
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let listening = listening.expect("serve never reported listening");
    let addr: std::net::SocketAddr = log_field(&listening, "listen").parse().unwrap();
    let cert = a.path().join(log_field(&listening, "cert"));
    let a_key = ok(a.path(), &[&["federation", "key"][..], &config].concat());
    let a_key = a_key.trim().strip_prefix("a.test  ").unwrap().to_owned();

    // b.test's operator registers a.test: its key is fetched from the served well-known
    // document over TLS verified with a.test's certificate, and pinned.
    let b = tempfile::tempdir().unwrap();
    std::fs::write(
        b.path().join("commucat.toml"),
        "[server]\ndomain = \"b.test\"\ndata_dir = \"data\"\n[federation]\nenabled = true\n",
    )
    .unwrap();
    std::fs::copy(&cert, b.path().join("a.pem")).unwrap();
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    fn with<'a>(args: &[&'a str], config: &[&'a str]) -> Vec<&'a str> {
        [&["federation", "peers"][..], args, config].concat()
    }
    let added = ok(
        b.path(),
        &with(
            &[
                "add",
                "a.test",
                "--endpoint",
                &endpoint,
                "--ca-file",
                "a.pem",
            ],
            &config,
        ),
    );
    assert!(
        added.contains(&format!("fetched {a_key} from {endpoint}")),
        "{added}"
    );
    let listed = ok(b.path(), &with(&["list"], &config));
    assert!(
        listed.contains(&format!("a.test  active   {endpoint}  {a_key}  (registry)")),
        "{listed}"
    );
    // Without the certificate the TLS is not trusted: nothing is pinned.
    let error = failing(
        b.path(),
        &with(&["add", "x.test", "--endpoint", &endpoint], &config),
    );
    assert!(error.contains("fetching the peer's key"), "{error}");
    // The document must name the domain being added.
    let error = failing(
        b.path(),
        &with(
            &[
                "add",
                "c.test",
                "--endpoint",
                &endpoint,
                "--ca-file",
                "a.pem",
            ],
            &config,
        ),
    );
    assert!(error.contains("publishes the key of \"a.test\""), "{error}");

    ok(b.path(), &with(&["block", "a.test"], &config));
    let listed = ok(b.path(), &with(&[], &config));
    assert!(listed.contains("a.test  blocked  "), "{listed}");
    ok(b.path(), &with(&["unblock", "a.test"], &config));
    let listed = ok(b.path(), &with(&["list"], &config));
    assert!(listed.contains("a.test  active   "), "{listed}");
    assert!(
        listed.starts_with("federation enabled for b.test: 1 peers"),
        "{listed}"
    );
    let error = failing(b.path(), &with(&["block", "z.test"], &config));
    assert!(error.contains("not a peer"), "{error}");
}
