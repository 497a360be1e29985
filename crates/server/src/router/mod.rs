//! Routing between sessions: who is online, which devices are members of which channel, and
//! fan-out of frames to members' mailboxes.
//!
//! Every established session registers a bounded mailbox here. Routing decisions take a short
//! lock on the tables, copy out the recipients' mailbox handles, release the lock, then hand
//! each recipient the same frame (its payload is reference-counted, never copied). The
//! recipient's session task assigns its own sequence number and writes the frame.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ccp::Frame;
use tokio::sync::mpsc;

/// What a session's mailbox carries.
#[derive(Debug)]
pub enum Delivery {
    /// A frame to send (re-sequenced by the receiving session).
    Frame(Frame),
}

/// Frames a session may have queued before the server considers the client too slow.
pub const MAILBOX_CAPACITY: usize = 1024;

/// The mailbox of one online session.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Session id (to tell a device's old session from its replacement).
    pub session_id: String,
    /// Sender side of the session task's queue.
    pub tx: mpsc::Sender<Delivery>,
    /// Set when the hub dropped this mailbox because it overflowed.
    pub overflowed: Arc<AtomicBool>,
}

impl Mailbox {
    /// A mailbox for `session_id` and its receiving end.
    #[must_use]
    pub fn new(session_id: impl Into<String>, capacity: usize) -> (Self, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                session_id: session_id.into(),
                tx,
                overflowed: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// Whether the hub dropped this mailbox for overflowing.
    #[must_use]
    pub fn has_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
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
    /// ends with a `Slow Consumer` ERROR once it has drained what was queued.
    Overflow,
}

#[derive(Debug, Default)]
struct Tables {
    /// Online sessions by device id.
    online: HashMap<String, Mailbox>,
    /// Channel members by channel id (device ids, online or not).
    channels: HashMap<u32, BTreeSet<String>>,
}

/// The routing tables of this node.
#[derive(Debug, Default)]
pub struct Hub {
    tables: Mutex<Tables>,
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated (each operation is
        // a single insert/remove), so a poisoned lock is still consistent.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session as the device's online endpoint, replacing an older session of the
    /// same device. Returns the replaced mailbox, if any.
    pub fn register(&self, device_id: &str, mailbox: Mailbox) -> Option<Mailbox> {
        self.lock().online.insert(device_id.to_owned(), mailbox)
    }

    /// Removes the device's online entry if it still belongs to `session_id`.
    pub fn unregister(&self, device_id: &str, session_id: &str) {
        let mut tables = self.lock();
        if tables
            .online
            .get(device_id)
            .is_some_and(|m| m.session_id == session_id)
        {
            tables.online.remove(device_id);
        }
    }

    /// Whether the device has an online session.
    #[must_use]
    pub fn is_online(&self, device_id: &str) -> bool {
        self.lock().online.contains_key(device_id)
    }

    /// Adds `devices` to the channel's members (merging with the current members) and returns
    /// the resulting member list.
    pub fn join<'a>(
        &self,
        channel: u32,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut tables = self.lock();
        let members = tables.channels.entry(channel).or_default();
        for device in devices {
            members.insert(device.to_owned());
        }
        members.iter().cloned().collect()
    }

    /// Removes `device` from the channel; returns the remaining members (the channel is
    /// forgotten once empty), or `None` if it was not a member.
    pub fn leave(&self, channel: u32, device: &str) -> Option<Vec<String>> {
        let mut tables = self.lock();
        let members = tables.channels.get_mut(&channel)?;
        if !members.remove(device) {
            return None;
        }
        let remaining: Vec<String> = members.iter().cloned().collect();
        if remaining.is_empty() {
            tables.channels.remove(&channel);
        }
        Some(remaining)
    }

    /// The channel's members, if `device` is one of them.
    #[must_use]
    pub fn members_if_member(&self, channel: u32, device: &str) -> Option<Vec<String>> {
        let tables = self.lock();
        let members = tables.channels.get(&channel)?;
        members
            .contains(device)
            .then(|| members.iter().cloned().collect())
    }

    /// Hands `frame` to each online device in `recipients`.
    pub fn deliver<'a>(
        &self,
        recipients: impl IntoIterator<Item = &'a str>,
        frame: &Frame,
    ) -> Vec<(String, Handoff)> {
        let targets: Vec<(String, Option<Mailbox>)> = {
            let tables = self.lock();
            recipients
                .into_iter()
                .map(|device| (device.to_owned(), tables.online.get(device).cloned()))
                .collect()
        };
        targets
            .into_iter()
            .map(|(device, mailbox)| {
                let outcome = match mailbox {
                    None => Handoff::Offline,
                    Some(mailbox) => match mailbox.tx.try_send(Delivery::Frame(frame.clone())) {
                        Ok(()) => Handoff::Queued,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            mailbox.overflowed.store(true, Ordering::Release);
                            self.unregister(&device, &mailbox.session_id);
                            Handoff::Overflow
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Handoff::Offline,
                    },
                };
                (device, outcome)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccp::FrameType;

    fn mailbox(session: &str, capacity: usize) -> (Mailbox, mpsc::Receiver<Delivery>) {
        Mailbox::new(session, capacity)
    }

    #[test]
    fn join_merges_and_leave_removes_only_the_sender() {
        let hub = Hub::new();
        assert_eq!(hub.join(7, ["a"]), ["a"]);
        assert_eq!(hub.join(7, ["b"]), ["a", "b"]);
        assert_eq!(hub.join(7, ["c", "a"]), ["a", "b", "c"]);
        assert_eq!(
            hub.leave(7, "b"),
            Some(vec!["a".to_owned(), "c".to_owned()])
        );
        assert_eq!(hub.leave(7, "b"), None);
        assert_eq!(hub.members_if_member(7, "b"), None);
        assert!(hub.members_if_member(7, "a").is_some());
        hub.leave(7, "a");
        hub.leave(7, "c");
        assert_eq!(hub.members_if_member(7, "a"), None);
    }

    #[test]
    fn delivery_outcomes() {
        let hub = Hub::new();
        let (a, mut a_rx) = mailbox("s-a", 1);
        hub.register("a", a.clone());
        let frame = Frame::new(FrameType::Msg, 7, 1, &b"x"[..]).unwrap();
        let out = hub.deliver(["a", "b"], &frame);
        assert_eq!(out[0].1, Handoff::Queued);
        assert_eq!(out[1].1, Handoff::Offline);
        assert_eq!(hub.deliver(["a"], &frame)[0].1, Handoff::Overflow);
        // The overflowing session is dropped and flagged.
        assert!(!hub.is_online("a"));
        assert!(a.has_overflowed());
        let Some(Delivery::Frame(got)) = a_rx.try_recv().ok() else {
            panic!("queued frame expected")
        };
        // Shared payload, not a copy.
        assert_eq!(got.payload().as_ptr(), frame.payload().as_ptr());
    }

    #[test]
    fn a_replaced_session_does_not_unregister_its_successor() {
        let hub = Hub::new();
        let (old, _old_rx) = mailbox("s-1", 1);
        let (new, _new_rx) = mailbox("s-2", 1);
        hub.register("a", old);
        assert!(hub.register("a", new).is_some());
        hub.unregister("a", "s-1");
        assert!(hub.is_online("a"));
        hub.unregister("a", "s-2");
        assert!(!hub.is_online("a"));
    }
}
