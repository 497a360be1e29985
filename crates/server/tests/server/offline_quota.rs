//! Offline quotas and replay receipts through the real server, on SQLite and on PostgreSQL:
//! a frame over a device's, a sender's or the total quota is refused with `Offline Quota
//! Exceeded` (counted per bound) while online members still get it; delivery frees the quota;
//! replayed envelopes stay queued until the client has them, so a connection killed mid-replay
//! gets the rest on its next connect.

use crate::common;

use std::time::Duration;

use crate::common::{Client, StoreBackend, TestServer, queued, queued_becomes};
use commucat_ccp::control::PresenceSnapshot;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::{DeviceIdentity, HandshakeOptions};
use commucat_store::UsageScope;

const KIB: usize = 1024;
const QUIET: Duration = Duration::from_millis(300);

/// Connects `id`, JOINs `channel` and disconnects; `peer` (already a member) waits until the
/// server announced it offline, so later frames find it offline.
async fn member_then_gone(
    server: &TestServer,
    id: &str,
    channel: u32,
    peer: &mut Client,
) -> DeviceIdentity {
    let mut client = server.connect(id).await;
    client.join(channel, true).await;
    let identity = client.identity.clone();
    client.close();
    gone(peer, id).await;
    identity
}

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

/// A payload of `len` bytes starting with `tag`.
fn payload(tag: &str, len: usize) -> Vec<u8> {
    let mut p = tag.as_bytes().to_vec();
    p.resize(len, b'.');
    p
}

/// Sends a MSG and expects its ACK without an ERROR before it.
async fn accepted(client: &mut Client, channel: u32, body: &[u8]) {
    let seq = client.send(FrameType::Msg, channel, body).await;
    let ack = client
        .recv_matching("ACK or ERROR", |f| {
            matches!(f.frame_type(), FrameType::Ack | FrameType::Error)
        })
        .await;
    assert_eq!(
        ack.frame_type(),
        FrameType::Ack,
        "refused: {}",
        common::describe(&ack)
    );
    assert_eq!(common::json_of(&ack)["ack"], seq);
}

/// Sends a MSG that must be refused with `Offline Quota Exceeded` by `bound` for
/// `recipients`; the frame is still ACKed (delivered to whoever could take it).
async fn over_quota(
    client: &mut Client,
    channel: u32,
    body: &[u8],
    bound: &str,
    recipients: &[&str],
) {
    let seq = client.send(FrameType::Msg, channel, body).await;
    let problem: Problem = client.error(seq, "Offline Quota Exceeded").await;
    assert_eq!(problem.extensions["bound"], bound);
    assert_eq!(
        problem.extensions["recipients"],
        serde_json::json!(recipients)
    );
    client.ack(seq).await;
}

/// `commucat_bound_refusals_total{bound="<bound>"}` from `GET /metrics`.
async fn refusals(server: &TestServer, bound: &str) -> u64 {
    let text = server
        .http()
        .get(format!("https://localhost:{}/metrics", server.addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("commucat_bound_refusals_total{{bound=\"{bound}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{prefix} missing"))
        .trim()
        .parse()
        .unwrap()
}

async fn a_device_byte_quota_refuses_and_the_bystander_is_served(backend: StoreBackend) {
    let server =
        TestServer::start_on(backend, |c| c.bounds.offline_bytes_per_device = 64 * 1024).await;
    let mut alice = server.connect("alice-q").await;
    let mut carol = server.connect("carol-q").await;
    alice.join(7, true).await;
    carol.join(7, true).await;
    let bob = member_then_gone(&server, "bob-q", 7, &mut alice).await;
    for i in 0..3 {
        accepted(&mut alice, 7, &payload(&format!("fits {i}"), 20 * KIB)).await;
    }
    // 60 KiB queued: 20 more would pass bob's 64 KiB.
    over_quota(
        &mut alice,
        7,
        &payload("too much", 20 * KIB),
        "offline_bytes_per_device",
        &["bob-q"],
    )
    .await;
    assert_eq!(refusals(&server, "offline_bytes_per_device").await, 1);
    let ledger = server.data_dir().join("ledger.jsonl");
    let lines = common::ledger_records(&ledger, 1, |l| l["scope"] == "bound").await;
    let record = lines.iter().find(|l| l["scope"] == "bound").unwrap();
    assert_eq!(record["bound"], "offline_bytes_per_device");
    assert_eq!(record["device_id"], "alice-q");
    assert!(
        record["detail"].as_str().unwrap().contains("bob-q"),
        "{record}"
    );
    // The bystander got every frame, the refused one included; small frames still fit bob.
    let mut at_carol = Vec::new();
    while at_carol.len() < 4 {
        at_carol.push(carol.recv_on(FrameType::Msg, 7).await);
    }
    assert!(at_carol[3].payload().starts_with(b"too much"));
    accepted(&mut alice, 7, b"small").await;

    // Delivery frees the quota: bob takes (and ACKs) his queue, then 20 KiB fit again.
    let mut bob = server.connect_as(bob).await;
    for _ in 0..4 {
        bob.recv_on(FrameType::Msg, 7).await;
    }
    assert_eq!(queued_becomes(&server.store().await, "bob-q", 0).await, 0);
    bob.close();
    gone(&mut alice, "bob-q").await;
    for i in 0..3 {
        accepted(&mut alice, 7, &payload(&format!("again {i}"), 20 * KIB)).await;
    }
}

async fn sender_quotas_refuse_across_recipients(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| c.bounds.offline_frames_per_sender = 3).await;
    let mut alice = server.connect("alice-p").await;
    let mut carol = server.connect("carol-p").await;
    alice.join(7, true).await;
    carol.join(7, true).await;
    member_then_gone(&server, "bob-p", 7, &mut alice).await;
    member_then_gone(&server, "dave-p", 7, &mut alice).await;
    // One frame for two offline members: 2 of alice's 3.
    accepted(&mut alice, 7, b"one").await;
    // Two more copies would make 4: refused for both, carol still served.
    over_quota(
        &mut alice,
        7,
        b"two",
        "offline_frames_per_sender",
        &["bob-p", "dave-p"],
    )
    .await;
    assert_eq!(
        carol.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"one"
    );
    assert_eq!(
        carol.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"two"
    );
    // One frame refused, whatever the number of recipients.
    assert_eq!(refusals(&server, "offline_frames_per_sender").await, 1);
    // Alice's quota is hers: carol still queues for them.
    accepted(&mut carol, 7, b"from carol").await;
    let store = server.store().await;
    assert_eq!(queued(&store, "bob-p").await, 2);
    assert_eq!(queued(&store, "dave-p").await, 2);
}

async fn the_total_quota_refuses_every_sender(backend: StoreBackend) {
    let server =
        TestServer::start_on(backend, |c| c.bounds.offline_bytes_total = 1024 * 1024).await;
    let mut alice = server.connect("alice-t").await;
    let mut carol = server.connect("carol-t").await;
    alice.join(7, true).await;
    carol.join(7, true).await;
    member_then_gone(&server, "bob-t", 7, &mut alice).await;
    // 17 frames of 60 KiB (and a header) fit the 1 MiB total; the 18th does not, from anyone.
    for i in 0..17 {
        accepted(&mut alice, 7, &payload(&format!("{i}"), 60 * KIB)).await;
    }
    over_quota(
        &mut alice,
        7,
        &payload("alice", 60 * KIB),
        "offline_bytes_total",
        &["bob-t"],
    )
    .await;
    over_quota(
        &mut carol,
        7,
        &payload("carol", 60 * KIB),
        "offline_bytes_total",
        &["bob-t"],
    )
    .await;
    assert_eq!(refusals(&server, "offline_bytes_total").await, 2);
    // Live delivery is not bounded by the offline quota.
    let mut last = None;
    for _ in 0..18 {
        last = Some(carol.recv_on(FrameType::Msg, 7).await);
    }
    assert!(last.unwrap().payload().starts_with(b"alice"));
}

async fn frames_falling_back_to_the_queue_are_bounded_too(backend: StoreBackend) {
    const COUNT: usize = 200;
    let server = TestServer::start_on(backend, |c| {
        c.limits.mailbox_capacity = 8;
        c.bounds.offline_bytes_per_device = 64 * 1024;
    })
    .await;
    let mut alice = server.connect("alice-o").await;
    // Without receipts: only frames that fell back to the queue count, not the ones written
    // to bob unconfirmed (re-queued when he is cut, and refused by the same quota).
    let bob = commucat_client::DeviceIdentity::generate("bob-o").with_handle("bob_o");
    let mut bob = server
        .connect_with(bob, &commucat_client::HandshakeOptions::default())
        .await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-o", "bob-o"]).await;
    // bob stops reading: his mailbox overflows, he is cut, and what he did not take falls back
    // to his offline queue, as do the frames after it, until 64 KiB are queued for him.
    let mut refused = 0;
    for i in 0..COUNT {
        let seq = alice
            .send(FrameType::Msg, 7, &payload(&format!("{i:04}"), KIB))
            .await;
        let answer = alice
            .recv_matching("ACK or ERROR", |f| {
                let json = common::json_of(f);
                let about = match f.frame_type() {
                    FrameType::Ack => json.get("ack"),
                    FrameType::Error => json.get("sequence"),
                    _ => None,
                };
                about == Some(&serde_json::json!(seq))
            })
            .await;
        if answer.frame_type() == FrameType::Error {
            let problem: Problem = answer.parse_control().unwrap();
            assert_eq!(problem.title.as_deref(), Some("Offline Quota Exceeded"));
            assert_eq!(
                problem.extensions["recipients"],
                serde_json::json!(["bob-o"])
            );
            refused += 1;
            alice.ack(seq).await;
        }
    }
    assert!(refused > 0, "200 KiB for bob never hit his 64 KiB");
    assert_eq!(refusals(&server, "offline_bytes_per_device").await, refused);
    let usage = server
        .store()
        .await
        .queue_usage(UsageScope::Recipient("bob-o"))
        .await
        .unwrap();
    assert!(usage.bytes <= 64 * 1024, "{usage:?}");
    drop(bob);
}

/// Queues `count` numbered MSGs for `bob` (offline) from a fresh sender; returns bob.
async fn queue_for_bob(server: &TestServer, bob: &str, count: usize) -> DeviceIdentity {
    let mut alice = server.connect(&format!("alice-for-{bob}")).await;
    alice.join(7, true).await;
    let bob = member_then_gone(server, bob, 7, &mut alice).await;
    for i in 0..count {
        accepted(&mut alice, 7, format!("{i:02}").as_bytes()).await;
    }
    bob
}

/// The next `count` MSG frames straight from the stream, without ACKing them.
async fn raw_messages(client: &mut Client, count: usize) -> Vec<Frame> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = tokio::time::timeout(common::WAIT, client.session.recv())
            .await
            .expect("replayed frame in time")
            .unwrap()
            .expect("stream open");
        if frame.frame_type() == FrameType::Msg {
            got.push(frame);
        }
    }
    got
}

fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8(f.payload().to_vec()).unwrap())
        .collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{i:02}")).collect()
}

async fn a_connection_killed_mid_replay_gets_the_rest(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let store = server.store().await;

    // A client without receipts (as the deployed terminal client) reads 3 of 10 and its
    // connection dies: nothing was proven received, so all 10 come again.
    let bob = queue_for_bob(&server, "bob-k", 10).await;
    let mut plain = server
        .connect_with(bob.clone(), &HandshakeOptions::default())
        .await;
    assert_eq!(texts(&raw_messages(&mut plain, 3).await), numbered(0..3));
    drop(plain);
    let mut again = server
        .connect_with(bob.clone(), &HandshakeOptions::default())
        .await;
    assert_eq!(texts(&raw_messages(&mut again, 10).await), numbered(0..10));
    // Finishing its stream is its proof: then the queue is empty.
    again
        .session
        .connection_mut()
        .stream_mut()
        .inner_mut()
        .finish();
    assert_eq!(queued_becomes(&store, "bob-k", 0).await, 0);

    // A client with receipts ACKs the first 4 of 10 and dies: the other 6 come next time.
    let bob = queue_for_bob(&server, "bob-r", 10).await;
    let mut receipting = server.connect_as(bob.clone()).await;
    let first = raw_messages(&mut receipting, 10).await;
    receipting.session.acknowledge(&first[3]).await.unwrap();
    assert_eq!(queued_becomes(&store, "bob-r", 6).await, 6);
    drop(receipting);
    let mut next = server.connect_as(bob).await;
    assert_eq!(texts(&raw_messages(&mut next, 6).await), numbered(4..10));
    next.expect_quiet(QUIET).await;
}

common::on_each_store!(
    a_device_byte_quota_refuses_and_the_bystander_is_served,
    sender_quotas_refuse_across_recipients,
    the_total_quota_refuses_every_sender,
    a_connection_killed_mid_replay_gets_the_rest,
    frames_falling_back_to_the_queue_are_bounded_too,
);
