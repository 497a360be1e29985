//! Offline delivery through the real server: frames for members who are not connected are
//! durable before the ACK, survive a restart, replay in order with fresh sequence numbers,
//! advance the inbox offset; expired envelopes are dropped; resends are not delivered twice;
//! full queues refuse with an ERROR; a slow consumer is cut and its frames queued. Every
//! scenario runs on SQLite and on PostgreSQL.

use crate::common;

use std::time::Duration;

use crate::common::{Client, StoreBackend, TestServer, queued, queued_becomes};
use commucat_ccp::control::PresenceSnapshot;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::DeviceIdentity;

const QUIET: Duration = Duration::from_millis(300);

/// Connects `id`, JOINs `channel`, and disconnects; returns its identity. `peer` (already a
/// member) waits until the server announced the departure, so later frames find it offline.
async fn member_then_gone(
    server: &TestServer,
    id: &str,
    channel: u32,
    peer: &mut Client,
) -> DeviceIdentity {
    let client = server.connect(id).await;
    rejoin_then_gone(client, channel, peer).await
}

/// [`member_then_gone`] for a device already connected as `client`.
async fn rejoin_then_gone(mut client: Client, channel: u32, peer: &mut Client) -> DeviceIdentity {
    client.join(channel, true).await;
    let identity = client.identity.clone();
    let id = identity.device_id.clone();
    client.close();
    loop {
        let snapshot: PresenceSnapshot = peer
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if snapshot.entity == id && snapshot.state == "offline" {
            return identity;
        }
    }
}

/// MSG payloads received until `count` have arrived.
async fn messages(client: &mut Client, channel: u32, count: usize) -> Vec<Frame> {
    let mut got = Vec::new();
    while got.len() < count {
        got.push(client.recv_on(FrameType::Msg, channel).await);
    }
    got
}

async fn queued_frames_survive_a_restart_and_replay_in_order(backend: StoreBackend) {
    let mut server = TestServer::start_on(backend, |_| {}).await;
    let mut alice = server.connect("alice-o").await;
    alice.join(7, true).await;
    let bob = member_then_gone(&server, "bob-o", 7, &mut alice).await;

    // Every ACKed frame is durable: 20 MSGs, a KEY_UPDATE, and a TYPING (never queued).
    for i in 0..20 {
        alice.say(7, &format!("m{i:02}")).await;
    }
    let seq = alice.send(FrameType::KeyUpdate, 7, b"new-key").await;
    alice.ack(seq).await;
    let seq = alice
        .control(FrameType::Typing, 7, &serde_json::json!({}))
        .await;
    alice.ack(seq).await;
    let store = server.store().await;
    assert_eq!(queued(&store, "bob-o").await, 21);

    server.restart().await;
    let mut bob = server.connect_as(bob).await;
    let replayed = messages(&mut bob, 7, 20).await;
    let texts: Vec<String> = replayed
        .iter()
        .map(|f| String::from_utf8(f.payload().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(
        bob.recv_on(FrameType::KeyUpdate, 7)
            .await
            .payload()
            .as_ref(),
        b"new-key"
    );
    // Fresh sequence numbers on bob's connection (the tap checks every frame increases).
    assert!(
        replayed
            .windows(2)
            .all(|w| w[1].sequence() > w[0].sequence())
    );
    bob.expect_quiet(QUIET).await;
    // Delivered (ACKed) envelopes are gone and the inbox offset moved.
    assert_eq!(queued_becomes(&store, "bob-o", 0).await, 0);
    let offset = store.inbox_offset("bob-o", 7).await.unwrap().unwrap();
    assert!(offset.last_envelope_id > 0);
    // A second connect replays nothing.
    let identity = bob.identity.clone();
    drop(bob);
    let mut bob = server.connect_as(identity).await;
    bob.expect_quiet(QUIET).await;
}

async fn expired_envelopes_are_dropped_and_purged(backend: StoreBackend) {
    // Queued through the server with a one-second lifetime…
    let mut server =
        TestServer::start_on(backend, |c| c.offline.ttl = Duration::from_secs(1)).await;
    let mut alice = server.connect("alice-x").await;
    alice.join(4, true).await;
    let bob = member_then_gone(&server, "bob-x", 4, &mut alice).await;
    alice.say(4, "stale").await;
    let store = server.store().await;
    let pending = store.pending_envelopes("bob-x", 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let expires_at = pending[0].expires_at;
    // …and left to expire: wait (on the clock itself) until its lifetime is over.
    while common::unix_now() <= expires_at {
        // The clock passing the envelope's lifetime is what is tested; no event marks it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alice_identity = alice.identity.clone();
    drop(alice);

    // A frame queued after a restart with the default lifetime is still delivered.
    server
        .restart_with(|c| c.offline.ttl = Duration::from_secs(600))
        .await;
    let mut alice = server.connect_as(alice_identity).await;
    alice.join(4, true).await;
    let bob = server.connect_as(bob).await;
    let bob = rejoin_then_gone(bob, 4, &mut alice).await;
    alice.say(4, "fresh").await;
    let mut bob = server.connect_as(bob).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 4).await.payload().as_ref(),
        b"fresh"
    );
    bob.expect_quiet(QUIET).await;
    // The expired one was purged, not merely skipped.
    let store = server.store().await;
    assert_eq!(queued_becomes(&store, "bob-x", 0).await, 0);
    assert_eq!(
        store
            .purge_expired_envelopes(common::unix_now())
            .await
            .unwrap(),
        0
    );
    assert!(
        store
            .pending_envelopes("bob-x", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn resends_are_not_delivered_twice(backend: StoreBackend) {
    let mut server = TestServer::start_on(backend, |_| {}).await;
    let mut alice = server.connect("alice-d").await;
    let mut bob = server.connect("bob-d").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-d", "bob-d"]).await;

    // Online recipient: the same frame again (same sequence, same bytes) is ACKed, not relayed.
    let first = Frame::new(FrameType::Msg, 7, 100, &b"once"[..]).unwrap();
    alice.session.send_frame(&first).await.unwrap();
    alice.ack(100).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"once"
    );
    alice.session.send_frame(&first).await.unwrap();
    alice.ack(100).await;
    bob.expect_quiet(QUIET).await;
    // The same sequence with other bytes is a different frame.
    let other = Frame::new(FrameType::Msg, 7, 100, &b"other"[..]).unwrap();
    alice.session.send_frame(&other).await.unwrap();
    alice.ack(100).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"other"
    );

    // Offline recipient, resend after the sender reconnects and after a server restart: the
    // durable idempotency key catches both. bob's receipts are processed before he leaves (the
    // ACK of a later TYPING proves it), or the frames he had would be queued again.
    let seq = bob
        .control(FrameType::Typing, 7, &serde_json::json!({}))
        .await;
    bob.ack(seq).await;
    let bob_identity = bob.identity.clone();
    bob.close();
    loop {
        let s: PresenceSnapshot = alice
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if s.entity == "bob-d" && s.state == "offline" {
            break;
        }
    }
    let queued_frame = Frame::new(FrameType::Msg, 7, 200, &b"queued once"[..]).unwrap();
    alice.session.send_frame(&queued_frame).await.unwrap();
    alice.ack(200).await;
    let alice_identity = alice.identity.clone();
    drop(alice);
    let mut alice = server.connect_as(alice_identity.clone()).await;
    alice.join(7, true).await;
    alice.session.send_frame(&queued_frame).await.unwrap();
    alice.ack(200).await;
    drop(alice);
    server.restart().await;
    let mut alice = server.connect_as(alice_identity).await;
    alice.join(7, true).await;
    alice.session.send_frame(&queued_frame).await.unwrap();
    alice.ack(200).await;
    assert_eq!(queued(&server.store().await, "bob-d").await, 1);

    let mut bob = server.connect_as(bob_identity).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"queued once"
    );
    bob.expect_quiet(QUIET).await;
}

async fn a_full_queue_refuses_with_an_error_and_keeps_what_it_has(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| c.offline.max_per_device = 3).await;
    let mut alice = server.connect("alice-f").await;
    let mut carol = server.connect("carol-f").await;
    alice.join(7, true).await;
    carol.join(7, true).await;
    let bob = member_then_gone(&server, "bob-f", 7, &mut alice).await;
    for i in 0..3 {
        alice.say(7, &format!("fits {i}")).await;
    }
    // The fourth does not fit bob's queue: alice is told (naming bob), carol still gets it.
    let seq = alice.send(FrameType::Msg, 7, b"too many").await;
    let problem: Problem = alice.error(seq, "Offline Queue Full").await;
    assert_eq!(
        problem.extensions["recipients"],
        serde_json::json!(["bob-f"])
    );
    alice.ack(seq).await;
    let at_carol = messages(&mut carol, 7, 4).await;
    assert_eq!(at_carol[3].payload().as_ref(), b"too many");

    let mut bob = server.connect_as(bob).await;
    let got = messages(&mut bob, 7, 3).await;
    assert_eq!(got[0].payload().as_ref(), b"fits 0");
    assert_eq!(got[2].payload().as_ref(), b"fits 2");
    bob.expect_quiet(QUIET).await;
}

/// 1 KiB MSG payloads numbered `i`.
fn numbered(i: usize) -> Vec<u8> {
    let mut p = format!("{i:04}").into_bytes();
    p.resize(1024, b'.');
    p
}

fn number_of(frame: &Frame) -> usize {
    std::str::from_utf8(&frame.payload()[..4])
        .unwrap()
        .parse()
        .unwrap()
}

/// A client without `delivery-receipts` (as the deployed terminal client) that stops reading:
/// it is cut, reads what the server had written, and gets the rest, each frame exactly once.
async fn a_slow_consumer_is_cut_and_nothing_acknowledged_is_lost(backend: StoreBackend) {
    const COUNT: usize = 400;
    let server = TestServer::start_on(backend, |c| c.limits.mailbox_capacity = 8).await;
    let mut alice = server.connect("alice-s").await;
    let bob = DeviceIdentity::generate("bob-s").with_handle("bob_s");
    let mut bob = server
        .connect_with(bob, &commucat_client::HandshakeOptions::default())
        .await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-s", "bob-s"]).await;

    // bob stops reading; alice sends 400 × 1 KiB, each ACKed.
    for i in 0..COUNT {
        let seq = alice.send(FrameType::Msg, 7, &numbered(i)).await;
        alice.ack(seq).await;
    }
    let store = server.store().await;
    let waiting = queued(&store, "bob-s").await;
    assert!(
        waiting > 0,
        "frames beyond the mailbox went to the offline queue"
    );

    // bob reads again: what the server had written, then `Slow Consumer`, then the end.
    let frames = bob.recv_until_closed().await;
    let (last, before) = frames.split_last().unwrap();
    let problem: Problem = last.parse_control().unwrap();
    assert_eq!(last.frame_type(), FrameType::Error);
    assert_eq!(problem.title.as_deref(), Some("Slow Consumer"));
    let mut seen: Vec<usize> = before
        .iter()
        .filter(|f| f.frame_type() == FrameType::Msg)
        .map(number_of)
        .collect();
    assert!(seen.len() < COUNT, "the server stopped writing to bob");

    // Reconnected, bob gets the rest in order: every frame exactly once.
    let identity = bob.identity.clone();
    drop(bob);
    let mut bob = server.connect_as(identity).await;
    let rest = messages(&mut bob, 7, COUNT - seen.len()).await;
    seen.extend(rest.iter().map(number_of));
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
    bob.expect_quiet(QUIET).await;
    assert_eq!(queued_becomes(&store, "bob-s", 0).await, 0);
}

/// A client with `delivery-receipts` that stops reading is cut as a slow consumer and never
/// reads what the server had written to it: those frames were not confirmed, so they are queued
/// with the rest and the next connect gets every ACKed frame, in order (at least once).
async fn a_slow_consumer_with_receipts_loses_nothing_left_unread(backend: StoreBackend) {
    const COUNT: usize = 400;
    let server = TestServer::start_on(backend, |c| c.limits.mailbox_capacity = 8).await;
    let mut alice = server.connect("alice-r").await;
    let mut bob = server.connect("bob-r").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-r", "bob-r"]).await;

    // bob stops reading; alice sends 400 × 1 KiB, each ACKed.
    for i in 0..COUNT {
        let seq = alice.send(FrameType::Msg, 7, &numbered(i)).await;
        alice.ack(seq).await;
    }
    // The server cut bob: alice is told he went offline.
    loop {
        let snapshot: PresenceSnapshot = alice
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if snapshot.entity == "bob-r" && snapshot.state == "offline" {
            break;
        }
    }
    // bob never reads what sits in the socket buffers; he reconnects and gets everything.
    let identity = bob.identity.clone();
    drop(bob);
    let mut bob = server.connect_as(identity).await;
    let mut seen: Vec<usize> = Vec::new();
    while seen.len() < COUNT {
        let n = number_of(&bob.recv_on(FrameType::Msg, 7).await);
        // A duplicate is a frame replayed again; anything new comes in order.
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
    let store = server.store().await;
    assert_eq!(queued_becomes(&store, "bob-r", 0).await, 0);
}

/// A client with `delivery-receipts` that reads everything but never confirms it is a slow
/// consumer once `bounds.unconfirmed_frames` wait for its receipt: cut, counted under that bound,
/// and the unconfirmed frames come again on the next connect.
#[tokio::test]
async fn a_client_that_never_confirms_is_cut_at_the_unconfirmed_bound() {
    const LIMIT: u64 = 16;
    let server = TestServer::start(|c| c.bounds.unconfirmed_frames = LIMIT).await;
    let mut alice = server.connect("alice-u").await;
    let mut bob = server.connect("bob-u").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-u", "bob-u"]).await;
    for i in 0..=LIMIT {
        let seq = alice
            .send(FrameType::Msg, 7, &numbered(usize::try_from(i).unwrap()))
            .await;
        alice.ack(seq).await;
    }
    // bob reads through the SDK session directly: no receipts.
    let mut read = Vec::new();
    let closing = loop {
        let frame = tokio::time::timeout(common::WAIT, bob.session.recv())
            .await
            .expect("frames or the end within WAIT")
            .expect("link")
            .expect("the server's ERROR before the end");
        match frame.frame_type() {
            FrameType::Msg => read.push(number_of(&frame)),
            FrameType::Error => break frame,
            _ => {}
        }
    };
    let problem: Problem = closing.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Slow Consumer"));
    assert!(
        problem
            .detail
            .unwrap()
            .contains("bounds.unconfirmed_frames")
    );
    assert_eq!(
        read,
        (0..=usize::try_from(LIMIT).unwrap()).collect::<Vec<_>>()
    );
    server
        .metric_becomes(
            "commucat_bound_refusals_total{bound=\"unconfirmed_frames\"} ",
            1,
        )
        .await;
    // What bob read without confirming is replayed.
    let identity = bob.identity.clone();
    drop(bob);
    let mut bob = server.connect_as(identity).await;
    let again: Vec<usize> = messages(&mut bob, 7, read.len())
        .await
        .iter()
        .map(number_of)
        .collect();
    assert_eq!(again, read);
}

common::on_each_store!(
    a_slow_consumer_with_receipts_loses_nothing_left_unread,
    queued_frames_survive_a_restart_and_replay_in_order,
    expired_envelopes_are_dropped_and_purged,
    resends_are_not_delivered_twice,
    a_full_queue_refuses_with_an_error_and_keeps_what_it_has,
    a_slow_consumer_is_cut_and_nothing_acknowledged_is_lost,
);
