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
