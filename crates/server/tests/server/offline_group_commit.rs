//! Offline enqueues from many sessions at once, through the real server, on SQLite and on
//! PostgreSQL: they share group-commit transactions in the store, yet every sender gets its
//! own answer after the commit (an ACK, or an `Offline Queue Full` ERROR then the ACK), and
//! the returning device gets every acknowledged frame once, in each sender's order.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{self, Client, StoreBackend, TestServer, queued};
use commucat_ccp::FrameType;
use commucat_ccp::control::PresenceSnapshot;

const QUIET: Duration = Duration::from_millis(300);
/// Channel of sender `i` (shared with bob only).
const FIRST_CHANNEL: u32 = 100;

/// Waits until `peer` hears that `id` went offline.
async fn gone(peer: &mut Client, id: &str) {
    loop {
        let snapshot: PresenceSnapshot = peer
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if snapshot.entity == id && snapshot.state == "offline" {
            return;
        }
    }
}

/// `senders` connected devices, each sharing its own channel with `bob`, who is then gone (as
/// each of them heard); returns them with bob's identity.
async fn senders_and_absent_bob(
    server: &TestServer,
    bob: &str,
    senders: usize,
) -> (Vec<Client>, commucat_client::DeviceIdentity) {
    let mut bob = server.connect(bob).await;
    let mut clients = Vec::new();
    for i in 0..senders {
        let channel = FIRST_CHANNEL + u32::try_from(i).unwrap();
        bob.join(channel, true).await;
        let mut sender = server.connect(&format!("gc-s{i:02}")).await;
        sender.join(channel, true).await;
        clients.push(sender);
    }
    let identity = bob.identity.clone();
    let id = identity.device_id.clone();
    bob.close();
    for sender in &mut clients {
        gone(sender, &id).await;
    }
    (clients, identity)
}

/// Sends a MSG and waits for its answer: `true` for a plain ACK, `false` for an
/// `Offline Queue Full` ERROR (the recipient's frame bound; the ACK follows it).
async fn send_and_answer(client: &mut Client, channel: u32, body: &str) -> bool {
    let seq = client.send(FrameType::Msg, channel, body.as_bytes()).await;
    let first = client
        .recv_matching("ACK or ERROR", |f| {
            matches!(f.frame_type(), FrameType::Ack | FrameType::Error)
        })
        .await;
    if first.frame_type() == FrameType::Ack {
        assert_eq!(common::json_of(&first)["ack"], seq);
        return true;
    }
    let problem: commucat_ccp::Problem = first.parse_control().unwrap();
    assert_eq!(
        problem.title.as_deref(),
        Some("Offline Queue Full"),
        "{problem:?}"
    );
    client.ack(seq).await;
    false
}

/// MSG texts bob receives until `count` arrived, by channel.
async fn replayed(bob: &mut Client, count: usize) -> BTreeMap<u32, Vec<String>> {
    let mut got: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for _ in 0..count {
        let frame = bob
            .recv_matching("MSG", |f| f.frame_type() == FrameType::Msg)
            .await;
        got.entry(frame.channel_id())
            .or_default()
            .push(String::from_utf8(frame.payload().to_vec()).unwrap());
    }
    got
}

async fn concurrent_senders_are_acknowledged_and_replayed_once_in_order(backend: StoreBackend) {
    const SENDERS: usize = 12;
    const EACH: usize = 25;
    let server = TestServer::start_on(backend, |_| {}).await;
    let (senders, bob) = senders_and_absent_bob(&server, "bob-gc", SENDERS).await;
    // Every sender at once, each MSG sent when the previous one was ACKed.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        tasks.spawn(async move {
            let channel = FIRST_CHANNEL + u32::try_from(i).unwrap();
            for n in 0..EACH {
                assert!(send_and_answer(&mut sender, channel, &format!("{i:02}-{n:03}")).await);
            }
            sender
        });
    }
    let mut senders = Vec::new();
    while let Some(done) = tasks.join_next().await {
        senders.push(done.unwrap());
    }
    // Everything ACKed is in the store.
    let store = server.store().await;
    assert_eq!(queued(&store, "bob-gc").await, (SENDERS * EACH) as u64);

    let mut bob = server.connect_as(bob).await;
    let got = replayed(&mut bob, SENDERS * EACH).await;
    for i in 0..SENDERS {
        let channel = FIRST_CHANNEL + u32::try_from(i).unwrap();
        let expected: Vec<String> = (0..EACH).map(|n| format!("{i:02}-{n:03}")).collect();
        assert_eq!(got.get(&channel), Some(&expected), "sender {i}");
    }
    bob.expect_quiet(QUIET).await;
    drop(senders);
}

async fn quota_refusals_among_concurrent_senders_are_each_senders_own(backend: StoreBackend) {
    const SENDERS: usize = 12;
    const ROOM: usize = 5;
    let server = TestServer::start_on(backend, |c| {
        c.bounds.offline_frames_per_device = ROOM as u64;
    })
    .await;
    let (senders, bob) = senders_and_absent_bob(&server, "bob-gq", SENDERS).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        tasks.spawn(async move {
            let channel = FIRST_CHANNEL + u32::try_from(i).unwrap();
            let accepted = send_and_answer(&mut sender, channel, &format!("{i:02}")).await;
            (i, accepted, sender)
        });
    }
    let mut accepted = Vec::new();
    let mut senders = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, ok, sender) = done.unwrap();
        if ok {
            accepted.push(i);
        }
        senders.push(sender);
    }
    // Exactly the room there was, whatever batches the writes shared; the rest were refused.
    assert_eq!(accepted.len(), ROOM, "{accepted:?}");
    let store = server.store().await;
    assert_eq!(queued(&store, "bob-gq").await, ROOM as u64);
    // bob gets exactly the accepted ones.
    let mut bob = server.connect_as(bob).await;
    let got = replayed(&mut bob, ROOM).await;
    let mut from: Vec<usize> = got
        .values()
        .flatten()
        .map(|text| text.parse().unwrap())
        .collect();
    from.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(from, accepted);
    bob.expect_quiet(QUIET).await;
    drop(senders);
}

common::on_each_store!(
    concurrent_senders_are_acknowledged_and_replayed_once_in_order,
    quota_refusals_among_concurrent_senders_are_each_senders_own,
);
