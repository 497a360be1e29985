//! `commucat doctor` on a set-up `serve` has run on (every check ok), then on broken ones:
//! each names what is wrong with a fix and exits non-zero. And `log.format = "json"`: the
//! server's log lines parse as JSON.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{BIN, commucat, serve};

/// A free loopback port (free when this returns; the tests bind it again at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, extra: &str) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndomain = \"localhost\"\ndata_dir = \"data\"\n\n\
         [limits]\nmax_connections = 100\n\n{extra}"
    );
    std::fs::write(dir.join("commucat.toml"), text).unwrap();
}

/// `doctor --config commucat.toml`: (success, lines of standard output, standard error).
fn doctor(dir: &Path) -> (bool, Vec<String>, String) {
    output(commucat(dir, &["doctor", "--config", "commucat.toml"]))
}

/// `doctor` with its soft open-file limit set to `soft` (through `sh -c ulimit`).
fn doctor_with_fd_limit(dir: &Path, soft: u32) -> (bool, Vec<String>, String) {
    output(
        Command::new("sh")
            .current_dir(dir)
            .args([
                "-c",
                &format!("ulimit -S -n {soft} && exec \"$0\" doctor --config commucat.toml"),
                BIN,
            ])
            .env_remove("RUST_LOG")
            .output()
            .unwrap(),
    )
}

fn output(out: Output) -> (bool, Vec<String>, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = out;
    let lines = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (status.success(), lines, String::from_utf8(stderr).unwrap())
}

/// The line of check `name`.
fn line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.get(6..22).is_some_and(|n| n.trim_end() == name))
        .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
}

fn assert_fails(lines: &[String], name: &str, found: &str, fix: &str) {
    let l = line(lines, name);
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(l.contains(found), "{l} lacks {found:?}");
    let (_, hint) = l
        .split_once(" — fix: ")
        .unwrap_or_else(|| panic!("no fix: {l}"));
    assert!(hint.contains(fix), "{l} lacks fix {fix:?}");
}

/// Runs `serve` on the set-up in `dir` with JSON logs until it listens, and returns the
/// parsed "listening" line.
fn serve_once_with_json_logs(dir: &Path) -> serde_json::Value {
    let (server, stderr) = serve(dir);
    let mut listening = None;
    let mut seen = Vec::new();
    for text in BufReader::new(stderr).lines() {
        let text = text.unwrap();
        let value: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {text}"));
        seen.push(text);
        if value["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("commucat listening"))
        {
            listening = Some(value);
            break;
        }
    }
    drop(server);
    listening.unwrap_or_else(|| panic!("serve never logged listening: {seen:#?}"))
}

#[test]
fn doctor_passes_a_served_set_up_and_names_what_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port, "[log]\nformat = \"json\"\n");

    // The server runs on it (generating keys and the dev certificate) and logs JSON lines.
    let listening = serve_once_with_json_logs(dir.path());
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["fields"]["domain"], "localhost");
    assert_eq!(listening["fields"]["listen"], format!("127.0.0.1:{port}"));
    assert!(listening["timestamp"].as_str().is_some(), "{listening}");
    assert!(
        listening["target"]
            .as_str()
            .unwrap()
            .starts_with("commucat")
    );

    // Good: every check passes.
    let (ok, lines, stderr) = doctor(dir.path());
    assert!(ok, "{lines:#?}\n{stderr}");
    for name in [
        "config",
        "data directory",
        "key file",
        "database file",
        "tls certificate",
        "tls key",
        "tls names",
        "tls expiry",
        "tls key pair",
        "listen address",
        "clock",
        "open files",
        "store",
    ] {
        assert!(line(&lines, name).starts_with("ok "), "{name}: {lines:#?}");
    }
    assert!(
        line(&lines, "store").contains("schema up to date"),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "reality").contains("not configured"),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "tls names").contains("localhost"),
        "{lines:#?}"
    );

    // A key file readable by others.
    let noise = dir.path().join("data/keys/noise_static.key");
    std::fs::set_permissions(&noise, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, lines, stderr) = doctor(dir.path());
    assert!(!ok);
    assert!(stderr.contains("1 check failed"), "{stderr}");
    assert_fails(&lines, "key file", "mode 0644", "chmod 600");
    std::fs::set_permissions(&noise, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The listen address taken by another process.
    let holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_fails(&lines, "listen address", "in use", "server.listen");
    drop(holder);

    // A certificate that does not name server.domain, an unreachable store and Redis, and
    // more connections than the open-file limit allows.
    write_config(
        dir.path(),
        port,
        "[store]\nurl = \"postgres://commucat@127.0.0.1:1/commucat\"\nacquire_timeout = 2\n\n\
         [presence]\nredis_url = \"redis://127.0.0.1:1\"\n",
    );
    let text = std::fs::read_to_string(dir.path().join("commucat.toml"))
        .unwrap()
        .replace("domain = \"localhost\"", "domain = \"chat.example.org\"")
        .replace("max_connections = 100", "max_connections = 1000");
    std::fs::write(dir.path().join("commucat.toml"), text).unwrap();
    let (ok, lines, stderr) = doctor_with_fd_limit(dir.path(), 512);
    assert!(!ok);
    assert_fails(
        &lines,
        "tls names",
        "chat.example.org is not among",
        "server.domain",
    );
    assert_fails(&lines, "store", "cannot be reached", "store.url");
    assert_fails(&lines, "redis", "redis://127.0.0.1:1", "presence.redis_url");
    assert_fails(
        &lines,
        "open files",
        "limit 512 < limits.max_connections 1000",
        "ulimit -n 1064",
    );
    assert!(stderr.contains("checks failed"), "{stderr}");
}

#[test]
fn doctor_reports_a_missing_key_a_pending_schema_and_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Configured certificate files, the key missing.
    std::fs::write(dir.path().join("cert.pem"), "not yet").unwrap();
    write_config(
        dir.path(),
        port,
        "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    );
    // A store that was never migrated: an empty file is an empty SQLite database.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(data.join("commucat.db"), b"").unwrap();
    std::fs::set_permissions(
        data.join("commucat.db"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_fails(&lines, "tls key", "key.pem does not exist", "key.pem");
    assert_fails(&lines, "store", "migrations pending", "commucat migrate");

    // A configuration that does not parse stops at the first line.
    std::fs::write(dir.path().join("commucat.toml"), "[server]\nlisten = 5\n").unwrap();
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_fails(&lines, "config", "commucat.toml", "correct the setting");
}

#[test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
fn doctor_reads_a_postgres_schema_without_migrating_it() {
    let url = std::env::var("COMMUCAT_TEST_POSTGRES").expect("COMMUCAT_TEST_POSTGRES");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("doctor_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        free_port(),
        &format!("[store]\nurl = \"{url}\"\nschema = \"{schema}\"\n"),
    );
    // A schema nobody migrated yet: reachable, every migration pending, nothing created.
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_fails(&lines, "store", "migrations pending", "commucat migrate");
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok, "doctor migrated the schema: {lines:#?}");
    // Migrated: the store check passes, and the database's clock agrees with ours.
    let out = commucat(dir.path(), &["migrate", "--config", "commucat.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, lines, stderr) = doctor(dir.path());
    assert!(ok, "{lines:#?}\n{stderr}");
    let store = line(&lines, "store");
    assert!(
        store.contains("PostgreSQL") && store.contains("schema up to date"),
        "{store}"
    );
    assert!(line(&lines, "store clock").starts_with("ok "), "{lines:#?}");
}

#[test]
fn doctor_checks_the_seed_transport_section() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = rcgen::CertificateParams::new(vec!["reality.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/reality.pem"), &pem).unwrap();
    let fingerprint = blake3::hash(pem.as_bytes()).to_hex().to_string();

    // The seed's own section, with a fingerprint of another file: loads, and doctor fails it
    // naming the fingerprint the file has.
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    write_config(
        dir.path(),
        port,
        &format!(
            "[transport]\nreality_cert = \"certs/reality.pem\"\nreality_fingerprint = \"{wrong}\"\n"
        ),
    );
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_eq!(line(&lines, "config").get(..3), Some("ok "), "{lines:#?}");
    assert_fails(
        &lines,
        "reality",
        &fingerprint,
        "transport.reality_fingerprint",
    );

    // The matching fingerprint: valid material, and the line says REALITY is not served.
    write_config(
        dir.path(),
        port,
        &format!(
            "[transport]\nreality_cert = \"certs/reality.pem\"\nreality_fingerprint = \"{fingerprint}\"\n"
        ),
    );
    let (_, lines, _) = doctor(dir.path());
    let reality = line(&lines, "reality");
    assert!(reality.starts_with("ok "), "{reality}");
    assert!(reality.contains("not advertised"), "{reality}");

    // A fingerprint that is not 64 hex digits is a configuration error.
    write_config(
        dir.path(),
        port,
        "[transport]\nreality_fingerprint = \"abc\"\n",
    );
    let (ok, lines, _) = doctor(dir.path());
    assert!(!ok);
    assert_fails(
        &lines,
        "config",
        "transport.reality_fingerprint",
        "correct the setting",
    );
}
