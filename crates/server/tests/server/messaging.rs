//! Channels through the real server: JOIN merge and membership notices, byte-for-byte relay of
//! MSG / KEY_UPDATE / GROUP_EVENT / TYPING with ACKs, LEAVE, errors for non-members, and P2P
//! candidates. Every frame the server sends is checked against the deployed decoder.

use std::time::Duration;

use crate::common::{TestServer, json_of};
use commucat_ccp::FrameType;
use commucat_ccp::control::{Leave, PeerCandidate, Typing};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn two_devices_converse_byte_for_byte() {
    let server = TestServer::start(|_| {}).await;
    let mut alice = server.connect("alice-phone").await;
    let mut bob = server.connect("bob-laptop").await;

    // Each declares only itself (as the deployed client does); membership merges.
    assert_eq!(alice.join(7, true).await, ["alice-phone"]);
    assert_eq!(bob.join(7, true).await, ["alice-phone", "bob-laptop"]);
    alice
        .members_become(7, &["alice-phone", "bob-laptop"])
        .await;

    // MSG both ways, byte for byte (not UTF-8, not JSON).
    let bytes = [0u8, 159, 146, 150, 255, b'h', b'i'];
    let seq = alice.send(FrameType::Msg, 7, &bytes).await;
    alice.ack(seq).await;
    let got = bob.recv_on(FrameType::Msg, 7).await;
    assert_eq!(got.payload().as_ref(), bytes);
    bob.say(7, "hello alice").await;
    assert_eq!(
        alice.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"hello alice"
    );

    // KEY_UPDATE (opaque) and GROUP_EVENT (control JSON) are relayed unchanged too.
    let seq = alice.send(FrameType::KeyUpdate, 7, br#"{"k":"v"}"#).await;
    alice.ack(seq).await;
    assert_eq!(
        bob.recv_on(FrameType::KeyUpdate, 7)
            .await
            .payload()
            .as_ref(),
        br#"{"k":"v"}"#
    );
    let event = json!({"event": "pinned", "id": 3});
    let seq = bob.control(FrameType::GroupEvent, 7, &event).await;
    bob.ack(seq).await;
    assert_eq!(
        json_of(&alice.recv_on(FrameType::GroupEvent, 7).await),
        event
    );

    // TYPING reaches the peer with the sender's `device` set.
    let seq = alice
        .control(
            FrameType::Typing,
            7,
            &json!({"typing": true, "ttl_ms": 1500}),
        )
        .await;
    alice.ack(seq).await;
    let typing: Typing = bob
        .recv_on(FrameType::Typing, 7)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(typing.resolved_device(), Some("alice-phone"));
    assert_eq!(typing.resolved_ttl_ms(), 1500);
    // A sender key naming another device is refused; naming itself is kept as `device`.
    let seq = bob
        .control(FrameType::Typing, 7, &json!({"device": "mallory"}))
        .await;
    bob.error(seq, "Sender Mismatch").await;
    let seq = bob
        .control(FrameType::Typing, 7, &json!({"sender": "bob-laptop"}))
        .await;
    bob.ack(seq).await;
    let typing = json_of(&alice.recv_on(FrameType::Typing, 7).await);
    assert_eq!(typing, json!({"device": "bob-laptop"}));

    alice.expect_quiet(QUIET).await;
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn three_devices_fan_out_and_leave_removes_only_the_sender() {
    let server = TestServer::start(|_| {}).await;
    let mut a = server.connect("dev-a").await;
    let mut b = server.connect("dev-b").await;
    let mut c = server.connect("dev-c").await;
    a.join(5, true).await;
    b.join(5, true).await;
    assert_eq!(c.join(5, true).await, ["dev-a", "dev-b", "dev-c"]);
    a.members_become(5, &["dev-a", "dev-b", "dev-c"]).await;
    b.members_become(5, &["dev-a", "dev-b", "dev-c"]).await;

    let seq = a.send(FrameType::Msg, 5, b"to everyone").await;
    a.ack(seq).await;
    let at_b = b.recv_on(FrameType::Msg, 5).await;
    let at_c = c.recv_on(FrameType::Msg, 5).await;
    assert_eq!(at_b.payload(), at_c.payload());
    assert_eq!(at_b.payload().as_ref(), b"to everyone");

    // c leaves: a and b learn it; a's next message reaches b only.
    let seq = c.control(FrameType::Leave, 5, &json!({})).await;
    c.ack(seq).await;
    for peer in [&mut a, &mut b] {
        let leave: Leave = peer
            .recv_on(FrameType::Leave, 5)
            .await
            .parse_control()
            .unwrap();
        assert_eq!(leave.resolved_device(), Some("dev-c"));
    }
    a.say(5, "c is gone").await;
    assert_eq!(
        b.recv_on(FrameType::Msg, 5).await.payload().as_ref(),
        b"c is gone"
    );
    c.expect_quiet(QUIET).await;
    // a and b are still members: a JOIN again merges, it does not replace (and, adding
    // nobody, is answered to a alone).
    assert_eq!(a.join(5, true).await, ["dev-a", "dev-b"]);

    // c is no longer a member: its MSG is refused, not dropped.
    let seq = c.send(FrameType::Msg, 5, b"hello?").await;
    c.error(seq, "Not A Channel Member").await;
    b.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn non_members_and_bad_payloads_get_errors_never_silence() {
    let server = TestServer::start(|_| {}).await;
    let mut alice = server.connect("alice-1").await;
    let seq = alice.send(FrameType::Msg, 99, b"nope").await;
    let problem = alice.error(seq, "Not A Channel Member").await;
    assert_eq!(problem.extensions["channel"], 99);
    let seq = alice.control(FrameType::Typing, 99, &json!({})).await;
    alice.error(seq, "Not A Channel Member").await;
    let seq = alice.control(FrameType::Leave, 99, &json!({})).await;
    alice.error(seq, "Not A Channel Member").await;
    alice.join(3, true).await;
    let seq = alice.control(FrameType::Typing, 3, &json!([1, 2])).await;
    alice.error(seq, "Invalid Control Payload").await;
    let seq = alice
        .control(FrameType::Join, 4, &json!({"members": ["has space"]}))
        .await;
    alice.error(seq, "Invalid Control Payload").await;
    // The session survives every one of these.
    alice.say(3, "still here").await;
}

#[tokio::test]
async fn direct_joins_publish_observed_addresses_with_entity() {
    let server = TestServer::start(|_| {}).await;
    let mut alice = server.connect("alice-p2p").await;
    let mut bob = server.connect("bob-p2p").await;
    let mut carol = server.connect("carol-relay").await;
    carol.join(9, true).await;
    alice.join(9, false).await;
    // carol (already a member) learns alice's address.
    let seen: PeerCandidate = carol
        .recv_on(FrameType::Presence, 9)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(
        (seen.entity.as_str(), seen.peer.as_str()),
        ("alice-p2p", "alice-p2p")
    );
    assert_eq!(seen.channel, 9);
    let addr: std::net::SocketAddr = seen.candidate.parse().unwrap();
    assert!(addr.ip().is_loopback());
    // bob joins without relay: alice learns bob's address, bob learns alice's.
    bob.join(9, false).await;
    let at_alice: PeerCandidate = alice
        .recv_on(FrameType::Presence, 9)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(at_alice.entity, "bob-p2p");
    let at_bob: PeerCandidate = bob
        .recv_on(FrameType::Presence, 9)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(at_bob.entity, "alice-p2p");
    assert_eq!(at_bob.candidate, seen.candidate);
    // Relaying still works on a direct channel (clients fall back to it).
    alice.say(9, "via relay").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
        b"via relay"
    );
}
