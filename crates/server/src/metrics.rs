//! Counters of real events, rendered as Prometheus text for `GET /metrics`.
//!
//! Each counter is one relaxed atomic add on the event's path; nothing is sampled or estimated.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Device handshakes that ended with the final ACK.
    pub handshakes_ok: AtomicU64,
    /// Device handshakes that failed (any reason, including timeouts).
    pub handshakes_failed: AtomicU64,
    /// Established sessions started.
    pub sessions_opened: AtomicU64,
    /// Established sessions running now.
    pub sessions_active: AtomicI64,
    /// Frames handed to a connected recipient's session (one per recipient).
    pub frames_delivered: AtomicU64,
}

/// Decrements [`Metrics::sessions_active`] when dropped.
#[derive(Debug)]
pub struct ActiveSession<'a>(&'a Metrics);

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.sessions_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a handshake outcome.
    pub fn handshake(&self, ok: bool) {
        let counter = if ok {
            &self.handshakes_ok
        } else {
            &self.handshakes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session start; the session counts as active until the guard is dropped.
    #[must_use]
    pub fn session_started(&self) -> ActiveSession<'_> {
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.sessions_active.fetch_add(1, Ordering::Relaxed);
        ActiveSession(self)
    }

    /// Counts frames handed to connected recipients.
    pub fn delivered(&self, frames: u64) {
        if frames > 0 {
            self.frames_delivered.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter.
    #[must_use]
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "commucat_handshakes_total",
            "counter",
            "Device handshakes by result.",
            &[
                ("{result=\"ok\"}", get(&self.handshakes_ok).to_string()),
                (
                    "{result=\"failed\"}",
                    get(&self.handshakes_failed).to_string(),
                ),
            ],
        );
        family(
            "commucat_sessions_opened_total",
            "counter",
            "Established sessions started.",
            &[("", get(&self.sessions_opened).to_string())],
        );
        family(
            "commucat_sessions_active",
            "gauge",
            "Established sessions running now.",
            &[("", self.sessions_active.load(Ordering::Relaxed).to_string())],
        );
        family(
            "commucat_frames_delivered_total",
            "counter",
            "Frames handed to a connected recipient's session, one per recipient.",
            &[("", get(&self.frames_delivered).to_string())],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::default();
        m.handshake(true);
        m.handshake(true);
        m.handshake(false);
        {
            let _a = m.session_started();
            let _b = m.session_started();
            m.delivered(3);
            assert_eq!(m.sessions_active.load(Ordering::Relaxed), 2);
        }
        let text = m.render();
        for line in [
            "# TYPE commucat_handshakes_total counter",
            "commucat_handshakes_total{result=\"ok\"} 2",
            "commucat_handshakes_total{result=\"failed\"} 1",
            "commucat_sessions_opened_total 2",
            "# TYPE commucat_sessions_active gauge",
            "commucat_sessions_active 0",
            "commucat_frames_delivered_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
