//! Running the built `commucat` binary in a directory.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_commucat");

pub(crate) fn commucat(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    let out = commucat(dir, args);
    assert!(
        out.status.success(),
        "commucat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn failing(dir: &Path, args: &[&str]) -> String {
    let out = commucat(dir, args);
    assert!(!out.status.success(), "commucat {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Kills the child on drop (a failed assertion must not leave a server running).
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `commucat serve --config commucat.toml` in `dir`, logging at `info` to the returned pipe.
pub(crate) fn serve(dir: &Path) -> (Running, std::process::ChildStderr) {
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
pub(crate) fn strip_ansi(text: &str) -> String {
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
