//! Routing between sessions: who is online, which devices are members of which channel, which
//! calls are running, and fan-out of frames to members' mailboxes.
//!
//! Every established session registers a bounded mailbox here. Routing decisions take a short
//! lock on the tables, copy out what they need (recipients' mailbox handles, member lists),
//! release the lock, then hand each recipient the same frame (its payload is
//! reference-counted, never copied). The recipient's session task assigns its own sequence
//! number and writes the frame.
//!
//! The tables themselves are plain state machines without I/O: [`channels::Channels`],
//! [`calls::Calls`], [`dedup::Dedup`]; group roster rules are functions in [`groups`]; the
//! presence registry sits behind the [`presence::Presence`] trait (in-process or
//! [`presence_redis::RedisPresence`]).

pub mod calls;
pub mod channels;
pub mod dedup;
pub mod groups;
pub mod presence;
pub mod presence_redis;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ccp::Frame;
use tokio::sync::{Notify, mpsc};

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
    Close(Box<ccp::Problem>),
}

/// Default number of frames a session may have waiting before the server considers the client
/// too slow (`limits.mailbox_capacity`).
pub const MAILBOX_CAPACITY: usize = 1024;

/// Raised by the hub when a session's mailbox overflowed; the session then ends with `Slow
/// Consumer`, even if it is blocked writing to a client that does not read.
#[derive(Debug, Default)]
pub struct OverflowSignal {
    raised: AtomicBool,
    by_bytes: AtomicBool,
    notify: Notify,
}

impl OverflowSignal {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn raise_by_bytes(&self) {
        self.by_bytes.store(true, Ordering::Release);
        self.raise();
    }

    /// Whether the mailbox overflowed its byte bound (`bounds.mailbox_bytes`) rather than its
    /// frame capacity.
    #[must_use]
    pub fn by_bytes(&self) -> bool {
        self.by_bytes.load(Ordering::Acquire)
    }

    /// Whether the mailbox overflowed.
    #[must_use]
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Completes once the mailbox has overflowed (at once if it already has).
    pub async fn raised(&self) {
        while !self.is_raised() {
            self.notify.notified().await;
        }
    }
}

/// The mailbox of one online session: bounded in frames (`limits.mailbox_capacity`) and in
/// the encoded bytes of the frames waiting (`bounds.mailbox_bytes`).
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Session id (to tell a device's old session from its replacement).
    pub session_id: String,
    /// Sender side of the session task's queue.
    pub tx: mpsc::Sender<Delivery>,
    /// Raised when the hub dropped this mailbox because it overflowed.
    pub overflow: Arc<OverflowSignal>,
    /// The client's socket address as the server observed it (published to peers of
    /// `relay:false` channels).
    pub addr: Option<SocketAddr>,
    /// Encoded bytes of the frames waiting.
    queued: Arc<AtomicUsize>,
    /// Most bytes that may wait; a single frame is always taken into an empty mailbox.
    byte_limit: usize,
}

impl Mailbox {
    /// A mailbox for `session_id` bounded in frames only, and its receiving end.
    #[must_use]
    pub fn new(
        session_id: impl Into<String>,
        capacity: usize,
        addr: Option<SocketAddr>,
    ) -> (Self, MailboxReceiver) {
        Self::bounded(session_id, capacity, usize::MAX, addr)
    }

    /// A mailbox holding at most `capacity` frames and `byte_limit` encoded bytes, and its
    /// receiving end.
    #[must_use]
    pub fn bounded(
        session_id: impl Into<String>,
        capacity: usize,
        byte_limit: usize,
        addr: Option<SocketAddr>,
    ) -> (Self, MailboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                session_id: session_id.into(),
                tx,
                overflow: Arc::new(OverflowSignal::default()),
                addr,
                queued: Arc::clone(&queued),
                byte_limit,
            },
            MailboxReceiver { rx, queued },
        )
    }

    /// Whether the hub dropped this mailbox for overflowing.
    #[must_use]
    pub fn has_overflowed(&self) -> bool {
        self.overflow.is_raised()
    }

    /// Bytes of the frames waiting.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Reserves room for `size` bytes; `false` if they would pass the byte bound.
    fn take_bytes(&self, size: usize) -> bool {
        let before = self.queued.fetch_add(size, Ordering::AcqRel);
        if before == 0 || before.saturating_add(size) <= self.byte_limit {
            true
        } else {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            false
        }
    }

    fn release_bytes(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::AcqRel);
    }
}

/// The session's end of its mailbox: frames taken out no longer count against the byte bound.
#[derive(Debug)]
pub struct MailboxReceiver {
    rx: mpsc::Receiver<Delivery>,
    queued: Arc<AtomicUsize>,
}

impl MailboxReceiver {
    /// The next delivery; `None` once every sender is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await;
        self.taken(delivery.as_ref());
        delivery
    }

    /// The next delivery if one is waiting.
    ///
    /// # Errors
    /// Nothing waiting, or the mailbox is closed and empty.
    pub fn try_recv(&mut self) -> Result<Delivery, mpsc::error::TryRecvError> {
        let delivery = self.rx.try_recv();
        self.taken(delivery.as_ref().ok());
        delivery
    }

    /// Refuses further deliveries; those already waiting can still be taken.
    pub fn close(&mut self) {
        self.rx.close();
    }

    fn taken(&self, delivery: Option<&Delivery>) {
        if let Some(Delivery::Frame(envelope)) = delivery {
            self.queued
                .fetch_sub(envelope.frame.encoded_len(), Ordering::AcqRel);
        }
    }
}

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
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
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
        self.lock().online.insert(device_id.to_owned(), mailbox)
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
    pub fn disconnect(&self, device_id: &str, problem: ccp::Problem) -> bool {
        let Some(mailbox) = self.lock().online.remove(device_id) else {
            return false;
        };
        let _ = mailbox.tx.try_send(Delivery::Close(Box::new(problem)));
        true
    }

    /// Gauges read from the tables: online devices and frames waiting in their mailboxes.
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
        }
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
            // connect at the latest.
            let _ = mailbox.tx.try_send(Delivery::Replay);
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

impl Hub {
    /// Queues `envelope` in one online recipient's mailbox; a mailbox past its frame or byte
    /// bound is dropped from the tables and signalled (its session ends as a slow consumer).
    fn hand_to(&self, device: &str, mailbox: &Mailbox, envelope: &Envelope) -> Handoff {
        let size = envelope.frame.encoded_len();
        if !mailbox.take_bytes(size) {
            self.unregister(device, &mailbox.session_id);
            mailbox.overflow.raise_by_bytes();
            return Handoff::Overflow;
        }
        match mailbox.tx.try_send(Delivery::Frame(envelope.clone())) {
            Ok(()) => Handoff::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                mailbox.release_bytes(size);
                self.unregister(device, &mailbox.session_id);
                mailbox.overflow.raise();
                Handoff::Overflow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                mailbox.release_bytes(size);
                Handoff::Offline
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccp::FrameType;

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
    fn mailbox_bounded_in_bytes() {
        let hub = Hub::default();
        let frame = Frame::new(FrameType::Msg, 7, 1, vec![0u8; 1000]).unwrap();
        let size = frame.encoded_len();
        let (a, mut a_rx) = Mailbox::bounded("s-a", 100, 2 * size, None);
        hub.register("a", a.clone());
        let envelope = Envelope {
            frame,
            stamp: 1,
            sender: Arc::from("s"),
        };
        for _ in 0..2 {
            assert_eq!(hub.deliver(["a"], &envelope)[0].1, Handoff::Queued);
        }
        assert_eq!(a.queued_bytes(), 2 * size);
        // Taking a frame out frees its bytes.
        assert!(matches!(a_rx.try_recv(), Ok(Delivery::Frame(_))));
        assert_eq!(a.queued_bytes(), size);
        assert_eq!(hub.deliver(["a"], &envelope)[0].1, Handoff::Queued);
        // Frame capacity left (97), bytes not.
        assert_eq!(hub.deliver(["a"], &envelope)[0].1, Handoff::Overflow);
        assert!(a.has_overflowed() && a.overflow.by_bytes());
        assert!(!hub.is_online("a"));
        // An empty mailbox takes one frame larger than its byte bound.
        let (b, _b_rx) = Mailbox::bounded("s-b", 100, size / 2, None);
        hub.register("b", b);
        assert_eq!(hub.deliver(["b"], &envelope)[0].1, Handoff::Queued);
        assert_eq!(hub.deliver(["b"], &envelope)[0].1, Handoff::Overflow);
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
