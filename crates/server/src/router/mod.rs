//! Routing between sessions: who is online, which devices are members of which channel, which
//! calls are running, and fan-out of frames to members' mailboxes.
//!
//! Every established session registers a bounded mailbox here. Routing decisions take a short
//! lock on the tables, copy out what they need (recipients' mailbox handles, member lists),
//! release the lock, then hand each recipient the same frame (its payload is
//! reference-counted, never copied). The recipient's session task assigns its own sequence
//! number and writes the frame.
//!
//! Where a relayed frame goes (mailbox, offline queue, refused by a quota) is decided by the
//! relay service, [`relay::Relay`], which also looks up the recipients' mailboxes in the same
//! acquisition of the lock that picks them ([`Hub::channel_targets`]).
//!
//! The tables themselves are plain state machines without I/O: [`channels::Channels`],
//! [`calls::Calls`], [`dedup::Dedup`]; group roster rules are functions in [`groups`]; the
//! presence registry sits behind the [`presence::Presence`] trait (in-process or
//! [`presence_redis::RedisPresence`]).

pub mod calls;
pub mod channels;
pub mod dedup;
pub mod groups;
pub mod live_sessions;
mod mailbox;
pub mod notices;
pub mod presence;
pub mod presence_redis;
pub mod relay;
pub mod remote;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use commucat_ccp::Frame;

pub use live_sessions::{LiveSession, SessionStats};
pub use mailbox::{Mailbox, MailboxReceiver, OverflowSignal};

use calls::Calls;
use channels::Channels;
use dedup::Dedup;

/// A frame on its way to recipients: what every recipient's mailbox shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The frame (its payload shared with every other recipient).
    pub frame: Frame,
    /// Replay order key: if the frame ends up in the offline queue after all, it keeps its
    /// place among the frames relayed before and after it.
    pub stamp: i64,
    /// The sending device (or the server's own notices' subject).
    pub sender: Arc<str>,
}

/// What a session's mailbox carries.
#[derive(Debug)]
pub enum Delivery {
    /// A frame to send (re-sequenced by the receiving session).
    Frame(Envelope),
    /// Frames were queued for this device while it was connected: replay the offline queue.
    Replay,
    /// The server ends this session with this ERROR (e.g. the device was revoked).
    Close(Box<commucat_ccp::Problem>),
    /// The device connected to another node of the deployment: this session ends like a
    /// replaced one (no ERROR, no `offline` announcement; the other node serves the device).
    Moved,
}

/// Default number of frames a session may have waiting before the server considers the client
/// too slow (`limits.mailbox_capacity`).
pub const MAILBOX_CAPACITY: usize = 1024;

/// Outcome of handing a frame to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Queued for the recipient's session task.
    Queued,
    /// The recipient is not connected.
    Offline,
    /// The recipient's mailbox is full (it does not read): the hub drops its session, which
    /// ends with a `Slow Consumer` ERROR. The frame was not queued for it.
    Overflow,
}

#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Online sessions by device id.
    online: HashMap<String, Mailbox>,
    /// Channel membership.
    pub(crate) channels: Channels,
    /// Running calls.
    pub(crate) calls: Calls,
}

/// The routing tables of this node.
#[derive(Debug)]
pub struct Hub {
    /// Counters of this node (handshakes, sessions, deliveries).
    pub metrics: Arc<crate::metrics::Metrics>,
    tables: Mutex<Tables>,
    dedup: Dedup,
    last_stamp: AtomicI64,
    /// Sessions registered so far: a relay that looked up mailboxes and then stored a frame
    /// for absent recipients nudges them only if a session registered meanwhile.
    registrations: AtomicU64,
    /// Acquisitions of the tables' lock (tests count them per relayed frame).
    #[cfg(test)]
    acquisitions: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(dedup::DEFAULT_WINDOW)
    }
}

impl Hub {
    /// An empty hub remembering relayed frames for `dedup_window`.
    #[must_use]
    pub fn new(dedup_window: std::time::Duration) -> Self {
        Self {
            metrics: Arc::default(),
            tables: Mutex::new(Tables::default()),
            dedup: Dedup::new(dedup_window, dedup::DEFAULT_CAPACITY),
            last_stamp: AtomicI64::new(0),
            registrations: AtomicU64::new(0),
            #[cfg(test)]
            acquisitions: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        #[cfg(test)]
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        // Every operation leaves the tables consistent before it can panic (single inserts and
        // removes), so a poisoned lock is still usable.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The idempotency window of relayed frames.
    #[must_use]
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// A replay order key for a frame relayed now: microseconds since the Unix epoch, strictly
    /// increasing on this node (and, with a sane clock, across restarts).
    pub fn next_stamp(&self) -> i64 {
        let now = crate::clock::unix_micros_now();
        let mut last = self.last_stamp.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_stamp.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// Registers a session as the device's online endpoint, replacing an older session of the
    /// same device. Returns the replaced mailbox, if any.
    pub fn register(&self, device_id: &str, mailbox: Mailbox) -> Option<Mailbox> {
        let mut tables = self.lock();
        self.registrations.fetch_add(1, Ordering::SeqCst);
        tables.online.insert(device_id.to_owned(), mailbox)
    }

    /// Removes the device's online entry if it still belongs to `session_id`. Returns the
    /// mailbox of the session that now serves the device instead, if any.
    pub fn unregister(&self, device_id: &str, session_id: &str) -> Option<Mailbox> {
        let mut tables = self.lock();
        match tables.online.get(device_id) {
            Some(m) if m.session_id == session_id => {
                tables.online.remove(device_id);
                None
            }
            other => other.cloned(),
        }
    }

    /// Ends the device's online session, if any: removes its mailbox (so nothing more is routed
    /// to it) and asks its task to close with `problem`. If the mailbox is full the session
    /// still ends, as soon as the hub's handle is gone, without the ERROR. Returns whether a
    /// session was online.
    pub fn disconnect(&self, device_id: &str, problem: commucat_ccp::Problem) -> bool {
        let Some(mailbox) = self.lock().online.remove(device_id) else {
            return false;
        };
        if let Err(e) = mailbox.tx.try_send(Delivery::Close(Box::new(problem))) {
            // Full: the session ends once it sees its mailbox closed, without the ERROR;
            // closed: it is ending already.
            tracing::debug!(device = %device_id, error = %e, "closing ERROR not queued");
        }
        true
    }

    /// Gauges read from the tables: online devices, frames waiting in their mailboxes, channels
    /// held.
    #[must_use]
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let tables = self.lock();
        let waiting: usize = tables
            .online
            .values()
            .map(|m| m.tx.max_capacity().saturating_sub(m.tx.capacity()))
            .sum();
        crate::metrics::Gauges {
            mailbox_frames: u64::try_from(waiting).unwrap_or(u64::MAX),
            online_devices: u64::try_from(tables.online.len()).unwrap_or(u64::MAX),
            channels: u64::try_from(tables.channels.len()).unwrap_or(u64::MAX),
        }
    }

    /// Ends the device's session on this node if it registered before `before` (Unix
    /// microseconds): the device connected to another node since. The session ends like a
    /// replaced one. Returns whether a session was ended.
    pub fn move_away(&self, device_id: &str, before: i64) -> bool {
        let mailbox = {
            let mut tables = self.lock();
            match tables.online.get(device_id) {
                Some(m) if m.since < before => tables.online.remove(device_id),
                _ => None,
            }
        };
        let Some(mailbox) = mailbox else {
            return false;
        };
        if let Err(e) = mailbox.tx.try_send(Delivery::Moved) {
            // Full: it ends once it sees its mailbox closed (as replaced).
            tracing::debug!(device = %device_id, error = %e, "move notice not queued");
        }
        true
    }

    /// Asks every online session of this node to replay its offline queue (after doorbells
    /// from other nodes may have been missed).
    pub fn nudge_all(&self) {
        let mailboxes: Vec<Mailbox> = self.lock().online.values().cloned().collect();
        for mailbox in mailboxes {
            if let Err(e) = mailbox.tx.try_send(Delivery::Replay) {
                tracing::debug!(session = %mailbox.session_id, error = %e, "replay nudge not queued");
            }
        }
    }

    /// The devices with an online session on this node.
    #[must_use]
    pub fn online_devices(&self) -> Vec<String> {
        self.lock().online.keys().cloned().collect()
    }

    /// Whether the device has an online session.
    #[must_use]
    pub fn is_online(&self, device_id: &str) -> bool {
        self.lock().online.contains_key(device_id)
    }

    /// The devices of `devices` that have no online session.
    #[must_use]
    pub fn offline_among(&self, devices: &[String]) -> Vec<String> {
        let tables = self.lock();
        devices
            .iter()
            .filter(|d| !tables.online.contains_key(d.as_str()))
            .cloned()
            .collect()
    }

    /// The observed address of an online device.
    #[must_use]
    pub fn address_of(&self, device_id: &str) -> Option<SocketAddr> {
        self.lock().online.get(device_id).and_then(|m| m.addr)
    }

    /// Forgets the channels of `device` (only `channel`, if given) in which no member is
    /// connected any more; called once `device` disconnected or left. Returns how many.
    pub fn release_idle_channels(&self, device: &str, channel: Option<u32>) -> usize {
        let mut tables = self.lock();
        let Tables {
            online, channels, ..
        } = &mut *tables;
        channels.release_idle(device, channel, |d| online.contains_key(d))
    }

    /// Runs `f` on the channel tables under the lock.
    pub fn channels<T>(&self, f: impl FnOnce(&mut Channels) -> T) -> T {
        f(&mut self.lock().channels)
    }

    /// Runs `f` on the call table under the lock.
    pub fn calls<T>(&self, f: impl FnOnce(&mut Calls) -> T) -> T {
        f(&mut self.lock().calls)
    }

    /// Asks the online sessions among `devices` to replay their offline queue.
    pub fn nudge<'a>(&self, devices: impl IntoIterator<Item = &'a str>) {
        let mailboxes: Vec<Mailbox> = {
            let tables = self.lock();
            devices
                .into_iter()
                .filter_map(|d| tables.online.get(d).cloned())
                .collect()
        };
        for mailbox in mailboxes {
            // A full mailbox already holds work for the session; it replays at its next
            // connect at the latest. A closed one belongs to a session that is ending.
            if let Err(e) = mailbox.tx.try_send(Delivery::Replay) {
                tracing::debug!(session = %mailbox.session_id, error = %e, "replay nudge not queued");
            }
        }
    }

    /// Hands `envelope` to each online device in `recipients`.
    pub fn deliver<'a>(
        &self,
        recipients: impl IntoIterator<Item = &'a str>,
        envelope: &Envelope,
    ) -> Vec<(String, Handoff)> {
        let targets: Vec<(String, Option<Mailbox>)> = {
            let tables = self.lock();
            recipients
                .into_iter()
                .map(|device| (device.to_owned(), tables.online.get(device).cloned()))
                .collect()
        };
        let outcomes: Vec<(String, Handoff)> = targets
            .into_iter()
            .map(|(device, mailbox)| {
                let outcome = match mailbox {
                    None => Handoff::Offline,
                    Some(mailbox) => self.hand_to(&device, &mailbox, envelope),
                };
                (device, outcome)
            })
            .collect();
        let queued = outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Handoff::Queued)
            .count();
        self.metrics
            .delivered(u64::try_from(queued).unwrap_or(u64::MAX));
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commucat_ccp::FrameType;

    fn mailbox(session: &str, capacity: usize) -> (Mailbox, MailboxReceiver) {
        Mailbox::new(session, capacity, None)
    }

    #[tokio::test]
    async fn delivery_outcomes() {
        let hub = Hub::default();
        let (a, mut a_rx) = mailbox("s-a", 1);
        hub.register("a", a.clone());
        let frame = Frame::new(FrameType::Msg, 7, 1, &b"x"[..]).unwrap();
        let envelope = Envelope {
            frame: frame.clone(),
            stamp: 5,
            sender: Arc::from("s"),
        };
        let out = hub.deliver(["a", "b"], &envelope);
        assert_eq!(out[0].1, Handoff::Queued);
        assert_eq!(out[1].1, Handoff::Offline);
        assert_eq!(hub.deliver(["a"], &envelope)[0].1, Handoff::Overflow);
        // The overflowing session is dropped and signalled.
        assert!(!hub.is_online("a"));
        assert!(a.has_overflowed());
        tokio::time::timeout(std::time::Duration::from_secs(1), a.overflow.raised())
            .await
            .unwrap();
        let Some(Delivery::Frame(got)) = a_rx.try_recv().ok() else {
            panic!("queued frame expected")
        };
        assert_eq!((got.stamp, &*got.sender), (5, "s"));
        // Shared payload, not a copy.
        assert_eq!(got.frame.payload().as_ptr(), frame.payload().as_ptr());
    }

    #[test]
    fn a_replaced_session_does_not_unregister_its_successor() {
        let hub = Hub::default();
        let (old, _old_rx) = mailbox("s-1", 1);
        let (new, _new_rx) = mailbox("s-2", 1);
        hub.register("a", old);
        assert!(hub.register("a", new).is_some());
        let successor = hub.unregister("a", "s-1").unwrap();
        assert_eq!(successor.session_id, "s-2");
        assert!(hub.is_online("a"));
        assert!(hub.unregister("a", "s-2").is_none());
        assert!(!hub.is_online("a"));
    }

    #[test]
    fn offline_addresses_and_nudges() {
        let hub = Hub::default();
        let addr: SocketAddr = "198.51.100.10:52345".parse().unwrap();
        let (a, mut a_rx) = Mailbox::new("s-a", 4, Some(addr));
        hub.register("a", a);
        let devices = ["a".to_owned(), "b".to_owned()];
        assert_eq!(hub.offline_among(&devices), ["b"]);
        assert_eq!(hub.address_of("a"), Some(addr));
        assert_eq!(hub.address_of("b"), None);
        hub.nudge(["a", "b"]);
        assert!(matches!(a_rx.try_recv(), Ok(Delivery::Replay)));
    }

    #[test]
    fn stamps_strictly_increase() {
        let hub = Hub::default();
        let mut last = 0;
        for _ in 0..1000 {
            let stamp = hub.next_stamp();
            assert!(stamp > last);
            last = stamp;
        }
    }
}
