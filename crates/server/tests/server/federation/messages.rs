//! Conversations across domains through the SDK: both ways, to a recipient who is offline, and
//! across an outage of the receiving domain. Every scenario runs on SQLite and PostgreSQL.

use std::time::Duration;

use commucat_ccp::FrameType;
use serde_json::json;

use super::Domains;
use crate::common::{self, StoreBackend, WAIT, eventually, queued_becomes};

const QUIET: Duration = Duration::from_millis(300);

async fn messages_cross_both_ways(backend: StoreBackend) {
    let d = Domains::start(backend.clone(), backend, |_| {}, |_| {}).await;
    let mut alice = d.a.connect("alice").await;
    let mut bob = d.b.connect("bob").await;
    // Each side names the other as device@domain; the notice lists the remote member so.
    let members = alice
        .join_with(
            7,
            &json!({"members": ["alice", "bob@b.test"], "relay": true}),
        )
        .await;
    assert_eq!(members, ["alice", "bob@b.test"]);
    let members = bob
        .join_with(
            7,
            &json!({"members": ["bob", "alice@a.test"], "relay": true}),
        )
        .await;
    assert_eq!(members, ["alice@a.test", "bob"]);

    alice.say(7, "hello bob, from a.test").await;
    let got = bob.recv_on(FrameType::Msg, 7).await;
    assert_eq!(got.payload().as_ref(), b"hello bob, from a.test");
    bob.say(7, "hello alice, from b.test").await;
    let got = alice.recv_on(FrameType::Msg, 7).await;
    assert_eq!(got.payload().as_ref(), b"hello alice, from b.test");

    // Typing crosses too, naming the sender device@domain.
    let typing = alice
        .control(FrameType::Typing, 7, &json!({"typing": true}))
        .await;
    alice.ack(typing).await;
    let hint = common::json_of(&bob.recv_on(FrameType::Typing, 7).await);
    assert_eq!(hint["device"], "alice@a.test");

    // Nothing is queued locally for the remote member, nor left in either outbox.
    let store = d.a.store().await;
    assert_eq!(common::queued(&store, "bob@b.test").await, 0);
    outbox_drains(&d.a).await;
    outbox_drains(&d.b).await;
    assert_eq!(
        d.a.metric("commucat_federation_events_sent_total ").await,
        Some(1 + 1)
    );
    assert_eq!(
        d.b.metric("commucat_federation_events_received_total ")
            .await,
        Some(2)
    );
}

/// Waits until `server`'s outbox is empty.
pub(super) async fn outbox_drains(server: &crate::common::TestServer) {
    let store = server.store().await;
    eventually("empty outbox", WAIT, || async {
        store
            .outbox_stats(common::unix_now())
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
}

async fn an_offline_remote_recipient_gets_frames_when_back(backend: StoreBackend) {
    let d = Domains::start(backend.clone(), backend, |_| {}, |_| {}).await;
    let mut alice = d.a.connect("alice").await;
    alice
        .join_with(
            3,
            &json!({"members": ["alice", "bob@b.test"], "relay": true}),
        )
        .await;
    let bob = d.b.connect("bob").await;
    let identity = bob.identity.clone();
    bob.close();
    for text in ["one", "two", "three"] {
        alice.say(3, text).await;
    }
    let b_store = d.b.store().await;
    assert_eq!(queued_becomes(&b_store, "bob", 3).await, 3);
    let mut bob = d.b.connect_as(identity).await;
    for text in ["one", "two", "three"] {
        let got = bob.recv_on(FrameType::Msg, 3).await;
        assert_eq!(got.payload().as_ref(), text.as_bytes());
    }
    bob.expect_quiet(QUIET).await;
}

async fn a_peer_down_then_back_gets_every_event_in_order_once(backend: StoreBackend) {
    let mut d = Domains::start(backend.clone(), backend, |_| {}, |_| {}).await;
    let mut alice = d.a.connect("alice").await;
    alice
        .join_with(
            5,
            &json!({"members": ["alice", "bob@b.test"], "relay": true}),
        )
        .await;
    let bob = d.b.connect("bob").await;
    let identity = bob.identity.clone();
    bob.close();
    d.b.stop().await;

    let texts: Vec<String> = (0..6).map(|i| format!("while down #{i}")).collect();
    for text in &texts {
        // ACKed: the event is durable in a.test's outbox.
        alice.say(5, text).await;
    }
    let a_store = d.a.store().await;
    let stats = eventually("a failed delivery recorded", WAIT, || async {
        let stats = a_store.outbox_stats(common::unix_now()).await.unwrap();
        stats.first().filter(|s| s.last_error.is_some()).cloned()
    })
    .await;
    assert_eq!(stats.peer, "b.test");
    assert_eq!(stats.depth, 6);

    // The queued events are the reference's format: checked with the deployed crate.
    let queued = a_store
        .outbox_batch("b.test", common::unix_now(), 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 6);
    let a_key = super::federation_key(&d.a).await;
    for event in &queued {
        super::refusals::verify_as_reference(&event.body, &a_key);
    }

    d.b.restart().await;
    outbox_drains(&d.a).await;
    let mut bob = d.b.connect_as(identity).await;
    for text in &texts {
        let got = bob.recv_on(FrameType::Msg, 5).await;
        assert_eq!(got.payload().as_ref(), text.as_bytes());
    }
    bob.expect_quiet(QUIET).await;
}

common::on_each_store!(
    messages_cross_both_ways,
    an_offline_remote_recipient_gets_frames_when_back,
    a_peer_down_then_back_gets_every_event_in_order_once,
);
