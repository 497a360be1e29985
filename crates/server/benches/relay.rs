//! The relay decision for one MSG to a channel whose members are all connected: the routing
//! of the frame through the hub, from the sender's membership check to every member's mailbox
//! (no network, no store: nobody is absent).
//!
//! Run: `cargo bench -p commucat-server --bench relay`
//!
//! - `three_lookups`: the path before the relay service, rebuilt from the hub's public API:
//!   membership, then who is absent, then delivery, each taking the hub's lock;
//! - `one_lookup`: [`Relay::durable`] after [`Hub::channel_targets`]: one acquisition.
//!
//! `contended/*` runs the same on 4 threads at once, each on its own channel of the same hub,
//! so the lock is shared as it is between sessions. Compare the two variants of one group in
//! the same run only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commucat_ccp::{Frame, FrameType};
use commucat_server::config::Bound;
use commucat_server::router::channels::ChannelLimits;
use commucat_server::router::relay::{QueuePolicy, Refusals, Relay};
use commucat_server::router::{Envelope, Handoff, Hub, Mailbox, MailboxReceiver};
use commucat_store::{QueueLimits, SqliteStore, Store};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;

const MEMBERS: usize = 8;
const THREADS: u32 = 4;

struct Uncounted;

impl Refusals for Uncounted {
    fn refuse(&self, _: Bound, _: &str, _: &str) {}
}

/// A channel `channel` of [`MEMBERS`] connected devices; returns the sender and the members'
/// receivers.
fn channel(hub: &Hub, channel: u32) -> (String, Vec<MailboxReceiver>) {
    let limits = ChannelLimits {
        members: 1024,
        per_device: 1024,
    };
    let mut receivers = Vec::new();
    for i in 0..MEMBERS {
        let device = format!("d{channel}-{i}");
        let (mailbox, rx) = Mailbox::new(format!("s-{device}"), 1 << 16, None);
        hub.register(&device, mailbox);
        hub.channels(|c| c.join(channel, &device, true, std::iter::empty(), limits))
            .unwrap();
        receivers.push(rx);
    }
    (format!("d{channel}-0"), receivers)
}

fn drain(receivers: &mut [MailboxReceiver]) {
    for rx in receivers {
        while rx.try_recv().is_ok() {}
    }
}

/// The pre-service path: three acquisitions of the hub's lock.
fn three_lookups(hub: &Hub, sender: &str, frame: &Frame) {
    let channel = frame.channel_id();
    let members = hub
        .channels(|c| c.members_if_member(channel, sender))
        .unwrap();
    let others: Vec<String> = members.into_iter().filter(|m| m != sender).collect();
    let envelope = Envelope {
        frame: frame.clone(),
        stamp: hub.next_stamp(),
        sender: Arc::from(sender),
    };
    let absent = hub.offline_among(&others);
    assert!(absent.is_empty());
    let present = others
        .iter()
        .filter(|r| !absent.contains(r))
        .map(String::as_str);
    let stragglers = hub
        .deliver(present, &envelope)
        .into_iter()
        .filter(|(_, outcome)| *outcome != Handoff::Queued)
        .count();
    assert_eq!(stragglers, 0);
}

fn one_lookup(relay: &Relay<'_>, sender: &str, frame: &Frame) {
    let targets = relay
        .hub
        .channel_targets(frame.channel_id(), sender)
        .unwrap();
    let routed = relay
        .durable(sender, frame, targets, None)
        .now_or_never()
        .expect("nobody absent: nothing to wait for")
        .unwrap();
    assert!(routed.refused.is_empty());
}

fn policy() -> QueuePolicy {
    QueuePolicy {
        limits: QueueLimits::UNBOUNDED,
        ttl: Duration::from_secs(3600),
        dedup_window: Duration::from_secs(600),
    }
}

type Variant = fn(&Relay<'_>, &str, &Frame);

const VARIANTS: [(&str, Variant); 2] = [
    ("three_lookups", |relay, sender, frame| {
        three_lookups(relay.hub, sender, frame);
    }),
    ("one_lookup", one_lookup),
];

fn relay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(runtime.block_on(SqliteStore::open_in_memory()).unwrap());
    let frame = Frame::new(FrameType::Msg, 1, 0, vec![7u8; 256]).unwrap();

    let mut group = c.benchmark_group("relay_msg_8_members");
    for (name, variant) in VARIANTS {
        let hub = Hub::default();
        let (sender, mut receivers) = channel(&hub, 1);
        let relay = Relay {
            hub: &hub,
            store: &*store,
            policy: policy(),
            refusals: &Uncounted,
            remote: None,
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    variant(&relay, &sender, black_box(&frame));
                    spent += start.elapsed();
                    drain(&mut receivers);
                }
                spent
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("relay_msg_8_members_contended");
    for (name, variant) in VARIANTS {
        let hub = Hub::default();
        let channels: Vec<_> = (1..=THREADS).map(|ch| channel(&hub, ch)).collect();
        let mut channels: Vec<_> = channels.into_iter().map(std::sync::Mutex::new).collect();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for (ch, slot) in (1..=THREADS).zip(channels.iter_mut()) {
                        let (hub, store) = (&hub, &store);
                        let frame = Frame::new(FrameType::Msg, ch, 0, vec![7u8; 256]).unwrap();
                        scope.spawn(move || {
                            let relay = Relay {
                                hub,
                                store: &**store,
                                policy: policy(),
                                refusals: &Uncounted,
                                remote: None,
                            };
                            let (sender, receivers) = slot.get_mut().unwrap();
                            for i in 0..iters {
                                variant(&relay, sender, black_box(&frame));
                                if i % 64 == 63 {
                                    drain(receivers);
                                }
                            }
                            drain(receivers);
                        });
                    }
                });
                // Per relayed frame, over all threads.
                start.elapsed() / THREADS
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = relay
}
criterion_main!(benches);
