//! docs/commucat.service passes `systemd-analyze verify` (with its binary paths pointed at the
//! built `commucat`); where systemd-analyze is not installed the test says so and passes.

use std::process::Command;

use crate::common::BIN;

#[test]
fn the_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED the_systemd_unit_verifies: systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/commucat.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/commucat serve"));
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commucat.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/commucat", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // Warnings (unknown keys, unknown system-call groups) exit 0 too: none is allowed.
    assert!(said.trim().is_empty(), "{said}");
    // The check can fail: a misspelt key is reported.
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/commucat", BIN)
            .replace("ProtectHome", "ProtectHone"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ProtectHone"));
}
