//! Session mailboxes: bounded in frames (`limits.mailbox_capacity`) and in the encoded bytes of
//! the frames waiting (`bounds.mailbox_bytes`); a mailbox past either bound is dropped from the
//! hub and signalled, and its session ends as a slow consumer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

use super::{Delivery, Envelope, Handoff, Hub};

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
    /// When the mailbox was made (Unix microseconds): a device's session on another node that
    /// started later supersedes this one ([`Hub::move_away`]).
    pub since: i64,
    /// What the session reports to the operator (every established session has them).
    pub(super) stats: Option<Arc<super::live_sessions::SessionStats>>,
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
                since: crate::clock::unix_micros_now(),
                stats: None,
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

impl Hub {
    /// Queues `envelope` in one online recipient's mailbox; a mailbox past its frame or byte
    /// bound is dropped from the tables and signalled (its session ends as a slow consumer).
    pub(super) fn hand_to(&self, device: &str, mailbox: &Mailbox, envelope: &Envelope) -> Handoff {
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
    #![allow(clippy::unwrap_used)]

    use super::*;
    use commucat_ccp::{Frame, FrameType};

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
}
