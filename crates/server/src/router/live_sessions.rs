//! What an online session tells the operator: who it is, how it connected, since when, and
//! how many frames it has exchanged. Each session owns one [`SessionStats`] (attached to its
//! mailbox); [`Hub::live_sessions`] copies them out for the web console.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Hub, Mailbox};

/// Counters and identity of one established session, shared between its task (which counts)
/// and the hub (which lists it).
#[derive(Debug)]
pub struct SessionStats {
    /// The account of the device.
    pub user_id: String,
    /// The account's handle.
    pub handle: String,
    /// How the client connected (`binary`, `sse`, `long-poll`, `websocket`).
    pub mode: &'static str,
    /// When the session was established, unix seconds.
    pub since: i64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
}

impl SessionStats {
    /// Stats of a session of `user_id` (`handle`) connected by `mode` at `since`, no frames yet.
    #[must_use]
    pub fn new(user_id: String, handle: String, mode: &'static str, since: i64) -> Self {
        Self {
            user_id,
            handle,
            mode,
            since,
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
        }
    }

    /// Counts a frame read from the client.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a frame written to the client.
    pub fn frame_out(&self) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames read from the client so far.
    #[must_use]
    pub fn frames_in(&self) -> u64 {
        self.frames_in.load(Ordering::Relaxed)
    }

    /// Frames written to the client so far.
    #[must_use]
    pub fn frames_out(&self) -> u64 {
        self.frames_out.load(Ordering::Relaxed)
    }
}

/// A copy of one online session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The device.
    pub device_id: String,
    /// Its session id (secret: it is the REST bearer token; never shown).
    session_id: String,
    /// The account.
    pub user_id: String,
    /// The account's handle.
    pub handle: String,
    /// How the client connected.
    pub mode: &'static str,
    /// When the session was established, unix seconds.
    pub since: i64,
    /// The client's address as the server saw it.
    pub remote: Option<SocketAddr>,
    /// Frames read from the client.
    pub frames_in: u64,
    /// Frames written to the client.
    pub frames_out: u64,
    /// Frames waiting in its mailbox.
    pub mailbox_frames: u64,
}

impl LiveSession {
    fn of(device_id: &str, mailbox: &Mailbox, stats: &SessionStats) -> Self {
        let waiting = mailbox
            .tx
            .max_capacity()
            .saturating_sub(mailbox.tx.capacity());
        Self {
            device_id: device_id.to_owned(),
            session_id: mailbox.session_id.clone(),
            user_id: stats.user_id.clone(),
            handle: stats.handle.clone(),
            mode: stats.mode,
            since: stats.since,
            remote: mailbox.addr,
            frames_in: stats.frames_in(),
            frames_out: stats.frames_out(),
            mailbox_frames: u64::try_from(waiting).unwrap_or(u64::MAX),
        }
    }

    /// Whether this copy was taken of the session `session_id`.
    #[must_use]
    pub fn is_session(&self, session_id: &str) -> bool {
        self.session_id == session_id
    }
}

impl Mailbox {
    /// This mailbox, with the stats its session keeps (listed by [`Hub::live_sessions`]).
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<SessionStats>) -> Self {
        self.stats = Some(stats);
        self
    }
}

impl Hub {
    /// The online sessions that keep stats (every established session does), by device id.
    #[must_use]
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        let tables = self.lock();
        let mut sessions: Vec<LiveSession> = tables
            .online
            .iter()
            .filter_map(|(device, mailbox)| {
                let stats = mailbox.stats.as_ref()?;
                Some(LiveSession::of(device, mailbox, stats))
            })
            .collect();
        drop(tables);
        sessions.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        sessions
    }

    /// A value that changes whenever a session registers (the registrations so far) or leaves
    /// (the sessions online): a cheap test of whether [`Hub::live_sessions`] lists other
    /// sessions than before, without copying them.
    #[must_use]
    pub fn sessions_version(&self) -> (u64, usize) {
        let tables = self.lock();
        (
            self.registrations.load(Ordering::SeqCst),
            tables.online.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_with_stats_are_listed_with_their_counts() {
        let hub = Hub::default();
        let stats = Arc::new(SessionStats::new("u-1".into(), "alice".into(), "sse", 42));
        let (a, _a_rx) = Mailbox::new("s-a", 4, None);
        hub.register("dev-a", a.with_stats(Arc::clone(&stats)));
        let (b, _b_rx) = Mailbox::new("s-b", 4, None);
        hub.register("dev-b", b);
        stats.frame_in();
        stats.frame_in();
        stats.frame_out();
        let before = hub.sessions_version();
        let live = hub.live_sessions();
        assert_eq!(live.len(), 1);
        let s = &live[0];
        assert_eq!(
            (s.device_id.as_str(), s.handle.as_str(), s.mode, s.since),
            ("dev-a", "alice", "sse", 42)
        );
        assert_eq!((s.frames_in, s.frames_out, s.mailbox_frames), (2, 1, 0));
        assert!(s.is_session("s-a"));
        // Counting frames is no change of the sessions; leaving and coming back are.
        assert_eq!(hub.sessions_version(), before);
        hub.unregister("dev-a", "s-a");
        assert!(hub.live_sessions().is_empty());
        let left = hub.sessions_version();
        assert_ne!(left, before);
        let (a, _a_rx) = Mailbox::new("s-a2", 4, None);
        hub.register("dev-a", a.with_stats(stats));
        assert_ne!(hub.sessions_version(), left);
        assert_ne!(hub.sessions_version(), before);
    }
}
