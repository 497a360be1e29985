//! The sending side without a reachable peer: a full outbox is an ERROR to the sender (the
//! frames before it stay queued), members of blocked peers are refused at JOIN, and ids of
//! domains that are not peers stay local ids.

use commucat_server::config::PeerStatus;
use serde_json::json;

use super::{federating, peer};
use crate::common::{self, StoreBackend, TestServer};

/// `a.test` whose peer `b.test` never answers (nothing listens on port 9), and `c.test`
/// blocked.
async fn sender(backend: StoreBackend, outbox_per_peer: u64) -> TestServer {
    TestServer::start_on(backend, |c| {
        federating("a.test")(c);
        let key = commucat_keys::DeviceKeyPair::from_seed(&[4; 32]).public_key();
        let mut blocked = peer("c.test", "https://127.0.0.1:9", key, None);
        blocked.status = PeerStatus::Blocked;
        c.federation.peers = vec![peer("b.test", "https://127.0.0.1:9", key, None), blocked];
        c.federation.outbox_per_peer = outbox_per_peer;
    })
    .await
}

async fn a_full_outbox_is_an_error_to_the_sender(backend: StoreBackend) {
    let server = sender(backend, 2).await;
    let mut alice = server.connect("alice").await;
    alice
        .join_with(
            2,
            &json!({"members": ["alice", "bob@b.test", "dan@b.test"], "relay": true}),
        )
        .await;
    // One event per remote member: the first MSG fills the outbox of b.test.
    alice.say(2, "first").await;
    let sequence = alice.send(commucat_ccp::FrameType::Msg, 2, b"second").await;
    let problem = alice
        .error(
            sequence,
            commucat_server::session::established::OUTBOX_FULL_TITLE,
        )
        .await;
    assert_eq!(problem.status, Some(503));
    assert!(problem.detail.unwrap().contains("b.test"));
    // Still ACKed: the ERROR names who missed it, the session goes on.
    alice.ack(sequence).await;
    let store = server.store().await;
    let stats = store.outbox_stats(common::unix_now()).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].peer.as_str(), stats[0].depth), ("b.test", 2));
    server
        .metric_becomes("commucat_federation_outbox_depth{peer=\"b.test\"} ", 2)
        .await;
}

async fn members_of_blocked_peers_are_refused(backend: StoreBackend) {
    let server = sender(backend, 10).await;
    let mut alice = server.connect("alice").await;
    let sequence = alice
        .control(
            commucat_ccp::FrameType::Join,
            6,
            &json!({"members": ["alice", "carol@c.test"], "relay": true}),
        )
        .await;
    let problem = alice
        .error(
            sequence,
            commucat_server::session::established::PEER_BLOCKED_TITLE,
        )
        .await;
    assert_eq!(problem.status, Some(403));
    // A domain that is not a peer: the id is a local one, and unknown here.
    let sequence = alice
        .control(
            commucat_ccp::FrameType::Join,
            6,
            &json!({"members": ["alice", "erin@x.test"], "relay": true}),
        )
        .await;
    alice.error(sequence, "Unknown Device").await;
    let store = server.store().await;
    assert!(
        store
            .outbox_stats(common::unix_now())
            .await
            .unwrap()
            .is_empty()
    );
}

common::on_each_store!(
    a_full_outbox_is_an_error_to_the_sender,
    members_of_blocked_peers_are_refused,
);
