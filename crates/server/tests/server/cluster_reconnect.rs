//! The SDK's reconnecting session across a node loss: Bob's [`ReconnectingSession`] knows the
//! three nodes and starts on node 3; node 3 is dropped where it stands while Alice (node 1)
//! keeps sending and Bob sends too. Bob's session reconnects by itself (backoff with jitter),
//! JOINs its channel again and sends again what was not acknowledged: Bob gets every MSG
//! Alice had acknowledged, Alice gets Bob's, and the ACK names the number Bob's send returned.

use std::collections::HashSet;

use commucat_ccp::FrameType;
use commucat_ccp::control::Ack;
use commucat_client::{
    Backoff, DeviceIdentity, HandshakeOptions, ReconnectOptions, ReconnectingSession,
};
use serde_json::json;

use crate::cluster::{Deployment, join_with_peers};
use crate::common::WAIT;

const CHANNEL: u32 = 41;

/// What Bob saw besides MSGs: JOIN notices on the channel and ACKs (by the number named).
#[derive(Default)]
struct Seen {
    notices: usize,
    acks: HashSet<u64>,
}

/// The next MSG on the channel as text, noting what came before it.
async fn next_text(bob: &mut ReconnectingSession, seen: &mut Seen) -> String {
    loop {
        let frame = tokio::time::timeout(WAIT, bob.recv())
            .await
            .expect("a frame in time")
            .expect("the session reconnects");
        match frame.frame_type() {
            FrameType::Msg if frame.channel_id() == CHANNEL => {
                return String::from_utf8(frame.payload().to_vec()).unwrap();
            }
            FrameType::Join if frame.channel_id() == CHANNEL => seen.notices += 1,
            FrameType::Ack => {
                if let Ok(ack) = frame.parse_control::<Ack>() {
                    seen.acks.insert(ack.ack);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn the_sdk_reconnects_to_another_node_and_resumes_its_channels() {
    let mut cluster = Deployment::start().await;
    let options = ReconnectOptions {
        addrs: vec![
            cluster.node(3).addr,
            cluster.node(2).addr,
            cluster.node(1).addr,
        ],
        server_name: "localhost".to_owned(),
        trust: cluster.node(1).trust.clone(),
        server: cluster.node(1).params.clone(),
        handshake: HandshakeOptions::default().with_delivery_receipts(),
        backoff: Backoff::default(),
    };
    let identity = DeviceIdentity::generate("bob-sdk").with_handle("bob_sdk");
    let mut bob = ReconnectingSession::connect(identity, options)
        .await
        .unwrap();
    assert_eq!(bob.addr(), cluster.node(3).addr);
    let mut alice = cluster.node(1).connect("alice-sdk").await;
    join_with_peers(&mut alice, CHANNEL, &["bob-sdk"]).await;
    bob.send_control(
        FrameType::Join,
        CHANNEL,
        &json!({"members": ["bob-sdk", "alice-sdk"], "relay": true}),
    )
    .await
    .unwrap();
    let mut seen = Seen::default();
    for i in 0..10 {
        alice.say(CHANNEL, &format!("a{i:02}")).await;
    }
    let mut got: HashSet<String> = HashSet::new();
    while got.len() < 10 {
        got.insert(next_text(&mut bob, &mut seen).await);
    }
    let before = seen.notices;
    assert!(before >= 1, "the JOIN notice on node 3");

    // Node 3 goes away where it stands; both keep talking.
    cluster.nodes[2].kill().await;
    let id = bob
        .send_bytes(FrameType::Msg, CHANNEL, b"from bob".to_vec())
        .await
        .unwrap();
    for i in 10..30 {
        alice.say(CHANNEL, &format!("a{i:02}")).await;
    }
    // Until every MSG Alice had acknowledged, the JOIN notice of the re-JOIN and the ACK of
    // Bob's MSG arrived (in whatever order the replay and the live frames interleave).
    let id = u64::from(id);
    let done = |got: &HashSet<String>, seen: &Seen| {
        (0..30).all(|i| got.contains(&format!("a{i:02}")))
            && seen.notices > before
            && seen.acks.contains(&id)
    };
    while !done(&got, &seen) {
        let frame = tokio::time::timeout(WAIT, bob.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled: {} MSGs, {} notices, acks {:?}",
                    got.len(),
                    seen.notices,
                    seen.acks
                )
            })
            .expect("the session reconnects");
        match frame.frame_type() {
            FrameType::Msg if frame.channel_id() == CHANNEL => {
                got.insert(String::from_utf8(frame.payload().to_vec()).unwrap());
            }
            FrameType::Join if frame.channel_id() == CHANNEL => seen.notices += 1,
            FrameType::Ack => {
                if let Ok(ack) = frame.parse_control::<Ack>() {
                    seen.acks.insert(ack.ack);
                }
            }
            _ => {}
        }
    }
    assert_eq!(bob.reconnects(), 1);
    assert_ne!(bob.addr(), cluster.node(3).addr);
    // Bob's MSG, sent into the lost link or after it, reached Alice.
    let frame = alice.recv_on(FrameType::Msg, CHANNEL).await;
    assert_eq!(frame.payload().as_ref(), b"from bob");
    assert_eq!(bob.in_flight(), 0);
    cluster.finish().await;
}
