//! Rotation of a domain's federation key mid-conversation: events queued before the rotation
//! (signed with the old key) and after it (signed with the new key) are both accepted by the
//! peer, which learns the new key from the rotation the old key signed (published in the
//! well-known document); messages keep flowing both ways.

use commucat_ccp::FrameType;
use serde_json::json;

use super::messages::outbox_drains;
use super::{Domains, federation_key};
use crate::common::{self, StoreBackend};

async fn a_key_rotation_mid_conversation_keeps_messages_flowing(backend: StoreBackend) {
    let mut d = Domains::start(backend.clone(), backend, |_| {}, |_| {}).await;
    let alice_members = json!({"members": ["alice", "bob@b.test"], "relay": true});
    let bob_members = json!({"members": ["bob", "alice@a.test"], "relay": true});
    let mut alice = d.a.connect("alice").await;
    let mut bob = d.b.connect("bob").await;
    alice.join_with(9, &alice_members).await;
    bob.join_with(9, &bob_members).await;
    alice.say(9, "before").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
        b"before"
    );
    bob.say(9, "ack before").await;
    assert_eq!(
        alice.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
        b"ack before"
    );

    // b.test goes down; alice's next message waits in a.test's outbox, signed with the old key.
    let (alice_id, bob_id) = (alice.identity.clone(), bob.identity.clone());
    bob.close();
    d.b.stop().await;
    alice.say(9, "queued with the old key").await;
    alice.close();
    let old_key = federation_key(&d.a).await;
    let (new_key, rotation) = commucat_server::keys::federation::rotate(
        d.a.data_dir(),
        "a.test",
        3600,
        common::unix_now(),
    )
    .unwrap();
    d.a.restart().await;
    let info = d.a.server_info().await;
    assert_eq!(federation_key(&d.a).await, new_key.public_key());
    assert_eq!(
        info["federation"]["rotation"]["previous_public_key"],
        hex::encode(old_key)
    );
    assert_eq!(
        info["federation"]["rotation"]["signature"],
        rotation.signature.as_str()
    );

    // b.test (still pinning the old key) is back: the old-key event is accepted, then one
    // signed with the new key, learned from the rotation the old key signed.
    d.b.restart().await;
    let mut alice = d.a.connect_as(alice_id).await;
    alice.join_with(9, &alice_members).await;
    alice.say(9, "signed with the new key").await;
    outbox_drains(&d.a).await;
    let mut bob = d.b.connect_as(bob_id).await;
    bob.join_with(9, &bob_members).await;
    for text in ["queued with the old key", "signed with the new key"] {
        assert_eq!(
            bob.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
            text.as_bytes()
        );
    }
    bob.say(9, "still here").await;
    assert_eq!(
        alice.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
        b"still here"
    );
    alice.say(9, "and again").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 9).await.payload().as_ref(),
        b"and again"
    );
    // Since b.test restarted: the old-key event, the new-key one, the last one.
    assert_eq!(
        d.b.metric("commucat_federation_events_received_total ")
            .await,
        Some(3)
    );
}

common::on_each_store!(a_key_rotation_mid_conversation_keeps_messages_flowing);
