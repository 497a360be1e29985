//! SIGHUP to `commucat serve`: the server reloads its Noise keys and uses the rotated one.

use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::common::{ok, serve, strip_ansi};

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
