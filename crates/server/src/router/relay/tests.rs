#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use commucat_store::{SqliteStore, UserRecord, UserToCreate};

use super::*;
use crate::router::{Delivery, MailboxReceiver};

/// Refusals as counted: `(bound, device)`.
#[derive(Default)]
struct Counted(Mutex<Vec<(Bound, String)>>);

impl Refusals for Counted {
    fn refuse(&self, bound: Bound, device: &str, _detail: &str) {
        self.0.lock().unwrap().push((bound, device.to_owned()));
    }
}

async fn store(devices: &[&str]) -> SqliteStore {
    let store = SqliteStore::open_in_memory().await.unwrap();
    for device in devices {
        let user = UserRecord {
            user_id: format!("user-{device}"),
            handle: (*device).to_owned(),
            display_name: None,
            avatar_url: None,
            created_at: 0,
        };
        let registration = crate::registry::active_device_registration(
            UserToCreate::New(user.clone()),
            &user.user_id,
            device,
            [9; 32],
            0,
            None,
        );
        store.register_device(registration).await.unwrap();
    }
    store
}

fn relay<'a>(hub: &'a Hub, store: &'a SqliteStore, counted: &'a Counted) -> Relay<'a> {
    Relay {
        hub,
        store,
        policy: QueuePolicy {
            limits: QueueLimits::UNBOUNDED,
            ttl: Duration::from_secs(3600),
            dedup_window: Duration::from_secs(600),
        },
        refusals: counted,
        remote: None,
    }
}

fn online(hub: &Hub, device: &str, capacity: usize) -> MailboxReceiver {
    let (mailbox, rx) = Mailbox::new(format!("s-{device}"), capacity, None);
    hub.register(device, mailbox);
    rx
}

fn msg(text: &str) -> Frame {
    Frame::new(FrameType::Msg, 7, 1, text.as_bytes().to_vec()).unwrap()
}

async fn queued(store: &SqliteStore, device: &str) -> usize {
    store
        .pending_envelopes(device, unix_now(), 100)
        .await
        .unwrap()
        .len()
}

fn recipients(devices: &[&str]) -> Vec<String> {
    devices.iter().map(|d| (*d).to_owned()).collect()
}

#[test]
fn only_stored_kinds_are_queued() {
    for t in FrameType::ALL {
        let expected = matches!(
            t,
            FrameType::Msg
                | FrameType::KeyUpdate
                | FrameType::GroupEvent
                | FrameType::GroupCreate
                | FrameType::GroupInvite
        );
        assert_eq!(queueable(*t), expected, "{t}");
    }
}

#[tokio::test]
async fn relaying_a_frame_locks_the_tables_once() {
    let store = store(&["a", "b"]).await;
    let (hub, counted) = (Hub::default(), Counted::default());
    let mut a_rx = online(&hub, "a", 8);
    let relay = relay(&hub, &store, &counted);
    // One connected recipient and one absent: the absent one is stored, the other handed the
    // frame, and the tables' lock was taken once for both.
    let before = hub.acquisitions.load(Ordering::Relaxed);
    let targets = hub.targets_of(&recipients(&["a", "b"]));
    let routed = relay
        .durable("s", &msg("one"), targets, Some("k1"))
        .await
        .unwrap();
    assert_eq!(hub.acquisitions.load(Ordering::Relaxed) - before, 1);
    assert!(routed.refused.is_empty() && !routed.duplicate);
    assert!(matches!(a_rx.try_recv(), Ok(Delivery::Frame(_))));
    assert_eq!(
        (queued(&store, "a").await, queued(&store, "b").await),
        (0, 1)
    );
    // Live only: once as well.
    let before = hub.acquisitions.load(Ordering::Relaxed);
    let targets = hub.targets_of(&recipients(&["a", "b"]));
    assert_eq!(relay.live("s", &msg("two"), targets), 1);
    assert_eq!(hub.acquisitions.load(Ordering::Relaxed) - before, 1);
    assert_eq!(queued(&store, "b").await, 1);
}

#[tokio::test]
async fn a_duplicate_is_delivered_to_nobody() {
    let store = store(&["a", "b"]).await;
    let (hub, counted) = (Hub::default(), Counted::default());
    let mut a_rx = online(&hub, "a", 8);
    let relay = relay(&hub, &store, &counted);
    for round in 0..2 {
        let targets = hub.targets_of(&recipients(&["a", "b"]));
        let routed = relay
            .durable("s", &msg("one"), targets, Some("k1"))
            .await
            .unwrap();
        assert_eq!(routed.duplicate, round == 1);
    }
    assert!(matches!(a_rx.try_recv(), Ok(Delivery::Frame(_))));
    assert!(a_rx.try_recv().is_err());
    assert_eq!(queued(&store, "b").await, 1);
}

#[tokio::test]
async fn an_overflowing_recipient_gets_the_frame_queued() {
    let store = store(&["a"]).await;
    let (hub, counted) = (Hub::default(), Counted::default());
    let _a_rx = online(&hub, "a", 1);
    let relay = relay(&hub, &store, &counted);
    for text in ["one", "two"] {
        let targets = hub.targets_of(&recipients(&["a"]));
        relay.durable("s", &msg(text), targets, None).await.unwrap();
    }
    // The second did not fit: the session is dropped as a slow consumer and the frame waits
    // in the store.
    assert!(!hub.is_online("a"));
    assert_eq!(queued(&store, "a").await, 1);
}

#[tokio::test]
async fn a_recipient_connecting_while_the_frame_is_stored_is_nudged() {
    let store = store(&["b"]).await;
    let (hub, counted) = (Hub::default(), Counted::default());
    let relay = relay(&hub, &store, &counted);
    let targets = hub.targets_of(&recipients(&["b"]));
    // b connects (and replays) after the look-up, before the frame is stored.
    let mut b_rx = online(&hub, "b", 8);
    relay
        .durable("s", &msg("one"), targets, None)
        .await
        .unwrap();
    assert!(matches!(b_rx.try_recv(), Ok(Delivery::Replay)));
    assert_eq!(queued(&store, "b").await, 1);
}

#[tokio::test]
async fn quota_refusals_are_counted_once_per_bound_and_returned() {
    let store = store(&["b", "c"]).await;
    let (hub, counted) = (Hub::default(), Counted::default());
    let mut relay = relay(&hub, &store, &counted);
    relay.policy.limits.frames_per_recipient = 1;
    let targets = hub.targets_of(&recipients(&["b", "c"]));
    let routed = relay
        .durable("s", &msg("one"), targets, None)
        .await
        .unwrap();
    assert!(routed.refused.is_empty());
    let targets = hub.targets_of(&recipients(&["b", "c"]));
    let routed = relay
        .durable("s", &msg("two"), targets, None)
        .await
        .unwrap();
    assert_eq!(routed.refused.len(), 2);
    assert_eq!(
        *counted.0.lock().unwrap(),
        [(Bound::OfflineFramesPerDevice, "s".to_owned())]
    );
}
